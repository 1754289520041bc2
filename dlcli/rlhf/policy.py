"""What the RLHF stages ask of a GPT policy: per-token log-probabilities, its last hidden states (for a
value or reward head), and batched sampling of responses with the key/value cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlcli.lm.generate import sample_next
from dlcli.models.gpt import GPT


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, j+1] | ids[:, :j+1]) for every j: (B, T-1)."""
    lg = logits[:, :-1].float()
    return -F.cross_entropy(lg.reshape(-1, lg.size(-1)), ids[:, 1:].reshape(-1), reduction="none").view(ids.size(0), -1)


def forward_hidden(gpt: GPT, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GPT's logits (B, T, v) and its last hidden states after the final LayerNorm (B, T, C)."""
    seen: list[torch.Tensor] = []
    handle = gpt.ln_f.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        logits, _, _ = gpt(ids)
    finally:
        handle.remove()
    return logits, seen[0]


@torch.no_grad()
def sample(gpt: GPT, prompts: list[list[int]], max_new: int, end_id: int, gen: torch.Generator,
           temperature: float = 1.0, top_k: int = 0, banned: tuple[int, ...] = ()) -> list[list[int]]:
    """A response to each prompt (ending with `end_id` unless it ran out of room), sampled with the
    key/value cache. Prompts of one length go together, so no padding mask is needed."""
    device = next(gpt.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for length, rows in sorted(by_len.items()):
        steps = min(max_new, gpt.cfg.block_size - length)
        idx = torch.tensor([prompts[i] for i in rows], device=device)
        logits, _, cache = gpt(idx)
        new = torch.empty(len(rows), 0, dtype=torch.long)
        done = torch.zeros(len(rows), dtype=torch.bool)
        for _ in range(steps):
            last = logits[:, -1, :].float().cpu()
            if banned:
                last[:, list(banned)] = float("-inf")
            nxt = sample_next(last, temperature, top_k, 1.0, gen)
            new = torch.cat([new, nxt[:, None]], dim=1)
            done |= nxt == end_id
            if bool(done.all()):
                break
            logits, _, cache = gpt(nxt[:, None].to(device), cache)
        for r, i in enumerate(rows):
            seq = new[r].tolist()
            out[i] = seq[: seq.index(end_id) + 1] if end_id in seq else seq
    return out
