"""Where to look along each ray.

Samples are intervals ("bins") along a ray, given by their edges t (R, S+1);
a sample's position is its bin's midpoint and its length the bin's width, as
in nerfstudio's frustums.
"""

from __future__ import annotations

import torch


def stratified(t0: torch.Tensor, t1: torch.Tensor, n: int, perturb: bool,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """n bins between t0 and t1 (R,); with `perturb`, each inner edge is drawn uniformly within its stratum."""
    u = torch.linspace(0.0, 1.0, n + 1, device=t0.device)
    u = u.expand(t0.shape[0], n + 1)
    if perturb:
        mids = 0.5 * (u[:, 1:] + u[:, :-1])
        lower = torch.cat([u[:, :1], mids], dim=-1)
        upper = torch.cat([mids, u[:, -1:]], dim=-1)
        rand = torch.rand(u.shape, generator=generator, device="cpu").to(t0.device)
        u = lower + (upper - lower) * rand
        u[:, 0], u[:, -1] = 0.0, 1.0  # the ends stay where the ray enters and leaves the box
    return t0[:, None] + (t1 - t0)[:, None] * u


def importance(edges: torch.Tensor, weights: torch.Tensor, n: int, perturb: bool,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Hierarchical sampling: n new edges drawn from the piecewise-constant PDF that `weights` put on the bins,
    merged with the old edges (NeRF section 5.2). Returns sorted edges (R, S+1+n)."""
    w = weights.detach() + 1e-5  # keeps the PDF defined on empty rays
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(dim=-1).clamp(max=1.0)], dim=-1)  # (R, S+1)
    if perturb:
        u = torch.rand((cdf.shape[0], n), generator=generator, device="cpu").to(cdf.device)
    else:
        u = torch.linspace(0.0, 1.0, n + 2, device=cdf.device)[1:-1].expand(cdf.shape[0], n)
    u = u.contiguous()
    # Inverse transform sampling: find each u's bin in the CDF, then interpolate linearly within it.
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(min=0, max=cdf.shape[-1] - 1)
    above = idx.clamp(max=cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    t_lo, t_hi = edges.gather(-1, below), edges.gather(-1, above)
    denom = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    t_new = t_lo + (u - cdf_lo) / denom * (t_hi - t_lo)
    return torch.sort(torch.cat([edges.detach(), t_new.detach()], dim=-1), dim=-1).values
