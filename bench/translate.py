"""Benchmark: translation on fra-eng.txt (English -> French), CPU.

Trains the recommended config (configs/translate-fra-eng-cpu.yaml: 20 minutes,
1,000 random held-out pairs), or takes an existing run with --run, then
reports held-out corpus BLEU (sacrebleu, 13a), cased and case-insensitive, and sentences/s for greedy
decoding and for beam search (GNMT length penalty), all on the same pairs.
Target: cased BLEU >= 35 after at most 20 minutes of CPU training.

Usage: python bench/translate.py [--run RUN] [--beam 4] [--length-penalty 0.6]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "fra-eng.txt"
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="evaluate this translation run instead of training one")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--length-penalty", type=float, default=0.6)
    args = ap.parse_args()

    from dlcli.core.config import build_config
    from dlcli.translation.config import TrainTranslateConfig
    from dlcli.translation.run import held_out_bleu
    from dlcli.translation.train import train

    run = args.run
    if not run:
        run = str(Path(tempfile.mkdtemp(prefix="dlcli-translate-bench-")) / "run")
        cfg = build_config(TrainTranslateConfig, REPO / "configs" / "translate-fra-eng-cpu.yaml",
                           [f"data.tsv={DATA}", f"output={run}"])
        t0 = time.perf_counter()
        s = train(cfg)
        print(f"trained {s['steps']:,} steps ({s['epochs']:.1f} epochs) in {time.perf_counter() - t0:.0f} s wall "
              f"(train {s['train_seconds']:.0f} s + final evaluation {s['final_seconds']:.0f} s); run: {run}")
    r = held_out_bleu(run, beam=args.beam, device="cpu", length_penalty=args.length_penalty)
    print(f"held-out pairs: {r['held_out']:,}   sacrebleu: {r['signature']} (and {r['signature_lowercase']})")
    print(f"{'decoding':<22}{'BLEU cased':>12}{'case-insens.':>14}{'sentences/s':>14}")
    print(f"{'greedy':<22}{r['bleu_greedy']:>12.2f}{r['bleu_greedy_lowercase']:>14.2f}"
          f"{r['sentences_per_s_greedy']:>14.1f}")
    label = f"beam {r['beam']} (alpha {r['length_penalty']})"
    print(f"{label:<22}{r['bleu_beam']:>12.2f}{r['bleu_beam_lowercase']:>14.2f}{r['sentences_per_s_beam']:>14.1f}")
    print("target: cased BLEU >= 35 after <= 20 min of CPU training:",
          "met" if r["bleu_greedy"] >= 35 else "NOT met")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
