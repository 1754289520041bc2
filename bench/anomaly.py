"""Benchmark: `dlcli anomaly detect` on NAB's 24 shared files (123,523 points), speed and NAB scores.

Each run is the command as a user types it, in a fresh process (Python start, numba's cached kernels
loaded, the series read, scored across worker processes, written with a plot each):

    dlcli anomaly detect NAB/data -o OUT --detector D --seed S --force

timed by the wall clock (points per second = 123,523 / seconds), then OUT scored as `dlcli anomaly
score OUT --labels NAB/labels/combined_windows.json` scores it: the three profiles' NAB scores, and at the
standard profile's threshold the windows found, false positives and event-wise precision, recall and F1.

    python bench/anomaly.py                                   # forecast and gaussian, seed 0
    python bench/anomaly.py --detectors forecast --seeds 0,1,2,3,4 --no-plots

The held-out categories (realAWSCloudwatch, realTraffic, realTweets) are not part of the shared data and
are not read here.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_kind

from dlcli.anomaly.config import ScoreConfig
from dlcli.anomaly.score import score

NAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"


def run(nab: Path, out: Path, detector: str, seed: int, plots: bool, workers: int) -> dict:
    cmd = [sys.executable, "-c", "from dlcli.cli.app import main; main()", "anomaly", "detect", str(nab / "data"), "-o", str(out),
           "--detector", detector, "--seed", str(seed), "--force", "--quiet", "--workers", str(workers),
           "--plots" if plots else "--no-plots"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    s = score(ScoreConfig(results=str(out), labels=str(nab / "labels" / "combined_windows.json"),
                          data=str(nab / "data")))
    return {"seconds": seconds, "rows": s["rows"], "profiles": {p["profile"]: p for p in s["profiles"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nab", type=Path, default=NAB, help="NAB's shared folder (data/, labels/)")
    ap.add_argument("--detectors", default="forecast,gaussian")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--workers", type=int, default=0, help="0: one per core")
    ap.add_argument("--no-plots", action="store_true", help="time without writing the 24 PNGs")
    args = ap.parse_args()
    print(f"CPU: {cpu_kind()}; plots {'off' if args.no_plots else 'on'}")
    print(f"{'detector':9s} {'seed':>4s} {'seconds':>8s} {'points/s':>9s}  {'standard':>8s} {'low FP':>7s} "
          f"{'low FN':>7s}  {'found':>6s} {'FP':>4s} {'event P/R/F1':>17s}")
    for detector in args.detectors.split(","):
        standard = []
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                r = run(args.nab, Path(tmp) / "out", detector, seed, not args.no_plots, args.workers)
            p = r["profiles"]
            st = p["standard"]
            standard.append(st["score"])
            print(f"{detector:9s} {seed:4d} {r['seconds']:8.1f} {r['rows'] / r['seconds']:9,.0f}  "
                  f"{st['score']:8.2f} {p['reward_low_FP_rate']['score']:7.2f} {p['reward_low_FN_rate']['score']:7.2f}  "
                  f"{st['detected']:>3d}/{st['windows']:<2d} {st['false_positives']:4d} "
                  f"{st['event_precision']:.3f}/{st['event_recall']:.3f}/{st['event_f1']:.3f}", flush=True)
        if len(standard) > 1:
            print(f"{detector}: standard mean {statistics.mean(standard):.2f}, min {min(standard):.2f}, "
                  f"max {max(standard):.2f} over {len(standard)} seeds")


if __name__ == "__main__":
    main()
