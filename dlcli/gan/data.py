"""What a GAN learns from: built-in 2-D mixtures, array files, image folders.

Every source becomes a `GanData`: vectors (N, D) or images (N, C, H, W) in the
space the networks see, and the affine map back to data units
(`data = model * scale + shift`). Built-in mixtures have no finite data set:
each batch is drawn afresh, as in the papers.

    ring8    8 Gaussians, sigma 0.02, evenly spaced on a circle of radius 2 (Unrolled GAN)
    grid25   25 Gaussians, sigma 0.05, centred on {-4, -2, 0, 2, 4}^2 (VEEGAN, PacGAN)
    spiral   a noisy two-turn spiral
    moons    two interleaved half circles (scikit-learn's make_moons shape)
    digits   scikit-learn's 8x8 handwritten digits (0..16 grey levels, labelled)

Images are scaled to [-1, 1] (tanh outputs); array vectors are standardised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlcli.core.io import check_input_file
from dlcli.errors import ConfigError, InputError
from dlcli.gan.config import COLORS, IMAGE_SIZES

MIXTURES = ("ring8", "grid25", "spiral", "moons")
BUILTIN = MIXTURES + ("digits",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz", ".csv")


@dataclass
class GanData:
    """A data source in model space, and the map back to data units."""

    name: str
    kind: str  # "vector" | "image"
    shape: tuple[int, ...]  # (D,) or (C, H, W)
    x: torch.Tensor | None  # the finite data set (N, *shape), or None for a built-in sampler
    shift: torch.Tensor  # data = model * scale + shift (broadcast over shape)
    scale: torch.Tensor
    modes: torch.Tensor | None = None  # mixture centres (K, 2), for the mode-coverage metric
    sigma: float | None = None  # their standard deviation
    labels: np.ndarray | None = None  # class labels where the data set has them (digits)

    def sample(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """A batch of n real examples in model space (torch's global RNG, so checkpoints restore it)."""
        if self.x is not None:
            return self.x[torch.randint(len(self.x), (n,))].to(device)
        return ((sample_builtin(self.name, n) - self.shift) / self.scale).to(device)

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> data units."""
        return x * self.scale.to(x.device) + self.shift.to(x.device)


# --------------------------------------------------------------------------
# Built-in 2-D distributions


def mixture_modes(name: str) -> tuple[torch.Tensor, float] | None:
    """Centres (K, 2) and sigma of a Gaussian mixture; None for spiral and moons."""
    if name == "ring8":
        angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return (2.0 * torch.stack([angle.cos(), angle.sin()], 1)).float(), 0.02
    if name == "grid25":
        v = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(v, v), 0.05
    return None


def sample_builtin(name: str, n: int) -> torch.Tensor:
    """n points (n, 2) from a built-in distribution."""
    mm = mixture_modes(name)
    if mm is not None:
        centres, sigma = mm
        k = torch.randint(len(centres), (n,))
        return centres[k] + sigma * torch.randn(n, 2)
    if name == "spiral":
        t = 4 * math.pi * torch.rand(n).sqrt()  # uniform along the arc, two turns
        r = 0.5 + t / (2 * math.pi)
        return torch.stack([r * t.cos(), r * t.sin()], 1) + 0.05 * torch.randn(n, 2)
    if name == "moons":
        t = math.pi * torch.rand(n)
        upper = torch.rand(n) < 0.5
        x = torch.where(upper, t.cos(), 1 - t.cos())
        y = torch.where(upper, t.sin(), 0.5 - t.sin())
        return torch.stack([x, y], 1) + 0.05 * torch.randn(n, 2)
    raise ConfigError(f"data: '{name}' is not a built-in distribution ({', '.join(MIXTURES)})")


# --------------------------------------------------------------------------
# Loading


def load(source: str, image_size: int = 0, color: str = "auto", standardize: bool = True) -> GanData:
    """A built-in name, an array file (.npy/.npz/.csv) or a folder of PNG/JPEG images.

    With `standardize`, vectors are trained on as (x - mean) / std per coordinate
    (built-in distributions: the mean and std of 100,000 draws with a fixed seed).
    """
    if color not in COLORS:
        raise ConfigError(f"color: '{color}' is not one of {', '.join(COLORS)}")
    if image_size and image_size not in IMAGE_SIZES:
        raise ConfigError(f"image_size: {image_size} is not one of {', '.join(map(str, IMAGE_SIZES))} (or 0: as is)")
    p = Path(source)
    if source in BUILTIN and not p.exists():
        if source == "digits":
            images, labels = load_digits()
            return _images(source, images[:, None], 16.0, image_size, color, labels)
        mm = mixture_modes(source)
        shift, scale = torch.zeros(2), torch.ones(2)
        if standardize:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                x = sample_builtin(source, 100_000)
            shift, scale = x.mean(0), x.std(0)
        return GanData(source, "vector", (2,), None, shift, scale, *(mm if mm else (None, None)))
    if p.is_dir():
        return _images(source, *read_image_folder(p, image_size, color), image_size, color)
    if not p.exists():
        raise InputError(f"{source}: no such file or directory (built-in data: {', '.join(BUILTIN)})")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{source}: a single image; give the folder that holds the training images")
    if p.suffix.lower() not in ARRAY_SUFFIXES:
        raise InputError(f"{source}: unknown data format '{p.suffix}' (expected .npy, .npz, .csv or a folder "
                         "of PNG/JPEG images)")
    return from_array(source, read_array(p), image_size, color, standardize)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images (1797, 8, 8) in 0..16 and labels."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise InputError("data 'digits' needs scikit-learn: pip install 'dlcli[digits]'") from None
    d = sk_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def read_array(p: Path) -> np.ndarray:
    """A numeric array from .npy, .npz (its only array, or 'x') or CSV (an optional header row)."""
    check_input_file(p, "array")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if not keys:
                    raise InputError(f"{p}: holds no arrays")
                key = "x" if "x" in keys else keys[0]
                if len(keys) > 1 and key != "x":
                    raise InputError(f"{p}: holds {len(keys)} arrays ({', '.join(keys[:5])}); name the data 'x'")
                a = z[key]
        else:
            a = _read_csv(p)
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{p}: cannot read the array ({str(e).splitlines()[0]})") from None
    if a.dtype.kind not in "biuf":
        raise InputError(f"{p}: holds {a.dtype} values, expected numbers")
    return a


def _read_csv(p: Path) -> np.ndarray:
    with open(p, encoding="utf-8-sig") as f:
        first = f.readline()
    cells = [c.strip() for c in first.split(",")]
    header = any(not _is_number(c) for c in cells)
    try:
        a = np.loadtxt(p, delimiter=",", skiprows=int(header), dtype=np.float64, ndmin=2, encoding="utf-8-sig")
    except ValueError as e:
        raise InputError(f"{p}: not a CSV of numbers ({str(e).splitlines()[0]})") from None
    return a


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def from_array(name: str, a: np.ndarray, image_size: int = 0, color: str = "auto", standardize: bool = True
               ) -> GanData:
    """(N, D) vectors, or images (N, H, W), (N, H, W, C) or (N, C, H, W)."""
    if a.ndim < 2 or a.ndim > 4:
        raise InputError(f"{name}: array has shape {a.shape}; expected (N, D) vectors or (N, H, W), (N, H, W, C) "
                         "images")
    if len(a) < 2:
        raise InputError(f"{name}: only {len(a)} example; a GAN needs a data set")
    bad = int((~np.isfinite(a)).sum()) if a.dtype.kind == "f" else 0
    if bad:
        raise InputError(f"{name}: {bad} values are NaN or infinite")
    if a.ndim == 2:
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        mean, std = x.mean(0), x.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))  # constant columns stay put
        if not standardize:
            mean, std = torch.zeros_like(mean), torch.ones_like(std)
        return GanData(name, "vector", (a.shape[1],), (x - mean) / std, mean, std)
    if a.ndim == 3:
        a = a[:, None]
    elif a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3):
        a = np.moveaxis(a, -1, 1)
    if a.shape[1] not in (1, 3, 4):
        raise InputError(f"{name}: image array has shape {a.shape}; expected 1, 3 or 4 channels, first or last")
    top = 255.0 if a.dtype == np.uint8 or float(a.max()) > 1.0 else 1.0
    if float(a.min()) < 0:
        raise InputError(f"{name}: image values must be >= 0 (0..1 or 0..255), found {float(a.min()):g}")
    return _images(name, a, top, image_size, color)


def _images(name: str, a: np.ndarray, top: float, image_size: int, color: str,
            labels: np.ndarray | None = None) -> GanData:
    """Images (N, C, H, W) with values in 0..top -> model space [-1, 1], resized and coloured as asked."""
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) / top
    if x.shape[1] == 4:
        x = x[:, :3]  # drop alpha
    gray = color == "gray" or (color == "auto" and x.shape[1] == 1)
    if gray and x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif not gray and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[2:]
    if image_size:
        if h != w:  # centre crop to a square first
            s = min(h, w)
            x = x[:, :, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        if x.shape[2] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
    elif h != w or h not in IMAGE_SIZES:
        raise InputError(f"{name}: images are {h}x{w} pixels; the convolutional networks take square 8, 16, 32 "
                         "or 64 px images: set image_size (e.g. --image-size 32) to resize them")
    c, s = x.shape[1], x.shape[2]
    half = torch.full((c, 1, 1), 0.5)
    return GanData(name, "image", (c, s, s), (x.contiguous() - 0.5) / 0.5, half, half, labels=labels)


def read_image_folder(folder: Path, image_size: int = 0, color: str = "auto") -> tuple[np.ndarray, float]:
    """All PNG/JPEG files under `folder` (sorted) as (N, C, H, W) uint8 and 255.

    Without image_size, every image must have the same size; with it, each
    image is centre-cropped to a square and resized (Pillow, Lanczos).
    """
    import imageio.v3 as iio
    from PIL import Image

    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no PNG or JPEG images found")
    images: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for f in files:
        try:
            im = iio.imread(f, plugin="pillow")
        except Exception as e:  # imageio/Pillow raise many types for a damaged file
            raise InputError(f"{f}: cannot read the image ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                             ) from None
        if im.ndim == 3 and im.shape[-1] == 1:
            im = im[..., 0]
        if im.ndim not in (2, 3) or (im.ndim == 3 and im.shape[-1] not in (3, 4)):
            raise InputError(f"{f}: unsupported image layout {im.shape}")
        if im.dtype != np.uint8:
            im = (im.astype(np.float64) * 255.0 / max(float(np.iinfo(im.dtype).max) if im.dtype.kind in "iu"
                                                       else 1.0, 1.0)).round().clip(0, 255).astype(np.uint8)
        if im.ndim == 3:
            im = im[..., :3]
        if image_size:
            pil = Image.fromarray(im)
            w, h = pil.size
            s = min(w, h)
            pil = pil.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            im = np.asarray(pil.resize((image_size, image_size), Image.Resampling.LANCZOS))
        elif first is None:
            first = (f, im.shape[:2])
        elif im.shape[:2] != first[1]:
            raise InputError(f"{f}: is {im.shape[1]}x{im.shape[0]} pixels but {first[0].name} is "
                             f"{first[1][1]}x{first[1][0]}; set image_size (e.g. --image-size 32) to resize them all")
        images.append(im)
    rgb = any(im.ndim == 3 for im in images)
    if rgb and color != "gray":
        images = [np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im for im in images]
        arr = np.stack(images).transpose(0, 3, 1, 2)
    elif rgb:  # gray asked: convert with the ITU-R 601 weights
        arr = np.stack([im if im.ndim == 2 else (im @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
                        for im in images])[:, None]
    else:
        arr = np.stack(images)[:, None]
    if len(arr) < 2:
        raise InputError(f"{folder}: only one image; a GAN needs a data set")
    return arr, 255.0
