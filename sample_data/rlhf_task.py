"""Write the RLHF toy task's files into a folder (its rule: dlcli/rlhf/toytask.py).

    python sample_data/rlhf_task.py OUT [--scale 1.0]

OUT/corpus.txt         pretraining text (prompts followed by random answers), for `dlcli train-transformer`
OUT/sft.jsonl          {"prompt", "completion"}: on topic half the time, positive half the time
OUT/prefs.jsonl        {"prompt", "chosen", "rejected"}: the higher-scoring answer chosen
OUT/prompts.jsonl      {"prompt"}: PPO's training prompts
OUT/heldout.jsonl      {"prompt"}: every topic in a wording no training prompt uses
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dlcli.rlhf import toytask


def write(out: Path, scale: float = 1.0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.txt").write_text(toytask.corpus(int(6000 * scale)), encoding="utf-8")
    for name, rows in (("sft", toytask.sft_pairs(int(2000 * scale))),
                       ("prefs", toytask.preference_pairs(int(3000 * scale))),
                       ("prompts", toytask.prompts(int(1000 * scale))),
                       ("heldout", toytask.held_out_prompts())):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every file's line count")
    a = ap.parse_args()
    write(a.out, a.scale)
    print(a.out)
