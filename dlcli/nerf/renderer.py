"""Using a trained run: render camera paths or the test views (GIF, MP4, PNGs; RGB and depth) and measure the
test views (PSNR, SSIM), like nerfstudio's ns-render and ns-eval."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcli.core import rundir
from dlcli.core.io import atomic_write, check_output
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import resolve_device
from dlcli.errors import ConfigError, InputError
from dlcli.nerf.camera_path import PATHS, camera_path
from dlcli.nerf.config import NerfConfig
from dlcli.nerf.data import background, load_split
from dlcli.nerf.images import depth_to_rgb, to_uint8, write_png
from dlcli.nerf.metrics import PSNR_IMPLEMENTATION, SSIM_IMPLEMENTATION, psnr, ssim
from dlcli.nerf.models import build_model, render_view
from dlcli.nerf.rays import Intrinsics


def open_run(run: str | Path, device: str = "auto") -> tuple[torch.nn.Module, NerfConfig, dict[str, Any], Any]:
    """The trained model, its config, its nerf.json and the device."""
    run = Path(run)
    cfg, _ = rundir.open_run(run, "nerf", NerfConfig, "a NeRF run", needs=("nerf.json", "model.safetensors"))
    try:
        info = json.loads((run / "nerf.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{run / 'nerf.json'}: malformed JSON: {e}") from None
    dev = resolve_device(device)
    model = build_model(cfg.model, info["bound"], info["near"], cfg.model_options(cfg.resolve_precision(dev).used))
    rundir.load_weights(model, run / "model.safetensors")
    return model.to(dev).eval(), cfg, info, dev


def _intrinsics(info: dict[str, Any], width: int | None, height: int | None) -> Intrinsics:
    k = Intrinsics(**info["intrinsics"])
    if not width and not height:
        return k
    w = width or round(k.width * height / k.height)
    h = height or round(k.height * width / k.width)
    if not (1 <= w <= 8192 and 1 <= h <= 8192):
        raise ConfigError(f"size: {w}x{h} is out of range (1..8192)")
    sx, sy = w / k.width, h / k.height
    return Intrinsics(k.fx * sx, k.fy * sy, k.cx * sx, k.cy * sy, w, h, k.k1, k.k2, k.p1, k.p2)


def render(run: str | Path, output: str, path: str = "orbit", frames: int = 60, width: int | None = None,
           height: int | None = None, fps: float = 20.0, depth: bool = False, radius: float = 1.0,
           force: bool = False, device: str = "auto", on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Render a camera path (orbit, spiral) or the test cameras to OUTPUT: .gif, .mp4 or a folder of PNGs
    (rgb_<i>.png and depth_<i>.png). With `depth`, GIF and MP4 frames show RGB and depth side by side."""
    if path not in PATHS:
        raise ConfigError(f"path: '{path}' is not one of {', '.join(PATHS)}")
    if frames < 1 and path != "test":
        raise ConfigError("frames: must be at least 1")
    out = Path(output)
    kind = out.suffix.lower() if out.suffix.lower() in (".gif", ".mp4") else "folder"
    if kind == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ConfigError(f"{out}: writing MP4 needs imageio's ffmpeg plugin (pip install imageio-ffmpeg); "
                              "write a .gif or a folder of PNGs instead") from None
    if kind == "folder":
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
            raise InputError(f"{out}: exists and is not empty (use --force)")
    else:
        check_output(out, force)
    model, cfg, info, dev = open_run(run, device)
    if path == "test":
        test = load_split(cfg, "test")
        poses = test.poses
        k = _intrinsics(info, width, height) if (width or height) else test.intrinsics
    else:
        poses = camera_path(torch.tensor(info["train_poses"]), path, frames, radius)
        k = _intrinsics(info, width, height)
    bg = background(cfg, dev)
    rgb, dep = [], []
    views = [render_view(model, c2w, k, bg) for c2w in _progress(poses, on_progress, "render", "frame")]
    # One depth range for the whole path, so the colours do not flicker from frame to frame.
    all_d = torch.cat([(v["depth"] / v["acc"].clamp(min=1e-6))[v["acc"] > 0.5] for v in views])
    lo, hi = (float(torch.quantile(all_d[:100000], 0.01)), float(torch.quantile(all_d[:100000], 0.99))) \
        if all_d.numel() else (0.0, 1.0)
    for v in views:
        rgb.append(to_uint8(v["rgb"]))
        dep.append(depth_to_rgb(v["depth"], v["acc"], lo, hi))
    if kind == "folder":
        tmp = out.with_name(out.name + ".tmp-render")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for i, (a, b) in enumerate(zip(rgb, dep, strict=True)):
                write_png(tmp / f"rgb_{i:04d}.png", a)
                write_png(tmp / f"depth_{i:04d}.png", b)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        import imageio.v3 as iio

        pictures = [np.concatenate([a, b], 1) if depth else a for a, b in zip(rgb, dep, strict=True)]
        buf = io.BytesIO()
        if kind == ".gif":
            iio.imwrite(buf, np.stack(pictures), extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            iio.imwrite(buf, np.stack(pictures), extension=".mp4", fps=fps, plugin="FFMPEG")
        with atomic_write(out, force=force) as f:
            f.write(buf.getvalue())
    return {"output": str(out), "frames": len(rgb), "width": k.width, "height": k.height}


def _progress(poses: torch.Tensor, on_progress: OnProgress, desc: str, unit: str) -> Any:
    """The poses, a Tick after each one's view is made."""
    for i, c2w in enumerate(poses):
        yield c2w
        on_progress(Tick(desc, i + 1, len(poses), unit=unit))


def evaluate(run: str | Path, split: str = "test", images: str | None = None, device: str = "auto",
             force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """PSNR and SSIM of every view of `split` and their means; optionally the renders as PNGs in `images`."""
    model, cfg, _, dev = open_run(run, device)
    scene = load_split(cfg, split)
    bg = background(cfg, dev)
    if images:
        Path(images).mkdir(parents=True, exist_ok=True)
    per_view = []
    for i, c2w in enumerate(_progress(scene.poses, on_progress, "eval", "view")):
        v = render_view(model, c2w, scene.intrinsics, bg)
        gt = scene.images[i].to(dev)
        per_view.append({"image": scene.names[i], "psnr": psnr(v["rgb"], gt), "ssim": ssim(v["rgb"], gt)})
        if images:
            target = Path(images) / f"{i:04d}.png"
            check_output(target, force)
            write_png(target, np.concatenate([to_uint8(v["rgb"]), to_uint8(gt)], 1))
    n = len(per_view)
    return {
        "experiment_name": str(run),
        "split": split,
        "model": cfg.model,
        "results": {"psnr": sum(v["psnr"] for v in per_view) / n, "ssim": sum(v["ssim"] for v in per_view) / n,
                    "num_views": n},
        "implementation": {"psnr": PSNR_IMPLEMENTATION, "ssim": SSIM_IMPLEMENTATION},
        "resolution": [scene.intrinsics.width, scene.intrinsics.height],
        "per_view": per_view,
    }
