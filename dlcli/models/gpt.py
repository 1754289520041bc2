"""A decoder-only Transformer language model (GPT), pre-LayerNorm.

Self-attention as the curriculum tells it: every position builds a query, a
key and a value from three learned matrices; scores q . k for every earlier
position, divides by sqrt(d_k), applies softmax, and sums the values with
those weights. `attend_reference` does exactly these six steps and returns
the weights; training uses `F.scaled_dot_product_attention`, the fused kernel
that computes the same thing (a test checks they agree).

The config's options cover the pretrained families `dlcli import-hf` reads:
GPT-2 (learned positions, LayerNorm, GELU with the tanh approximation) and
Llama (rotary positions, RMSNorm, SwiGLU, fewer key/value heads than query
heads, Qwen2's biases on Q, K, V). Their defaults are dlcli's own GPT.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlcli.models.config import GPTConfig

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (B, n_kv_head, T_past, hs)
Rope = tuple[torch.Tensor, torch.Tensor]  # cos and sin of each position's angles (T, hs)


def attend_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The six steps, written out. q (B, nh, Tq, hs), k and v (B, nh, Tk, hs).

    Returns the output (B, nh, Tq, hs) and the attention weights (B, nh, Tq, Tk).
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1)  # q . k for every pair: (B, nh, Tq, Tk)
    scores = scores / math.sqrt(d_k)  # divide by sqrt(d_k): 8 for d_k = 64
    if causal:  # a position may not look at later ones
        tq, tk = q.size(-2), k.size(-2)
        future = torch.ones(tq, tk, dtype=torch.bool, device=q.device).triu(tk - tq + 1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # softmax over the keys
    return weights @ v, weights  # weight the values and sum them


def rope_frequencies(cfg: GPTConfig) -> torch.Tensor:
    """Rotary positions: the angle per position of each pair of dimensions, theta^(-2i/d) for
    i < d/2, stretched as the config's scaling says (linear: all by the factor; llama3: long
    wavelengths by the factor, short ones not, a smooth blend between)."""
    d = cfg.head_dim or cfg.n_embd // cfg.n_head
    freq = 1.0 / cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d)
    if cfg.rope_scaling == "linear":
        freq = freq / cfg.rope_factor
    elif cfg.rope_scaling == "llama3":
        wavelength = 2 * math.pi / freq
        ratio = cfg.rope_original_max / wavelength  # how many wavelengths fit the original context
        low, high = cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
        scaled = torch.where(wavelength > cfg.rope_original_max / low, freq / cfg.rope_factor, freq)
        blend = (ratio - low) / (high - low)
        smooth = (1 - blend) * scaled / cfg.rope_factor + blend * scaled
        between = (wavelength >= cfg.rope_original_max / high) & (wavelength <= cfg.rope_original_max / low)
        freq = torch.where(between, smooth, scaled)
    return freq


def rotate(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i + d/2}) of a query or key by its position's angle."""
    cos, sin = rope
    half = x.size(-1) // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + turned * sin


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps), times a learned gain (no centring, no bias), computed in fp32."""

    def __init__(self, n: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def norm(cfg: GPTConfig) -> nn.Module:
    return RMSNorm(cfg.n_embd, cfg.norm_eps) if cfg.norm == "rms" else nn.LayerNorm(cfg.n_embd, cfg.norm_eps,
                                                                                      bias=cfg.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.n_kv_head = cfg.n_kv_head or cfg.n_head  # fewer: each serves a group of query heads
        self.head_dim = cfg.head_dim or cfg.n_embd // cfg.n_head
        assert cfg.head_dim or cfg.n_embd % cfg.n_head == 0
        assert self.n_head % self.n_kv_head == 0
        self.causal = cfg.causal
        width = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.qkv = nn.Linear(cfg.n_embd, width, bias=cfg.bias or cfg.qkv_bias)  # W_Q, W_K, W_V side by side
        self.proj = nn.Linear(self.n_head * self.head_dim, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                reference: bool = False, rope: Rope | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        b, t, _ = x.shape
        hs, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        q, k, v = self.qkv(x).split([nh * hs, nkv * hs, nkv * hs], dim=2)
        # (B, T, heads * hs) -> (B, heads, T, hs)
        q = q.view(b, t, nh, hs).transpose(1, 2)
        k, v = (z.view(b, t, nkv, hs).transpose(1, 2) for z in (k, v))
        if rope is not None:  # rotary positions: turn queries and keys by their positions' angles
            q, k = rotate(q, rope), rotate(k, rope)
        if past is not None:  # generation: keys and values of earlier tokens are cached
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        kv = (k, v)
        weights = None
        grouped = nkv != nh
        if reference:
            if grouped:  # each key/value head serves nh / nkv query heads in a row
                k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
            y, weights = attend_reference(q, k, v, causal=self.causal)
        elif past is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, enable_gqa=grouped,
                                               dropout_p=self.dropout if self.training else 0.0)
        elif t == 1:  # one new query sees every key
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=grouped)
        else:  # new queries see every cached key and, causally, the new ones
            tk = k.size(2)
            mask = torch.ones(t, tk, dtype=torch.bool, device=x.device).tril(tk - t)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=grouped)
        y = y.transpose(1, 2).contiguous().view(b, t, nh * hs)  # concatenate the heads
        return self.resid_drop(self.proj(y)), kv, weights


class MLP(nn.Module):
    """The position-wise feed-forward network, the same at every position: proj(gelu(fc(x))), or
    with SwiGLU proj(silu(gate(x)) * fc(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        inner = cfg.n_inner or 4 * cfg.n_embd
        self.kind = cfg.mlp
        self.fc = nn.Linear(cfg.n_embd, inner, bias=cfg.bias)
        self.gate = nn.Linear(cfg.n_embd, inner, bias=cfg.bias) if cfg.mlp == "swiglu" else None
        self.proj = nn.Linear(inner, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            h = F.silu(self.gate(x)) * self.fc(x)
        else:
            h = F.gelu(self.fc(x), approximate="tanh" if self.kind == "gelu_tanh" else "none")
        return self.drop(self.proj(h))


class Block(nn.Module):
    """Pre-norm: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                reference: bool = False, rope: Rope | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        a, kv, w = self.attn(self.ln1(x), past, reference, rope)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv, w


def sinusoidal(n: int, d: int) -> torch.Tensor:
    """The original Transformer's fixed positions: sin on even, cos on odd dims."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        assert cfg.vocab_size > 0 and cfg.positions in ("learned", "sinusoidal", "rope")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.positions == "learned":
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        elif cfg.positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal(cfg.block_size, cfg.n_embd), persistent=False)
        else:  # rotary: nothing added to the input; queries and keys are turned in each layer
            self.register_buffer("rope_freq", rope_frequencies(cfg), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = norm(cfg)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    @property
    def input_embedding(self) -> nn.Embedding:
        return self.tok_emb

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, targets: torch.Tensor | None = None,
                reference: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, KVCache | None]:
        """idx (B, T) -> logits (B, T, v), mean cross-entropy (if targets), KV cache.

        With `cache` (from an earlier call) idx holds only the new tokens.
        The cache is returned only when one is passed in or no targets are given.
        """
        t = idx.size(1)
        start = cache[0][0].size(2) if cache else 0
        if start + t > self.cfg.block_size:
            raise ValueError(f"sequence of {start + t} tokens is longer than block_size {self.cfg.block_size}")
        x, rope = self._embed(idx, start)
        x = self.drop(x)  # (B, T, C)
        new_cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv, _ = block(x, cache[i] if cache else None, reference, rope)
            new_cache.append(kv)
        logits = self.head(self.ln_f(x))  # (B, T, v)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100)
        keep = cache is not None or targets is None
        return logits, loss, (new_cache if keep else None)

    def _embed(self, idx: torch.Tensor, start: int) -> tuple[torch.Tensor, Rope | None]:
        """Token embeddings plus learned or fixed positions; or, for rotary positions, the
        cos and sin of each position's angles that the attention layers turn by."""
        pos = torch.arange(start, start + idx.size(1), device=idx.device)
        x = self.tok_emb(idx)
        if self.cfg.positions == "learned":
            return x + self.pos_emb(pos), None
        if self.cfg.positions == "sinusoidal":
            return x + self.pos_table[pos], None
        angles = pos.float()[:, None] * self.rope_freq[None, :]  # (T, hs/2)
        angles = torch.cat([angles, angles], dim=-1)  # pairs (i, i + hs/2) share an angle
        return x, (angles.cos().to(x.dtype), angles.sin().to(x.dtype))

    def attention_weights(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Per layer (B, nh, T, T) weights, from the reference path (for plots and tests)."""
        x, rope = self._embed(idx, 0)
        out = []
        for block in self.blocks:
            x, _, w = block(x, None, reference=True, rope=rope)
            assert w is not None
            out.append(w)
        return out
