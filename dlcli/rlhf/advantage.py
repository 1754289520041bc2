"""Advantages for PPO over the response positions of (B, T) tensors: generalised advantage estimation,
and whitening whose statistics, under torchrun, are those of every process's entries (`total`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as tdist

Total = Callable[[torch.Tensor], torch.Tensor]  # a tensor summed over the processes


def local(t: torch.Tensor) -> torch.Tensor:
    """The sum over a world of one process."""
    return t


def over_processes(t: torch.Tensor) -> torch.Tensor:
    """The sum over every process of the group (in place)."""
    tdist.all_reduce(t)
    return t


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the masked (response) positions of (B, T) tensors.

    delta_t = r_t + gamma V_{t+1} - V_t (V after the last response token is 0) and
    A_t = sum_{k >= t} (gamma lam)^(k - t) delta_k, as one triangular matrix product.
    Returns (advantages, returns = advantages + values), zero outside the mask."""
    m = mask.float()
    v = values * m
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
    delta = (rewards + gamma * next_v - v) * m
    t = torch.arange(delta.size(1), device=delta.device)
    gap = (t[None, :] - t[:, None]).float()  # gap[t, k] = k - t
    discount = torch.where(gap >= 0, (gamma * lam) ** gap.clamp(min=0), torch.zeros_like(gap))
    adv = (delta @ discount.T) * m
    return adv, (adv + v) * m


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, total: Total = local
           ) -> torch.Tensor:
    """(x - mean) / std over the masked entries; with `total` = `over_processes`, the mean and variance
    are those of the masked entries of every process."""
    m = torch.ones_like(x) if mask is None else mask.float()
    s = total(torch.stack([(x * m).sum(), m.sum()]))
    n = s[1].clamp(min=1)
    mean = s[0] / n
    var = total(((x - mean) ** 2 * m).sum()) / n
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * m


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)
