"""Posed images: the Blender (nerf_synthetic) and Instant-NGP / nerfstudio layouts.

Blender: DATA/transforms_{train,val,test}.json, each with `camera_angle_x` and frames
{file_path, transform_matrix}; RGBA PNGs composited on a white or black background.
Instant-NGP: DATA/transforms.json with `fl_x`, `fl_y`, `cx`, `cy`, `w`, `h` (or `camera_angle_x`), optional
`k1`, `k2`, `p1`, `p2` and `aabb_scale`, one list of frames for everything; every `holdout`-th frame (in file
name order) is held out for evaluation.

Poses are camera-to-world 4x4 matrices in the OpenGL convention. Instant-NGP scenes are centred on the point
the cameras look at and scaled so that the cameras are at distance 1 on average; the scene box is then
[-bound, bound]^3 with bound = 0.375 * aabb_scale, which matches Instant-NGP's box at its own scale.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcli.errors import ConfigError, InputError
from dlcli.nerf import media
from dlcli.nerf.config import BACKGROUNDS, NerfConfig
from dlcli.nerf.rays import Intrinsics

BLENDER_BOUND = 1.5
NEAR = 0.05
BYTES_PER_PIXEL = 4 * (3 + 3 + 3)  # float32 colour, ray origin and direction: what training keeps per pixel
IMAGE_SUFFIXES = (*media.IMAGE_SUFFIXES, *(s.upper() for s in media.IMAGE_SUFFIXES))


@dataclass
class Scene:
    """Images and cameras of one split, in the normalised scene frame."""

    images: torch.Tensor  # (N, H, W, 3) float32 in [0, 1], alpha composited on the background
    poses: torch.Tensor  # (N, 4, 4) camera-to-world
    intrinsics: Intrinsics
    names: list[str]
    bound: float  # the scene box is [-bound, bound]^3
    near: float
    layout: str  # "blender" or "instant-ngp"
    center: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # raw = normalised / scale + center
    scale: float = 1.0

    def info(self) -> dict[str, Any]:
        """What a run keeps to render new views later without the images."""
        k = self.intrinsics
        return {"layout": self.layout, "bound": self.bound, "near": self.near, "center": self.center,
                "scale": self.scale, "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width,
                                                    "height": k.height, "k1": k.k1, "k2": k.k2, "p1": k.p1,
                                                    "p2": k.p2}}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: malformed JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list) or not doc["frames"]:
        raise InputError(f"{path}: malformed transforms file: expected an object with a non-empty 'frames' list")
    return doc


def _number(doc: dict[str, Any], key: str, path: Path, default: float | None = None) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{path}: '{key}' is missing or not a finite number")
    return float(value)


def check_pose(m: Any, where: str) -> np.ndarray:
    """A camera-to-world matrix must be 4x4, finite, [0 0 0 1] at the bottom and rigid (a rotation plus a
    translation): anything else cannot be inverted into a camera or would warp the rays."""
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        a = np.zeros(0)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise InputError(f"{where}: transform_matrix is not a 4x4 matrix of finite numbers")
    if not np.allclose(a[3], [0, 0, 0, 1], atol=1e-6):
        raise InputError(f"{where}: transform_matrix's last row is {a[3].tolist()}, not [0, 0, 0, 1]")
    r = a[:3, :3]
    det = float(np.linalg.det(r))
    if abs(det) < 1e-6:
        raise InputError(f"{where}: transform_matrix is not invertible (determinant {det:.3g})")
    err = float(np.abs(r.T @ r - np.eye(3)).max())
    if err > 1e-2 or det < 0:
        raise InputError(f"{where}: transform_matrix is not rigid (its 3x3 part is not a rotation: "
                         f"|R^T R - I| = {err:.3g}, det {det:.3g})")
    return a


def _image_path(root: Path, file_path: Any, where: str) -> Path:
    if not isinstance(file_path, str) or not file_path:
        raise InputError(f"{where}: 'file_path' is missing or not a string")
    p = Path(os.path.normpath(root.absolute() / file_path))
    if not p.is_relative_to(Path(os.path.normpath(root.absolute()))):
        raise InputError(f"{where}: image path '{file_path}' leaves the dataset folder {root} (refused)")
    found = [p] if p.is_file() else []
    if not found and (not p.suffix or p.suffix not in IMAGE_SUFFIXES):  # Blender lists images without extension
        found = [c for c in (p.with_name(p.name + s) for s in IMAGE_SUFFIXES) if c.is_file()][:1]
    if not found:
        raise InputError(f"{where}: image {p} not found")
    # a link (or a linked folder on the way) must not lead out of the dataset folder either
    real = found[0].resolve()
    if not real.is_relative_to(root.resolve()):
        raise InputError(f"{where}: image path '{file_path}' links to {real}, outside the dataset folder {root} "
                         "(refused)")
    return found[0]


def _without_poses(root: Path) -> str:
    """The hint for photos or a video given where a posed data set is expected ('' for anything else)."""
    if root.is_file() and media.is_video(root):
        what = "it is a video"
    elif root.is_dir() and (n := sum(media.is_image(p) for p in root.iterdir())):
        what = f"it holds {n} image{'s' if n > 1 else ''} but no camera poses"
    else:
        return ""
    return f"; {what}: estimate the poses first with 'dlcli nerf process {root} -o SCENE'"


def _frames(root: Path, split: str, holdout: int) -> tuple[str, Path, dict[str, Any], list[dict[str, Any]]]:
    """Pick the layout and the frames of `split` ('train', 'val' or 'test')."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (expected a dataset folder with transforms_train.json or "
                         f"transforms.json){_without_poses(root)}")
    blender = root / f"transforms_{split}.json"
    if (root / "transforms_train.json").is_file():
        if split == "val" and not blender.is_file():
            blender = root / "transforms_test.json"
        doc = _read_json(blender)
        return "blender", blender, doc, doc["frames"]
    ngp = root / "transforms.json"
    if not ngp.is_file():
        raise InputError(f"{root}: no transforms_train.json (Blender layout) or transforms.json (Instant-NGP "
                         f"layout){_without_poses(root)}")
    doc = _read_json(ngp)
    frames = doc["frames"]
    for i, f in enumerate(frames):
        if not isinstance(f, dict):
            raise InputError(f"{ngp}: frame {i} is not an object")
    frames = sorted(frames, key=lambda f: str(f.get("file_path", "")))
    if holdout < 0 or holdout == 1:
        raise ConfigError(f"holdout: {holdout} must be 0 (no hold-out) or at least 2")
    if split == "train":
        frames = [f for i, f in enumerate(frames) if holdout == 0 or i % holdout != 0]
    else:
        if holdout == 0:
            raise ConfigError(f"{ngp}: no hold-out views for '{split}' (holdout is 0)")
        frames = [f for i, f in enumerate(frames) if i % holdout == 0]
    return "instant-ngp", ngp, doc, frames


