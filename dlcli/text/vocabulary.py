"""Vocabularies as Hugging Face `tokenizers` objects.

A word or char vocabulary is a `WordLevel` model whose normaliser and
pre-tokeniser repeat what `preprocess` did, so `Tokenizer.from_file(...)`
encodes raw text exactly as dlcli does. Subword vocabularies (BPE, WordPiece,
Unigram) are trained by the `tokenizers` library itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from dlcli.core.io import check_input_file
from dlcli.errors import ConfigError, InputError

# End-of-text tokens of tokenizers imported with a Hugging Face model (GPT-2/SmolLM, Llama 3, Llama 2, Qwen2 chat):
# generation stops at them and RLHF ends its sequences with them when there is no <eos>.
HF_END_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>")

SUBWORD_MODELS = ("bpe", "wordpiece", "unigram")


def order_tokens(counts: Counter[str], specials: list[str], min_freq: int = 1,
                 max_size: int | None = None) -> list[tuple[str, int]]:
    """Specials first (in the given order), then tokens by count, descending;
    ties broken by the token's code points, ascending."""
    ranked = sorted(((t, c) for t, c in counts.items() if c >= min_freq and t not in specials),
                    key=lambda tc: (-tc[1], tc[0]))
    out = [(s, counts.get(s, 0)) for s in specials] + ranked
    return out[:max_size] if max_size else out


def hf_normalizer(steps: Iterable[str]) -> normalizers.Normalizer | None:
    """The `tokenizers` equivalent of dlcli's normalisers (line mode)."""
    parts: list[normalizers.Normalizer] = []
    for s in steps:
        if s == "lower":
            parts.append(normalizers.Lowercase())
        elif s == "nfkc":
            parts.append(normalizers.NFKC())
        elif s == "d2l":
            parts += [normalizers.Replace(Regex("[^A-Za-z]+"), " "), normalizers.Strip(), normalizers.Lowercase()]
        elif s == "nmt":
            parts += [normalizers.Replace("\u202f", " "), normalizers.Replace("\xa0", " ")]
        elif s != "none":
            raise ConfigError(f"unknown normaliser '{s}'")
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else normalizers.Sequence(parts)


def word_level(tokens: list[str], unk: str | None, level: str, normalize: list[str]) -> Tokenizer:
    """A WordLevel tokenizer over `tokens` (id = position)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    model = models.WordLevel(vocab=vocab, unk_token=unk) if unk else models.WordLevel(vocab=vocab)
    tok = Tokenizer(model)
    norm = hf_normalizer(normalize)
    if norm is not None:
        tok.normalizer = norm
    if level == "char":
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
    else:
        steps = [pre_tokenizers.WhitespaceSplit()]
        if "nmt" in normalize:
            steps.insert(0, pre_tokenizers.Split(Regex("(?<=[^ ])(?=[,.!?])"), behavior="removed"))
        tok.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
    return tok


def train_subword(texts: Iterator[str], model: str, vocab_size: int, specials: list[str],
                  normalize: list[str], min_freq: int = 2) -> Tokenizer:
    """Train a BPE, WordPiece or Unigram tokenizer with `tokenizers`."""
    unk = "<unk>" if "<unk>" in specials else (specials[0] if specials else None)
    tok: Tokenizer
    trainer: Any
    if model == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_freq, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    elif model == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk or "[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_freq,
                                            special_tokens=specials or ["[UNK]"], show_progress=False)
    elif model == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk,
                                          show_progress=False)
    else:
        raise ConfigError(f"unknown tokenizer model '{model}': choose from {', '.join(SUBWORD_MODELS)}")
    norm = hf_normalizer(normalize)
    if norm is not None:
        tok.normalizer = norm
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def vocab_hash(tok: Tokenizer) -> str:
    """A fingerprint of the token <-> id mapping (sha256, hex)."""
    vocab = tok.get_vocab(with_added_tokens=True)
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    h = hashlib.sha256(json.dumps(ordered, ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def load(path: str | Path) -> Tokenizer:
    """Load a tokenizer.json (or a run directory holding one), with clear errors."""
    p = Path(path)
    if p.is_dir() and (p / "tokenizer.json").is_file():
        p = p / "tokenizer.json"
    check_input_file(p, "tokenizer")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises plain Exception
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{p}: not a valid tokenizer.json: {first}") from None
