"""How many modes a generator covers, and how well.

Mixtures (the protocol of VEEGAN, Srivastava et al. 2017, also used by
PacGAN): draw 2,500 samples; a sample is *high quality* when it lies within
3 standard deviations of its nearest mode; a mode is *captured* when it is
the nearest mode of at least `threshold` high-quality samples. The reverse KL
divergence KL(q || p) compares q, the histogram of nearest modes over all
samples, with p, the data's (uniform) weights on the modes.

Labelled images (scikit-learn's digits): a small classifier, trained once on
the real digits, labels the generated ones; a class is covered when at least
`threshold` samples are assigned to it; mean confidence is the mean of the
classifier's top probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLASSIFIER_SEED = 0


def reverse_kl(counts: torch.Tensor, p: torch.Tensor) -> float:
    """KL(q || p) = sum_k q_k log(q_k / p_k), q = counts / sum; empty bins add nothing."""
    q = counts.double() / counts.sum()
    nz = q > 0
    return float((q[nz] * (q[nz] / p.double()[nz]).log()).sum())


def mode_coverage(samples: torch.Tensor | np.ndarray, modes: torch.Tensor, sigma: float,
                  threshold: int = 1) -> dict[str, Any]:
    """The VEEGAN numbers for samples (N, 2) of a mixture with centres `modes` (K, 2)."""
    x = torch.as_tensor(samples, dtype=torch.float64)
    centres = modes.double()
    dist = torch.cdist(x, centres)  # (N, K)
    nearest_d, nearest = dist.min(1)
    high = nearest_d <= 3 * sigma
    k = len(centres)
    hq_counts = torch.bincount(nearest[high], minlength=k)
    all_counts = torch.bincount(nearest, minlength=k)
    return {
        "samples": len(x),
        "modes": int((hq_counts >= threshold).sum()),
        "n_modes": k,
        "high_quality": float(high.double().mean()) if len(x) else 0.0,
        "reverse_kl": reverse_kl(all_counts, torch.full((k,), 1.0 / k)) if len(x) else None,
        "threshold": threshold,
        "mode_counts": hq_counts.tolist(),
    }


# --------------------------------------------------------------------------
# The digits classifier


class DigitsClassifier(nn.Module):
    """8x8 grey image in [-1, 1] -> 10 class logits: a two-layer MLP."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_digits_classifier(images: torch.Tensor, labels: torch.Tensor, steps: int = 300
                            ) -> tuple[DigitsClassifier, float]:
    """Fit on 80% of the digits (full batch, Adam), return it and its held-out accuracy.

    Uses its own generator and restores torch's global RNG, so a GAN run is
    the same with or without it.
    """
    state = torch.get_rng_state()
    try:
        torch.manual_seed(CLASSIFIER_SEED)
        g = torch.Generator().manual_seed(CLASSIFIER_SEED)
        perm = torch.randperm(len(images), generator=g)
        n = int(0.8 * len(images))
        tr, te = perm[:n], perm[n:]
        model = DigitsClassifier()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(steps):
            loss = F.cross_entropy(model(images[tr]), labels[tr])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float((model(images[te]).argmax(1) == labels[te]).double().mean())
    finally:
        torch.set_rng_state(state)
    return model.eval(), acc


@torch.no_grad()
def class_coverage(images: torch.Tensor, classifier: nn.Module, threshold: int = 1,
                   n_classes: int = 10) -> dict[str, Any]:
    """Classes covered and mean confidence of generated digits (N, 1, H, W) in [-1, 1]."""
    x = images.float().cpu()
    if x.shape[-1] != 8:
        x = F.interpolate(x, size=(8, 8), mode="area")
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    probs = classifier(x).softmax(1)
    conf, pred = probs.max(1)
    counts = torch.bincount(pred, minlength=n_classes)
    return {
        "samples": len(x),
        "classes": int((counts >= threshold).sum()),
        "n_classes": n_classes,
        "mean_confidence": float(conf.mean()),
        "reverse_kl": reverse_kl(counts, torch.full((n_classes,), 1.0 / n_classes)),
        "threshold": threshold,
        "class_counts": counts.tolist(),
    }
