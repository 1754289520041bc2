"""WinCLIP-style anomaly scores and maps from a CLIP model (Jeong et al., CVPR 2023), zero-shot and few-shot.

Zero-shot, from language alone:
- two text classes, normal and anomalous, each the mean of the unit text embeddings of a prompt ensemble
  (state words such as "flawless {}" / "damaged {}" times templates such as "a photo of a {}.");
- an image's score is the probability of the anomalous class: softmax over the two classes of
  exp(logit_scale) x cosine similarity with the image embedding;
- its map: windows of s x s patch tokens (each scale s, stride 1), each run through the image tower as an
  image of its own and scored like an image; a patch gets the harmonic mean of the scores of the windows
  covering it (a low score anywhere vetoes), and the scales are averaged.

Few-shot, with k normal reference images (WinCLIP+): a memory of the references' unit patch features and
window features per scale; each test feature's distance to its nearest memory entry, (1 - cos) / 2,
spread over the patches it covers (mean) and averaged over the feature kinds, is the visual map. The map is
`text_weight` x the language map + the rest x the visual map; the image score the same mix of the language
score and the visual map's maximum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from dlcli.models.clip import CLIP

Tokenize = Callable[[list[str]], torch.Tensor]  # prompts -> token ids (B, T)

NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ANOMALOUS_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "a cropped photo of the {}.", "a close-up photo of a {}.",
             "a close-up photo of the {}.", "a bright photo of a {}.", "a dark photo of the {}.",
             "a blurry photo of the {}.", "a jpeg corrupted photo of the {}.", "a photo of a small {}.",
             "a photo of a large {}.", "a photo of the {} for visual inspection.",
             "a photo of a {} for anomaly detection.")


def prompts(obj: str) -> tuple[list[str], list[str]]:
    """The normal and the anomalous prompt ensembles for an object's name."""
    def expand(states: Sequence[str]) -> list[str]:
        return [t.format(s.format(obj)) for s in states for t in TEMPLATES]

    return expand(NORMAL_STATES), expand(ANOMALOUS_STATES)


@torch.no_grad()
def text_classes(model: CLIP, tokenize: Tokenize, obj: str) -> torch.Tensor:
    """(2, d) unit vectors: the normal class, then the anomalous one."""
    device = model.logit_scale.device
    rows = []
    for ensemble in prompts(obj):
        emb = F.normalize(model.encode_text(tokenize(ensemble).to(device)).float(), dim=-1)
        rows.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(rows)


def windows(grid: int, side: int) -> torch.Tensor:
    """(K, side * side) patch indices (row * grid + col) of every side x side window, stride 1."""
    side = min(side, grid)
    r = torch.arange(grid - side + 1)
    top = (r[:, None] * grid + r[None, :]).reshape(-1)  # the top-left patch of each window
    offsets = (torch.arange(side)[:, None] * grid + torch.arange(side)[None, :]).reshape(-1)
    return top[:, None] + offsets[None, :]


@dataclass
class Features:
    """What the image tower gives for a batch of images, every vector unit length."""

    image: torch.Tensor  # (B, d): the class token, projected
    patches: torch.Tensor  # (B, N, d): each patch token, projected
    windows: dict[int, torch.Tensor] = field(default_factory=dict)  # side -> (B, K, d)


@torch.no_grad()
def features(model: CLIP, pixels: torch.Tensor, scales: Sequence[int], chunk: int,
             seconds: dict[str, float] | None = None) -> Features:
    """The unit features of normalised pixels (B, 3, S, S); time spent per phase added to `seconds`."""
    t0 = time.perf_counter()
    cls, tokens = model.image_tokens(pixels)
    image = F.normalize(model.project_image(cls).float(), dim=-1)
    patches = F.normalize(model.project_image(tokens).float(), dim=-1)
    t1 = time.perf_counter()
    grid = model.config.grid
    wins = {s: F.normalize(model.encode_image_windows(pixels, windows(grid, s).to(pixels.device), chunk).float(),
                           dim=-1) for s in scales}
    if seconds is not None:
        seconds["image_tower"] = seconds.get("image_tower", 0.0) + t1 - t0
        seconds["windows"] = seconds.get("windows", 0.0) + time.perf_counter() - t1
    return Features(image, patches, wins)


def anomalous_probability(model: CLIP, emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(..., d) unit embeddings -> (...) the softmax probability of the anomalous class."""
    logits = model.logit_scale.exp().float() * emb @ text.T
    return logits.softmax(-1)[..., 1]


def _to_patches(values: torch.Tensor, idx: torch.Tensor, n: int, harmonic: bool) -> torch.Tensor:
    """Window values (B, K) -> patch values (B, N): the harmonic or the arithmetic mean of the windows covering
    each patch."""
    b, m = values.size(0), idx.size(1)
    flat = idx.reshape(-1).to(values.device).expand(b, -1)  # (B, K * M)
    v = values.repeat_interleave(m, dim=1)  # each window's value once per patch it covers
    v = 1.0 / v.clamp_min(1e-12) if harmonic else v
    total = values.new_zeros(b, n).scatter_add_(1, flat, v)
    count = values.new_zeros(b, n).scatter_add_(1, flat, torch.ones_like(v))
    return count / total if harmonic else total / count


def language(model: CLIP, f: Features, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-shot: image scores (B,) and patch maps (B, grid, grid)."""
    grid = model.config.grid
    n = grid * grid
    maps = [_to_patches(anomalous_probability(model, w, text), windows(grid, s), n, harmonic=True)
            for s, w in f.windows.items()]
    return anomalous_probability(model, f.image, text), torch.stack(maps).mean(0).view(-1, grid, grid)


@dataclass
class Memory:
    """The reference images' unit features: patches (R * N, d) and each scale's windows (R * K, d)."""

    patches: torch.Tensor
    windows: dict[int, torch.Tensor]

    @classmethod
    def of(cls, refs: Sequence[Features]) -> Memory:
        return cls(torch.cat([r.patches.flatten(0, 1) for r in refs]),
                   {s: torch.cat([r.windows[s].flatten(0, 1) for r in refs]) for s in refs[0].windows})


def _nearest_distance(x: torch.Tensor, memory: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(B, K, d) unit vectors -> (B, K): (1 - the best cosine similarity with the memory) / 2."""
    flat = x.flatten(0, 1)
    best = torch.cat([(flat[i:i + chunk] @ memory.T).amax(-1) for i in range(0, len(flat), chunk)])
    return ((1 - best) / 2).view(x.shape[:2])


def visual(model: CLIP, f: Features, memory: Memory) -> torch.Tensor:
    """Few-shot: patch maps (B, grid, grid) of the distance to the nearest normal reference feature."""
    grid = model.config.grid
    n = grid * grid
    maps = [_nearest_distance(f.patches, memory.patches)]
    for s, w in f.windows.items():
        maps.append(_to_patches(_nearest_distance(w, memory.windows[s]), windows(grid, s), n, harmonic=False))
    return torch.stack(maps).mean(0).view(-1, grid, grid)


@torch.no_grad()
def score(model: CLIP, f: Features, text: torch.Tensor, memory: Memory | None,
          text_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Image scores (B,) and patch maps (B, grid, grid): zero-shot without a memory, few-shot with one."""
    p, lang = language(model, f, text)
    if memory is None:
        return p, lang
    vis = visual(model, f, memory)
    w = text_weight
    return w * p + (1 - w) * vis.flatten(1).amax(-1), w * lang + (1 - w) * vis
