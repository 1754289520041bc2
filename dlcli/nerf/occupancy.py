"""An occupancy grid (Instant-NGP section 4): a coarse voxel grid of the scene box that records where density
is; samples in empty cells are skipped, so the network is evaluated only where something is."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class OccupancyGrid(nn.Module):
    def __init__(self, bound: float, resolution: int = 64, decay: float = 0.95) -> None:
        super().__init__()
        self.bound, self.resolution, self.decay = bound, resolution, decay
        # Running maximum of the density seen in each cell; -1 = never measured (then the cell counts as occupied).
        self.register_buffer("density", torch.full((resolution,) * 3, -1.0))

    def cell_of(self, x: torch.Tensor) -> torch.Tensor:
        """Points (..., 3) -> flat cell index (...)."""
        r = self.resolution
        ijk = ((x / self.bound + 1.0) * 0.5 * r).floor().long().clamp(0, r - 1)
        return (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2]

    def effective_threshold(self, threshold: float) -> float:
        """min(threshold, mean measured density), as Instant-NGP: the grid prunes the thinner half of space
        from the first update on, before the network has learnt densities as low as `threshold`."""
        measured = self.density[self.density >= 0]
        return min(threshold, float(measured.mean())) if measured.numel() else threshold

    def occupied(self, x: torch.Tensor, threshold: float) -> torch.Tensor:
        """Which points (..., 3) lie in cells whose density may exceed the effective `threshold`."""
        d = self.density.flatten()[self.cell_of(x)]
        return (d < 0) | (d > self.effective_threshold(threshold))

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator,
               chunk: int = 65536) -> None:
        """Measure the density at a random point of every cell; keep max(decayed old value, new value)."""
        r = self.resolution
        idx = torch.arange(r**3, device=self.density.device)
        ijk = torch.stack([idx // (r * r), idx // r % r, idx % r], dim=-1).float()
        jitter = torch.rand(ijk.shape, generator=generator).to(ijk.device)
        x = ((ijk + jitter) / r * 2.0 - 1.0) * self.bound
        new = torch.cat([density_fn(x[i:i + chunk]) for i in range(0, len(x), chunk)]).view(r, r, r)
        old = self.density.clamp(min=0.0)
        self.density.copy_(torch.maximum(old * self.decay, new))

    def fraction_occupied(self, threshold: float) -> float:
        t = self.effective_threshold(threshold)
        return float(((self.density < 0) | (self.density > t)).float().mean())
