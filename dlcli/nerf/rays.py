"""Rays from pinhole cameras.

Cameras follow the Blender / OpenGL convention of NeRF and Instant-NGP: a
camera-to-world matrix whose columns are the camera's right (x), up (y) and
back (z) axes and its position; the camera looks down -z. Pixel (u, v) has
its centre at (u + 0.5, v + 0.5), v growing downwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Intrinsics:
    """Pinhole intrinsics in pixels, with optional OpenCV radial (k1, k2) and tangential (p1, p2) distortion."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    def scaled(self, factor: float) -> Intrinsics:
        """The same camera with the image scaled by `factor` (e.g. 1/8 for --downscale 8)."""
        w, h = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        return Intrinsics(self.fx * w / self.width, self.fy * h / self.height, self.cx * w / self.width,
                          self.cy * h / self.height, w, h, self.k1, self.k2, self.p1, self.p2)

    @property
    def distorted(self) -> bool:
        return any((self.k1, self.k2, self.p1, self.p2))


def undistort(x: torch.Tensor, y: torch.Tensor, k: Intrinsics, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert the OpenCV distortion model on normalised image coordinates by fixed-point iteration."""
    xu, yu = x.clone(), y.clone()
    for _ in range(iters):  # a fixed handful of whole-image iterations, not a loop over pixels
        r2 = xu * xu + yu * yu
        radial = 1 + k.k1 * r2 + k.k2 * r2 * r2
        dx = 2 * k.p1 * xu * yu + k.p2 * (r2 + 2 * xu * xu)
        dy = k.p1 * (r2 + 2 * yu * yu) + 2 * k.p2 * xu * yu
        xu, yu = (x - dx) / radial, (y - dy) / radial
    return xu, yu


def camera_directions(k: Intrinsics, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unnormalised ray directions in camera space for every pixel: (H, W, 3)."""
    v, u = torch.meshgrid(torch.arange(k.height, device=device, dtype=torch.float32),
                          torch.arange(k.width, device=device, dtype=torch.float32), indexing="ij")
    x = (u + 0.5 - k.cx) / k.fx
    y = (v + 0.5 - k.cy) / k.fy  # OpenCV: y down
    if k.distorted:
        x, y = undistort(x, y, k)
    return torch.stack([x, -y, -torch.ones_like(x)], dim=-1)  # OpenGL: y up, looking down -z


def generate_rays(c2w: torch.Tensor, k: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions for every pixel of every camera: c2w (N, 4, 4) -> (N, H, W, 3) twice."""
    c2w = c2w.to(torch.float32)
    dirs_cam = camera_directions(k, c2w.device)  # (H, W, 3)
    dirs = torch.einsum("nij,hwj->nhwi", c2w[:, :3, :3], dirs_cam)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def intersect_box(origins: torch.Tensor, dirs: torch.Tensor, bound: float, near: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through the box [-bound, bound]^3 (slab method) and whether they hit it."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t_a = (-bound - origins) * inv
    t_b = (bound - origins) * inv
    t0 = torch.minimum(t_a, t_b).amax(dim=-1).clamp(min=near)
    t1 = torch.maximum(t_a, t_b).amin(dim=-1)
    hit = t1 > t0
    t1 = torch.where(hit, t1, t0 + 1e-6)
    return t0, t1, hit
