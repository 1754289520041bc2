"""CLIP: an image tower and a text tower trained so that an image and its caption land close together.

    image (B, 3, H, W) -> cut into P x P patches -> each patch a vector (one linear map, the conv)
        -> a learned class token in front -> + learned positions -> LayerNorm -> pre-LN Transformer
        -> the class token's output -> LayerNorm -> projection -> image embedding (B, d)
    text ids (B, T) -> token vectors + learned positions -> pre-LN Transformer with a causal mask
        -> LayerNorm -> the output at the end-of-text token -> projection -> text embedding (B, d)

Zero-shot classification compares one image embedding with the embeddings of captions such as
"a photo of a cat": both unit length, cosine similarity times `logit_scale.exp()`, softmax over
the captions.

What WinCLIP-style anomaly maps need is exposed: `image_tokens` returns the class token and every
patch token before the final LayerNorm and projection, `project_image` applies those two to any
tokens (as CLIP does for the class token), and `encode_image_windows` runs the image tower on the
class token plus a window (a subset) of the patch tokens, each keeping its own position.

The module names are dlcli's; dlcli/hf/clip.py maps the tensors of Hugging Face's CLIPModel and of
OpenCLIP onto them. Image preprocessing (`to_pixels`) and tokenization (`tokenize`) live here too,
so that every user of the model prepares its inputs the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The mean and standard deviation of each channel OpenAI's CLIP was trained with.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
ACTIVATIONS = ("quick_gelu", "gelu")


@dataclass
class TowerConfig:
    """One Transformer stack: width, depth, heads, the MLP's hidden size, its activation
    (quick_gelu = x * sigmoid(1.702 x), OpenAI's; gelu = the exact one) and LayerNorm's eps."""

    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp: int = 3072
    act: str = "quick_gelu"
    eps: float = 1e-5


@dataclass
class CLIPConfig:
    """The shape of a CLIP model. Defaults: ViT-B/16 at 224 px, as OpenAI trained it."""

    embed_dim: int = 512  # d, the shared space both towers project into
    image_size: int = 224
    patch_size: int = 16
    vocab_size: int = 49408
    context_length: int = 77
    eos_id: int = -1  # the text embedding is read at the first eos_id; -1: at the largest id (OpenAI's EOT)
    vision: TowerConfig = field(default_factory=TowerConfig)
    text: TowerConfig = field(default_factory=lambda: TowerConfig(width=512, layers=12, heads=8, mlp=2048))

    @property
    def grid(self) -> int:
        """Patches per side: the image tower sees grid * grid patch tokens."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the tower's input: the shortest side resized to `image_size`
    (bicubic), the centre square cut out, values in [0, 1] normalised per channel."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD


class Attention(nn.Module):
    """Multi-head self-attention: q, k, v from one linear map, softmax(q k^T / sqrt(d_k)) v per head,
    the heads concatenated and mixed by `proj`. `causal` hides later positions (the text tower)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(x).split(w, dim=-1)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, w))


class Block(nn.Module):
    """A pre-LayerNorm residual block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, cfg: TowerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.attn = Attention(cfg.width, cfg.heads)
        self.ln2 = nn.LayerNorm(cfg.width, eps=cfg.eps)
        self.fc = nn.Linear(cfg.width, cfg.mlp)
        self.proj = nn.Linear(cfg.mlp, cfg.width)
        self.act = cfg.act

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h = h * torch.sigmoid(1.702 * h) if self.act == "quick_gelu" else F.gelu(h)
        return self.proj(h)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), causal)
        return x + self.mlp(self.ln2(x))


