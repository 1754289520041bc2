"""A decoder-only Transformer language model (GPT), pre-LayerNorm.

Self-attention as the curriculum tells it: every position builds a query, a
key and a value from three learned matrices; scores q . k for every earlier
position, divides by sqrt(d_k), applies softmax, and sums the values with
those weights. `attend_reference` does exactly these six steps and returns
the weights; training uses `F.scaled_dot_product_attention`, the fused kernel
that computes the same thing (a test checks they agree).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlcli.models.config import GPTConfig

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (B, nh, T_past, hs)


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


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.causal = cfg.causal
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # W_Q, W_K, W_V side by side
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                reference: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if past is not None:  # generation: keys and values of earlier tokens are cached
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        weights = None
        if reference:
            y, weights = attend_reference(q, k, v, causal=self.causal)
        elif past is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:  # new queries see every cached key and, causally, the new ones
            tk = k.size(2)
            mask = torch.ones(t, tk, dtype=torch.bool, device=x.device).tril(tk - t)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # concatenate the heads
        return self.resid_drop(self.proj(y)), (k, v), weights


class MLP(nn.Module):
    """The position-wise feed-forward network, the same at every position."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                reference: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        a, kv, w = self.attn(self.ln1(x), past, reference)
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
        assert cfg.vocab_size > 0 and cfg.positions in ("learned", "sinusoidal")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.positions == "learned":
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        else:
            self.register_buffer("pos_table", sinusoidal(cfg.block_size, cfg.n_embd), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
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
        b, t = idx.shape
        start = cache[0][0].size(2) if cache else 0
        if start + t > self.cfg.block_size:
            raise ValueError(f"sequence of {start + t} tokens is longer than block_size {self.cfg.block_size}")
        pos = torch.arange(start, start + t, device=idx.device)
        p = self.pos_emb(pos) if self.cfg.positions == "learned" else self.pos_table[pos]
        x = self.drop(self.tok_emb(idx) + p)  # (B, T, C)
        new_cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv, _ = block(x, cache[i] if cache else None, reference)
            new_cache.append(kv)
        logits = self.head(self.ln_f(x))  # (B, T, v)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100)
        keep = cache is not None or targets is None
        return logits, loss, (new_cache if keep else None)

    def attention_weights(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Per layer (B, nh, T, T) weights, from the reference path (for plots and tests)."""
        x = self.tok_emb(idx) + (self.pos_emb(torch.arange(idx.size(1), device=idx.device))
                                 if self.cfg.positions == "learned" else self.pos_table[: idx.size(1)])
        out = []
        for block in self.blocks:
            x, _, w = block(x, None, reference=True)
            assert w is not None
            out.append(w)
        return out
