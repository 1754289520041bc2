"""Looking at G while it trains (and after, for `gan eval`): the coverage metrics of its samples,
and the pictures of G_ema that become the training GIF. Both draw from their own random streams, so
a run trains the same with or without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli.core import rundir
from dlcli.gan import data as gdata
from dlcli.gan import metrics, pictures
from dlcli.gan.build import noise
from dlcli.gan.config import GanConfig

CLASSIFIER = "classifier.safetensors"


@torch.no_grad()
def evaluate_generator(cfg: GanConfig, G: nn.Module, data: gdata.GanData, classifier: nn.Module | None,
                       n: int, threshold: int, seed: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Mode coverage (mixtures) or class coverage (digits) of n samples of G; {} for other data."""
    if data.modes is None and classifier is None:
        return {}
    was = G.training
    G.eval()
    with torch.random.fork_rng(devices=[]):
        g = torch.Generator().manual_seed(seed)
        x = data.to_data(G(noise(cfg, n, device, generator=g))).cpu()
    G.train(was)
    if data.modes is not None:
        assert data.sigma is not None
        return metrics.mode_coverage(x, data.modes, data.sigma, threshold)
    assert classifier is not None
    return metrics.class_coverage((x - 0.5) / 0.5, classifier, threshold)



def summary_line(ev: dict[str, Any]) -> str:
    if "modes" in ev:
        return f"{ev['modes']}/{ev['n_modes']} modes, {100 * ev['high_quality']:.1f}% high quality"
    if "classes" in ev:
        return f"{ev['classes']}/{ev['n_classes']} classes, confidence {ev['mean_confidence']:.2f}"
    return ""


class Snapshots:
    """Pictures of G_ema on a fixed noise batch, over a fixed real sample for 2-D data."""

    def __init__(self, cfg: GanConfig, data: gdata.GanData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        g = torch.Generator().manual_seed(cfg.seed + 7919)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 7919)
            if data.kind == "vector":
                self.z = noise(cfg, 1000, device, generator=g)
                self.real = data.to_data(data.sample(20_000)).numpy()
                self.bounds = float(abs(self.real[:, :2]).max()) * 1.15
            else:
                self.z = noise(cfg, 64, device, generator=g)

    @torch.no_grad()
    def png(self, G: nn.Module, step: int, note: str = "") -> bytes:
        was = G.training
        G.eval()
        x = G(self.z)
        G.train(was)
        title = f"{self.cfg.data}, step {step}" + (f": {note}" if note else "")
        if self.data.kind == "vector":
            return pictures.density_png(self.real, self.data.to_data(x).cpu().numpy(), title, self.bounds)
        size = x.shape[-1]
        return pictures.grid_png(x, 8, scale=max(1, 64 // size))


def digits_classifier(run: Path, resume: bool) -> nn.Module:
    """Train the digits classifier once per run (kept as classifier.safetensors for `gan eval`)."""
    path = run / CLASSIFIER
    model = metrics.DigitsClassifier()
    if resume and path.is_file():
        rundir.load_weights(model, path)
        return model.eval()
    images, labels = gdata.load_digits()
    x = torch.from_numpy(images)[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1], as the GAN sees them
    model, acc = metrics.train_digits_classifier(x, torch.from_numpy(labels))
    rundir.save_tensors(model.state_dict(), path, metadata={"held_out_accuracy": f"{acc:.4f}"})
    return model

