"""Training a radiance field: random batches of rays from all training images, photometric MSE, Adam.

A run directory holds config.yaml, meta.json, nerf.json (the scene box, intrinsics and training cameras, so
that `render` needs no data set), metrics.jsonl, model.safetensors, checkpoint.{safetensors,json} (--resume),
val/step_<N>.png (validation renders: prediction | ground truth | depth) and psnr.png.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcli.core import precision, rundir
from dlcli.core.io import write_text_atomic
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import parse_duration, resolve_device, seed_everything
from dlcli.errors import ConfigError, Interrupted, TrainingDiverged
from dlcli.nerf.data import BACKGROUNDS, Scene, load
from dlcli.nerf.metrics import mse_to_psnr, psnr
from dlcli.nerf.models import build_model, render_rays
from dlcli.nerf.rays import generate_rays

MODELS = ("hash", "nerf")
DEFAULT_LR = {"hash": 1e-2, "nerf": 5e-4}
# Budgets, intervals and the device may change on --resume; anything else would change the experiment.
_RESUMABLE = ("output", "max_steps", "max_time", "val_interval", "checkpoint_interval", "log_interval", "device")


@dataclass
class NerfConfig:
    data: str = ""  # a Blender or Instant-NGP data set folder
    output: str = "runs/nerf"
    model: str = "hash"  # hash (multiresolution hash grid + occupancy grid) | nerf (the original coarse + fine MLPs)
    downscale: int = 1  # divide the image size by this
    background: str = "white"  # what transparent pixels are composited on (Blender layout)
    holdout: int = 8  # Instant-NGP layout: every holdout-th frame is a test view (0 = none)
    bound: float = 0.0  # the scene box is [-bound, bound]^3; 0 = from the data (1.5 Blender, 0.375 aabb_scale NGP)
    max_memory_gb: float = 4.0  # refuse data sets whose images and rays need more
    # nerf
    n_coarse: int = 64
    n_fine: int = 128
    pos_freqs: int = 10
    dir_freqs: int = 4
    width: int = 256
    depth: int = 8
    # hash
    n_samples: int = 96  # stratified samples per ray through the scene box, before empty space is skipped
    levels: int = 16
    features: int = 2
    log2_table: int = 17
    base_res: int = 16
    max_res: int = 512
    hidden: int = 64
    grid_resolution: int = 32  # occupancy grid cells per side
    grid_interval: int = 16  # update the occupancy grid every this many steps ...
    grid_warmup: int = 16  # ... from this step on (before, every cell counts as occupied)
    grid_threshold: float = 0.0  # a cell is empty below min(this density, the grid's mean density); 0 = the
    # density that is 1% opaque over one sample step
    precision: str = "auto"  # hash: auto | fp32 | bf16 (the MLPs' matmuls in bfloat16; auto: where native)
    # training
    batch_rays: int = 2048  # rays per step (the most, with batch_samples)
    batch_samples: int = 0  # hash: network samples per step to aim for; rays per step = batch_samples / samples
    # per ray so far, at most batch_rays (cheap early steps while the grid is still full). 0 = always batch_rays
    lr: float = 0.0  # 0 = 1e-2 for hash, 5e-4 for nerf
    lr_final: float = 0.1  # exponential decay to this fraction of lr over the budget
    max_steps: int = 5000
    max_time: str = ""  # wall-clock budget: 90s, 10m
    val_interval: int = 500  # a validation render (PNG) and PSNR every this many steps (0 = only at the end)
    checkpoint_interval: int = 1000
    log_interval: int = 50
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: no data set given (a folder in the Blender or Instant-NGP layout)")
        if self.model not in MODELS:
            raise ConfigError(f"model: '{self.model}' is not one of {', '.join(MODELS)}")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"background: '{self.background}' is not one of {', '.join(BACKGROUNDS)}")
        precision.check_name(self.precision)
        if self.precision == "bf16" and self.model != "hash":
            raise ConfigError("precision: bf16 is for the hash model; the original NeRF model runs in fp32")
        if self.batch_samples < 0:
            raise ConfigError("batch_samples: must be 0 (fixed batch_rays) or positive")
        for k in ("batch_rays", "n_samples", "n_coarse", "levels", "features", "hidden", "width", "depth",
                  "grid_resolution", "grid_interval", "base_res", "log_interval", "checkpoint_interval"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k}: must be at least 1")
        if not 1 <= self.log2_table <= 26:
            raise ConfigError(f"log2_table: {self.log2_table} is out of range (1..26)")
        if self.max_res < self.base_res:
            raise ConfigError("max_res: must be at least base_res")
        if self.max_steps <= 0 and not self.max_time:
            raise ConfigError("max_steps: give a positive step budget or --max-time")

    def resolve_precision(self, device: torch.device) -> precision.Precision:
        """The precision the hash model's MLPs use on `device` (the original NeRF is always fp32)."""
        return precision.resolve(self.precision, device, pays=self.model == "hash",
                                 why_not="the original NeRF model runs in fp32")

    def model_options(self, used: str = "fp32") -> dict[str, Any]:
        """Constructor options of the model; `used` is the resolved precision (fp32 or bf16)."""
        if self.model == "nerf":
            keys = ("n_coarse", "n_fine", "pos_freqs", "dir_freqs", "width", "depth")
        else:
            keys = ("n_samples", "levels", "features", "log2_table", "base_res", "max_res", "hidden",
                    "grid_resolution", "grid_threshold")
        return {k: getattr(self, k) for k in keys} | ({"precision": used} if self.model == "hash" else {})


