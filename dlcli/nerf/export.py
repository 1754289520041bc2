"""Geometry out of a trained run, for mesh and point-cloud viewers (MeshLab, Blender, CloudCompare, Open3D).

* Mesh: the field's density on an N^3 grid over the scene box, the isosurface at a density level by marching
  cubes (scikit-image, Lewiner et al. 2003), each vertex coloured by the field seen from straight in front
  (view direction = -normal).
* Points: the surface depth of every training view (where a ray's transmittance falls to 1/2), back-projected
  along the camera rays where the view is opaque (accumulated opacity > 0.5), coloured by the rendered pixel
  without the background. The expected depth would put a point between two surfaces that share a ray's weight.

Both are written as binary PLY in the data set's own frame (Instant-NGP scenes: the normalisation undone), so
they line up with its cameras.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcli.core.io import atomic_write, check_output
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError, InputError
from dlcli.nerf.models import HashNerf, render_view
from dlcli.nerf.ply import write_ply
from dlcli.nerf.rays import Intrinsics, generate_rays


def default_threshold(bound: float) -> float:
    """The density at which a layer 1/100 of the box's side thick is half opaque: ln 2 / (2 bound / 100)."""
    return math.log(2.0) / (2.0 * bound / 100.0)


@torch.no_grad()
def density(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The density the renderer sees at points (B, 3): the hash model's is zero in empty occupancy cells, the
    original model's is its fine network's."""
    if isinstance(model, HashNerf):
        return model.field.density(x) * model.grid.occupied(x, model.threshold)
    return model.fine.density(x)


@torch.no_grad()
def color(model: nn.Module, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The field's colour (B, 3) at points x seen along unit directions d."""
    field = model.field if isinstance(model, HashNerf) else model.fine
    return field(x, d)[1]


@torch.no_grad()
def density_grid(model: nn.Module, resolution: int, chunk: int = 1 << 18, on_progress: OnProgress = nothing
                 ) -> np.ndarray:
    """Density at the R^3 grid points linspace(-bound, bound, R) on each axis, as an (R, R, R) array [x, y, z]."""
    r, dev = resolution, next(model.parameters()).device
    axis = torch.linspace(-model.bound, model.bound, r, device=dev)
    out = torch.empty(r**3)
    for start in range(0, r**3, chunk):
        idx = torch.arange(start, min(start + chunk, r**3), device=dev)
        x = torch.stack([axis[idx // (r * r)], axis[idx // r % r], axis[idx % r]], dim=-1)
        out[start:start + len(idx)] = density(model, x).float().cpu()
        on_progress(Tick("density", start + len(idx), r**3, unit="point"))
    return out.view(r, r, r).numpy()


def need_marching_cubes() -> Any:
    """scikit-image's marching cubes, or one line naming the extra that installs it."""
    try:
        from skimage.measure import marching_cubes
    except ImportError:
        raise ConfigError("--mesh: marching cubes needs scikit-image; install it with pip install 'dlcli[mesh]' "
                          "(or pip install scikit-image)") from None
    return marching_cubes


def mesh(model: nn.Module, resolution: int = 128, threshold: float | None = None, on_progress: OnProgress = nothing
         ) -> dict[str, Any]:
    """The isosurface of the density at `threshold` (default: default_threshold) in the model's frame:
    vertices (V, 3) float32, faces (F, 3) int32, colours (V, 3) uint8, and the level used."""
    marching_cubes = need_marching_cubes()
    if not 8 <= resolution <= 1024:
        raise ConfigError(f"resolution: {resolution} is out of range (8..1024)")
    level = default_threshold(model.bound) if threshold is None else threshold
    if not (math.isfinite(level) and level > 0):
        raise ConfigError(f"threshold: {level} must be a positive density")
    sigma = density_grid(model, resolution, on_progress=on_progress)
    lo, hi = float(sigma.min()), float(sigma.max())
    if not lo < level < hi:
        raise InputError(f"no surface at density {level:.4g}: the field's density on the grid spans {lo:.4g} to "
                         f"{hi:.4g}; choose a --threshold inside that range")
    h = 2.0 * model.bound / (resolution - 1)
    # The normals point out of the object (where the density falls). "ascent" winds the faces counter-clockwise
    # seen from outside (right-hand rule: the usual convention, so viewers light the outside); "descent"
    # would wind them the other way (measured on a sphere, tests/test_nerf_export.py).
    verts, faces, normals, _ = marching_cubes(sigma, level=level, spacing=(h, h, h), gradient_direction="ascent")
    verts = verts.astype(np.float32) - model.bound
    dev = next(model.parameters()).device
    n = torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float32))
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    x = torch.from_numpy(verts)
    rgb = torch.cat([color(model, x[i:i + 65536].to(dev), -n[i:i + 65536].to(dev)).float().cpu()
                     for i in range(0, len(x), 65536)]) if len(x) else torch.zeros(0, 3)
    return {"vertices": verts, "faces": faces.astype(np.int32), "colors": _uint8(rgb), "threshold": level,
            "density_range": (lo, hi)}


@torch.no_grad()
def points(model: nn.Module, poses: torch.Tensor, k: Intrinsics, bg: torch.Tensor, max_points: int = 1_000_000,
           seed: int = 0, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Back-project the surface depth of every view in `poses`: at most `max_points` points, spread evenly over
    the views (a random subset of each view's opaque pixels), with their colours."""
    if max_points < 1:
        raise ConfigError("max_points: must be at least 1")
    dev = bg.device
    per_view = math.ceil(max_points / len(poses))
    gen = torch.Generator().manual_seed(seed)
    xs, cs = [], []
    for i, c2w in enumerate(poses):
        v = render_view(model, c2w, k, bg, surface=True)
        o, d = generate_rays(c2w[None].to(dev), k)
        acc = v["acc"].reshape(-1)
        keep = (acc > 0.5).nonzero().squeeze(-1).cpu()
        keep = keep[torch.randperm(len(keep), generator=gen)[:per_view]].to(dev)
        a = acc[keep][:, None]
        t = v["surface"].reshape(-1)[keep][:, None]
        xs.append((o.reshape(-1, 3)[keep] + d.reshape(-1, 3)[keep] * t).float().cpu())
        cs.append(((v["rgb"].reshape(-1, 3)[keep] - (1.0 - a) * bg) / a).float().cpu())  # background removed
        on_progress(Tick("points", i + 1, len(poses), unit="view"))
    x, c = torch.cat(xs)[:max_points], torch.cat(cs)[:max_points]
    return {"vertices": x.numpy(), "colors": _uint8(c), "views": len(poses)}


def _uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).numpy()


def to_data_frame(vertices: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Model frame -> the data set's frame: raw = normalised / scale + center (Blender: unchanged)."""
    center = np.asarray(info.get("center", [0.0, 0.0, 0.0]), dtype=np.float64)
    scale = float(info.get("scale", 1.0))
    return (vertices / scale + center).astype(np.float32)


def export(run: str | Path, mesh_path: str | None = None, points_path: str | None = None, resolution: int = 128,
           threshold: float | None = None, max_points: int = 1_000_000, force: bool = False, device: str = "auto",
           on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Write a mesh and/or a point cloud of a trained run as binary PLY; what was written and its sizes."""
    from dlcli.nerf.data import background
    from dlcli.nerf.renderer import open_run

    if not mesh_path and not points_path:
        raise ConfigError("nothing to export: give --mesh OUT.ply and/or --points OUT.ply")
    if mesh_path and points_path and Path(mesh_path).absolute() == Path(points_path).absolute():
        raise ConfigError(f"{mesh_path}: --mesh and --points name the same file")
    for p in (mesh_path, points_path):
        if p:
            check_output(p, force)  # before minutes of work, not after
    if mesh_path:
        need_marching_cubes()
    model, cfg, info, dev = open_run(run, device)
    summary: dict[str, Any] = {"run": str(run)}
    if mesh_path:
        m = mesh(model, resolution, threshold, on_progress)
        with atomic_write(mesh_path, force=force) as f:
            write_ply(f, to_data_frame(m["vertices"], info), m["colors"], m["faces"],
                      comment=f"dlcli nerf export {run}: marching cubes at density {m['threshold']:.6g}, "
                              f"{resolution}^3 grid")
        summary["mesh"] = {"path": str(mesh_path), "vertices": len(m["vertices"]), "faces": len(m["faces"]),
                           "threshold": m["threshold"], "density_range": list(m["density_range"]),
                           "resolution": resolution}
    if points_path:
        poses = torch.tensor(info["train_poses"], dtype=torch.float32)
        if not len(poses):
            raise InputError(f"{Path(run) / 'nerf.json'}: no training cameras to take depth from")
        p = points(model, poses, Intrinsics(**info["intrinsics"]), background(cfg, dev), max_points,
                   on_progress=on_progress)
        with atomic_write(points_path, force=force) as f:
            write_ply(f, to_data_frame(p["vertices"], info), p["colors"],
                      comment=f"dlcli nerf export {run}: depth of {p['views']} training views")
        summary["points"] = {"path": str(points_path), "points": len(p["vertices"]), "views": p["views"]}
    return summary
