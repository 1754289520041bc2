"""Training on examples, as the SFT, reward-model and DPO stages do: a seeded split into training and
held-out examples, and minibatches of shuffled example indices fed to the one training loop
(`train.loop.fit`), with checkpoints that resume exactly and, under torchrun, each process taking its
share of every minibatch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel as DDP

from dlcli.core.precision import Precision
from dlcli.core.progress import OnProgress
from dlcli.rlhf.config import StageConfig
from dlcli.train import checkpoint, distributed, optim
from dlcli.train.distributed import Dist
from dlcli.train.loop import Saved, Stage, Update, fit
from dlcli.train.optim import build_optimizer, lr_at, set_lr


def split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded shuffle of range(n) split into training and held-out indices (at least one of each)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g).tolist()
    n_val = min(max(1, round(n * val_fraction)), n - 1) if n > 1 else 0
    return order[n_val:], order[:n_val]


def mean_over_processes(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """`total / count` for a training step, with `count` summed over every process under torchrun and the
    result multiplied by their number: DDP averages the processes' gradients, which makes that average
    the gradient of the mean over the whole batch (the single-process result)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return total / count
    count = count.detach().float().clone()
    tdist.all_reduce(count)
    return total * tdist.get_world_size() / count


@dataclass
class Loop:
    """What a stage that trains on examples hands `train_loop`."""

    name: str  # the progress label
    model: torch.nn.Module
    n_train: int  # training examples; every step draws batch_size of them, reshuffled each pass
    # (net, this process's example indices) -> (loss, statistics as means over those examples); the loss
    # must use `mean_over_processes` so that 2 processes train like 1
    step: Callable[[torch.nn.Module, list[int]], tuple[torch.Tensor, dict[str, float]]]
    evaluate: Callable[[], dict[str, float]]  # held-out figures (the main process only)
    plots: Callable[[list[dict[str, Any]]], None]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # kept in checkpoints (restored in place)
    show: tuple[str, ...] = ()  # held-out figures the progress line shows
    unused_parameters: bool = False  # some parameters get no gradient (DDP must look for them)
    trainable_only: bool = False  # LoRA: checkpoints hold the trainable parameters alone (the rest is the base's)


def train_loop(cfg: StageConfig, run: Path, loop: Loop, prec: Precision, on_progress: OnProgress, resume: bool,
               d: Dist) -> tuple[int, dict[str, float], float]:
    """Minibatches of shuffled example indices on the one loop, the forward passes in `prec`; under
    torchrun each process takes its share of every batch. Returns (steps, last evaluation, seconds)."""
    model = loop.model
    device = next(model.parameters()).device
    optimizer = build_optimizer(model, cfg.optim, device)
    budget = cfg.budget(max(1, math.ceil(loop.n_train / cfg.batch_size)))
    g = torch.Generator().manual_seed(cfg.seed)  # the shuffle
    order: list[int] = []
    resumed = None
    if resume:
        resumed, extra = checkpoint.load(run, model, optimizer, device, loop.trainable_only)
        order = list(resumed.get("order", []))
        g.set_state(extra.pop("shuffle").cpu())
        for k, v in extra.items():
            loop.extra[k].copy_(v)
    net = DDP(model, find_unused_parameters=loop.unused_parameters) if d.enabled else model
    t0, done_before = time.perf_counter(), (resumed or {}).get("elapsed", 0.0)

    def step(done: int) -> Update:
        nonlocal order
        if len(order) < cfg.batch_size:
            order += torch.randperm(loop.n_train, generator=g).tolist()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size:]
        frac = budget.fraction(done, done_before + time.perf_counter() - t0)
        set_lr(optimizer, lr := lr_at(done, cfg.optim, frac))
        mine = idx[d.rank:: d.world]
        with prec.autocast():
            loss, stats = loop.step(net, mine)
        optim.apply_gradients(model, optimizer, loss, cfg.optim.grad_clip)
        return Update(loss.detach(), stats, {"lr": lr}, weight=len(mine))

    def evaluate(done: int) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            out = loop.evaluate()
        model.train()
        return out

    def show(rec: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, Any]:
        keys = [k for k in rec if k not in ("step", "lr", "elapsed")][:3]
        return {**{k: rec[k] for k in keys}, **{k: last_eval[k] for k in loop.show if k in last_eval}}

    stage = Stage(loop.name, step, lambda: Saved(model, optimizer, {"order": order},
                                                  {"shuffle": g.get_state(), **loop.extra}, loop.trainable_only),
                  evaluate=evaluate, plots=loop.plots, show=show)
    model.train()
    try:
        result = fit(stage, run, budget, cfg.every(), d, on_progress, resumed)
    finally:
        distributed.cleanup(d)
    return result.steps, result.last_eval, result.elapsed
