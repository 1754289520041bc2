"""What a new user meets on this machine: issue 15's "done when" checks, in one run, against their targets.

On two fresh clones of this repository (each beside a `shared` link to ../shared, as CI has it):

1. `make test` in the first: wall time (the venv included) and the pytest summary; target < 240 s.
2. `make demo` in the second: wall time (its own venv included), and any library warning it printed;
   target < 180 s, no warning.
3. The README's two language models, exactly as written, in the first clone (its venv): Tiny Shakespeare
   at character level, `train-rnn --config configs/rnn-shakespeare.yaml` (3 min) and `train-transformer
   --config configs/transformer-shakespeare-cpu.yaml` (100 s), then `dlcli evaluate RUN --text
   held_out.txt` (the last 100,000 characters); targets: held-out loss <= 1.65 (LSTM), <= 1.70 (GPT).

The table names the CPU kind; `--json FILE` also writes the figures. About 12 minutes on a 2-core CPU.
Run it alone (no other torch job beside it): every figure is a wall-clock one.

Usage: python bench/first_run.py [--only test,demo,lm] [--keep DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CHECKS = ("test", "demo", "lm")
# A library's warning leaking into the demo's output (our own lines start with "warning: ").
LEAK = re.compile(r"\b\w*(Warning|DeprecationWarning)\b:|Traceback")


def clone(into: Path, name: str) -> Path:
    """A fresh clone of HEAD at into/name/main with into/name/shared -> ../shared."""
    root = into / name
    root.mkdir(parents=True)
    (root / "shared").symlink_to(SHARED.resolve())
    subprocess.run(["git", "clone", "-q", str(REPO), str(root / "main")], check=True)
    return root / "main"


def timed(cmd: list[str] | str, cwd: Path, log: Path) -> tuple[float, int, str]:
    """Run a command (a string runs in bash), its output into `log`; (seconds, exit code, output)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, check=False, cwd=cwd, shell=isinstance(cmd, str), executable="/bin/bash" if isinstance(cmd, str)
                       else None, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env={**os.environ, "CI": "true"})
    secs = time.perf_counter() - t
    log.write_text(p.stdout, encoding="utf-8")
    return secs, p.returncode, p.stdout


def check_test(work: Path) -> dict:
    secs, rc, out = timed(["make", "test"], work, work.parent / "make-test.log")
    summary = next((line for line in reversed(out.splitlines()) if " passed" in line or " failed" in line), "")
    return {"check": "make test, fresh clone (venv included)", "target": "< 240 s, all pass",
            "seconds": round(secs, 1), "summary": summary.strip("= "), "ok": rc == 0 and secs < 240}


def check_demo(work: Path) -> dict:
    secs, rc, out = timed(["make", "demo"], work, work.parent / "make-demo.log")
    leaks = [line for line in out.splitlines() if LEAK.search(line)]
    return {"check": "make demo, fresh clone (venv included)", "target": "< 180 s, no library warning",
            "seconds": round(secs, 1), "summary": f"exit {rc}, {len(leaks)} library warning lines"
            + (f" (first: {leaks[0][:80]})" if leaks else ""), "ok": rc == 0 and secs < 180 and not leaks}


def check_lm(work: Path) -> list[dict]:
    """The README's lines, as written, in the clone's venv (made by `make test`)."""
    data = SHARED / "data" / "tinyshakespeare.txt"
    env = f"set -e; . .venv/bin/activate; mkdir -p data; cp {data} data/tinyshakespeare.txt; "
    prep = ("dlcli preprocess data/tinyshakespeare.txt -l char --whole -o ts.tok -q && "
            "dlcli vocab build ts.tok -o ts.json -q && dlcli vocab encode ts.tok -t ts.json -o ts.ids -q && "
            "tail -c 100000 data/tinyshakespeare.txt > held_out.txt")
    if not (work / ".venv" / "bin" / "dlcli").exists():
        subprocess.run(["make", ".venv/.installed-stamp"], cwd=work, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(env + prep, cwd=work, shell=True, executable="/bin/bash", check=True, stdout=subprocess.DEVNULL)
    rows = []
    for name, cfg, target in (("lstm", "rnn-shakespeare.yaml", 1.65), ("gpt", "transformer-shakespeare-cpu.yaml", 1.70)):
        stage = "train-rnn" if name == "lstm" else "train-transformer"
        cmd = f"{env}dlcli {stage} --config configs/{cfg} -d ts.ids -o runs/{name}"
        secs, rc, out = timed(cmd, work, work.parent / f"{name}.log")
        ev = subprocess.run(f"{env}dlcli evaluate runs/{name} --text held_out.txt -q", check=False, cwd=work, shell=True,
                            executable="/bin/bash", capture_output=True, text=True)
        loss = json.loads(ev.stdout)["loss"] if ev.returncode == 0 else float("nan")
        said = re.findall(r"precision auto -> \w+[^;\n]*$", out, re.MULTILINE) if rc == 0 else out.strip().splitlines()[-1:]
        rows.append({"check": f"README {stage}, {cfg}", "target": f"held-out loss <= {target:.2f}",
                     "seconds": round(secs, 1), "loss": round(loss, 4),
                     "summary": f"held-out {loss:.4f}; " + (said[-1][:100] if said else f"exit {rc}"),
                     "ok": rc == 0 and loss <= target})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated, of {', '.join(CHECKS)}")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one, removed)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    # Started with nohup or `&`, SIGINT is ignored and the children would inherit that (the suite's Ctrl-C
    # tests would then fail); a handler of our own is reset to the default in every child instead.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    only = [c for c in args.only.split(",") if c]
    if bad := [c for c in only if c not in CHECKS]:
        sys.exit(f"error: --only: unknown check {bad[0]!r} (choose from {', '.join(CHECKS)})")
    if not (SHARED / "data" / "tinyshakespeare.txt").exists():
        sys.exit(f"error: {SHARED}/data/tinyshakespeare.txt: not found (the tests and the README need ../shared)")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dlcli-first-run-"))
    root.mkdir(parents=True, exist_ok=True)
    from machine import cpu_kind  # bench/ is on sys.path when this runs as a script

    machine = cpu_kind()
    print(f"machine: {machine}; work in {root}", flush=True)
    rows: list[dict] = []
    try:
        first = None
        if "test" in only or "lm" in only:
            first = clone(root, "a")
        if "test" in only:
            rows.append(check_test(first))
            print(rows[-1], flush=True)
        if "demo" in only:
            rows.append(check_demo(clone(root, "b")))
            print(rows[-1], flush=True)
        if "lm" in only:
            rows += check_lm(first)
            print(rows[-2:], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nissue 15's checks on {machine}:")
    print(f"{'check':<58} {'target':<28} {'seconds':>8}  ok   measured")
    for r in rows:
        print(f"{r['check']:<58} {r['target']:<28} {r['seconds']:>8.1f}  {'yes' if r['ok'] else 'NO ':<4} {r['summary']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "checks": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
