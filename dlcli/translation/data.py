"""Parallel data: read and check a TSV, hold out pairs, tokenize, bucket by length."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlcli.core import io
from dlcli.errors import InputError
from dlcli.text import normalize as norm
from dlcli.translation.config import ParallelData

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]  # trained tokenizers put <pad> at id 0


@dataclass
class Tokenizers:
    """Source and target tokenizers (the same object when shared) and the special ids."""

    src: Any
    tgt: Any
    pad: int
    bos: int
    eos: int

    @property
    def shared(self) -> bool:
        return self.src is self.tgt

    def save(self, run: Path) -> None:
        if self.shared:
            (run / "tokenizer.json").write_text(self.src.to_str(pretty=True) + "\n", encoding="utf-8")
        else:
            (run / "src_tokenizer.json").write_text(self.src.to_str(pretty=True) + "\n", encoding="utf-8")
            (run / "tgt_tokenizer.json").write_text(self.tgt.to_str(pretty=True) + "\n", encoding="utf-8")


def _special_ids(tok: Any, where: str) -> tuple[int, int, int]:
    ids = []
    for t in ("<pad>", "<bos>", "<eos>"):
        i = tok.token_to_id(t)
        if i is None:
            raise InputError(f"{where}: the tokenizer has no {t} token; train one with dlcli vocab train "
                             "--special '<pad>' --special '<unk>' --special '<bos>' --special '<eos>'")
        ids.append(i)
    return ids[0], ids[1], ids[2]


def with_specials(src: Any, tgt: Any, src_where: str, tgt_where: str) -> Tokenizers:
    sp, tp = _special_ids(src, src_where), _special_ids(tgt, tgt_where)
    if sp[0] != tp[0]:
        raise InputError(f"{tgt_where}: <pad> is id {tp[0]} here but {sp[0]} in {src_where}; they must agree")
    return Tokenizers(src, tgt, tp[0], tp[1], tp[2])


def load_run_tokenizers(run: Path) -> Tokenizers:
    from dlcli.text import vocabulary

    if (run / "src_tokenizer.json").is_file():
        s, t = run / "src_tokenizer.json", run / "tgt_tokenizer.json"
        return with_specials(vocabulary.load(s), vocabulary.load(t), str(s), str(t))
    tok = vocabulary.load(run / "tokenizer.json")
    return with_specials(tok, tok, str(run / "tokenizer.json"), str(run / "tokenizer.json"))


def make_tokenizers(data: ParallelData, pairs: list[tuple[str, str]]) -> Tokenizers:
    """Load the tokenizers the config names, or train byte-level BPE on the training pairs."""
    from dlcli.text import vocabulary

    if data.src_tokenizer:
        src = vocabulary.load(data.src_tokenizer)
        same = not data.tgt_tokenizer or Path(data.tgt_tokenizer).resolve() == Path(data.src_tokenizer).resolve()
        tgt = src if same else vocabulary.load(data.tgt_tokenizer)
        return with_specials(src, tgt, data.src_tokenizer, data.tgt_tokenizer or data.src_tokenizer)
    if data.shared_vocab:
        tok = vocabulary.train_subword(iter([s for p in pairs for s in p]), "bpe", data.vocab_size, SPECIALS, [],
                                       min_freq=2)
        return with_specials(tok, tok, "shared BPE", "shared BPE")
    src = vocabulary.train_subword(iter([s for s, _ in pairs]), "bpe", data.vocab_size, SPECIALS, [], min_freq=2)
    tgt = vocabulary.train_subword(iter([t for _, t in pairs]), "bpe", data.vocab_size, SPECIALS, [], min_freq=2)
    return with_specials(src, tgt, "source BPE", "target BPE")


def read_pairs(path: str, steps: list[str], limit: int = 0) -> list[tuple[str, str]]:
    """Normalised (source, target) pairs; a line without a tab or with an
    empty side is an error that names the line."""
    io.check_text_file(path, "TSV")
    checker = io.TextChecker(path)
    text = "".join(checker.decode(c) for c in io.read_chunks(path))
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise InputError(f"{path}: line {n} has no tab (expected source<TAB>target)")
        src, tgt = norm.normalize(cols[0], steps).strip(), norm.normalize(cols[1], steps).strip()
        if not src or not tgt:
            raise InputError(f"{path}: line {n} has an empty {'source' if not src else 'target'}")
        pairs.append((src, tgt))
        if limit and len(pairs) >= limit:
            break
    if len(pairs) < 2:
        raise InputError(f"{path}: needs at least 2 sentence pairs, found {len(pairs)}")
    return pairs


def split_held_out(pairs: list[tuple[str, str]], n: int, seed: int
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training pairs, held-out pairs): n random pairs, at most half, are held out."""
    held = set(random.Random(seed).sample(range(len(pairs)), min(n, len(pairs) // 2)))
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def encode_sentences(tok: Any, sents: list[str], max_len: int, strict: bool, what: str
                     ) -> tuple[list[list[int]], int]:
    """Token ids (without bos/eos), cut to max_len - 1; returns how many were cut."""
    ids = [e.ids for e in tok.encode_batch(sents, add_special_tokens=False)]
    cut = sum(len(x) > max_len - 1 for x in ids)
    if cut and strict:
        first = next(i for i, x in enumerate(ids) if len(x) > max_len - 1)
        raise InputError(f"{what} sentence {first + 1} has {len(ids[first])} tokens, more than model.max_len - 1 = "
                         f"{max_len - 1} (drop --strict to truncate)")
    return [x[: max_len - 1] for x in ids], cut


def bucket_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    """Rows of ids -> a (B, longest) LongTensor padded with pad_id."""
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