def _intrinsics(layout: str, path: Path, doc: dict[str, Any], width: int, height: int) -> Intrinsics:
    if layout == "blender":
        fx = 0.5 * width / math.tan(0.5 * _number(doc, "camera_angle_x", path))
        return Intrinsics(fx, fx, width / 2, height / 2, width, height)
    w = int(_number(doc, "w", path, width))
    h = int(_number(doc, "h", path, height))
    if (w, h) != (width, height):
        raise InputError(f"{path}: w x h is {w}x{h} but the images are {width}x{height}")
    if "fl_x" in doc:
        fx = _number(doc, "fl_x", path)
        fy = _number(doc, "fl_y", path, fx)
    else:
        fx = 0.5 * w / math.tan(0.5 * _number(doc, "camera_angle_x", path))
        fy = 0.5 * h / math.tan(0.5 * _number(doc, "camera_angle_y", path)) if "camera_angle_y" in doc else fx
    dist = [_number(doc, k, path, 0.0) for k in ("k1", "k2", "p1", "p2")]
    return Intrinsics(fx, fy, _number(doc, "cx", path, w / 2), _number(doc, "cy", path, h / 2), w, h, *dist)


def focus_point(poses: np.ndarray) -> np.ndarray:
    """The point nearest (least squares) to all the cameras' optical axes: what a hand-held capture looks at."""
    o, d = poses[:, :3, 3], -poses[:, :3, 2]
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # projections onto the planes normal to each axis
    a, b = proj.sum(0), (proj @ o[:, :, None]).sum(0)[:, 0]
    if abs(np.linalg.det(a)) < 1e-9:  # all axes parallel: fall back to the cameras' centre
        return o.mean(0)
    return np.linalg.solve(a, b)


def needed_bytes(n: int, width: int, height: int) -> int:
    return n * width * height * BYTES_PER_PIXEL


