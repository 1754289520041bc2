"""`dlcli gan train`: a generator against a discriminator.

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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli.core import precision, rundir
from dlcli.core.config import diff, from_dict, load_yaml
from dlcli.core.io import write_text_atomic
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import parse_duration, resolve_device, seed_everything
from dlcli.errors import ConfigError, InputError, Interrupted, TrainingDiverged
from dlcli.gan import data as gdata
from dlcli.gan import metrics, pictures
from dlcli.gan.losses import LOSSES, d_loss, d_prob, g_loss, gradient_penalty, r1_penalty
from dlcli.gan.models import ACTIVATIONS, ARCHS, GanNets, build, ema_update
from dlcli.train import checkpoint
from dlcli.train.optim import fused

STAGE = "gan"
NOISES = ("gaussian", "uniform")
SCHEDULES = ("constant", "linear")
# Keys that may change when resuming (budgets, intervals, where it runs).
RESUMABLE = ("max_steps", "max_time", "log_interval", "eval_interval", "snapshot_interval", "checkpoint_interval",
             "eval_samples", "mode_threshold", "device")
GENERATOR = "generator.safetensors"
SNAPSHOTS = "snapshots"
EXTRA_FILES = ("gan.json", "classifier.safetensors")


@dataclass
class GanConfig:
    """Options of `dlcli gan train`."""

    data: str = "ring8"  # ring8 | grid25 | spiral | moons | digits | an array file | an image folder
    output: str = "runs/gan"
    image_size: int = 0  # images: resize to this square size (8, 16, 32, 64); 0 = as they are
    color: str = "auto"  # images: auto | gray | rgb
    standardize: bool = True  # vectors: train on (x - mean) / std per coordinate
    arch: str = "auto"  # mlp | dcgan | auto (dcgan for images, mlp for vectors)
    z_dim: int = 64  # noise dimension
    noise: str = "gaussian"  # gaussian N(0, I) | uniform U(-1, 1)
    hidden: int = 256  # MLP width
    layers: int = 4  # MLP hidden layers (G and D alike)
    width: int = 64  # DCGAN channels at the finest resolution
    activation: str = "relu"  # G's MLP activation: relu | leaky_relu (D uses LeakyReLU(0.2))
    spectral_norm: bool = False  # spectral normalisation on every layer of D
    loss: str = "ns"  # minimax | ns (non-saturating) | wgan-gp | hinge
    gp_weight: float = 10.0  # lambda of WGAN-GP
    r1_weight: float = 0.0  # gamma of the R1 penalty on real examples (Mescheder et al. 2018); 0 = off
    r1_interval: int = 1  # apply R1 every so many steps, scaled by it (lazy regularisation, StyleGAN2)
    lr_g: float = 2e-4  # Adam learning rates, separate for G and D (TTUR)
    lr_d: float = 2e-4
    lr_schedule: str = "constant"  # constant | linear (decay to 0 over the step or time budget)
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 1  # D updates per G update
    pack: int = 1  # PacGAN: D judges `pack` samples at once (concatenated), all real or all generated
    batch_size: int = 256
    ema: float = 0.999  # decay of the moving average of G's weights; 0 = off
    max_steps: int = 5000  # G updates; 0 = no limit (then max_time)
    max_time: str = ""  # wall-clock budget: 90s, 10m
    log_interval: int = 50
    eval_interval: int = 1000  # coverage metrics on eval_samples samples; 0 = only at the end
    snapshot_interval: int = 500  # a picture every so many steps (the GIF's frames); 0 = only at the end
    checkpoint_interval: int = 1000
    eval_samples: int = metrics.SAMPLES
    mode_threshold: int = 1  # high-quality samples (digits: samples) that make a mode (class) captured
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto: bf16 only for image GANs where native)

    def validate(self) -> None:
        precision.check_name(self.precision)
        if not self.data:
            raise ConfigError("data: give a built-in distribution, an array file or an image folder")
        for key, value, allowed in (("arch", self.arch, ARCHS), ("noise", self.noise, NOISES),
                                    ("activation", self.activation, ACTIVATIONS), ("loss", self.loss, LOSSES),
                                    ("color", self.color, gdata.COLORS), ("lr_schedule", self.lr_schedule,
                                                                          SCHEDULES)):
            if value not in allowed:
                raise ConfigError(f"{key}: '{value}' is not one of {', '.join(allowed)}")
        if self.image_size and self.image_size not in gdata.IMAGE_SIZES:
            raise ConfigError(f"image_size: {self.image_size} is not one of 8, 16, 32, 64 (or 0: as they are)")
        if self.batch_size % self.pack:
            raise ConfigError(f"batch_size: {self.batch_size} is not a multiple of pack={self.pack}")
        for key in ("z_dim", "hidden", "layers", "width", "n_critic", "pack", "batch_size", "eval_samples",
                    "mode_threshold", "log_interval", "r1_interval"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be at least 1, not {getattr(self, key)}")
        for key in ("lr_g", "lr_d"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{key}: must be a positive number, not {v}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError("beta1 and beta2: must be in [0, 1)")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema: must be in [0, 1), not {self.ema}")
        for key in ("gp_weight", "r1_weight"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{key}: must be >= 0, not {v}")
        if min(self.max_steps, self.eval_interval, self.snapshot_interval, self.checkpoint_interval) < 0:
            raise ConfigError("max_steps and the intervals must be >= 0")
        if self.max_time:
            parse_duration(self.max_time)
        if not (self.max_steps or self.max_time):
            raise ConfigError("no budget: set max_steps or max_time")


# --------------------------------------------------------------------------
# Pieces the commands share


def load_data(cfg: GanConfig) -> gdata.GanData:
    return gdata.load(cfg.data, cfg.image_size, cfg.color, cfg.standardize)


def build_nets(cfg: GanConfig, kind: str, shape: tuple[int, ...]) -> GanNets:
    try:
        return build(cfg.arch, kind, shape, cfg.z_dim, cfg.hidden, cfg.layers, cfg.width, cfg.activation,
                     cfg.spectral_norm, d_norm=cfg.loss != "wgan-gp", pack=cfg.pack)
    except ValueError as e:
        raise ConfigError(f"arch: {e}") from None


def noise(cfg: GanConfig, n: int, device: torch.device | str = "cpu", truncation: float = 0.0,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """z ~ N(0, I) or U(-1, 1)^z_dim; with truncation t > 0, Gaussian entries beyond |t| are redrawn
    (the truncation trick) and uniform ones are scaled into [-t, t] when t < 1."""
    shape = (n, cfg.z_dim)
    if cfg.noise == "uniform":
        z = torch.rand(shape, generator=generator) * 2 - 1
        return (z * truncation if 0 < truncation < 1 else z).to(device)
    z = torch.randn(shape, generator=generator)
    if truncation > 0:
        outside = z.abs() > truncation
        while outside.any():  # each pass redraws the entries still outside; few passes for t >= 0.5
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
            outside = z.abs() > truncation
    return z.to(device)


def packed(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018): groups of `pack` consecutive examples side by side,
    (B, D) -> (B/pack, pack*D) for vectors, (B, C, H, W) -> (B/pack, pack*C, H, W) for images."""
    if pack == 1:
        return x
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])


