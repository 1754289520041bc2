"""Benchmark: `dlcli nerf process` on the fox capture, checked against its shipped poses.

1. Poses from the images alone: `process` on the 67 fox JPEGs (../shared/data/nerf/fox/images, 1080x1920)
   at --downscale 4 (270x480): images registered, mean reprojection error, seconds per phase.
2. The recovered poses against the shipped transforms.json after a similarity alignment (Umeyama on the
   camera centres): mean and max rotation error in degrees, camera-centre error in % of the scene radius
   (the shipped cameras' mean distance from their centroid). Targets: <= 2 degrees, <= 5 %.
3. With --train-time (e.g. 3m): a NeRF (configs/nerf-fox-cpu.yaml at 135x240) trained on the processed scene
   and one trained on the same images with the shipped poses and intrinsics, for the same budget; hold-out
   PSNR of each (every 8th frame). Target: within 1 dB. Both use the processed images, so only the cameras
   differ.

The fox is licensed for non-commercial use: it is read in place, never copied into the repository.
Run it alone on the machine (under `flock /tmp/cpu.lock` on shared ones): the times are wall-clock.

Usage: python bench/nerf_process.py [--downscale 4] [--matching auto] [--camera-model SIMPLE_RADIAL]
       [--train-time 3m] [--out runs/bench-nerf-process]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FOX = REPO.parent / "shared" / "data" / "nerf" / "fox"


def shipped(scene: Path, downscale: int) -> None:
    """scene/ref: the processed images with the fox's own poses and intrinsics (scaled to their size)."""
    doc = json.loads((FOX / "transforms.json").read_text())
    for k in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        doc[k] = doc[k] / downscale
    doc["w"], doc["h"] = int(doc["w"]), int(doc["h"])
    ref = scene.parent / "ref"
    shutil.rmtree(ref, ignore_errors=True)
    shutil.copytree(scene / "images", ref / "images")  # a link out of the data set folder would be refused
    (ref / "transforms.json").write_text(json.dumps(doc, indent=2))


def train_eval(name: str, data: Path, budget: str, out: Path, downscale: int) -> dict:
    from dlcli.core.config import build_config
    from dlcli.nerf.config import NerfConfig
    from dlcli.nerf.renderer import evaluate
    from dlcli.nerf.train import train

    cfg = build_config(NerfConfig, REPO / "configs" / "nerf-fox-cpu.yaml",
                       [f"data={data}", f"output={out / name}", f"max_time={budget}", f"downscale={downscale}",
                        "device=cpu"])
    s = train(cfg, force=True)
    ev = evaluate(out / name, "test", device="cpu")
    return {"name": name, "steps": s["steps"], "psnr": round(ev["results"]["psnr"], 2),
            "ssim": round(ev["results"]["ssim"], 4), "views": ev["results"]["num_views"],
            "resolution": "x".join(map(str, ev["resolution"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--matching", default="auto")
    ap.add_argument("--camera-model", default="SIMPLE_RADIAL")
    ap.add_argument("--train-time", default="", help="e.g. 3m: also train on both pose sets")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-nerf-process"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import numpy as np

    from dlcli.nerf.process import process
    from dlcli.nerf.transforms import pose_errors

    if not (FOX / "transforms.json").is_file():
        sys.exit(f"{FOX}: the fox capture is not here")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import pycolmap

    print(f"# machine: {platform.processor() or platform.machine()}, pycolmap {pycolmap.__version__}")
    t = time.perf_counter()
    s = process(FOX / "images", out / "scene", downscale=args.downscale, matching=args.matching,
                camera_model=args.camera_model, force=True, threads=2)
    total = time.perf_counter() - t
    print(f"registered {s['registered']} of {s['images']} at {s['width']}x{s['height']}, reprojection error "
          f"{s['reprojection_error']:.3f} px, {s['points']:,} points, matching {s['matching']}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s["times"].items()) + f"; total {total:.1f}")
    ref = {Path(f["file_path"]).name: np.array(f["transform_matrix"])
           for f in json.loads((FOX / "transforms.json").read_text())["frames"]}
    doc = json.loads((out / "scene" / "transforms.json").read_text())
    names = [Path(f["file_path"]).name for f in doc["frames"]]
    e = pose_errors(np.array([f["transform_matrix"] for f in doc["frames"]]), np.stack([ref[n] for n in names]))
    print(f"poses vs shipped ({len(names)} cameras): rotation mean {e['rotation_deg']:.3f} deg (max "
          f"{e['rotation_max_deg']:.3f}; target <= 2), centre mean {e['centre_pct']:.3f} % of the scene radius "
          f"(max {e['centre_max_pct']:.3f}; target <= 5)")
    full = json.loads((FOX / "transforms.json").read_text())
    print(f"focal length at full size: {doc['fl_x'] * args.downscale:.1f} (shipped fl_x {full['fl_x']:.1f}, "
          f"fl_y {full['fl_y']:.1f})")
    result = {"process": s, "total_s": total, "pose_errors": e}
    if args.train_time:
        shipped(out / "scene", args.downscale)
        down = max(1, 8 // args.downscale)  # the fox config's 135x240
        rows = [train_eval("processed", out / "scene", args.train_time, out, down),
                train_eval("shipped", out / "ref", args.train_time, out, down)]
        for r in rows:
            print(f"{r['name']:10} {r['resolution']:>8} {r['steps']:>6} steps  hold-out PSNR {r['psnr']:6.2f} dB  "
                  f"SSIM {r['ssim']:.4f} ({r['views']} views)")
        print(f"PSNR difference (processed - shipped): {rows[0]['psnr'] - rows[1]['psnr']:+.2f} dB (target: within 1)")
        result["train"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
