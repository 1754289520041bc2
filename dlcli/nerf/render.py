"""Volume rendering by alpha compositing (NeRF eq. 3).

For the samples i along a ray, with density sigma_i over a bin of length delta_i:

    alpha_i = 1 - exp(-sigma_i delta_i)              opacity of bin i
    T_i     = exp(-sum_{j<i} sigma_j delta_j)        transmittance: light reaching bin i unblocked
    w_i     = T_i alpha_i                            how much bin i contributes
    C       = sum_i w_i c_i + (1 - sum_i w_i) c_bg   colour, the background showing through what is left
    D       = sum_i w_i t_i                          expected depth (divide by the accumulation for a depth map)

`surface_depth` gives where the transmittance falls to 1/2, i.e. where the ray is half blocked. Unlike
D / sum w it lies on a surface even when the weight is split between two (a thin part in front of another),
which is what a point cloud wants.
"""

from __future__ import annotations

import math

import torch


def weights(sigma: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, S) densities and bin lengths -> (weights, transmittance), both (R, S)."""
    tau = sigma * deltas  # optical thickness of each bin
    alpha = 1.0 - torch.exp(-tau)
    # Exclusive cumulative sum: T_0 = 1, T_i = exp(-(tau_0 + ... + tau_{i-1})).
    transmittance = torch.exp(-torch.cat([torch.zeros_like(tau[:, :1]), tau.cumsum(dim=-1)[:, :-1]], dim=-1))
    return transmittance * alpha, transmittance


def composite(sigma: torch.Tensor, rgb: torch.Tensor, edges: torch.Tensor, background: torch.Tensor
              ) -> dict[str, torch.Tensor]:
    """Render rays from per-bin density (R, S), colour (R, S, 3) and bin edges (R, S+1).

    Returns rgb (R, 3), depth (R,) (expected depth, 0 where nothing was hit), accumulation (R,) and weights (R, S).
    """
    deltas = edges[:, 1:] - edges[:, :-1]
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    w, _ = weights(sigma, deltas)
    acc = w.sum(dim=-1)
    color = (w[..., None] * rgb).sum(dim=-2) + (1.0 - acc)[:, None] * background
    depth = (w * mids).sum(dim=-1)
    return {"rgb": color, "depth": depth, "acc": acc, "weights": w}


def surface_depth(sigma: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """(R, S) densities and (R, S+1) edges -> (R,) depth at which T(t) = 1/2, 0 for rays that stay more
    transparent than that. Density is constant within a bin, so inside the crossing bin i
    T(t) = T_i exp(-sigma_i (t - t_i)), solved exactly for T = 1/2."""
    tau = sigma * (edges[:, 1:] - edges[:, :-1])
    through = tau.cumsum(dim=-1)  # optical thickness up to the end of each bin
    half = math.log(2.0)  # T = exp(-thickness) = 1/2
    i = (through < half).sum(dim=-1, keepdim=True)  # the first bin that ends at T <= 1/2
    hit = i.squeeze(-1) < tau.shape[1]
    i = i.clamp(max=tau.shape[1] - 1)
    before = (through.gather(1, i) - tau.gather(1, i)).squeeze(-1)
    t = edges.gather(1, i).squeeze(-1) + (half - before) / sigma.gather(1, i).squeeze(-1).clamp(min=1e-10)
    return torch.where(hit, t, torch.zeros_like(t))
