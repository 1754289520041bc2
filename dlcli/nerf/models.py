"""The two models end to end: a batch of rays -> colour, depth and accumulation.

* `VanillaNerf` (Mildenhall et al. 2020): a coarse and a fine NerfField; stratified samples for the coarse
  network, then hierarchical samples drawn from its weights for the fine one; both are trained.
* `HashNerf` (after Müller et al. 2022): one HashField, stratified samples through the scene box, and an
  occupancy grid so that only samples in occupied cells reach the network.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn

from dlcli.nerf.fields import HashField, NerfField
from dlcli.nerf.occupancy import OccupancyGrid
from dlcli.nerf.rays import Intrinsics, generate_rays, intersect_box
from dlcli.nerf.render import composite, surface_depth
from dlcli.nerf.sampling import importance, stratified


def _query(field: nn.Module, origins: torch.Tensor, dirs: torch.Tensor,
           edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Density (R, S) and colour (R, S, 3) at bin midpoints."""
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    x = origins[:, None, :] + dirs[:, None, :] * mids[..., None]  # (R, S, 3)
    sigma, rgb = field(x.reshape(-1, 3), dirs[:, None, :].expand_as(x).reshape(-1, 3))
    return sigma.view(mids.shape), rgb.view(*mids.shape, 3)


class VanillaNerf(nn.Module):
    def __init__(self, bound: float, near: float = 0.0, n_coarse: int = 64, n_fine: int = 128, pos_freqs: int = 10,
                 dir_freqs: int = 4, width: int = 256, depth: int = 8) -> None:
        super().__init__()
        self.bound, self.near, self.n_coarse, self.n_fine = bound, near, n_coarse, n_fine
        self.coarse = NerfField(pos_freqs, dir_freqs, width, depth, bound=bound)
        self.fine = NerfField(pos_freqs, dir_freqs, width, depth, bound=bound)

    def forward(self, origins: torch.Tensor, dirs: torch.Tensor, background: torch.Tensor, perturb: bool = False,
                generator: torch.Generator | None = None) -> dict[str, Any]:
        t0, t1, hit = intersect_box(origins, dirs, self.bound, self.near)
        edges = stratified(t0, t1, self.n_coarse, perturb, generator)
        sigma, rgb = _query(self.coarse, origins, dirs, edges)
        coarse = composite(sigma * hit[:, None], rgb, edges, background)
        edges_fine = importance(edges, coarse["weights"], self.n_fine, perturb, generator)
        sigma, rgb = _query(self.fine, origins, dirs, edges_fine)
        out = composite(sigma := sigma * hit[:, None], rgb, edges_fine, background)
        out["sigma"], out["edges"] = sigma, edges_fine
        out["coarse_rgb"] = coarse["rgb"]
        out["samples"] = hit.sum() * (self.n_coarse + self.n_fine)
        return out


