"""Optimizers and learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from dlcli.train.config import OptimConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (fused kernel where the device has one) or SGD; weight decay only
    on matrices, not on biases, norms or other vectors."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return fused(torch.optim.AdamW, groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def fused(cls: type[torch.optim.Optimizer], params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """cls(params, **kwargs) with the fused kernel (one launch for all tensors) where the device has one."""
    params = list(params)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # no fused kernel for this device/dtype
        return cls(params, **kwargs)


def lr_at(step: int, cfg: OptimConfig, progress: float | None) -> float:
    """Learning rate for optimizer step `step` (0-based).

    `progress` in [0, 1] is how far through the budget the run is (steps, or
    wall-clock time for --max-time budgets); the cosine decays over what is
    left after warmup. None (unknown budget) keeps the peak rate.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (step // max(1, cfg.step_every))
    if cfg.schedule == "cosine" and progress is not None:
        p = min(1.0, max(0.0, progress))
        floor = cfg.lr * cfg.min_lr_ratio
        return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * p))
    return cfg.lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def apply_gradients(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """One optimizer step on `loss`: clear gradients, backpropagate, clip the global norm (0 = off), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
