"""Turning rendered tensors into pictures and writing them."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from dlcli.core.io import atomic_write


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def depth_to_rgb(depth: torch.Tensor, acc: torch.Tensor, lo: float | None = None, hi: float | None = None
                 ) -> np.ndarray:
    """Expected depth (H, W) divided by accumulation, coloured with matplotlib's turbo map (near = red, far =
    blue); where nothing was hit it is black. `lo`/`hi` fix the range (for a steady video)."""
    import matplotlib

    d = (depth / acc.clamp(min=1e-6)).cpu().numpy()
    hit = acc.cpu().numpy() > 0.5
    if lo is None or hi is None:
        vals = d[hit] if hit.any() else d.ravel()
        lo, hi = float(np.percentile(vals, 1)), float(np.percentile(vals, 99))
    x = 1.0 - np.clip((d - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = matplotlib.colormaps["turbo"](x)[..., :3] * hit[..., None]
    return to_uint8(rgb)


def write_png(path: str | os.PathLike[str], img: np.ndarray) -> None:
    import imageio.v3 as iio

    buf = io.BytesIO()
    iio.imwrite(buf, img, extension=".png")
    with atomic_write(Path(path), force=True) as f:
        f.write(buf.getvalue())
