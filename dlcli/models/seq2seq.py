"""An encoder-decoder Transformer for translation (pre-LayerNorm).

The encoder reads the source sentence with self-attention (every word looks at
every other, padding excluded) and a position-wise feed-forward network. The
decoder reads the target so far with causal self-attention, then attends to
the encoder's output (cross-attention: queries from the decoder, keys and
values from the encoder), then its feed-forward network. Attention is the
same six steps as in `gpt.attend_reference`, with a padding mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlcli.models.config import Seq2SeqConfig
from dlcli.models.gpt import sinusoidal


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_pad: torch.Tensor | None, causal: bool,
           reference: bool = False, dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """q (B, nh, Tq, hs), k/v (B, nh, Tk, hs); key_pad (B, Tk) True where padding.

    Returns the output and, on the reference path, the weights (B, nh, Tq, Tk).
    """
    tq, tk = q.size(-2), k.size(-2)
    allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device)
    if causal:
        allowed = allowed.tril(tk - tq)
    allowed = allowed[None, None]
    if key_pad is not None:
        allowed = allowed & ~key_pad[:, None, None, :]
    if reference:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # q . k / sqrt(d_k)
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with no allowed key gets no weight
        return weights @ v, weights
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
    return out.nan_to_num(0.0), None


class Attention(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, causal: bool) -> None:
        super().__init__()
        self.n_head, self.causal, self.dropout = cfg.n_head, causal, cfg.dropout
        self.q = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.kv = nn.Linear(cfg.n_embd, 2 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, key_pad: torch.Tensor | None,
                reference: bool = False, cache: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries from x, keys and values from memory. With a cache (decoding
        step by step): self-attention appends this step's keys and values to it;
        cross-attention computes the encoder's keys and values once and reuses them."""
        b, tq, c = x.shape
        hs = c // self.n_head
        q = self.q(x).view(b, tq, self.n_head, hs).transpose(1, 2)  # (B, nh, Tq, hs)
        if cache is not None and not self.causal and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            tk = memory.size(1)
            k, v = (z.view(b, tk, self.n_head, hs).transpose(1, 2) for z in self.kv(memory).split(c, dim=2))
            if cache is not None:
                if self.causal and "k" in cache:
                    k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
        y, w = attend(q, k, v, key_pad, self.causal, reference, self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, tq, c)), w


