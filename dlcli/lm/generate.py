"""`dlcli generate`: sample text from a language-model run, streamed as it comes."""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from tokenizers import Tokenizer
from torch import nn

from dlcli.errors import InputError
from dlcli.lm.config import GenerateConfig
from dlcli.lm.run import LMRun, open_run
from dlcli.models.gpt import GPT, KVCache
from dlcli.models.rnn import RNNLM, Hidden
from dlcli.text.vocabulary import HF_END_TOKENS


def encode_prompt(run: LMRun, prompt: str, strict: bool, warn: Callable[[str], None]) -> list[int]:
    """Prompt -> ids with the run's tokenizer; unknown pieces warned about (or refused)."""
    if not prompt.strip():
        raise InputError("the prompt is empty: give --prompt TEXT or text on stdin")
    enc = run.tokenizer.encode(prompt, add_special_tokens=False)
    if not enc.ids:
        raise InputError(f"the prompt {prompt!r} has no tokens after the tokenizer's normalisation")
    unk_tok = _unk_token(run.tokenizer)
    unk_id = run.tokenizer.token_to_id(unk_tok) if unk_tok else None
    if unk_id is not None:
        unknown = sorted({prompt[a:b] for i, (a, b) in zip(enc.ids, enc.offsets) if i == unk_id})
        if unknown:
            msg = f"not in the vocabulary, mapped to {unk_tok}: {', '.join(map(repr, unknown))}"
            if strict:
                raise InputError(f"prompt: {msg}")
            warn(f"prompt: {msg}")
    ids = list(enc.ids)
    # A normaliser that strips (d2l's, made for whole lines) drops a prompt's trailing space or punctuation,
    # and the model would go on with the last word instead of starting the next: keep the space it stood for.
    tail, norm = prompt[enc.offsets[-1][1]:], run.tokenizer.normalizer
    space = run.tokenizer.token_to_id(" ")
    if tail and norm is not None and space is not None and norm.normalize_str(f"a{tail}a") == "a a":
        ids.append(space)
    return ids


def _unk_token(tok: Tokenizer) -> str | None:
    return json.loads(tok.to_str()).get("model", {}).get("unk_token")


def end_tokens(tok: Tokenizer) -> set[int]:
    """The ids generation stops at: <eos>, and an imported model's end-of-text token (a special token)."""
    special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    return {i for t in ("<eos>", *HF_END_TOKENS) if (t == "<eos>" or t in special) and (i := tok.token_to_id(t)) is not None}


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator
                ) -> torch.Tensor:
    """One token id per row of `logits` (B, v): greedy, or sampled from the
    temperature-scaled distribution restricted to the top-k / top-p tokens."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop tokens once the mass before them already reaches top_p (the first always stays)
        drop = probs.cumsum(dim=-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


State = Hidden | KVCache


class RowMajorHead(nn.Module):
    """The output layer x W^T from a transposed copy of W, for one token at a time on a CPU: BLAS
    reads a (width, vocab) matrix about twice as fast as the (vocab, width) one at batch 1 (GPT-2's
    head: 7 ms instead of 13 ms a token on 2 AVX512 cores), at the cost of the copy's memory."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight_t = weight.detach().t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight_t


HEAD_COPY_LIMIT = 256 << 20  # bytes a tied head's transposed copy may add (GPT-2's: 154 MB; Qwen2-0.5B's: 545 MB)


def for_generation(model: RNNLM | GPT, device: torch.device) -> None:
    """Ready a freshly opened run's model for token-by-token decoding (in place). An untied head is replaced
    by its copy (no memory added); a head tied to the embedding only while its copy is under HEAD_COPY_LIMIT."""
    if isinstance(model, GPT) and device.type == "cpu":
        w = model.head.weight
        if not model.cfg.tie_weights or w.numel() * w.element_size() <= HEAD_COPY_LIMIT:
            model.head = RowMajorHead(w)


def forward_next(model: RNNLM | GPT, ids: list[int], state: State | None, device: torch.device
                 ) -> tuple[torch.Tensor, State]:
    """Logits after `ids`, reusing `state` (an RNN's hidden state or a
    Transformer's key/value cache) so only the newest token is computed.
    A Transformer whose cache is full recomputes its last block_size tokens."""
    if isinstance(model, GPT) and state is not None and state[0][0].size(2) >= model.cfg.block_size:
        state = None
    if state is None:
        if isinstance(model, GPT):
            ids = ids[-model.cfg.block_size:]
        logits, _, state = model(torch.tensor([ids], device=device))
    else:  # the newest token alone
        logits, _, state = model(torch.tensor([[ids[-1]]], device=device), state)
    assert state is not None
    return logits, state


def generate(cfg: GenerateConfig, write: Callable[[str], None], warn: Callable[[str], None] = lambda m: None
             ) -> list[str]:
    """Generate `num_samples` continuations, calling `write` with text as it is
    produced (prompt, then each new piece; samples end with a newline, and are
    separated by a blank line). Returns the samples."""
    cfg.validate()
    run = open_run(cfg.run, cfg.device)
    if run.masked:
        raise InputError(f"{cfg.run}: a masked-LM run fills in masked tokens; it cannot generate text left to right")
    for_generation(run.model, run.device)
    prompt_ids = encode_prompt(run, cfg.prompt, cfg.strict, warn)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(cfg.seed if cfg.seed is not None else torch.seed())
    tok = run.tokenizer
    base = tok.decode(prompt_ids, skip_special_tokens=False)
    # never emit the unknown or padding token; stop at an end-of-sequence token
    banned = [i for t in (_unk_token(tok), "<pad>") if t and (i := tok.token_to_id(t)) is not None]
    # an imported model's embedding rows past its tokenizer (dlcli/hf/load.py names them)
    banned += [i for i, t in tok.get_added_tokens_decoder().items() if t.content.startswith("<|dlcli_unused_")]
    eos = end_tokens(tok)
    samples = []
    with torch.inference_mode():
        for k in range(cfg.num_samples):
            if k:
                write("\n")
            write(base)
            ids = list(prompt_ids)
            shown = base
            logits, h = forward_next(run.model, ids, None, run.device)
            for _ in range(cfg.max_new_tokens):
                last = logits[:, -1, :].float().cpu()
                last[:, banned] = float("-inf")
                nxt = sample_next(last, cfg.temperature, cfg.top_k, cfg.top_p, gen)
                if int(nxt[0]) in eos:
                    break
                ids.append(int(nxt[0]))
                text = tok.decode(ids, skip_special_tokens=False)
                if not text.endswith("\ufffd") and text.startswith(shown):
                    write(text[len(shown):])
                    shown = text
                logits, h = forward_next(run.model, ids, h, run.device)
            final = tok.decode(ids, skip_special_tokens=False)
            if final.startswith(shown) and final != shown:
                write(final[len(shown):])
            write("\n")
            samples.append(final)
    return samples
