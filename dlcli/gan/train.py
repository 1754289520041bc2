"""`dlcli gan train`: a generator against a discriminator, on the shared training loop (`train.loop`).

One step: n_critic updates of D on real examples and detached samples of G
(with the R1 penalty on the real ones every `r1_interval` steps when on),
then one update of G through D, then the moving average of G's weights
(G_ema, used for every picture, metric and sample). Every `log_interval`
steps the mean losses and D(x), D(G(z)) go to metrics.jsonl; every
`eval_interval` the coverage metrics; every `snapshot_interval` a PNG; a
checkpoint (G, D, G_ema, both optimizers, RNG) every `checkpoint_interval`,
on Ctrl-C and at the end.

A run directory holds config.yaml, meta.json, metrics.jsonl,
checkpoint.safetensors + checkpoint.json (for --resume), generator.safetensors
(G_ema and the map to data units, for `gan sample`), snapshots/step-*.png,
samples.png (the last snapshot), training.gif, losses.png and gan.json (the
final metrics).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli.core import precision, rundir
from dlcli.core.io import atomic_write, write_text_atomic
from dlcli.core.progress import OnProgress, nothing
from dlcli.core.runtime import resolve_device, seed_everything
from dlcli.gan import data as gdata
from dlcli.gan import pictures
from dlcli.gan.build import build_nets, load_data, noise, packed
from dlcli.gan.config import GENERATOR, RESUMABLE, SNAPSHOTS, STAGE, GanConfig
from dlcli.gan.evaluate import CLASSIFIER, Snapshots, digits_classifier, evaluate_generator, summary_line
from dlcli.gan.losses import d_loss, d_prob, g_loss, gradient_penalty, r1_penalty
from dlcli.gan.models import ema_update
from dlcli.train import checkpoint
from dlcli.train.loop import Saved, Stage, Update, fit
from dlcli.train.optim import fused

EXTRA_FILES = ("gan.json", CLASSIFIER)  # removed when a run starts afresh
HINT = "try lower lr_d/lr_g, spectral_norm=true or loss=wgan-gp"


@dataclass
class Players:
    """The two networks, the moving average of G and an optimizer for each network."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer

    def module(self) -> nn.ModuleDict:
        """G, D and G_ema as one module (the checkpoint's `model.*` tensors)."""
        return nn.ModuleDict({"G": self.G, "D": self.D, "G_ema": self.G_ema})


def players(cfg: GanConfig, data: gdata.GanData, device: torch.device) -> Players:
    nets = build_nets(cfg, data.kind, data.shape)
    G, D = nets.G.to(device), nets.D.to(device)
    betas = (cfg.beta1, cfg.beta2)  # fused Adam: the small GAN nets are launch-bound
    return Players(G, D, nets.G_ema.to(device), fused(torch.optim.Adam, G.parameters(), lr=cfg.lr_g, betas=betas),
                   fused(torch.optim.Adam, D.parameters(), lr=cfg.lr_d, betas=betas))