class HashNerf(nn.Module):
    def __init__(self, bound: float, near: float = 0.0, n_samples: int = 128, levels: int = 16, features: int = 2,
                 log2_table: int = 17, base_res: int = 16, max_res: int = 512, hidden: int = 64,
                 grid_resolution: int = 64, grid_threshold: float = 0.0, precision: str = "fp32", segments: int = 4,
                 min_transmittance: float = 1e-4) -> None:
        super().__init__()
        self.bound, self.near, self.n_samples = bound, near, n_samples
        self.segments, self.min_transmittance = segments, min_transmittance
        self.field = HashField(bound, levels, features, log2_table, base_res, max_res, hidden,
                               bf16=precision == "bf16")
        self.grid = OccupancyGrid(bound, grid_resolution)
        # A cell is empty when even its densest point would be almost transparent (alpha 0.01) over one step.
        step = 2 * math.sqrt(3) * bound / n_samples
        self.threshold = grid_threshold or -math.log(1.0 - 0.01) / step

    def forward(self, origins: torch.Tensor, dirs: torch.Tensor, background: torch.Tensor, perturb: bool = False,
                generator: torch.Generator | None = None) -> dict[str, Any]:
        # 1. Stratified bins through the scene box; 2. skip the bins in empty cells of the occupancy grid.
        t0, t1, hit = intersect_box(origins, dirs, self.bound, self.near)
        edges = stratified(t0, t1, self.n_samples, perturb, generator)
        mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
        deltas = edges[:, 1:] - edges[:, :-1]
        x = origins[:, None, :] + dirs[:, None, :] * mids[..., None]  # (R, S, 3)
        mask = self.grid.occupied(x, self.threshold) & hit[:, None]
        # 3. Query the field where the grid says "occupied". Rendering goes front to back in a few segments with
        # early ray termination: a ray whose transmittance has fallen below min_transmittance is not evaluated
        # further (what is behind contributes < that). Training takes one segment: one backward pass through the
        # encoding is cheaper than several.
        r, s = mids.shape
        sigma = torch.zeros(r, s, device=x.device, dtype=x.dtype)
        color = torch.zeros(r, s, 3, device=x.device, dtype=x.dtype)
        if torch.is_grad_enabled():
            rows, cols = mask.nonzero(as_tuple=True)
            samples = rows.numel()
            if samples:
                sig, rgb = self.field(x[rows, cols], dirs[rows])
                sigma, color = sigma.index_put((rows, cols), sig), color.index_put((rows, cols), rgb)
        else:
            samples = self._front_to_back(x, dirs, deltas, mask, sigma, color)
        # 4. Volume rendering over all bins (the skipped ones have zero density).
        out = composite(sigma, color, edges, background)
        out["sigma"], out["edges"] = sigma, edges
        out["samples"] = samples
        return out

    def _front_to_back(self, x: torch.Tensor, dirs: torch.Tensor, deltas: torch.Tensor, mask: torch.Tensor,
                       sigma: torch.Tensor, color: torch.Tensor) -> int:
        """Fill sigma and color segment by segment, skipping rays already opaque; the samples evaluated."""
        s = mask.shape[1]
        bounds = [round(i * s / self.segments) for i in range(self.segments + 1)]
        samples = 0
        for a, b in itertools.pairwise(bounds):
            sel = mask[:, a:b]
            if a > 0:
                trans = torch.exp(-(sigma[:, :a] * deltas[:, :a]).sum(dim=-1))
                sel = sel & (trans > self.min_transmittance)[:, None]
            rows, cols = sel.nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            cols = cols + a
            sigma[rows, cols], color[rows, cols] = self.field(x[rows, cols], dirs[rows])
            samples += rows.numel()
        return samples

    def update_grid(self, generator: torch.Generator) -> None:
        self.grid.update(self.field.density, generator)


@torch.no_grad()
def render_rays(model: nn.Module, origins: torch.Tensor, dirs: torch.Tensor, background: torch.Tensor,
                chunk: int = 8192, surface: bool = False) -> dict[str, torch.Tensor]:
    """Render any number of rays (N, 3) in chunks, without gradients: rgb (N, 3), depth and acc (N,), and with
    `surface` the surface depth (N,) (nerf.render.surface_depth)."""
    parts: dict[str, list[torch.Tensor]] = {"rgb": [], "depth": [], "acc": []} | ({"surface": []} if surface else {})
    for i in range(0, origins.shape[0], chunk):
        out = model(origins[i:i + chunk], dirs[i:i + chunk], background, perturb=False)
        if surface:
            out["surface"] = surface_depth(out["sigma"], out["edges"])
        for k, part in parts.items():
            part.append(out[k])
    return {k: torch.cat(v) for k, v in parts.items()}


@torch.no_grad()
def render_view(model: nn.Module, c2w: torch.Tensor, scene_k: Intrinsics, bg: torch.Tensor, chunk: int = 8192,
                surface: bool = False) -> dict[str, torch.Tensor]:
    """Render one camera: rgb (H, W, 3), depth and acc (H, W), and with `surface` the surface depth (H, W)."""
    device = bg.device
    o, d = generate_rays(c2w[None].to(device), scene_k)
    out = render_rays(model, o.reshape(-1, 3), d.reshape(-1, 3), bg, chunk, surface)
    h, w = scene_k.height, scene_k.width
    return {"rgb": out["rgb"].view(h, w, 3), **{k: v.view(h, w) for k, v in out.items() if k != "rgb"}}


def build_model(kind: str, bound: float, near: float, opts: dict[str, Any]) -> nn.Module:
    if kind == "nerf":
        return VanillaNerf(bound, near, **opts)
    return HashNerf(bound, near, **opts)
