"""Pictures of training: samples over the real density (2-D), image grids,
the animated GIF of the snapshots, the loss curves."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch


def grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> one uint8 picture (rows x cols tiles), grey or RGB."""
    import torch.nn.functional as F

    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    x = torch.cat([x, torch.full((nrows * ncol - n, c, h, w), 255, dtype=torch.uint8)])  # blank tiles
    x = F.pad(x, (pad, 0, pad, 0), value=255)  # a white line above and left of each tile
    x = x.view(nrows, ncol, c, h + pad, w + pad).permute(2, 0, 3, 1, 4).reshape(c, nrows * (h + pad),
                                                                                  ncol * (w + pad))
    out = F.pad(x, (0, pad, 0, pad), value=255).permute(1, 2, 0).numpy()
    return out[..., 0] if c == 1 else out


def grid_png(images: torch.Tensor, nrow: int = 8, scale: int = 1) -> bytes:
    """An image grid as PNG bytes, upscaled by `scale` (nearest) so small images stay visible."""
    import imageio.v3 as iio

    pic = grid(images, nrow)
    if scale > 1:
        pic = pic.repeat(scale, 0).repeat(scale, 1)
    return iio.imwrite("<bytes>", pic, extension=".png")


def density_png(real: np.ndarray, fake: np.ndarray, title: str = "", bounds: float | None = None) -> bytes:
    """Generated points (red) over a 2-D histogram of real ones (grey): what a
    mixture run looks like. Only the first two coordinates are drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if bounds is None:
        bounds = float(np.abs(real[:, :2]).max()) * 1.15
    fig = Figure(figsize=(5, 5), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    edges = np.linspace(-bounds, bounds, 201)
    hist, _, _ = np.histogram2d(real[:, 0], real[:, 1], bins=(edges, edges))
    ax.imshow(np.log1p(hist.T), origin="lower", extent=(-bounds, bounds, -bounds, bounds), cmap="Greys",
              interpolation="bilinear")
    ax.scatter(fake[:, 0], fake[:, 1], s=2, c="tab:red", alpha=0.5, linewidths=0)
    ax.set_xlim(-bounds, bounds)
    ax.set_ylim(-bounds, bounds)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def gif(frames: list[Path], path: Path, seconds_per_frame: float = 0.4) -> None:
    """An animated GIF of the snapshot PNGs, looping, written atomically."""
    import imageio.v3 as iio

    from dlcli.core.io import atomic_write

    pics = [iio.imread(f) for f in frames]
    shape = pics[0].shape
    pics = [p for p in pics if p.shape == shape]  # snapshots of one run share a size
    data = iio.imwrite("<bytes>", np.stack(pics), extension=".gif", duration=int(seconds_per_frame * 1000),
                       loop=0)
    with atomic_write(path, force=True) as f:
        f.write(data)
