"""Decoding: greedy and batched beam search, both over the decoder's key/value cache."""

from __future__ import annotations

from typing import Any

import torch

from dlcli.translation.data import pad


def length_penalty(length: int | torch.Tensor, alpha: float) -> Any:
    """GNMT's length penalty ((5 + |Y|) / 6) ** alpha (Wu et al., 2016)."""
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
def beam_search(model: Any, src: torch.Tensor, bos: int, eos: int, beam: int, alpha: float,
                max_len: int | None = None) -> list[list[int]]:
    """Beam search for a batch of source sentences (B, S): B x beam hypotheses
    advance together. A hypothesis that emits eos is finished with score
    log P(Y|X) / length_penalty; a sentence is done when it has `beam` finished
    hypotheses; the best finished one wins."""
    b, k = src.size(0), beam
    memory, src_pad = model.encode(src)
    memory, src_pad = memory.repeat_interleave(k, 0), src_pad.repeat_interleave(k, 0)  # (B*k, S, C)
    cache = model.new_cache()
    scores = torch.full((b, k), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not pick duplicates
    tokens = torch.full((b * k, 1), bos, dtype=torch.long, device=src.device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    base = torch.arange(b, device=src.device)[:, None] * k
    for t in range((max_len or model.cfg.max_len) - 1):
        logp = torch.log_softmax(model.decode_step(tokens[:, -1], memory, src_pad, cache).float(), dim=-1)
        v = logp.size(-1)
        cand = (scores.view(-1, 1) + logp).view(b, k * v)  # every continuation of every beam
        top_s, top_i = cand.topk(2 * k, dim=-1)  # 2k: enough to keep k alive after removing eos
        origin, tok = top_i // v, top_i % v
        is_eos = tok == eos
        # eos among the best k candidates finishes a hypothesis (a few per step: a short loop)
        for bi, rank in (is_eos[:, :k]).nonzero().tolist():
            if not done[bi] and top_s[bi, rank] > float("-inf"):
                seq = tokens[base[bi, 0] + origin[bi, rank], 1:].tolist()
                finished[bi].append((float(top_s[bi, rank]) / length_penalty(t + 1, alpha), seq))
        for bi in range(b):
            done[bi] = done[bi] or len(finished[bi]) >= k
        if all(done):
            break
        alive_s = top_s.masked_fill(is_eos, float("-inf"))
        keep_s, keep = alive_s.topk(k, dim=-1)  # the best k non-eos continuations, in order
        rows = (base + origin.gather(1, keep)).view(-1)
        tokens = torch.cat([tokens[rows], tok.gather(1, keep).view(-1, 1)], dim=1)
        model.reorder_cache(cache, rows)
        scores = keep_s
    out = []
    for bi in range(b):
        if finished[bi]:
            out.append(max(finished[bi], key=lambda f: f[0])[1])
        else:  # ran out of length: take the best live hypothesis
            n = tokens.size(1) - 1
            best = int(scores[bi].argmax())
            out.append(tokens[base[bi, 0] + best, 1:].tolist()[:n])
    return out


def translate_ids(model: Any, src: list[list[int]], device: Any, bos: int, eos: int, pad_id: int,
                  batch_size: int = 64, beam: int = 1, alpha: float = 0.6) -> list[list[int]]:
    """Greedy (beam = 1) or beam-search translations of id lists, in batches of similar length."""
    out: list[list[int]] = [[] for _ in src]
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    if beam > 1:
        batch_size = max(1, batch_size // beam)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            idx = order[i: i + batch_size]
            batch = pad([src[j] + [eos] for j in idx], pad_id).to(device)
            res = model.greedy(batch, bos, eos) if beam <= 1 else beam_search(model, batch, bos, eos, beam, alpha)
            for j, r in zip(idx, res):
                out[j] = r
    return out