def load(path: str | os.PathLike[str], split: str = "train", downscale: int = 1, background: str = "white",
         holdout: int = 8, max_memory_gb: float = 4.0, bound: float = 0.0) -> Scene:
    """Load one split of a data set; every problem is one InputError naming the file."""
    from PIL import Image

    if downscale < 1:
        raise ConfigError(f"downscale: {downscale} must be at least 1")
    if background not in BACKGROUNDS:
        raise ConfigError(f"background: '{background}' is not one of {', '.join(BACKGROUNDS)}")
    root = Path(path)
    layout, jpath, doc, frames = _frames(root, split, holdout)
    poses, files = [], []
    for i, f in enumerate(frames):
        where = f"{jpath}: frame {i}"
        if not isinstance(f, dict):
            raise InputError(f"{where} is not an object")
        where += f" ({f.get('file_path')})"
        files.append(_image_path(root, f.get("file_path"), where))
        poses.append(check_pose(f.get("transform_matrix"), where))
    if not files:
        raise InputError(f"{jpath}: no frames in split '{split}'")
    sizes = []
    for p in files:
        try:
            with Image.open(p) as im:
                sizes.append(im.size)
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: not a readable image ({e})") from None
    width, height = sizes[0]
    for p, s in zip(files, sizes, strict=True):
        if s != (width, height):
            raise InputError(f"{p}: image is {s[0]}x{s[1]} but {files[0].name} is {width}x{height} "
                             "(all frames must have the same size)")
    k = _intrinsics(layout, jpath, doc, width, height).scaled(1.0 / downscale)
    need, limit = needed_bytes(len(files), k.width, k.height), max_memory_gb * 1e9
    if need > limit:
        fit = downscale
        while needed_bytes(len(files), round(width / fit), round(height / fit)) > limit:
            fit += 1
        raise InputError(f"{jpath}: {len(files)} images of {k.width}x{k.height} need about {need / 1e9:.1f} GB of "
                         f"memory (limit {max_memory_gb:g} GB, max_memory_gb); use --downscale {fit} or more")
    bg = np.array(BACKGROUNDS[background], dtype=np.float32)
    images = np.empty((len(files), k.height, k.width, 3), dtype=np.float32)
    for i, p in enumerate(files):
        with Image.open(p) as im:
            if downscale > 1 and im.format == "JPEG":
                im.draft("RGB", (k.width, k.height))  # decode at reduced size: much faster
            im = im.convert("RGBA")
            if im.size != (k.width, k.height):
                im = im.resize((k.width, k.height), Image.Resampling.BOX)
            a = np.asarray(im, dtype=np.float32) / 255.0
        images[i] = a[..., :3] * a[..., 3:] + bg * (1.0 - a[..., 3:])
    pose = np.stack(poses)
    center, scale = np.zeros(3), 1.0
    box = bound or BLENDER_BOUND
    if layout == "instant-ngp":
        ref = pose if split == "train" else np.stack(raw_poses(root, holdout))  # every split in the train frame
        center, scale = _normalisation(ref)
        box = bound or 0.375 * _number(doc, "aabb_scale", jpath, 1.0)
    pose = pose.copy()
    pose[:, :3, 3] = (pose[:, :3, 3] - center) * scale
    return Scene(torch.from_numpy(images), torch.from_numpy(pose).float(), k, [str(p) for p in files], float(box),
                 NEAR, layout, [float(c) for c in center], float(scale))


def _normalisation(poses: np.ndarray) -> tuple[np.ndarray, float]:
    center = focus_point(poses)
    dist = np.linalg.norm(poses[:, :3, 3] - center, axis=-1).mean()
    return center, 1.0 / max(float(dist), 1e-9)


def raw_poses(path: str | os.PathLike[str], holdout: int) -> list[np.ndarray]:
    """All of an Instant-NGP data set's training poses, unnormalised: every split is normalised with these."""
    root = Path(path)
    _, jpath, _, frames = _frames(root, "train", holdout)
    return [check_pose(f.get("transform_matrix"), f"{jpath}: frame {i}") for i, f in enumerate(frames)]


def load_split(cfg: NerfConfig, split: str) -> Scene:
    return load(cfg.data, split, cfg.downscale, cfg.background, cfg.holdout, cfg.max_memory_gb, cfg.bound)


def background(cfg: NerfConfig, device: torch.device) -> torch.Tensor:
    return torch.tensor(BACKGROUNDS[cfg.background], device=device)