def load_split(cfg: NerfConfig, split: str) -> Scene:
    return load(cfg.data, split, cfg.downscale, cfg.background, cfg.holdout, cfg.max_memory_gb, cfg.bound)


def background(cfg: NerfConfig, device: torch.device) -> torch.Tensor:
    return torch.tensor(BACKGROUNDS[cfg.background], device=device)


@torch.no_grad()
def render_view(model: torch.nn.Module, c2w: torch.Tensor, scene_k: Any, bg: torch.Tensor, chunk: int = 8192
                ) -> dict[str, torch.Tensor]:
    """Render one camera: rgb (H, W, 3), depth and acc (H, W)."""
    device = bg.device
    o, d = generate_rays(c2w[None].to(device), scene_k)
    out = render_rays(model, o.reshape(-1, 3), d.reshape(-1, 3), bg, chunk)
    h, w = scene_k.height, scene_k.width
    return {"rgb": out["rgb"].view(h, w, 3), "depth": out["depth"].view(h, w), "acc": out["acc"].view(h, w)}


def _clear(run: Path) -> None:
    for p in [run / "nerf.json", *run.glob("val/step_*.png")]:
        p.unlink(missing_ok=True)


@rundir.removed_on_failure
def train(cfg: NerfConfig, force: bool = False, resume: bool = False, on_progress: OnProgress = nothing
          ) -> dict[str, Any]:
    """Train cfg.model on cfg.data into the run directory cfg.output; returns a summary."""
    from dlcli.nerf.images import depth_to_rgb, to_uint8, write_png
    from dlcli.train import checkpoint
    from dlcli.train.plots import plot_curves

    cfg.validate()
    budget = parse_duration(cfg.max_time) if cfg.max_time else None
    device = resolve_device(cfg.device)
    prec = cfg.resolve_precision(device)
    seed_everything(cfg.seed)
    scene = load_split(cfg, "train")
    val = load_split(cfg, "val")
    run = Path(cfg.output)
    if resume:
        rundir.check_resume(run, cfg, _RESUMABLE)
    run = rundir.create(run, cfg, "nerf", inputs=[cfg.data], force=force, resume=resume, device=str(device),
                        precision=prec.record())
    if force and not resume:
        _clear(run)
    k = scene.intrinsics
    info = {**scene.info(), "model": cfg.model, "background": cfg.background,
            "train_poses": scene.poses.tolist(), "train_images": len(scene.names)}
    write_text_atomic(run / "nerf.json", json.dumps(info) + "\n", force=True)

    # Every training pixel as a ray: origins, directions and colours, (P, 3) each.
    origins, dirs = generate_rays(scene.poses, k)
    origins, dirs = origins.reshape(-1, 3).to(device), dirs.reshape(-1, 3).to(device)
    colors = scene.images.reshape(-1, 3).to(device)
    bg = background(cfg, device)
    model = build_model(cfg.model, scene.bound, scene.near, cfg.model_options(prec.used)).to(device)
    lr0 = cfg.lr or DEFAULT_LR[cfg.model]
    opt = torch.optim.Adam(model.parameters(), lr=lr0, betas=(0.9, 0.99), eps=1e-15 if cfg.model == "hash" else 1e-8)

    step, elapsed_before = 0, 0.0
    # Samples per ray, a running mean: sizes the batch when batch_samples is set (starts at no skipping).
    per_ray = float(cfg.n_samples) if cfg.model == "hash" else 0.0
    if resume:
        state, _ = checkpoint.load(run, model, opt, device)
        step, elapsed_before = int(state["step"]), float(state["elapsed"])
        per_ray = float(state.get("samples_per_ray", per_ray))
        kept = [m for m in rundir.read_metrics(run) if m.get("step", 0) <= step]
        write_text_atomic(run / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in kept), force=True)
    start = time.monotonic()

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - start

    def saved() -> dict[str, Any]:
        return {"step": step, "elapsed": elapsed(), "samples_per_ray": per_ray}

    def progress() -> float:
        parts = [step / cfg.max_steps] if cfg.max_steps > 0 else []
        if budget:
            parts.append(elapsed() / budget)
        return min(1.0, max(parts))

    def validate(log: rundir.MetricsLog) -> float:
        model.eval()
        out = render_view(model, val.poses[0], val.intrinsics, bg)
        model.train()
        gt = val.images[0].to(device)
        p = psnr(out["rgb"], gt)
        picture = np.concatenate([to_uint8(out["rgb"]), to_uint8(gt), depth_to_rgb(out["depth"], out["acc"])], 1)
        (run / "val").mkdir(exist_ok=True)
        write_png(run / "val" / f"step_{step:06d}.png", picture)
        log.log(step=step, val_psnr=p, elapsed=elapsed())
        return p

    total = cfg.max_steps if cfg.max_steps > 0 else None
    desc = f"training {cfg.model} NeRF"
    n_rays = origins.shape[0]
    val_psnr, window, last_metrics = math.nan, [], {}
    try:
        with rundir.MetricsLog(run) as log:
            while (cfg.max_steps <= 0 or step < cfg.max_steps) and (budget is None or elapsed() < budget):
                # One generator per step: a resumed run draws exactly the rays an uninterrupted one would.
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                if cfg.model == "hash" and step >= cfg.grid_warmup and step % cfg.grid_interval == 0:
                    model.update_grid(g)
                rays = cfg.batch_rays
                if cfg.batch_samples and cfg.model == "hash":
                    rays = int(min(cfg.batch_rays, max(16, cfg.batch_samples / max(per_ray, 1.0))))
                idx = torch.randint(n_rays, (rays,), generator=g).to(device)
                out = model(origins[idx], dirs[idx], bg, perturb=True, generator=g)
                mse = F.mse_loss(out["rgb"], colors[idx])
                loss = mse + (F.mse_loss(out["coarse_rgb"], colors[idx]) if "coarse_rgb" in out else 0.0)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {float(loss)} at step {step + 1}; try a lower --lr")
                for group in opt.param_groups:
                    group["lr"] = lr0 * cfg.lr_final ** progress()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                spr = float(out["samples"]) / rays
                per_ray = 0.9 * per_ray + 0.1 * spr
                window.append((float(mse.detach()), spr, rays))
                if step % cfg.log_interval == 0:
                    m = float(np.mean([w[0] for w in window]))
                    last_metrics = {"loss": m, "psnr": mse_to_psnr(m),
                                    "samples_per_ray": float(np.mean([w[1] for w in window])),
                                    "rays": float(np.mean([w[2] for w in window]))}
                    log.log(step=step, lr=opt.param_groups[0]["lr"], elapsed=elapsed(), **last_metrics)
                    window = []
                if cfg.val_interval > 0 and step % cfg.val_interval == 0:
                    val_psnr = validate(log)
                if step % cfg.checkpoint_interval == 0:
                    checkpoint.save(run, model, opt, saved())
                shown = {"psnr": last_metrics.get("psnr", math.nan), "val_psnr": val_psnr}
                on_progress(Tick(desc, step, total, unit="step",
                                 metrics={k: round(v, 2) for k, v in shown.items() if not math.isnan(v)}))
            if cfg.val_interval <= 0 or step % cfg.val_interval != 0:
                val_psnr = validate(log)
    except KeyboardInterrupt:
        checkpoint.save(run, model, opt, saved())
        raise Interrupted(f"interrupted at step {step}; checkpoint saved in {run} (continue with --resume)") from None
    checkpoint.save(run, model, opt, saved())
    rundir.save_tensors(model.state_dict(), run / "model.safetensors")
    plot_curves(rundir.read_metrics(run), run / "psnr.png", {"psnr": "train (batch)", "val_psnr": "validation view"},
                "PSNR (dB)", title=f"{cfg.model} NeRF on {Path(cfg.data).name}")
    return {"run": str(run), "steps": step, "elapsed": elapsed(), "val_psnr": val_psnr,
            "train_psnr": last_metrics.get("psnr", math.nan), "rays": n_rays, "config": asdict(cfg),
            "precision": prec.describe()}
