"""Token ids of the RLHF stages: text checked against the vocabulary and the context, the end token,
and padded prompt + response batches with the mask of their response tokens.

Sequences are prompt + response + end token, right-padded. In a causal model padding after a sequence
changes nothing before it, so no attention mask is needed; losses use a mask of the response tokens.
The end token is "<eos>" when the tokenizer has one, else a newline, else the end-of-text token of an
imported Hugging Face tokenizer (GPT-2's and SmolLM's <|endoftext|>, Llama's).
"""

from __future__ import annotations

from typing import Any

import torch

from dlcli.errors import ConfigError, InputError
from dlcli.rlhf.config import TRUNCATE
from dlcli.rlhf.data import BadLine, Records, bad_line
from dlcli.text.vocabulary import HF_END_TOKENS


def end_token(tok: Any, where: str) -> int:
    for t in ("<eos>", "\n", *HF_END_TOKENS):
        i = tok.token_to_id(t)
        if i is not None:
            return int(i)
    raise InputError(f"{where}: the tokenizer has neither an <eos> token nor a newline to end a response with")


def encode(tok: Any, text: str) -> list[int]:
    """Text -> ids; characters the vocabulary lacks are a `BadLine`."""
    enc = tok.encode(text, add_special_tokens=False)
    unk = tok.model.unk_token if hasattr(tok.model, "unk_token") else None
    unk_id = tok.token_to_id(unk) if unk else None
    if unk_id is not None and unk_id in enc.ids:
        bad = sorted({text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets, strict=True) if i == unk_id})
        raise BadLine(f"not in the vocabulary: {', '.join(map(repr, bad))}")
    return list(enc.ids)


MIN_ROOM = 4  # response tokens a truncated prompt must leave room for


def encode_records(path: str, recs: Records, tok: Any, block_size: int, responses: tuple[str, ...],
                   skip_bad: bool, room: int = 0, truncate: str = "none") -> list[dict[str, list[int]]]:
    """Each row's prompt and response ids (each response ends with the end token).

    A row longer than the context (`room` tokens must stay free after a bare prompt) is a line-numbered
    error, or left out with `skip_bad` (and added to `recs.skipped`); with `truncate="keep-end"` it is
    cut to fit (`fit`) and its line added to `recs.truncated`."""
    if truncate not in TRUNCATE:
        raise ConfigError(f"truncate: '{truncate}' is not one of {', '.join(TRUNCATE)}")
    end = end_token(tok, path)
    out = []
    for row, line in zip(recs.rows, recs.lines, strict=True):
        try:
            enc = {"prompt": encode(tok, row["prompt"])}
            if not enc["prompt"]:
                raise BadLine("the prompt is empty")
            for k in responses:
                enc[k] = encode(tok, row[k]) + [end]
            longest = len(enc["prompt"]) + max((len(enc[k]) for k in responses), default=room)
            if longest > block_size:
                if truncate == "keep-end" and (cut := fit(enc, responses, block_size, room)) is not None:
                    enc = cut
                    recs.truncated.append(line)
                else:
                    raise BadLine(f"{longest} tokens are longer than the context of {block_size}"
                                  + (f" (the prompt and {room} new tokens)" if not responses else "")
                                  + ("; --truncate keep-end cuts such lines to fit" if truncate == "none" else ""))
            out.append(enc)
        except BadLine as e:
            if not skip_bad:
                raise bad_line(path, line, str(e)) from None
            recs.skipped.append((line, str(e)))
    if len(out) < 2:
        raise InputError(f"{path}: {len(out)} usable line(s); at least 2 are needed (one is held out)")
    return out


def fit(enc: dict[str, list[int]], responses: tuple[str, ...], block_size: int, room: int = 0
        ) -> dict[str, list[int]] | None:
    """Cut a row to the context as TRL's keep_end does: drop the oldest prompt tokens first, keeping at
    least half the context for the prompt (or all of it, when shorter), then cut each response to what is
    left. None when the context cannot hold the prompt's kept end and MIN_ROOM response tokens (or, with
    no responses, `room` new tokens after at least one prompt token)."""
    prompt = enc["prompt"]
    if not responses:
        keep = block_size - room
        return {"prompt": prompt[-keep:]} if keep >= 1 else None
    longest = max(len(enc[k]) for k in responses)
    keep = min(len(prompt), max(block_size - longest, block_size // 2))
    left = block_size - keep
    if keep < 1 or left < min(MIN_ROOM, longest):
        return None
    return {"prompt": prompt[len(prompt) - keep:], **{k: enc[k][:left] for k in responses}}


def pad(seqs: list[list[int]], pad_id: int, device: Any) -> torch.Tensor:
    t = max(len(s) for s in seqs)
    out = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def response_mask(prompt_lens: list[int], lengths: list[int], t: int, device: Any) -> torch.Tensor:
    """(B, t-1) bool: target position j (predicting token j+1) is a response token."""
    j = torch.arange(t - 1, device=device)[None, :] + 1
    p = torch.tensor(prompt_lens, device=device)[:, None]
    n = torch.tensor(lengths, device=device)[:, None]
    return (j >= p) & (j < n)


def batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int, device: Any
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + response sequences, padded: ids (B, T) and the response mask (B, T-1)."""
    seqs = [p + r for p, r in zip(prompts, responses, strict=True)]
    ids = pad(seqs, pad_id, device)
    return ids, response_mask([len(p) for p in prompts], [len(s) for s in seqs], ids.size(1), device)


def banned_ids(tok: Any) -> tuple[int, ...]:
    """Tokens a response never uses: the unknown and padding tokens."""
    return tuple(i for t in ("<unk>", "<pad>") if (i := tok.token_to_id(t)) is not None)


def decode(tok: Any, ids: list[int], end_id: int) -> str:
    return tok.decode([i for i in ids if i != end_id], skip_special_tokens=False)