def generator_tensors(G_ema: nn.Module, data: gdata.GanData) -> dict[str, torch.Tensor]:
    """What `gan sample` needs: G_ema's weights and the data's shape and map to data units."""
    out = {f"G.{k}": v for k, v in G_ema.state_dict().items()}
    out["data.shape"] = torch.tensor(data.shape, dtype=torch.int64)
    out["data.kind_image"] = torch.tensor(int(data.kind == "image"))
    out["data.shift"] = data.shift.float()
    out["data.scale"] = data.scale.float()
    return out


def read_config(run: Path) -> GanConfig:
    p = run / "config.yaml"
    if not p.is_file():
        raise InputError(f"{run}: not a run directory (no config.yaml)")
    try:
        return from_dict(GanConfig, load_yaml(p))
    except ConfigError as e:
        raise InputError(f"{p}: {e}") from None


def _check_resume(run: Path, cfg: GanConfig) -> None:
    if not (run / "checkpoint.json").is_file():
        raise InputError(f"{run}: nothing to resume (no checkpoint.json)")
    saved = read_config(run)
    for k in RESUMABLE:
        setattr(saved, k, getattr(cfg, k))
    changes = diff(saved, cfg)
    if changes:
        raise ConfigError(f"{run}: config differs from the run being resumed: {'; '.join(changes)} "
                          "(budgets, intervals and device may change; start a new run for the rest)")