class ImageTower(nn.Module):
    """The vision Transformer (ViT). Token 0 is the class token; tokens 1.. are the patches, row by row."""

    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        w = cfg.vision.width
        self.patch = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.cls = nn.Parameter(torch.zeros(w))
        self.pos = nn.Parameter(torch.zeros(cfg.grid * cfg.grid + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=cfg.vision.eps)
        self.blocks = nn.ModuleList(Block(cfg.vision) for _ in range(cfg.vision.layers))
        self.ln_post = nn.LayerNorm(w, eps=cfg.vision.eps)
        self.proj = nn.Linear(w, cfg.embed_dim, bias=False)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the input tokens (B, 1 + N, w): class token, then the patches, each plus its position."""
        patches = self.patch(pixels).flatten(2).transpose(1, 2)  # (B, N, w): one vector per patch
        cls = self.cls.expand(patches.size(0), 1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos

    def run(self, tokens: torch.Tensor) -> torch.Tensor:
        """The Transformer over any set of embedded tokens (B, T, w): LayerNorm, then the blocks."""
        x = self.ln_pre(tokens)
        for block in self.blocks:
            x = block(x)
        return x


class TextTower(nn.Module):
    """The text Transformer: causal, read at the end-of-text token."""

    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        w = cfg.text.width
        self.tok = nn.Embedding(cfg.vocab_size, w)
        self.pos = nn.Parameter(torch.zeros(cfg.context_length, w))
        self.blocks = nn.ModuleList(Block(cfg.text) for _ in range(cfg.text.layers))
        self.ln_final = nn.LayerNorm(w, eps=cfg.text.eps)
        self.proj = nn.Linear(w, cfg.embed_dim, bias=False)


class CLIP(nn.Module):
    """The two towers and the learned temperature (`logit_scale`, stored as a log)."""

    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        self.config = cfg
        self.visual = ImageTower(cfg)
        self.text = TextTower(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def _check(self, pixels: torch.Tensor) -> None:
        s = self.config.image_size
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, s, s):
            raise ValueError(f"pixels of shape {tuple(pixels.shape)}; this model takes (B, 3, {s}, {s})")

    def image_tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pixels (B, 3, S, S) -> the class token (B, w) and the patch tokens (B, N, w),
        N = grid * grid row by row, as the last block leaves them (before ln_post and the projection)."""
        self._check(pixels)
        x = self.visual.run(self.visual.embed(pixels))
        return x[:, 0], x[:, 1:]

    def project_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (..., w) -> (..., d): the final LayerNorm and projection CLIP applies to the class token."""
        return self.visual.proj(self.visual.ln_post(tokens))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (B, 3, S, S) -> image embeddings (B, d), not normalised to unit length."""
        return self.project_image(self.image_tokens(pixels)[0])

    def encode_image_windows(self, pixels: torch.Tensor, windows: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """Each window as an image of its own: the tower runs on the class token plus the patch tokens
        a window names (each with its own position, as in the full image), and the class token's output
        is projected.

        pixels (B, 3, S, S); windows (K, M) long: the patch indices (row * grid + col, 0-based) of K
        windows of M patches each (one size per call; call again for another scale).
        Returns (B, K, d). Windows run `chunk` images' worth at a time, to bound memory.
        """
        self._check(pixels)
        tokens = self.visual.embed(pixels)  # (B, 1 + N, w), positions added
        b, k = tokens.size(0), windows.size(0)
        index = torch.cat([torch.zeros(k, 1, dtype=torch.long, device=windows.device), windows + 1], dim=1)
        out = []
        for img in tokens:  # (1 + N, w)
            sub = img[index]  # (K, 1 + M, w): the class token and the window's patches
            parts = [self.visual.run(sub[i:i + chunk])[:, 0] for i in range(0, k, chunk)]
            out.append(self.project_image(torch.cat(parts)))
        return torch.stack(out) if out else tokens.new_zeros(b, k, self.config.embed_dim)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), T <= context_length, each row holding an end-of-text token (padding after it
        is ignored: the mask is causal) -> text embeddings (B, d), not normalised."""
        t = self.text
        x = t.tok(ids) + t.pos[: ids.size(1)]
        for block in t.blocks:
            x = block(x, causal=True)
        x = t.ln_final(x)
        eos = self.config.eos_id
        at = ids.argmax(dim=-1) if eos < 0 else (ids == eos).int().argmax(dim=-1)
        return t.proj(x[torch.arange(ids.size(0), device=ids.device), at])

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B_images, B_texts): scaled cosine similarity of every image with every text."""
        return logits(self, self.encode_image(pixels), self.encode_text(ids))


def logits(model: CLIP, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """exp(logit_scale) * cos(image, text) for every pair: (B_images, B_texts)."""
    i = F.normalize(image_emb, dim=-1)
    t = F.normalize(text_emb, dim=-1)
    return model.logit_scale.exp() * i @ t.T


def to_pixels(images: list, prep: Preprocess) -> torch.Tensor:
    """PIL images -> normalised pixels (B, 3, S, S): RGB, shortest side resized to S (bicubic), the
    centre S x S cut out, / 255, minus mean, over std."""
    from PIL import Image

    s = prep.image_size
    out = []
    for im in images:
        im = im.convert("RGB")
        w, h = im.size
        scale = s / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - s) // 2, (nh - s) // 2
        im = im.crop((left, top, left + s, top + s))
        out.append(np.asarray(im, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)  # (B, 3, S, S)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    return (x - mean) / std


def tokenize(tokenizer, texts: list[str], cfg: CLIPConfig) -> torch.Tensor:
    """Texts -> ids (B, T), padded to the longest: the tokenizer's own encoding (tokenizer.json adds the
    start and end tokens), cut to the context length keeping the end token, padded with 0 after it."""
    rows = []
    for enc in tokenizer.encode_batch(texts):
        ids = list(enc.ids)
        if len(ids) > cfg.context_length:
            ids = ids[: cfg.context_length - 1] + ids[-1:]
        rows.append(ids)
    t = max(len(r) for r in rows)
    return torch.tensor([r + [0] * (t - len(r)) for r in rows], dtype=torch.long)


@torch.no_grad()
def zero_shot(model: CLIP, tokenizer, images: list, labels: list[str], prep: Preprocess,
              batch_size: int = 8) -> torch.Tensor:
    """Zero-shot classification: P(label | image) (B_images, B_labels), the softmax over the labels of the
    scaled cosine similarities between each image and each label's text."""
    text = model.encode_text(tokenize(tokenizer, labels, model.config))
    out = []
    for i in range(0, len(images), batch_size):
        image = model.encode_image(to_pixels(images[i:i + batch_size], prep))
        out.append(logits(model, image, text).softmax(dim=-1))
    return torch.cat(out) if out else torch.zeros(0, len(labels))
