"""Training a radiance field on the shared training loop (`train.loop`): random batches of rays from all
training images, photometric MSE, Adam; a validation render and its PSNR every `val_interval` steps.

A run directory holds config.yaml, meta.json, nerf.json (the scene box, intrinsics and training cameras, so
that `render` needs no data set), metrics.jsonl, model.safetensors, checkpoint.{safetensors,json} (--resume),
val/step_<N>.png (validation renders: prediction | ground truth | depth) and psnr.png.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcli.core import rundir
from dlcli.core.io import write_text_atomic
from dlcli.core.progress import OnProgress, nothing
from dlcli.core.runtime import resolve_device, seed_everything
from dlcli.nerf.config import DEFAULT_LR, RESUMABLE, NerfConfig
from dlcli.nerf.data import background, load_split
from dlcli.nerf.images import depth_to_rgb, to_uint8, write_png
from dlcli.nerf.metrics import mse_to_psnr, psnr
from dlcli.nerf.models import build_model, render_view
from dlcli.nerf.rays import generate_rays
from dlcli.train import checkpoint
from dlcli.train.loop import Saved, Stage, Update, fit


def _clear(run: Path) -> None:
    for p in [run / "nerf.json", *run.glob("val/step_*.png")]:
        p.unlink(missing_ok=True)


@rundir.removed_on_failure
def train(cfg: NerfConfig, force: bool = False, resume: bool = False, on_progress: OnProgress = nothing
          ) -> dict[str, Any]:
    """Train cfg.model on cfg.data into the run directory cfg.output; returns a summary."""
    from dlcli.train.plots import plot_curves

    cfg.validate()
    device = resolve_device(cfg.device)
    prec = cfg.resolve_precision(device)
    seed_everything(cfg.seed)
    scene = load_split(cfg, "train")
    val = load_split(cfg, "val")
    run = Path(cfg.output)
    if resume:
        rundir.check_resume(run, cfg, RESUMABLE, needs=checkpoint.TENSORS)
    run = rundir.create(run, cfg, "nerf", inputs=[cfg.data], force=force, resume=resume, device=str(device),
                        precision=prec.record())
    if force and not resume:
        _clear(run)
    info = {**scene.info(), "model": cfg.model, "background": cfg.background,
            "train_poses": scene.poses.tolist(), "train_images": len(scene.names)}
    write_text_atomic(run / "nerf.json", json.dumps(info) + "\n", force=True)

    # Every training pixel as a ray: origins, directions and colours, (P, 3) each.
    origins, dirs = generate_rays(scene.poses, scene.intrinsics)
    origins, dirs = origins.reshape(-1, 3).to(device), dirs.reshape(-1, 3).to(device)
    colors = scene.images.reshape(-1, 3).to(device)
    n_rays = origins.shape[0]
    bg = background(cfg, device)
    model = build_model(cfg.model, scene.bound, scene.near, cfg.model_options(prec.used)).to(device)
    lr0 = cfg.lr or DEFAULT_LR[cfg.model]
    opt = torch.optim.Adam(model.parameters(), lr=lr0, betas=(0.9, 0.99), eps=1e-15 if cfg.model == "hash" else 1e-8)

    # Samples per ray, a running mean: sizes the batch when batch_samples is set (starts at no skipping).
    per_ray = float(cfg.n_samples) if cfg.model == "hash" else 0.0
    resumed = None
    if resume:
        resumed, _ = checkpoint.load(run, model, opt, device)
        per_ray = float(resumed.get("samples_per_ray", per_ray))
        kept = [m for m in rundir.read_metrics(run) if m.get("step", 0) <= resumed["step"]]
        write_text_atomic(run / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in kept), force=True)
        if "last_eval" not in resumed:  # a checkpoint from before the shared loop: its validation is in the log
            vals = [m for m in kept if "val_psnr" in m]
            resumed["last_eval"] = vals[-1] if vals else {}
    budget = cfg.budget()
    t0, before = time.perf_counter(), (resumed or {}).get("elapsed", 0.0)

    def elapsed() -> float:
        return before + time.perf_counter() - t0

    def step(done: int) -> Update:
        """One batch of rays: render them, compare with the pixels, one Adam step."""
        nonlocal per_ray
        # One generator per step: a resumed run draws exactly the rays an uninterrupted one would.
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + done)
        if cfg.model == "hash" and done >= cfg.grid_warmup and done % cfg.grid_interval == 0:
            model.update_grid(g)
        rays = cfg.batch_rays
        if cfg.batch_samples and cfg.model == "hash":
            rays = int(min(cfg.batch_rays, max(16, cfg.batch_samples / max(per_ray, 1.0))))
        idx = torch.randint(n_rays, (rays,), generator=g).to(device)
        out = model(origins[idx], dirs[idx], bg, perturb=True, generator=g)
        mse = F.mse_loss(out["rgb"], colors[idx])
        loss = (mse + F.mse_loss(out["coarse_rgb"], colors[idx])) if "coarse_rgb" in out else mse
        # exponential decay to lr_final over the budget (steps or time, whichever is further along)
        frac = max(done / budget.steps if budget.steps else 0.0, elapsed() / budget.seconds if budget.seconds else 0.0)
        lr = lr0 * cfg.lr_final ** min(1.0, frac)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        spr = float(out["samples"]) / rays
        per_ray = 0.9 * per_ray + 0.1 * spr
        return Update(loss.detach(), {"mse": mse.detach(), "samples_per_ray": spr, "rays": float(rays)}, {"lr": lr})

    def validate(done: int) -> dict[str, float]:
        """Render the first validation view: its PSNR, and a picture (prediction | ground truth | depth)."""
        model.eval()
        out = render_view(model, val.poses[0], val.intrinsics, bg)
        model.train()
        gt = val.images[0].to(device)
        picture = np.concatenate([to_uint8(out["rgb"]), to_uint8(gt), depth_to_rgb(out["depth"], out["acc"])], 1)
        (run / "val").mkdir(exist_ok=True)
        write_png(run / "val" / f"step_{done:06d}.png", picture)
        return {"val_psnr": psnr(out["rgb"], gt), "elapsed": elapsed()}

    stage = Stage(f"training {cfg.model} NeRF", step, lambda: Saved(model, opt, {"samples_per_ray": per_ray}),
                  evaluate=validate, record=_record, show=_show, hint="try a lower --lr")
    result = fit(stage, run, budget, cfg.every(), on_progress=on_progress, resumed=resumed)
    rundir.save_tensors(model.state_dict(), run / "model.safetensors")
    plot_curves(result.history, run / "psnr.png", {"psnr": "train (batch)", "val_psnr": "validation view"},
                "PSNR (dB)", title=f"{cfg.model} NeRF on {Path(cfg.data).name}")
    trained = [m for m in result.history if "psnr" in m]
    return {"run": str(run), "steps": result.steps, "elapsed": result.elapsed,
            "val_psnr": result.last_eval.get("val_psnr", math.nan),
            "train_psnr": trained[-1]["psnr"] if trained else math.nan, "rays": n_rays, "config": asdict(cfg),
            "precision": prec.describe()}


def _record(rec: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A log line as before the shared loop: `loss` is the (fine) MSE, and its PSNR."""
    return {"step": rec["step"], "lr": rec["lr"], "elapsed": rec["elapsed"], "loss": rec["mse"],
            "psnr": mse_to_psnr(rec["mse"]), "samples_per_ray": rec["samples_per_ray"], "rays": rec["rays"]}


def _show(rec: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, Any]:
    shown = {"psnr": rec["psnr"], "val_psnr": last_eval.get("val_psnr", math.nan)}
    return {k: round(v, 2) for k, v in shown.items() if not math.isnan(v)}
