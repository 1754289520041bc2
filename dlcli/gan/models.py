"""Generators and discriminators: MLPs for vectors, DCGAN-style convolutions for images.

G maps noise z (B, z_dim) to a sample; D maps a sample to one logit (or, for
WGAN-GP and hinge, one unbounded critic score) per example. Spectral
normalisation (Miyato et al. 2018) can wrap every layer of D.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as sn


@dataclass
class GanNets:
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module  # the moving average of G's weights, used for sampling and evaluation


def _act(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.LeakyReLU(0.2)


class MLPGenerator(nn.Module):
    """z -> [Linear -> act] x layers -> Linear -> x (data dimension, no squashing)."""

    def __init__(self, z_dim: int, out_dim: int, hidden: int = 256, layers: int = 4, act: str = "relu") -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        d = z_dim
        for _ in range(layers):
            blocks += [nn.Linear(d, hidden), _act(act)]
            d = hidden
        blocks.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """x -> [Linear -> LeakyReLU] x layers -> Linear -> one score per example (B,)."""

    def __init__(self, in_dim: int, hidden: int = 256, layers: int = 4, act: str = "leaky_relu",
                 spectral: bool = False) -> None:
        super().__init__()
        wrap = sn if spectral else (lambda m: m)
        blocks: list[nn.Module] = []
        d = in_dim
        for _ in range(layers):
            blocks += [wrap(nn.Linear(d, hidden)), _act(act)]
            d = hidden
        blocks.append(wrap(nn.Linear(d, 1)))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def _ups(size: int) -> int:
    """Stride-2 steps from 4x4 to size x size."""
    return int(math.log2(size)) - 2


class DCGANGenerator(nn.Module):
    """Radford et al. 2016: z -> (width * 2^(k-1), 4, 4), then k transposed convolutions
    (4x4, stride 2) that double the size and halve the channels, BatchNorm + ReLU
    between, tanh at the end: (C, size, size) in [-1, 1]."""

    def __init__(self, z_dim: int, channels: int, size: int, width: int = 64) -> None:
        super().__init__()
        k = _ups(size)
        c = width * 2 ** (k - 1)
        blocks: list[nn.Module] = [nn.ConvTranspose2d(z_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        for _ in range(k - 1):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        blocks += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # (B, z) -> (B, z, 1, 1) -> (B, C, size, size)


class DCGANDiscriminator(nn.Module):
    """The mirror image: k strided convolutions (4x4, stride 2) from size to 4x4,
    doubling the channels, LeakyReLU(0.2); a 4x4 convolution to one score.
    BatchNorm after all but the first (off with `norm=False`: WGAN-GP's
    per-example gradient penalty and spectral norm do without it)."""

    def __init__(self, channels: int, size: int, width: int = 64, norm: bool = True, spectral: bool = False) -> None:
        super().__init__()
        wrap = sn if spectral else (lambda m: m)
        k = _ups(size)
        blocks: list[nn.Module] = [wrap(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(k - 1):
            blocks += [wrap(nn.Conv2d(c, c * 2, 4, 2, 1, bias=not norm))]
            blocks += [nn.BatchNorm2d(c * 2)] if norm else []
            blocks += [nn.LeakyReLU(0.2)]
            c *= 2
        blocks.append(wrap(nn.Conv2d(c, 1, 4, 1, 0)))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def dcgan_init(m: nn.Module) -> None:
    """DCGAN's initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build(arch: str, kind: str, shape: tuple[int, ...], z_dim: int, hidden: int, layers: int, width: int,
          act: str, spectral: bool, d_norm: bool, pack: int = 1) -> GanNets:
    """G, D and the EMA copy of G for the data `kind` and `shape`; D takes `pack` samples at once."""
    if arch == "auto":
        arch = "dcgan" if kind == "image" else "mlp"
    if arch == "dcgan":
        if kind != "image":
            raise ValueError("the dcgan networks need image data")
        c, size, _ = shape
        G: nn.Module = DCGANGenerator(z_dim, c, size, width)
        D: nn.Module = DCGANDiscriminator(c * pack, size, width, norm=d_norm and not spectral, spectral=spectral)
        G.apply(dcgan_init)
        D.apply(dcgan_init)
    else:
        out = math.prod(shape)
        G = MLPGenerator(z_dim, out, hidden, layers, act)
        D = MLPDiscriminator(out * pack, hidden, layers, "leaky_relu", spectral)
        if kind == "image":  # an MLP on images: flat vectors in, (C, H, W) in [-1, 1] out
            G = nn.Sequential(G, nn.Tanh(), nn.Unflatten(1, shape))
    G_ema = copy.deepcopy(G).requires_grad_(False)
    return GanNets(G, D, G_ema)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model; buffers (BatchNorm statistics) are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)  # one call for all
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)
