"""Fault injection: kill training runs at random moments and check that `--resume` never goes wrong.

For each training stage a tiny job (inputs: tests/fixtures/old_runs/inputs) is run once uninterrupted,
then again while being killed at random moments (SIGKILL, SIGTERM or SIGINT, uniformly; a kill can
land anywhere, checkpoint writes included: checkpoints are every few steps), each time continued with
`--resume` (or started again with `--force` when the run refuses to resume). After the last kill the
run is resumed to its end. Per stage the table gives:

    kills       signals sent to a running process
    refused     resumes that refused with one clear `error:` line (then started again with --force)
    continued   resumes that continued from a checkpoint
    silent      silent wrong resumes: final weights differ from the uninterrupted run's (stages that
                are deterministic on the CPU), or metrics.jsonl records duplicated or missing
    lost        user files changed or gone (a file beside the run, the inputs)

Target: silent = 0 and lost = 0. Not a timed test: `python bench/faults.py --kills 30` (about 20
minutes on 2 cores); `--stages rnn,gan` to pick.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INPUTS = REPO / "tests" / "fixtures" / "old_runs" / "inputs"
DLCLI = [sys.executable, "-m", "dlcli"]
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
CPU = ["--device", "cpu", "-q"]


@dataclass
class Stage:
    name: str
    args: list[str]  # the training command, with {IN}, {BASE}, {SFT} and {RUN} to fill in
    weights: str  # the file compared with the uninterrupted run's
    deterministic: bool = True  # same weights after any resume (CPU, one thread)


STAGES = [
    Stage("rnn", ["train-rnn", "-d", "{IN}/ts.ids", "-o", "{RUN}", "--cell", "lstm", "--layers", "1", "--hidden",
                  "32", "--seq-len", "32", "-b", "8", "--lr", "0.01", "--max-steps", "400", "--seed", "1", *CPU,
                  "--set", "log_interval=10", "--set", "eval_interval=50", "--set", "checkpoint_interval=20"],
          "model.safetensors"),
    Stage("gpt", ["train-transformer", "-d", "{IN}/ts.ids", "-o", "{RUN}", "--layers", "1", "--heads", "2",
                  "--embd", "32", "--block-size", "32", "-b", "8", "--lr", "0.01", "--max-steps", "400", "--seed",
                  "1", *CPU, "--set", "log_interval=10", "--set", "eval_interval=50", "--set",
                  "checkpoint_interval=20"],
          "model.safetensors"),
    Stage("translate", ["translate", "train", "-d", "{IN}/fra-eng.tsv", "-o", "{RUN}", "--layers", "1", "--heads",
                        "2", "--embd", "32", "--block-size", "24", "-b", "8", "--lr", "0.01", "--max-steps", "120",
                        "--max-time", "0", "--seed", "1", *CPU, "--set", "data.held_out=8", "--set",
                        "data.vocab_size=300", "--set", "optim.warmup_steps=5", "--set", "eval_interval=40",
                        "--set", "log_interval=10", "--set", "checkpoint_interval=10", "--set", "bleu_sample=4"],
          "model.safetensors"),
    Stage("gan", ["gan", "train", "ring8", "-o", "{RUN}", "--hidden", "32", "--layers", "2", "--z-dim", "2", "-b",
                  "64", "--max-steps", "1500", "--snapshot-interval", "500", "--seed", "1", *CPU, "--set",
                  "log_interval=50", "--set", "eval_interval=500", "--set", "eval_samples=200", "--set",
                  "checkpoint_interval=100"],
          "generator.safetensors"),
    Stage("nerf", ["nerf", "train", "{IN}/scene", "-o", "{RUN}", "--max-steps", "150", "--val-interval", "50", "-b",
                   "128", "--seed", "1", *CPU, "--set", "log2_table=10", "--set", "levels=4", "--set", "max_res=32",
                   "--set", "hidden=16", "--set", "n_samples=16", "--set", "grid_resolution=8", "--set",
                   "grid_warmup=4", "--set", "grid_interval=4", "--set", "log_interval=10", "--set",
                   "checkpoint_interval=10"],
          "model.safetensors", deterministic=False),  # the hash-grid kernels add in parallel
    Stage("reward", ["rlhf", "reward", "{BASE}", "{IN}/rlhf/prefs.jsonl", "-o", "{RUN}", "--max-steps", "80", "-b",
                     "8", *CPU, "--set", "log_interval=5", "--set", "eval_interval=20", "--set",
                     "checkpoint_interval=5"],
          "model.safetensors"),
    Stage("dpo", ["rlhf", "dpo", "{SFT}", "{IN}/rlhf/prefs.jsonl", "-o", "{RUN}", "--max-steps", "60", "-b", "8",
                  *CPU, "--set", "log_interval=5", "--set", "eval_interval=20", "--set", "checkpoint_interval=5",
                  "--set", "kl_samples=4"],
          "model.safetensors"),
    Stage("embed", ["embed", "train", "{IN}/story.tok", "-o", "{RUN}", "--dim", "16", "--min-count", "2", "--sample",
                    "0", "--epochs", "300", "--workers", "1", "--seed", "1", "--device", "cpu", "-q"],
          "vectors.vec"),
    Stage("forecast", ["forecast", "train", "-d", "{IN}/sine.csv", "-o", "{RUN}", "-m", "gru", "--hidden", "16",
                       "--epochs", "40", "--seed", "1", "--device", "cpu", "-q"],
          "model.safetensors"),
]


@dataclass
class Tally:
    kills: int = 0
    refused: int = 0
    continued: int = 0
    silent: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)


CODE = REPO  # the dlcli checkout that runs (--code: another one, e.g. an older commit, to compare)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(CODE), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore"}


def fill(args: list[str], where: dict[str, str]) -> list[str]:
    return [a.format(**where) for a in args]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(DLCLI + args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600,
                          check=False)


def records(run_dir: Path) -> list[tuple]:
    """What each metrics.jsonl record is (its position and its keys), without its values."""
    p = run_dir / "metrics.jsonl"
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out.append((r.get("step"), r.get("epoch"), r.get("slice"), tuple(sorted(r))))
    return out


def weights(path: Path) -> dict[str, bytes] | str:
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return {k: v.tobytes() for k, v in load_file(str(path)).items()}
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(stderr: str) -> bool:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return bool(lines) and lines[-1].startswith("error:") and "Traceback" not in stderr


def faulted(stage: Stage, base: list[str], work: Path, kills: int, rng: random.Random, t: Tally) -> Path:
    """Run `stage` into work/faulted, killing it until `t.kills` reaches `kills` or it ends; resume to the end."""
    run_dir = work / "faulted"
    args = fill(base, {"RUN": str(run_dir)})
    resume = False
    done = False
    while t.kills < kills:
        cmd = DLCLI + args + (["--resume"] if resume else (["--force"] if run_dir.exists() else []))
        p = subprocess.Popen(cmd, cwd=work, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.2, stage_seconds(stage)))
        sent = p.poll() is None
        if sent:
            p.send_signal(rng.choice(SIGNALS))
            t.kills += 1
        _, err = p.communicate(timeout=600)
        if p.returncode == 0:
            t.continued += resume
            done = True
            break
        if not sent and resume and one_line_error(err):
            t.refused += 1  # e.g. nothing to resume yet: start again
        elif not sent:
            t.notes.append(f"unclear failure: {err.strip().splitlines()[-1:]}")
        else:
            t.continued += resume
        resume = (run_dir / "checkpoint.safetensors").is_file()
    while not done:  # to the end
        r = run(args + (["--resume"] if resume else ["--force"]), work)
        if r.returncode == 0:
            done = True
        elif resume and one_line_error(r.stderr):
            t.refused += 1
            resume = False
        else:
            t.notes.append(f"final run failed: {r.stderr.strip().splitlines()[-1:]}")
            break
    return run_dir


_SECONDS: dict[str, float] = {}


def stage_seconds(stage: Stage) -> float:
    return _SECONDS.get(stage.name, 5.0)


def prepare(work: Path) -> None:
    """The inputs, and the language-model runs the RLHF stages start from."""
    shutil.copytree(INPUTS, work / "inputs")
    for cmd in (["train-transformer", "-d", "inputs/rlhf/corpus.ids", "-o", "base", "--layers", "1", "--heads", "2",
                 "--embd", "16", "--block-size", "48", "-b", "8", "--lr", "0.01", "--max-steps", "30", "--seed", "1",
                 *CPU],
                ["rlhf", "sft", "base", "inputs/rlhf/sft.jsonl", "-o", "sft", "--max-steps", "10", "-b", "8", *CPU]):
        r = run(cmd, work)
        if r.returncode:
            sys.exit(f"setting up failed: {' '.join(cmd)}\n{r.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=30, help="kills per stage (default 30)")
    ap.add_argument("--stages", default=",".join(s.name for s in STAGES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--code", type=Path, default=REPO, help="the dlcli checkout to run (default this one)")
    a = ap.parse_args()
    global CODE
    CODE = a.code.resolve()
    rng = random.Random(a.seed)
    chosen = [s for s in STAGES if s.name in a.stages.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlcli-faults-") as tmp:
        work = Path(tmp)
        prepare(work)
        (work / "user-notes.txt").write_text("a file of the user's, beside the runs\n")
        before = digest(work / "inputs") | {"user-notes.txt": digest(work)["user-notes.txt"]}
        for stage in chosen:
            base = fill(stage.args, {"IN": "inputs", "BASE": "base", "SFT": "sft", "RUN": "{RUN}"})
            t0 = time.perf_counter()
            ref = run(fill(base, {"RUN": "reference"}), work)
            _SECONDS[stage.name] = time.perf_counter() - t0
            if ref.returncode:
                sys.exit(f"{stage.name}: the uninterrupted run failed:\n{ref.stderr}")
            t = Tally()
            runs = 0
            while t.kills < a.kills or not runs:  # faulted runs to the end until enough kills
                run_dir = faulted(stage, base, work, a.kills, rng, t)
                runs += 1
                if records(run_dir) != records(work / "reference"):
                    t.silent += 1
                    t.notes.append("metrics.jsonl records differ from the uninterrupted run's")
                if stage.deterministic and (run_dir / stage.weights).is_file() and \
                        weights(run_dir / stage.weights) != weights(work / "reference" / stage.weights):
                    t.silent += 1
                    t.notes.append(f"{stage.weights} differs from the uninterrupted run's")
                if not (run_dir / stage.weights).is_file():
                    t.notes.append(f"no {stage.weights} at the end")
                shutil.rmtree(run_dir, ignore_errors=True)
            now = digest(work / "inputs") | {"user-notes.txt": digest(work).get("user-notes.txt", "gone")}
            t.lost = sum(before[k] != now.get(k) for k in before)
            rows.append((stage.name, t, _SECONDS[stage.name]))
            print(f"{stage.name:10s} runs {runs:2d}  kills {t.kills:3d}  refused {t.refused:3d}  continued {t.continued:3d}  "
                  f"silent {t.silent}  lost {t.lost}  (one run {_SECONDS[stage.name]:.1f} s)"
                  + (f"  {'; '.join(t.notes[:3])}" if t.notes else ""), flush=True)
            shutil.rmtree(work / "reference")
    print("\n| stage | kills | refused (clear line) | continued | silent wrong | lost user files |")
    print("|---|---|---|---|---|---|")
    for name, t, _ in rows:
        print(f"| {name} | {t.kills} | {t.refused} | {t.continued} | {t.silent} | {t.lost} |")


if __name__ == "__main__":
    main()
