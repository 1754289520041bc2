"""Benchmark: NeRF test PSNR / SSIM on CPU within a wall-clock budget.

1. The procedural scene (`dlcli nerf synth --size 100`: 100 training views of 100x100, 20 test views on a
   ring) with configs/nerf-synth-cpu.yaml (hash grid + occupancy grid, 10 minutes). Target: test PSNR >= 30 dB.
2. The Instant-NGP fox capture (../shared/data/nerf/fox, 67 hand-held 1080x1920 JPEGs) at --downscale 8
   (135x240) with configs/nerf-fox-cpu.yaml; every 8th frame is held out. Reports the hold-out PSNR and renders
   an orbit GIF.
3. A real Blender scene (lego) at 100x100 when ../shared/data/nerf/lego exists (target >= 25 dB in 15 min).
4. Opt-in (--only chair,chair200): the NeRF paper's chair (../shared/data/nerf/chair, 200x200 copies) with
   configs/nerf-chair-cpu.yaml on all 200 test views: at 100x100 in 15 minutes (target >= 30 dB) and at
   200x200 in 30 minutes (target >= 28 dB). Each draws psnr-time.png into its run directory: PSNR against
   training time (the training batches, the validation view, the test mean at the end) beside the published
   end points.

Each run trains, evaluates the test views (dlcli.nerf.renderer.evaluate) and renders a 48-frame orbit GIF
into --out (default runs/bench-nerf), plus <name>-orbit-frames.png (4 of its frames side by side). The table
gives the samples per ray (spr) and rays per step at the end of training and the eval and GIF times.
Run it alone on the machine: the figures are wall-clock bound.

Usage: python bench/nerf.py [--only synth,fox,lego,chair,chair200] [--synth-time 10m] [--fox-time 5m]
                            [--chair-time 15m] [--chair200-time 30m] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "nerf"
PUBLISHED_CHAIR = {"NeRF": 33.00, "Instant-NGP": 35.00}  # PSNR at 800x800 (Mildenhall et al. 2020; Müller et al. 2022)


def run_one(name: str, data: Path, config: str, budget: str, out: Path, device: str, extra: list[str]) -> dict:
    from dlcli.core import rundir
    from dlcli.core.config import build_config
    from dlcli.nerf.config import NerfConfig
    from dlcli.nerf.renderer import evaluate, render
    from dlcli.nerf.train import train

    cfg = build_config(NerfConfig, REPO / "configs" / config,
                       [f"data={data}", f"output={out / name}", f"max_time={budget}", f"device={device}", *extra])
    t = time.monotonic()
    s = train(cfg, force=True)
    train_s = time.monotonic() - t
    t = time.monotonic()
    ev = evaluate(out / name, "test", device=device)
    eval_s = time.monotonic() - t
    t = time.monotonic()
    gif = out / f"{name}-orbit.gif"
    render(out / name, str(gif), "orbit", 48, force=True, device=device)
    render_s = time.monotonic() - t
    _frames_png(gif, out / f"{name}-orbit-frames.png")
    last = [m for m in rundir.read_metrics(out / name) if "samples_per_ray" in m][-1]
    return {"name": name, "steps": s["steps"], "run": str(out / name), "train_s": round(train_s, 1), "psnr": round(ev["results"]["psnr"], 2),
            "ssim": round(ev["results"]["ssim"], 4), "views": ev["results"]["num_views"],
            "resolution": "x".join(map(str, ev["resolution"])), "eval_s": round(eval_s, 1),
            "render_s": round(render_s, 1), "samples_per_ray": round(last["samples_per_ray"], 1),
            "rays_per_step": round(last.get("rays", cfg.batch_rays)), "gif": str(gif)}


def _frames_png(gif: Path, png: Path) -> None:
    """Four frames of the orbit side by side, to look at without an animation viewer."""
    import imageio.v3 as iio
    import numpy as np

    frames = iio.imread(gif, index=None)
    iio.imwrite(png, np.concatenate([frames[i][..., :3] for i in range(0, len(frames), len(frames) // 4)][:4], 1))


def psnr_curve(row: dict, png: Path, title: str, target: float) -> None:
    """PSNR against training time: the training batches, the validation view and the test mean at the end,
    with the published end points and the target as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from machine import cpu_kind  # bench/ is on sys.path when this runs as a script

    from dlcli.core import rundir

    recs = rundir.read_metrics(row["run"])
    fig, ax = plt.subplots(figsize=(7, 4))
    batch = [(m["elapsed"] / 60, m["psnr"]) for m in recs if "psnr" in m]
    val = [(m["elapsed"] / 60, m["val_psnr"]) for m in recs if "val_psnr" in m]
    ax.plot(*zip(*batch, strict=True), color="0.75", lw=0.8, label="training batch (this run)")
    ax.plot(*zip(*val, strict=True), "o-", ms=4, label="validation view r_0 (this run)")
    ax.plot(row["train_s"] / 60, row["psnr"], "*", ms=14, color="tab:red",
            label=f"{row['views']} test views at the end: {row['psnr']:.2f} dB")
    for (name, db), style in zip(PUBLISHED_CHAIR.items(), ("--", "-."), strict=True):
        ax.axhline(db, ls=style, lw=1, color="tab:green" if name == "NeRF" else "tab:purple",
                   label=f"{name}, published end point (800x800): {db:.2f}")
    ax.axhline(target, ls=":", color="k", lw=1, label=f"target at {row['resolution']}: {target:g} dB")
    ax.set(xlabel=f"training time (minutes, {cpu_kind()})", ylabel="PSNR (dB)", title=title,
           ylim=(20, max(p for _, p in batch) + 2))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="synth,fox,lego")
    ap.add_argument("--synth-time", default="10m")
    ap.add_argument("--fox-time", default="5m")
    ap.add_argument("--lego-time", default="15m")
    ap.add_argument("--chair-time", default="15m")
    ap.add_argument("--chair200-time", default="30m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-nerf"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    from dlcli.nerf.synth import SynthConfig, synth

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = args.only.split(",")
    print(f"# machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}")
    rows = []
    if "synth" in only:
        synth(SynthConfig(output=str(out / "scene"), size=100), force=True)
        rows.append(run_one("synth", out / "scene", "nerf-synth-cpu.yaml", args.synth_time, out, args.device, []))
        rows[-1]["target"] = ">= 30 dB"
    if "fox" in only:
        if (DATA / "fox").is_dir():
            rows.append(run_one("fox", DATA / "fox", "nerf-fox-cpu.yaml", args.fox_time, out, args.device, []))
            rows[-1]["target"] = "report (hold-out)"
        else:
            print(f"# fox: {DATA / 'fox'} not found, skipped")
    if "lego" in only:
        if (DATA / "lego").is_dir():
            rows.append(run_one("lego", DATA / "lego", "nerf-synth-cpu.yaml", args.lego_time, out, args.device,
                                ["downscale=8"]))
            rows[-1]["target"] = ">= 25 dB"
        else:
            print(f"# lego: {DATA / 'lego'} not found (no network here), skipped")
    for name, downscale, target in (("chair", 2, 30.0), ("chair200", 1, 28.0)):
        if name not in only:
            continue
        if not (DATA / "chair").is_dir():
            print(f"# {name}: {DATA / 'chair'} not found, skipped")
            continue
        row = run_one(name, DATA / "chair", "nerf-chair-cpu.yaml", getattr(args, f"{name}_time"), out,
                      args.device, [f"downscale={downscale}"])
        row["target"] = f">= {target:g} dB"
        psnr_curve(row, Path(row["run"]) / "psnr-time.png",
                   f"chair at {row['resolution']}, configs/nerf-chair-cpu.yaml", target)
        rows.append(row)
    print(f"{'scene':8} {'res':>8} {'steps':>6} {'train s':>8} {'spr':>5} {'rays':>5} {'views':>5} {'PSNR':>6} "
          f"{'SSIM':>7} {'eval s':>6} {'gif s':>6}  target")
    for r in rows:
        print(f"{r['name']:8} {r['resolution']:>8} {r['steps']:>6} {r['train_s']:>8} {r['samples_per_ray']:>5} "
              f"{r['rays_per_step']:>5} {r['views']:>5} {r['psnr']:>6} {r['ssim']:>7} {r['eval_s']:>6} "
              f"{r['render_s']:>6}  {r['target']}   {r['gif']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