class FeedForward(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = Attention(cfg, causal=False)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, reference: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.ln1(x)
        a, w = self.attn(h, h, pad, reference)
        x = x + self.drop(a)
        return x + self.ff(self.ln2(x)), w


class DecoderLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(cfg.n_embd) for _ in range(3))
        self.self_attn = Attention(cfg, causal=True)
        self.cross_attn = Attention(cfg, causal=False)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, tgt_pad: torch.Tensor | None, src_pad: torch.Tensor,
                reference: bool = False, cache: dict[str, dict[str, torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.ln1(y)
        a, _ = self.self_attn(h, h, tgt_pad, reference, None if cache is None else cache["self"])
        y = y + self.drop(a)
        # queries: target; keys/values: source
        c, w = self.cross_attn(self.ln2(y), memory, src_pad, reference, None if cache is None else cache["cross"])
        y = y + self.drop(c)
        return y + self.ff(self.ln3(y)), w


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0 and cfg.src_vocab_size > 0 and cfg.tgt_vocab_size > 0
        self.cfg = cfg
        self.src_emb = nn.Embedding(cfg.src_vocab_size, cfg.n_embd)
        self.tgt_emb = self.src_emb if cfg.share_embeddings else nn.Embedding(cfg.tgt_vocab_size, cfg.n_embd)
        self.register_buffer("pos", sinusoidal(cfg.max_len, cfg.n_embd), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layer))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layer))
        self.ln_enc, self.ln_dec = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.tgt_vocab_size, bias=False)
        self.head.weight = self.tgt_emb.weight  # tie the output layer to the target embedding
        for emb in {self.src_emb, self.tgt_emb}:
            # std d^-1/2, so that scaled by sqrt(d) the token vectors match the positions' scale
            nn.init.normal_(emb.weight, mean=0.0, std=cfg.n_embd ** -0.5)

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        end = start + ids.size(1)
        if end > self.cfg.max_len:
            raise ValueError(f"{end} tokens is longer than max_len {self.cfg.max_len}")
        return self.drop(table(ids) * math.sqrt(self.cfg.n_embd) + self.pos[start:end])

    def encode(self, src: torch.Tensor, reference: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, C) and its padding mask (B, S)."""
        pad = src == self.cfg.pad_id
        x = self._embed(self.src_emb, src)
        for layer in self.encoder:
            x, _ = layer(x, pad, reference)
        return self.ln_enc(x), pad

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_pad: torch.Tensor, reference: bool = False
               ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Target so far (B, T) -> logits (B, T, V), and cross-attention weights per layer."""
        tgt_pad = tgt_in == self.cfg.pad_id
        y = self._embed(self.tgt_emb, tgt_in)
        cross = []
        for layer in self.decoder:
            y, w = layer(y, memory, tgt_pad, src_pad, reference)
            cross.append(w)
        return self.head(self.ln_dec(y)), cross

    def new_cache(self) -> list[dict[str, dict[str, torch.Tensor]]]:
        """Per decoder layer: self-attention keys/values so far, and the encoder's keys/values."""
        return [{"self": {}, "cross": {}} for _ in self.decoder]

    def decode_step(self, tok: torch.Tensor, memory: torch.Tensor, src_pad: torch.Tensor,
                    cache: list[dict[str, dict[str, torch.Tensor]]]) -> torch.Tensor:
        """One decoding step with a key/value cache: the newest token (B,) -> logits (B, V)."""
        start = cache[0]["self"]["k"].size(2) if cache[0]["self"] else 0
        y = self._embed(self.tgt_emb, tok[:, None], start)
        for layer, c in zip(self.decoder, cache):
            y, _ = layer(y, memory, None, src_pad, cache=c)
        return self.head(self.ln_dec(y[:, -1]))

    @staticmethod
    def reorder_cache(cache: list[dict[str, dict[str, torch.Tensor]]], rows: torch.Tensor) -> None:
        """Keep the self-attention cache rows `rows` (beam search picks which hypotheses go on)."""
        for c in cache:
            c["self"]["k"], c["self"]["v"] = c["self"]["k"][rows], c["self"]["v"][rows]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor | None = None,
                label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: the decoder sees the true target shifted right."""
        memory, src_pad = self.encode(src)
        logits, _ = self.decode(tgt_in, memory, src_pad)
        loss = None
        if tgt_out is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), tgt_out.reshape(-1),
                                   ignore_index=self.cfg.pad_id, label_smoothing=label_smoothing)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, src: torch.Tensor, tgt_in: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer: encoder self-attention (B, nh, S, S) and decoder cross-attention
        (B, nh, T, S) weights, from the reference path."""
        pad = src == self.cfg.pad_id
        x = self._embed(self.src_emb, src)
        enc = []
        for layer in self.encoder:
            x, w = layer(x, pad, reference=True)
            enc.append(w)
        _, cross = self.decode(tgt_in, self.ln_enc(x), pad, reference=True)
        return enc, cross  # type: ignore[return-value]

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, bos: int, eos: int, max_len: int | None = None) -> list[list[int]]:
        """Greedy decoding for a batch (with a key/value cache); each result stops before its first eos."""
        memory, src_pad = self.encode(src)
        b = src.size(0)
        cache = self.new_cache()
        nxt = torch.full((b,), bos, dtype=torch.long, device=src.device)
        done = torch.zeros(b, dtype=torch.bool, device=src.device)
        steps = []
        for _ in range((max_len or self.cfg.max_len) - 1):
            nxt = self.decode_step(nxt, memory, src_pad, cache).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.cfg.pad_id), nxt)
            steps.append(nxt)
            done |= nxt == eos
            if done.all():
                break
        result = []
        for row in torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(b)]:
            result.append(row[: row.index(eos)] if eos in row else [t for t in row if t != self.cfg.pad_id])
        return result
