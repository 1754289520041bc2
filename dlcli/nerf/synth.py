"""A procedural scene in the Blender / nerf_synthetic layout, so demos and tests need no download.

Coloured spheres and boxes inside [-1.2, 1.2]^3, ray cast analytically (ray-sphere and slab ray-box
intersections), Lambertian shading under a fixed light, 2x2 supersampled edges, a transparent background
(RGBA PNGs). Cameras sit on a sphere of radius 4 around the origin looking at it, z up, as in Blender; the
training views at random elevations, the test views on a ring.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError, OutputExistsError

CAMERA_ANGLE_X = 0.6911112070083618  # the lego scene's field of view
RADIUS = 4.0
LIGHT = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])

# (centre, radius, colour) and (min corner, max corner, colour)
SPHERES = [((0.0, 0.0, 0.55), 0.55, (0.85, 0.2, 0.15)), ((0.75, 0.6, 0.3), 0.3, (0.15, 0.45, 0.9)),
           ((-0.7, 0.55, 0.25), 0.25, (0.95, 0.8, 0.1))]
BOXES = [((-1.0, -1.0, -0.2), (1.0, 1.0, 0.0), (0.6, 0.6, 0.6)), ((-0.9, -0.8, 0.0), (-0.4, -0.3, 0.7),
                                                                     (0.2, 0.75, 0.3))]


@dataclass
class SynthConfig:
    output: str = "scene"
    size: int = 100  # width and height in pixels
    n_train: int = 100
    n_val: int = 4
    n_test: int = 20
    seed: int = 0


def look_at(position: np.ndarray, target: np.ndarray = np.zeros(3), up: np.ndarray = np.array([0.0, 0.0, 1.0])
            ) -> np.ndarray:
    """Camera-to-world 4x4 for a camera at `position` looking at `target` (OpenGL axes: looks down -z)."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, -forward, position
    return c2w


def sphere_position(azimuth: float, elevation: float, radius: float = RADIUS) -> np.ndarray:
    return radius * np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                              math.sin(elevation)])


def ray_cast(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of each ray (N, 3) with the primitives -> shaded colour (N, 3) and hit mask (N,)."""
    n = len(origins)
    best = np.full(n, np.inf)
    color = np.zeros((n, 3))
    normal = np.zeros((n, 3))
    for centre, radius, rgb in SPHERES:  # a handful of primitives, each against all rays at once
        oc = origins - np.array(centre)
        b = (oc * dirs).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - radius * radius)
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        hit = (disc > 0) & (t > 0) & (t < best)
        best[hit] = t[hit]
        color[hit] = rgb
        normal[hit] = (oc[hit] + t[hit, None] * dirs[hit]) / radius
    for lo, hi, rgb in BOXES:
        inv = 1.0 / np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
        ta, tb = (np.array(lo) - origins) * inv, (np.array(hi) - origins) * inv
        tmin, tmax = np.minimum(ta, tb), np.maximum(ta, tb)
        t0, t1 = tmin.max(-1), tmax.min(-1)
        hit = (t1 > t0) & (t0 > 0) & (t0 < best)
        best[hit] = t0[hit]
        color[hit] = rgb
        axis = tmin[hit].argmax(-1)  # the slab entered last is the face hit
        nrm = np.zeros((int(hit.sum()), 3))
        nrm[np.arange(len(axis)), axis] = -np.sign(dirs[hit][np.arange(len(axis)), axis])
        normal[hit] = nrm
    lit = 0.35 + 0.65 * np.clip(normal @ LIGHT, 0.0, 1.0)
    return np.clip(color * lit[:, None], 0.0, 1.0), np.isfinite(best)


def render_view(c2w: np.ndarray, size: int, camera_angle_x: float = CAMERA_ANGLE_X, supersample: int = 2
                ) -> np.ndarray:
    """One RGBA uint8 image (size, size, 4) of the scene."""
    s = size * supersample
    focal = 0.5 * s / math.tan(0.5 * camera_angle_x)
    v, u = np.meshgrid(np.arange(s) + 0.5, np.arange(s) + 0.5, indexing="ij")
    cam = np.stack([(u - 0.5 * s) / focal, -(v - 0.5 * s) / focal, -np.ones_like(u)], -1).reshape(-1, 3)
    dirs = cam @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    rgb, hit = ray_cast(np.broadcast_to(c2w[:3, 3], dirs.shape), dirs)
    rgba = np.concatenate([rgb * hit[:, None], hit[:, None].astype(float)], -1).reshape(s, s, 4)
    # Box-filter the supersamples; colour is premultiplied by alpha, so un-premultiply after averaging.
    rgba = rgba.reshape(size, supersample, size, supersample, 4).mean(axis=(1, 3))
    alpha = rgba[..., 3:]
    rgba[..., :3] = np.where(alpha > 0, rgba[..., :3] / np.maximum(alpha, 1e-8), 0.0)
    return np.round(rgba * 255).astype(np.uint8)


def cameras(cfg: SynthConfig) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(cfg.seed)
    out: dict[str, list[np.ndarray]] = {}
    for split, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
        if split == "train":
            az = rng.uniform(0, 2 * math.pi, n)
            el = np.arcsin(rng.uniform(math.sin(math.radians(10)), math.sin(math.radians(70)), n))
        else:  # a ring at 30 degrees, offset so that no test view repeats a training one
            az = (np.arange(n) + (0.5 if split == "test" else 0.25)) * 2 * math.pi / max(n, 1)
            el = np.full(n, math.radians(30))
        out[split] = [look_at(sphere_position(a, e)) for a, e in zip(az, el, strict=True)]
    return out


def synth(cfg: SynthConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Write the scene to cfg.output: {train,val,test}/r_<i>.png and transforms_{train,val,test}.json."""
    import imageio.v3 as iio

    if cfg.size < 4 or cfg.size > 4096:
        raise ConfigError(f"size: {cfg.size} is out of range (4..4096)")
    if cfg.n_train < 1 or cfg.n_val < 0 or cfg.n_test < 1:
        raise ConfigError("n_train and n_test must be at least 1, n_val at least 0")
    out = Path(cfg.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise OutputExistsError(f"{out}: exists and is not empty (use --force)")
    cams = cameras(cfg)
    total = sum(len(v) for v in cams.values())
    tmp = out.with_name(out.name + ".tmp-synth")
    shutil.rmtree(tmp, ignore_errors=True)
    done = 0
    try:
        for split, poses in cams.items():
            (tmp / split).mkdir(parents=True, exist_ok=True)
            frames = []
            for i, c2w in enumerate(poses):
                iio.imwrite(tmp / split / f"r_{i}.png", render_view(c2w, cfg.size))
                frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
                done += 1
                on_progress(Tick("rendering the scene", done, total, unit="image"))
            doc = {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}
            (tmp / f"transforms_{split}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"output": str(out), "images": total, "size": cfg.size}
