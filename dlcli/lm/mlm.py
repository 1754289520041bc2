"""BERT-style masking for masked-language-model pretraining.

15% of positions are chosen; of those, 80% become the mask token, 10% a
random token and 10% stay as they are. The loss is taken on the chosen
positions only (targets elsewhere are -100, which cross-entropy ignores).
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer

from dlcli.errors import InputError

IGNORE = -100


def mask_ids(tok: Tokenizer, where: str) -> tuple[int, tuple[int, ...]]:
    """The tokenizer's <mask> id, and the ids of its special tokens (never chosen for masking)."""
    mask = tok.token_to_id("<mask>")
    if mask is None:
        raise InputError(f"{where}: masked-LM pretraining needs a <mask> token; build the vocabulary with "
                         "--special '<mask>'")
    specials = tuple(i for t in tok.get_added_tokens_decoder().values() if (i := tok.token_to_id(t.content))
                     is not None)
    return mask, specials


def mask_tokens(x: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator | None = None,
                rate: float = 0.15, special_ids: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs with masks, targets) for token ids x (B, T)."""
    g = {"generator": generator} if generator is not None else {}
    u = torch.rand(x.shape, device=x.device, **g)
    chosen = u < rate
    for s in special_ids:
        chosen &= x != s
    targets = torch.where(chosen, x, torch.full_like(x, IGNORE))
    r = torch.rand(x.shape, device=x.device, **g)
    inputs = x.clone()
    inputs[chosen & (r < 0.8)] = mask_id  # 80%: the mask token
    rand = chosen & (r >= 0.8) & (r < 0.9)  # 10%: a random token; the last 10% stay unchanged
    inputs[rand] = torch.randint(0, vocab_size, x.shape, device=x.device, **g)[rand]
    return inputs, targets