def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {f"optD.{i}.{name}": torch.as_tensor(v) for i, per in opt.state_dict()["state"].items()
            for name, v in per.items()}


def _load_optim(opt: torch.optim.Optimizer, extra: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in extra.items():
        if k.startswith("optD."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


# --------------------------------------------------------------------------
# Evaluation and pictures (their own RNG: training is the same with or without them)


@torch.no_grad()
def evaluate_generator(cfg: GanConfig, G: nn.Module, data: gdata.GanData, classifier: nn.Module | None,
                       n: int, threshold: int, seed: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Mode coverage (mixtures) or class coverage (digits) of n samples of G; {} for other data."""
    if data.modes is None and classifier is None:
        return {}
    was = G.training
    G.eval()
    with torch.random.fork_rng(devices=[]):
        g = torch.Generator().manual_seed(seed)
        x = data.to_data(G(noise(cfg, n, device, generator=g))).cpu()
    G.train(was)
    if data.modes is not None:
        assert data.sigma is not None
        return metrics.mode_coverage(x, data.modes, data.sigma, threshold)
    assert classifier is not None
    return metrics.class_coverage((x - 0.5) / 0.5, classifier, threshold)


def _summary_line(ev: dict[str, Any]) -> str:
    if "modes" in ev:
        return f"{ev['modes']}/{ev['n_modes']} modes, {100 * ev['high_quality']:.1f}% high quality"
    if "classes" in ev:
        return f"{ev['classes']}/{ev['n_classes']} classes, confidence {ev['mean_confidence']:.2f}"
    return ""


class Snapshots:
    """Pictures of G_ema on a fixed noise batch, over a fixed real sample for 2-D data."""

    def __init__(self, cfg: GanConfig, data: gdata.GanData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        g = torch.Generator().manual_seed(cfg.seed + 7919)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 7919)
            if data.kind == "vector":
                self.z = noise(cfg, 1000, device, generator=g)
                self.real = data.to_data(data.sample(20_000)).numpy()
                self.bounds = float(abs(self.real[:, :2]).max()) * 1.15
            else:
                self.z = noise(cfg, 64, device, generator=g)

    @torch.no_grad()
    def png(self, G: nn.Module, step: int, note: str = "") -> bytes:
        was = G.training
        G.eval()
        x = G(self.z)
        G.train(was)
        title = f"{self.cfg.data}, step {step}" + (f": {note}" if note else "")
        if self.data.kind == "vector":
            return pictures.density_png(self.real, self.data.to_data(x).cpu().numpy(), title, self.bounds)
        size = x.shape[-1]
        return pictures.grid_png(x, 8, scale=max(1, 64 // size))


# --------------------------------------------------------------------------
# Training


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
        _check_resume(run, cfg)
    inputs = [cfg.data] if Path(cfg.data).exists() else []
    rundir.create(run, cfg, STAGE, inputs, force=force, resume=resume, device=str(device), precision=prec.record())
    if not resume:
        for p in [*(run / SNAPSHOTS).glob("step-*.png"), *(run / f for f in EXTRA_FILES)]:
            if p.is_file():
                p.unlink()
    (run / SNAPSHOTS).mkdir(exist_ok=True)

    classifier = None
    if data.labels is not None:
        classifier = _digits_classifier(run, data, resume)

    seed_everything(cfg.seed)
    nets = build_nets(cfg, data.kind, data.shape)
    G, D, G_ema = nets.G.to(device), nets.D.to(device), nets.G_ema.to(device)
    both = nn.ModuleDict({"G": G, "D": D, "G_ema": G_ema})  # one module for the checkpoint
    betas = (cfg.beta1, cfg.beta2)  # fused Adam: the small GAN nets are launch-bound
    opt_g = fused(torch.optim.Adam, G.parameters(), lr=cfg.lr_g, betas=betas)
    opt_d = fused(torch.optim.Adam, D.parameters(), lr=cfg.lr_d, betas=betas)
    snaps = Snapshots(cfg, data, device)

    step, elapsed_before = 0, 0.0
    if resume:
        state, extra = checkpoint.load(run, both, opt_g, device)
        _load_optim(opt_d, extra)
        step, elapsed_before = state["step"], state.get("elapsed", 0.0)
    budget = cfg.max_steps
    max_time = parse_duration(cfg.max_time) if cfg.max_time else 0.0
    history = rundir.read_metrics(run) if resume else []
    log = rundir.MetricsLog(run)
    sums = torch.zeros(4, device=device)  # loss_D, loss_G, D(x), D(G(z)) since the last log
    window = 0
    last_good = step if resume else -1
    last_eval: dict[str, Any] = {}
    eval_step = -1
    t0 = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def check_finite(values: torch.Tensor) -> None:
        if not bool(torch.isfinite(values).all()):
            kept = f"the last good checkpoint (step {last_good}) is kept" if last_good > 0 else \
                "no checkpoint had been saved yet"
            raise TrainingDiverged(f"loss became {values[0].item()} (D) / {values[1].item()} (G) by step {step}; "
                                   f"{kept}; try lower lr_d/lr_g, spectral_norm=true or loss=wgan-gp")

    def save_checkpoint() -> None:
        nonlocal last_good
        check_finite(sums)  # never checkpoint diverged weights
        checkpoint.save(run, both, opt_g, {"step": step, "elapsed": elapsed()}, _optim_tensors(opt_d))
        rundir.save_tensors(generator_tensors(G_ema, data), run / GENERATOR)
        last_good = step

    def evaluate() -> None:
        nonlocal last_eval, eval_step
        eval_step = step
        last_eval = evaluate_generator(cfg, G_ema, data, classifier, cfg.eval_samples, cfg.mode_threshold,
                                       cfg.seed + 1, device)
        if last_eval:
            rec = {"step": step, **{k: v for k, v in last_eval.items() if not isinstance(v, list)}}
            log.log(**rec)
            history.append(rec)

    def snapshot() -> None:
        png = snaps.png(G_ema, step, _summary_line(last_eval) if eval_step == step else "")
        with open(run / SNAPSHOTS / f"step-{step:07d}.png", "wb") as f:  # a frame; samples.png is atomic
            f.write(png)

    if step == 0:
        snapshot()
    try:
        while True:
            if budget and step >= budget:
                break
            if max_time and elapsed() >= max_time:
                break
            B = cfg.batch_size
            if cfg.lr_schedule == "linear":
                done = max(step / budget if budget else 0.0, elapsed() / max_time if max_time else 0.0)
                for opt, lr in ((opt_g, cfg.lr_g), (opt_d, cfg.lr_d)):
                    for group in opt.param_groups:
                        group["lr"] = lr * max(0.0, 1.0 - done)
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
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
            # 2. the generator: make D call its samples real (D fixed)
            D.requires_grad_(False)
            with prec.autocast():
                d_fake = D(packed(G(noise(cfg, B, device)), cfg.pack)).float()
            loss_g = g_loss(cfg.loss, d_fake)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
            # 3. the moving average of G (a short warm-up so early pictures are not of the initial G)
            ema_update(G_ema, G, min(cfg.ema, (1 + step) / (10 + step)))
            step += 1
            with torch.no_grad():
                sums += torch.stack([loss_d, loss_g, d_prob(cfg.loss, r).mean(), d_prob(cfg.loss, f).mean()])
            window += 1

            last = bool(budget and step >= budget)
            if step % cfg.log_interval == 0 or last:
                means = sums / window
                check_finite(means)
                ld, lg, dx, dgz = means.tolist()
                rec = {"step": step, "loss_d": ld, "loss_g": lg, "d_real": dx, "d_fake": dgz, "elapsed": elapsed()}
                log.log(**rec)
                history.append(rec)
                show: dict[str, Any] = {"loss_D": ld, "loss_G": lg, "D(x)": dx, "D(G(z))": dgz}
                if "modes" in last_eval:
                    show.update(modes=last_eval["modes"], hq=round(last_eval["high_quality"], 3))
                elif "classes" in last_eval:
                    show.update(classes=last_eval["classes"])
                total = budget or (int(step * max_time / max(elapsed(), 1e-9)) if max_time else None)
                on_progress(Tick("train", step, total, unit="step", metrics=show))
                sums.zero_()
                window = 0
            if cfg.eval_interval and step % cfg.eval_interval == 0 and not last:
                evaluate()
            if cfg.snapshot_interval and step % cfg.snapshot_interval == 0 and not last:
                snapshot()
            if cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0 and not last:
                save_checkpoint()
    except KeyboardInterrupt:
        log.close()
        if step > 0 and bool(torch.isfinite(sums).all()):
            save_checkpoint()
            raise Interrupted(f"interrupted at step {step}; checkpoint saved in {run} (continue with --resume)"
                              ) from None
        raise Interrupted("interrupted before the first step; nothing saved") from None
    except BaseException:
        log.close()
        raise

    if window:
        check_finite(sums / window)
    save_checkpoint()
    evaluate()
    log.close()
    snapshot()
    frames = sorted((run / SNAPSHOTS).glob("step-*.png"))
    write_bytes_atomic(run / "samples.png", frames[-1].read_bytes())
    pictures.gif(frames, run / "training.gif")
    from dlcli.train.plots import plot_curves

    title = f"GAN ({cfg.loss}) on {cfg.data}"
    plot_curves(history, run / "losses.png", {"loss_d": "D", "loss_g": "G"}, "loss", title)
    result = {"run": str(run), "data": cfg.data, "steps": step, "elapsed": elapsed(), "device": str(device),
              "precision": prec.describe(),
              "params_g": sum(p.numel() for p in G.parameters()),
              "params_d": sum(p.numel() for p in D.parameters()), "eval": last_eval}
    write_text_atomic(run / "gan.json", json.dumps(result, indent=2) + "\n", force=True)
    result["summary"] = _summary_line(last_eval)
    result["written"] = [str(run / n) for n in ("config.yaml", "metrics.jsonl", GENERATOR, "checkpoint.safetensors",
                                                "samples.png", "training.gif", "losses.png", "gan.json")]
    return result


def write_bytes_atomic(path: Path, data: bytes) -> None:
    from dlcli.core.io import atomic_write

    with atomic_write(path, force=True) as f:
        f.write(data)


def _digits_classifier(run: Path, data: gdata.GanData, resume: bool) -> nn.Module:
    """Train the digits classifier once per run (kept as classifier.safetensors for `gan eval`)."""
    path = run / "classifier.safetensors"
    model = metrics.DigitsClassifier()
    if resume and path.is_file():
        rundir.load_weights(model, path)
        return model.eval()
    images, labels = gdata.load_digits()
    x = torch.from_numpy(images)[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1], as the GAN sees them
    model, acc = metrics.train_digits_classifier(x, torch.from_numpy(labels))
    rundir.save_tensors(model.state_dict(), path, metadata={"held_out_accuracy": f"{acc:.4f}"})
    return model