def gan_step(cfg: GanConfig, data: gdata.GanData, p: Players, prec: precision.Precision, device: torch.device,
             step: int, lr_scale: float = 1.0) -> Update:
    """One step of the game; the loss the loop watches is loss_D + loss_G (both must stay finite)."""
    B = cfg.batch_size
    if cfg.lr_schedule == "linear":
        for opt, lr in ((p.opt_g, cfg.lr_g), (p.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * lr_scale
    G, D = p.G, p.D
    # 1. the discriminator (critic): real examples up, detached samples of G down
    r1_now = cfg.r1_weight > 0 and step % cfg.r1_interval == 0
    for _ in range(cfg.n_critic):
        real = data.sample(B, device)
        with torch.no_grad(), prec.autocast():
            fake = G(noise(cfg, B, device)).float()
        real, fake = packed(real, cfg.pack).requires_grad_(r1_now), packed(fake, cfg.pack)
        with prec.autocast():
            r, f = D(real).float(), D(fake).float()
        loss_d = d_loss(cfg.loss, r, f)
        if cfg.loss == "wgan-gp":
            loss_d = loss_d + cfg.gp_weight * gradient_penalty(D, real, fake)
        if r1_now:
            loss_d = loss_d + cfg.r1_weight / 2 * cfg.r1_interval * r1_penalty(r, real)
        p.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        p.opt_d.step()
    # 2. the generator: make D call its samples real (D fixed)
    D.requires_grad_(False)
    with prec.autocast():
        d_fake = D(packed(G(noise(cfg, B, device)), cfg.pack)).float()
    loss_g = g_loss(cfg.loss, d_fake)
    p.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    p.opt_g.step()
    D.requires_grad_(True)
    # 3. the moving average of G (a short warm-up so early pictures are not of the initial G)
    ema_update(p.G_ema, G, min(cfg.ema, (1 + step) / (10 + step)))
    with torch.no_grad():  # tensors: the loop sums them without a device sync
        ld, lg = loss_d.detach(), loss_g.detach()
        stats = {"loss_d": ld, "loss_g": lg, "d_real": d_prob(cfg.loss, r).mean(), "d_fake": d_prob(cfg.loss, f).mean()}
        return Update(ld + lg, stats)


@rundir.removed_on_failure
def train(cfg: GanConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Train a GAN; write the run directory; return a summary."""
    cfg.validate()
    device = resolve_device(cfg.device)
    data = load_data(cfg)
    # 2-D mixtures: small MLPs gain little from bf16, whose 8-bit mantissa would blur modes 0.02 wide
    prec = precision.resolve(cfg.precision, device, pays=data.kind == "image",
                             why_not="vector GANs: small MLPs, and bf16 would round samples finer than the modes")
    run = Path(cfg.output)
    if resume:
        rundir.check_resume(run, cfg, RESUMABLE, needs=checkpoint.TENSORS)
    inputs = [cfg.data] if Path(cfg.data).exists() else []
    rundir.create(run, cfg, STAGE, inputs, force=force, resume=resume, device=str(device), precision=prec.record())
    if not resume:
        for path in [*(run / SNAPSHOTS).glob("step-*.png"), *(run / f for f in EXTRA_FILES)]:
            if path.is_file():
                path.unlink()
    (run / SNAPSHOTS).mkdir(exist_ok=True)
    classifier = digits_classifier(run, resume) if data.labels is not None else None

    seed_everything(cfg.seed)
    p = players(cfg, data, device)
    both = p.module()
    resumed = None
    if resume:
        resumed, extra = checkpoint.load(run, both, p.opt_g, device)
        _load_optim(p.opt_d, extra)
        if "last_eval" not in resumed:  # a checkpoint from before the shared loop: its evaluation is in the log
            evals = [r for r in rundir.read_metrics(run) if "samples" in r and r["step"] <= resumed["step"]]
            resumed["last_eval"] = evals[-1] if evals else {}
    budget = cfg.budget()
    snaps = Snapshots(cfg, data, device)
    seen: dict[str, Any] = {"step": -1, "eval": {}}  # the last coverage metrics (the snapshots' captions)
    if resumed and resumed.get("last_eval"):
        ev = resumed["last_eval"]
        seen = {"step": ev["step"], "eval": {k: v for k, v in ev.items() if k != "step"}}
    t0, before = time.perf_counter(), (resumed or {}).get("elapsed", 0.0)

    def snapshot(step: int) -> None:
        png = snaps.png(p.G_ema, step, summary_line(seen["eval"]) if seen["step"] == step else "")
        with open(run / SNAPSHOTS / f"step-{step:07d}.png", "wb") as f:  # a frame; samples.png is atomic
            f.write(png)

    def step(done: int) -> Update:
        # the frame of the weights after `done` steps, due at a snapshot step and taken here, before the
        # next update, so that it comes after the loop's evaluation of that step (whose figures it shows)
        if cfg.snapshot_interval and done and done % cfg.snapshot_interval == 0 \
                and not (run / SNAPSHOTS / f"step-{done:07d}.png").is_file():
            snapshot(done)
        scale = 1.0
        if cfg.lr_schedule == "linear":
            elapsed = before + time.perf_counter() - t0
            frac = max(done / budget.steps if budget.steps else 0.0, elapsed / budget.seconds if budget.seconds else 0.0)
            scale = max(0.0, 1.0 - frac)
        return gan_step(cfg, data, p, prec, device, done, scale)

    def evaluate(done: int) -> dict[str, Any]:
        ev = evaluate_generator(cfg, p.G_ema, data, classifier, cfg.eval_samples, cfg.mode_threshold,
                                cfg.seed + 1, device)
        seen.update(step=done, eval=ev)
        return {k: v for k, v in ev.items() if not isinstance(v, list)}  # the per-mode counts stay in gan.json

    def save(counters: dict[str, Any]) -> None:
        checkpoint.save(run, both, p.opt_g, counters, _optim_tensors(p.opt_d))
        rundir.save_tensors(generator_tensors(p.G_ema, data), run / GENERATOR)

    # `save` writes the checkpoint in its own layout (D's optimizer among the extra tensors), so the
    # loop's `checkpoint` callable is never asked for one
    stage = Stage("train", step, Saved, evaluate=evaluate, save=save, hint=HINT,
                  record=lambda rec, seconds: {k: v for k, v in rec.items() if k != "loss"}, show=_show)
    if resumed is None:
        snapshot(0)
    result = fit(stage, run, budget, cfg.every(), on_progress=on_progress, resumed=resumed)
    steps = result.steps
    if seen["step"] != steps:  # a resumed run with nothing left to do
        evaluate(steps)
    snapshot(steps)
    return _finish(cfg, run, p, data, prec, device, result.history, steps, result.elapsed, seen["eval"])


def _show(rec: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, Any]:
    """The progress line: the losses, D's outputs and the last coverage."""
    show = {"loss_D": rec["loss_d"], "loss_G": rec["loss_g"], "D(x)": rec["d_real"], "D(G(z))": rec["d_fake"]}
    if "modes" in last_eval:
        show.update(modes=last_eval["modes"], hq=round(last_eval["high_quality"], 3))
    elif "classes" in last_eval:
        show.update(classes=last_eval["classes"])
    return show


def _finish(cfg: GanConfig, run: Path, p: Players, data: gdata.GanData, prec: precision.Precision,
            device: torch.device, history: list[dict[str, Any]], steps: int, elapsed: float,
            last_eval: dict[str, Any]) -> dict[str, Any]:
    """The files of a finished run (samples.png, training.gif, losses.png, gan.json) and its summary."""
    from dlcli.train.plots import plot_curves

    frames = sorted((run / SNAPSHOTS).glob("step-*.png"))
    with atomic_write(run / "samples.png", force=True) as f:
        f.write(frames[-1].read_bytes())
    pictures.gif(frames, run / "training.gif")
    title = f"GAN ({cfg.loss}) on {cfg.data}"
    plot_curves(history, run / "losses.png", {"loss_d": "D", "loss_g": "G"}, "loss", title)
    result = {"run": str(run), "data": cfg.data, "steps": steps, "elapsed": elapsed, "device": str(device),
              "precision": prec.describe(),
              "params_g": sum(x.numel() for x in p.G.parameters()),
              "params_d": sum(x.numel() for x in p.D.parameters()), "eval": last_eval}
    write_text_atomic(run / "gan.json", json.dumps(result, indent=2) + "\n", force=True)
    result["summary"] = summary_line(last_eval)
    result["written"] = [str(run / n) for n in ("config.yaml", "metrics.jsonl", GENERATOR, "checkpoint.safetensors",
                                                "samples.png", "training.gif", "losses.png", "gan.json")]
    return result


def generator_tensors(G_ema: nn.Module, data: gdata.GanData) -> dict[str, torch.Tensor]:
    """What `gan sample` needs: G_ema's weights and the data's shape and map to data units."""
    out = {f"G.{k}": v for k, v in G_ema.state_dict().items()}
    out["data.shape"] = torch.tensor(data.shape, dtype=torch.int64)
    out["data.kind_image"] = torch.tensor(int(data.kind == "image"))
    out["data.shift"] = data.shift.float()
    out["data.scale"] = data.scale.float()
    return out


def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """D's optimizer state, kept among the checkpoint's extra tensors (G's is the checkpoint's own)."""
    return {f"optD.{i}.{name}": torch.as_tensor(v) for i, per in opt.state_dict()["state"].items()
            for name, v in per.items()}


def _load_optim(opt: torch.optim.Optimizer, extra: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in extra.items():
        if k.startswith("optD."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
