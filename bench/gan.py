"""Benchmark: mode coverage of dlcli's recommended GAN configs, mean over seeds.

For each of configs/gan-ring8.yaml, configs/gan-grid25.yaml and
configs/gan-digits.yaml, trains one run per seed (CPU unless --device) and
evaluates the moving-average generator with the VEEGAN protocol: 2,500
samples; high quality = within 3 sigma of the nearest mode; a mode is
captured by at least one high-quality sample; reverse KL between the
histogram of nearest modes and the uniform mode weights. Digits: a small
classifier (trained once per run on scikit-learn's 8x8 digits) labels 2,500
samples; classes covered (at least 1 sample) and mean confidence.

Targets: ring8 8/8 modes with >= 97% high quality and grid25 25/25 with
>= 95%, each run under 2 minutes on CPU; digits 10/10 classes.

Digits need scikit-learn: pip install -e '.[bench]'

Usage: python bench/gan.py [--seeds 5] [--first-seed 0] [--only ring8,grid25,digits] [--device cpu] [--json out.json]
                           [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Published figures (modes captured / high-quality share), as quoted in issue 6.
PUBLISHED = {
    "ring8": [("VEEGAN (Srivastava et al. 2017)", "8", "52.9%"), ("PacGAN4 (Lin et al. 2018)", "7.8", "95.9%"),
              ("vanilla GAN (various papers)", "1 to 6.3", "")],
    "grid25": [("VEEGAN (Srivastava et al. 2017)", "24.6", "40%"), ("PacGAN4 (Lin et al. 2018)", "24.8", "93.6%")],
    "digits": [],
}
TARGETS = {"ring8": (8, 0.97), "grid25": (25, 0.95), "digits": (10, None)}
TIME_LIMIT_S = 120.0


def run_one(name: str, seed: int, device: str, root: Path, sets: list[str]) -> dict:
    from dlcli.core.config import build_config
    from dlcli.gan.config import GanConfig
    from dlcli.gan.sample import evaluate
    from dlcli.gan.train import train

    cfg = build_config(GanConfig, REPO / "configs" / f"gan-{name}.yaml",
                       [*sets, f"seed={seed}", f"device={device}", f"output={root / f'{name}-{seed}'}"])
    t0 = time.perf_counter()
    s = train(cfg, force=True)
    seconds = time.perf_counter() - t0
    ev = evaluate(cfg.output, n=2500, threshold=1, seed=0, device=device)
    return {"seed": seed, "seconds": seconds, "steps": s["steps"], **ev}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--only", default="ring8,grid25,digits")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="")
    ap.add_argument("--set", action="append", default=[], help="override a config key (key=value), repeatable")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}", flush=True)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="dlcli-gan-bench-") as tmp:
        for name in args.only.split(","):
            if name == "digits":
                try:
                    import sklearn  # noqa: F401
                except ImportError:
                    print("digits: skipped (needs scikit-learn: pip install -e '.[bench]')")
                    continue
            results[name] = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                r = run_one(name, seed, args.device, Path(tmp), args.set)
                results[name].append(r)
                if "modes" in r:
                    line = (f"{r['modes']}/{r['n_modes']} modes, {100 * r['high_quality']:.1f}% high quality, "
                            f"reverse KL {r['reverse_kl']:.4f}")
                else:
                    line = (f"{r['classes']}/{r['n_classes']} classes, mean confidence {r['mean_confidence']:.3f}, "
                            f"KL {r['reverse_kl']:.4f}")
                print(f"{name} seed {seed}: {line}; {r['steps']} steps in {r['seconds']:.1f} s", flush=True)

    print()
    for name, rs in results.items():
        mean = statistics.fmean
        secs = [r["seconds"] for r in rs]
        k, hq_target = TARGETS[name]
        print(f"== {name}: mean over {len(rs)} seeds (max {max(secs):.1f} s per run)")
        if "modes" in rs[0]:
            modes, hq = mean(r["modes"] for r in rs), mean(r["high_quality"] for r in rs)
            kl = mean(r["reverse_kl"] for r in rs)
            print(f"  {'':34s} {'modes':>9s} {'high quality':>13s} {'reverse KL':>11s}")
            print(f"  {'dlcli configs/gan-' + name + '.yaml':34s} {modes:9.2f} {100 * hq:12.1f}% {kl:11.4f}")
            for who, m, q in PUBLISHED[name]:
                print(f"  {who:34s} {m:>9s} {q:>13s}")
            ok = modes == k and hq >= hq_target and max(secs) < TIME_LIMIT_S
            print(f"  target {k}/{k} modes, >= {100 * hq_target:.0f}% high quality, < {TIME_LIMIT_S:.0f} s: "
                  f"{'met' if ok else 'NOT met'}")
        else:
            classes, conf = mean(r["classes"] for r in rs), mean(r["mean_confidence"] for r in rs)
            print(f"  classes covered {classes:.2f}/10, mean confidence {conf:.3f}, mean KL "
                  f"{mean(r['reverse_kl'] for r in rs):.4f}")
            print(f"  target 10/10 classes: {'met' if classes == k else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
