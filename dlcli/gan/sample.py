"""`dlcli gan sample` and `dlcli gan eval`: use the generator of a trained run.

Sampling writes vectors as .npy (float32, data units) or .csv; images as a PNG
grid, a .npy array (uint8, (N, H, W) or (N, H, W, C)) or a folder of PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcli.core import rundir
from dlcli.core.io import atomic_write, check_output
from dlcli.core.runtime import resolve_device
from dlcli.errors import ConfigError, InputError, OutputExistsError
from dlcli.gan import data as gdata
from dlcli.gan import metrics, pictures
from dlcli.gan.build import build_nets, noise
from dlcli.gan.config import GENERATOR, SAMPLES, STAGE, GanConfig
from dlcli.gan.evaluate import CLASSIFIER, evaluate_generator


@dataclass
class GanRun:
    """A trained run: its config, G_ema (eval mode) and the data it models."""

    path: Path
    cfg: GanConfig
    G: nn.Module
    data: gdata.GanData  # shape, kind, map to data units and modes; no examples


def load_run(run_dir: str | Path, device: str = "cpu") -> GanRun:
    run = Path(run_dir)
    cfg, _ = rundir.open_run(run, STAGE, GanConfig, "a GAN run", needs=(GENERATOR,))
    path = run / GENERATOR
    t = rundir.load_tensors(path)
    try:
        shape = tuple(int(v) for v in t.pop("data.shape"))
        kind = "image" if int(t.pop("data.kind_image")) else "vector"
        shift, scale = t.pop("data.shift"), t.pop("data.scale")
    except KeyError as e:
        raise InputError(f"{path}: not a GAN generator file (no {e})") from None
    G = build_nets(cfg, kind, shape).G
    try:
        G.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("G.")})
    except RuntimeError as e:
        raise InputError(f"{path}: does not fit the model in config.yaml: {str(e).splitlines()[0]}") from None
    mm = gdata.mixture_modes(cfg.data) if cfg.data in gdata.MIXTURES and not Path(cfg.data).exists() else None
    data = gdata.GanData(cfg.data, kind, shape, None, shift, scale, *(mm if mm else (None, None)))
    return GanRun(run, cfg, G.to(device).eval(), data)


@torch.no_grad()
def generate(run: GanRun, n: int, seed: int = 0, truncation: float = 0.0, batch: int = 4096) -> torch.Tensor:
    """n samples in data units (vectors) or in [-1, 1] (images), on the CPU."""
    g = torch.Generator().manual_seed(seed)
    dev = next(run.G.parameters()).device
    out = []
    for i in range(0, n, batch):
        z = noise(run.cfg, min(batch, n - i), dev, truncation, generator=g)
        x = run.G(z)
        out.append((run.data.to_data(x) if run.data.kind == "vector" else x.clamp(-1, 1)).cpu())
    return torch.cat(out) if out else torch.zeros((0,) + run.data.shape)


def sample(run_dir: str | Path, n: int, output: str | Path, force: bool = False, seed: int = 0,
           truncation: float = 0.0, folder: bool = False, device: str = "auto") -> dict[str, Any]:
    """Write n samples of a run's generator to `output` (its suffix picks the format)."""
    if n < 1:
        raise ConfigError(f"n: must be at least 1, not {n}")
    if truncation < 0:
        raise ConfigError(f"truncation: must be >= 0, not {truncation}")
    out = Path(output)
    suffix = out.suffix.lower()
    gr = load_run(run_dir, str(resolve_device(device)))
    if folder or (gr.data.kind == "image" and not suffix):
        if gr.data.kind != "image":
            raise ConfigError(f"{out}: a folder of PNGs is for image runs; write vectors to .npy or .csv")
        return _write_folder(gr, n, out, force, seed, truncation)
    allowed = (".npy", ".csv") if gr.data.kind == "vector" else (".png", ".npy")
    if suffix not in allowed:
        raise ConfigError(f"{out}: a {gr.data.kind} run writes {' or '.join(allowed)}"
                          + (" or a folder (--folder)" if gr.data.kind == "image" else ""))
    check_output(out, force)
    x = generate(gr, n, seed, truncation)
    with atomic_write(out, force=force) as f:
        if suffix == ".png":
            f.write(pictures.grid_png(x, nrow=max(1, int(np.ceil(np.sqrt(n)))), scale=max(1, 64 // x.shape[-1])))
        elif suffix == ".csv":
            np.savetxt(f, x.numpy(), delimiter=",", fmt="%.7g")
        elif gr.data.kind == "vector":
            np.save(f, x.numpy().astype(np.float32))
        else:
            np.save(f, _uint8(x))
    return {"run": str(run_dir), "samples": n, "written": [str(out)]}


def _uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] (N, C, H, W) -> uint8 (N, H, W) or (N, H, W, C)."""
    a = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _write_folder(gr: GanRun, n: int, out: Path, force: bool, seed: int, truncation: float) -> dict[str, Any]:
    import imageio.v3 as iio

    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out}: folder is not empty (use --force to write into it)")
    out.mkdir(parents=True, exist_ok=True)
    images = _uint8(generate(gr, n, seed, truncation))
    written = []
    for i, im in enumerate(images):  # one file per sample: the output asked for
        p = out / f"sample-{i:05d}.png"
        with atomic_write(p, force=True) as f:
            f.write(iio.imwrite("<bytes>", im, extension=".png"))
        written.append(str(p))
    return {"run": str(gr.path), "samples": n, "written": [str(out)], "files": len(written)}


def evaluate(run_dir: str | Path, n: int = SAMPLES, threshold: int = 1, seed: int = 0,
             device: str = "auto") -> dict[str, Any]:
    """The coverage metrics of a run's generator (mixtures: modes; digits: classes) as a dict."""
    if n < 1 or threshold < 1:
        raise ConfigError("n and threshold: must be at least 1")
    dev = resolve_device(device)
    gr = load_run(run_dir, str(dev))
    classifier = None
    cpath = gr.path / CLASSIFIER
    if cpath.is_file():
        classifier = metrics.DigitsClassifier()
        rundir.load_weights(classifier, cpath)
        classifier.eval()
    ev = evaluate_generator(gr.cfg, gr.G, gr.data, classifier, n, threshold, seed, dev)
    if not ev:
        raise InputError(f"{run_dir}: data '{gr.cfg.data}' has no coverage metric (it is for ring8, grid25 and "
                         "digits)")
    return {"run": str(run_dir), "data": gr.cfg.data, **ev}
