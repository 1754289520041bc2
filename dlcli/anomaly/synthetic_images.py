"""A synthetic data set in the MVTec AD layout, so that every image path is tested offline.

    ROOT/train/good/000.png                      normal textures
    ROOT/test/good/000.png
    ROOT/test/<defect>/000.png                   scratch, hole, stain
    ROOT/ground_truth/<defect>/000_mask.png      255 on the defect, 0 elsewhere

The texture is one woven pattern (two crossed sine gratings, a little noise) whose phase and colour jitter
from image to image; the defects are drawn on it: a scratch (a thin bright line), a hole (a dark disc with a
rim) and a stain (a soft coloured blot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFECTS = ("scratch", "hole", "stain")


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A normal image: (size, size, 3) float in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size] / size
    px, py = rng.uniform(0, 2 * np.pi, 2)
    weave = 0.5 + 0.25 * np.sin(2 * np.pi * 12 * x + px) * np.sin(2 * np.pi * 12 * y + py)
    base = np.array([0.55, 0.45, 0.35]) + rng.normal(0, 0.02, 3)
    img = weave[..., None] * base * 1.4 + rng.normal(0, 0.02, (size, size, 3))
    return np.clip(img, 0, 1)


def draw_defect(rng: np.random.Generator, img: np.ndarray, kind: str) -> np.ndarray:
    """Draw one defect on img (in place); its boolean mask."""
    size = img.shape[0]
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(0.25, 0.75, 2) * size
    if kind == "scratch":
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.3, 0.5) * size
        dy, dx = np.sin(angle), np.cos(angle)
        along = (y - cy) * dy + (x - cx) * dx
        across = np.abs(-(y - cy) * dx + (x - cx) * dy)
        mask = (np.abs(along) <= length / 2) & (across <= max(1.0, size / 80))
        img[mask] = np.array([0.95, 0.95, 0.9])
    elif kind == "hole":
        r = rng.uniform(0.06, 0.1) * size
        d = np.hypot(y - cy, x - cx)
        mask = d <= r
        img[mask] = 0.05
        img[(d > r) & (d <= r * 1.2)] *= 0.6  # a darker rim, part of the texture's damage but not the mask
    elif kind == "stain":
        ry, rx = rng.uniform(0.07, 0.13, 2) * size
        d = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
        mask = d <= 1
        tint = np.array([0.2, 0.35, 0.6])
        alpha = np.clip(1.2 - d, 0, 1)[..., None] * 0.8
        img[:] = np.where(mask[..., None], img * (1 - alpha) + tint * alpha, img)
    else:
        raise ValueError(f"unknown defect {kind}")
    return mask


def _save(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_dataset(root: str | Path, n_train: int = 8, n_good: int = 4, n_defect: int = 4, size: int = 64,
                 seed: int = 0, defects: tuple[str, ...] = DEFECTS) -> Path:
    """Write the set under root (its name is the object's name); root."""
    root = Path(root)
    rng = np.random.default_rng(seed)

    def u8(a: np.ndarray) -> np.ndarray:
        return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)

    for i in range(n_train):
        _save(root / "train" / "good" / f"{i:03d}.png", u8(texture(rng, size)))
    for i in range(n_good):
        _save(root / "test" / "good" / f"{i:03d}.png", u8(texture(rng, size)))
    for kind in defects:
        for i in range(n_defect):
            img = texture(rng, size)
            mask = draw_defect(rng, img, kind)
            _save(root / "test" / kind / f"{i:03d}.png", u8(img))
            _save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    return root
