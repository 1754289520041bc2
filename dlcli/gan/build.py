"""What a GanConfig builds: the data, G and D, the noise z, and the packed batches D judges."""

from __future__ import annotations

import torch

from dlcli.errors import ConfigError
from dlcli.gan import data as gdata
from dlcli.gan.config import GanConfig
from dlcli.gan.models import GanNets, build


def load_data(cfg: GanConfig) -> gdata.GanData:
    return gdata.load(cfg.data, cfg.image_size, cfg.color, cfg.standardize)


def build_nets(cfg: GanConfig, kind: str, shape: tuple[int, ...]) -> GanNets:
    try:
        return build(cfg.arch, kind, shape, cfg.z_dim, cfg.hidden, cfg.layers, cfg.width, cfg.activation,
                     cfg.spectral_norm, d_norm=cfg.loss != "wgan-gp", pack=cfg.pack)
    except ValueError as e:
        raise ConfigError(f"arch: {e}") from None


def noise(cfg: GanConfig, n: int, device: torch.device | str = "cpu", truncation: float = 0.0,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """z ~ N(0, I) or U(-1, 1)^z_dim; with truncation t > 0, Gaussian entries beyond |t| are redrawn
    (the truncation trick) and uniform ones are scaled into [-t, t] when t < 1."""
    shape = (n, cfg.z_dim)
    if cfg.noise == "uniform":
        z = torch.rand(shape, generator=generator) * 2 - 1
        return (z * truncation if 0 < truncation < 1 else z).to(device)
    z = torch.randn(shape, generator=generator)
    if truncation > 0:
        outside = z.abs() > truncation
        while outside.any():  # each pass redraws the entries still outside; few passes for t >= 0.5
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
            outside = z.abs() > truncation
    return z.to(device)


def packed(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018): groups of `pack` consecutive examples side by side,
    (B, D) -> (B/pack, pack*D) for vectors, (B, C, H, W) -> (B/pack, pack*C, H, W) for images."""
    if pack == 1:
        return x
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])
