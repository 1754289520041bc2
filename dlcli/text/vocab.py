"""`dlcli vocab`: build vocabularies, train subword tokenizers, encode text
into id files and decode id files back to text."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core import io
from dlcli.core.idfile import IdFile, IdWriter
from dlcli.core.parallel import Range, file_ranges, imap_ordered, report_bytes, run_jobs
from dlcli.core.parallel import parts_dir as new_parts_dir
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError, InputError
from dlcli.text import normalize as norm
from dlcli.text import tokenkeys, tokenstream, vocabulary
from dlcli.text.preprocess import read_stream_meta
from dlcli.text.tokenize import LEVELS


@dataclass
class BuildConfig:
    """Options of `dlcli vocab build` (a word or char vocabulary from a token stream)."""

    inputs: list[str] = field(default_factory=lambda: ["-"])
    output: str = "tokenizer.json"
    level: str | None = None  # None: from the stream's sidecar, else guessed
    normalize: list[str] | None = None  # None: from the stream's sidecar, else none
    min_freq: int = 1
    max_size: int = 0  # 0: no limit
    specials: list[str] = field(default_factory=lambda: ["<unk>"])
    unk: str = "<unk>"  # "" for none: unknown tokens are then an error
    top: int = 10
    workers: int = 0

    def validate(self) -> None:
        if self.level is not None and self.level not in LEVELS:
            raise ConfigError(f"level: '{self.level}' is not one of {', '.join(LEVELS)}")
        if self.normalize is not None:
            norm.check_steps(self.normalize)
        if self.unk and self.unk not in self.specials:
            given = " ".join(f"-s '{t}'" for t in self.specials)
            raise ConfigError(f"unk: '{self.unk}' must be one of the specials ({', '.join(self.specials) or 'none'}): "
                              f"name it too (-s '{self.unk}' {given}; -s replaces the default list), or give --unk '' for none")
        if len(set(self.specials)) != len(self.specials):
            raise ConfigError("specials: duplicate special tokens")
        if self.min_freq < 1 or self.max_size < 0:
            raise ConfigError("min_freq must be >= 1 and max_size >= 0")
        if self.max_size and self.max_size <= len(self.specials):
            raise ConfigError(f"max_size: {self.max_size} leaves no room beside {len(self.specials)} special tokens")


@dataclass
class TrainConfig:
    """Options of `dlcli vocab train` (a subword tokenizer from raw text)."""

    inputs: list[str] = field(default_factory=lambda: ["-"])
    output: str = "tokenizer.json"
    model: str = "bpe"
    vocab_size: int = 8000
    min_freq: int = 2
    specials: list[str] = field(default_factory=lambda: ["<unk>"])
    normalize: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.model not in vocabulary.SUBWORD_MODELS:
            raise ConfigError(f"model: '{self.model}' is not one of {', '.join(vocabulary.SUBWORD_MODELS)}")
        if self.vocab_size < len(self.specials) + 1:
            raise ConfigError("vocab_size: too small")
        norm.check_steps(self.normalize)


@dataclass
class EncodeConfig:
    """Options of `dlcli vocab encode` (token stream or raw text -> id file)."""

    inputs: list[str] = field(default_factory=lambda: ["-"])
    output: str = "corpus.ids"
    tokenizer: str = "tokenizer.json"
    raw: bool = False  # input is raw text, encoded by the tokenizer itself
    workers: int = 0


@dataclass
class DecodeConfig:
    """Options of `dlcli vocab decode` (id file -> text, one line per line)."""

    input: str = "corpus.ids"
    output: str = "-"
    tokenizer: str = "tokenizer.json"


# ---------------------------------------------------------------- building

def _count_chunk(chunk: bytes) -> Counter[bytes]:
    return tokenkeys.count(chunk)


def _chunks(paths: list[str], on_progress: OnProgress, desc: str) -> Iterator[bytes]:
    sizes = [io.input_size(p) for p in paths]
    total = sum(s for s in sizes if s) if None not in sizes else None
    done = 0
    for p in paths:
        checker = io.TextChecker(p)
        for chunk in io.read_chunks(p):
            checker.check(chunk)
            done += len(chunk)
            on_progress(Tick(desc, done, total))
            yield chunk
        checker.finish()
    if total is None and done:  # stdin: the total is known at its end
        on_progress(Tick(desc, done, done))


def _count_range(rng: Range) -> Counter[bytes]:
    checker = io.TextChecker(rng.path, rng.start)
    total: Counter[bytes] = Counter()
    for chunk in io.read_chunks(rng.path, 4 << 20, rng.start, rng.stop):
        checker.check(chunk)
        total.update(tokenkeys.count(chunk))
        report_bytes(len(chunk))
    return total


def _runs(paths: list[str]) -> Iterator[tuple[bool, list[str]]]:
    """Group inputs into runs of files (parallel by byte range) and single stdins."""
    run: list[str] = []
    for p in paths:
        if p == io.STDIO:
            if run:
                yield True, run
                run = []
            yield False, [p]
        else:
            run.append(p)
    if run:
        yield True, run


def _progress(on_progress: OnProgress, desc: str, paths: list[str]) -> Any:
    sizes = [io.input_size(p) for p in paths]
    total = sum(s for s in sizes if s) if None not in sizes else None
    return lambda n: on_progress(Tick(desc, n, total))


def count_tokens(paths: list[str], workers: int = 0, on_progress: OnProgress = nothing) -> Counter[str]:
    """Token counts of token-stream files (streamed, in parallel)."""
    total: Counter[bytes] = Counter()
    for is_files, run in _runs(paths):
        if is_files:
            for c in run_jobs(_count_range, file_ranges(run, workers), workers,
                              _progress(on_progress, "count", run)):
                total.update(c)
        else:
            for c in imap_ordered(_count_chunk, _chunks(run, on_progress, "count"), workers):
                total.update(c)
    return Counter({tokenstream.unescape(t.decode("utf-8")): n for t, n in total.items()})


def _guess_level(counts: Counter[str]) -> str:
    return "char" if counts and all(len(t) == 1 for t in counts) else "word"


def build(cfg: BuildConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Count a token stream and save a WordLevel tokenizer.json; return a summary."""
    cfg.validate()
    for p in cfg.inputs:
        if p != io.STDIO:
            io.check_text_file(p, "token stream")
    io.check_output(cfg.output, force)
    meta = read_stream_meta(cfg.inputs[0]) or {}
    if meta.get("level") == "tokenizer":
        raise InputError(f"{cfg.inputs[0]}: this stream was made with a trained tokenizer; use that tokenizer.json")
    counts = count_tokens(cfg.inputs, cfg.workers, on_progress)
    if not counts:
        raise InputError(f"{', '.join(cfg.inputs)}: no tokens found")
    level = cfg.level or meta.get("level") or _guess_level(counts)
    normalize = cfg.normalize if cfg.normalize is not None else list(meta.get("normalize", []))
    ordered = vocabulary.order_tokens(counts, cfg.specials, cfg.min_freq, cfg.max_size or None)
    tokens = [t for t, _ in ordered]
    tok = vocabulary.word_level(tokens, cfg.unk or None, level, normalize)
    tok.add_special_tokens(list(cfg.specials))
    io.write_text_atomic(cfg.output, tok.to_str(pretty=True) + "\n", force)
    kept = set(tokens)
    return {
        "output": cfg.output,
        "level": level,
        "normalize": normalize,
        "size": len(tokens),
        "distinct": len(counts),
        "tokens": sum(counts.values()),
        "oov_tokens": sum(n for t, n in counts.items() if t not in kept),
        "vocab_hash": vocabulary.vocab_hash(tok),
        "top": [(i, t, n) for i, (t, n) in enumerate(ordered[len(cfg.specials):][: cfg.top], len(cfg.specials))],
    }


def _lines(paths: list[str], on_progress: OnProgress) -> Iterator[str]:
    for chunk in _chunks(paths, on_progress, "train"):
        yield from chunk.decode("utf-8").splitlines()


def train(cfg: TrainConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Train a subword tokenizer from raw text and save its tokenizer.json."""
    cfg.validate()
    for p in cfg.inputs:
        if p != io.STDIO:
            io.check_text_file(p, "text")
    io.check_output(cfg.output, force)
    tok = vocabulary.train_subword(_lines(cfg.inputs, on_progress), cfg.model, cfg.vocab_size, cfg.specials,
                                   cfg.normalize, cfg.min_freq)
    io.write_text_atomic(cfg.output, tok.to_str(pretty=True) + "\n", force)
    return {"output": cfg.output, "model": cfg.model, "size": tok.get_vocab_size(),
            "vocab_hash": vocabulary.vocab_hash(tok)}


# ---------------------------------------------------------------- encoding

_W: dict[str, Any] = {}  # per-worker-process state set by _init_*


def _init_stream(table: dict[bytes, int], unk: int) -> None:
    _W["keys"] = tokenkeys.KeyTable(table, unk)
    _W["work"], _W["unk"] = _encode_stream_chunk, unk


def _encode_stream_chunk(chunk: bytes) -> tuple[np.ndarray, np.ndarray]:
    ids, lengths, unknown = _W["keys"].lookup(chunk)
    if unknown and _W["keys"].unk < 0:
        bad = tokenstream.unescape_bytes(unknown[0]).decode("utf-8", "replace")
        raise InputError(f"token {bad!r} is not in the vocabulary and the tokenizer has no unknown token")
    return ids, lengths


def _init_raw(path: str, unk: int) -> None:
    _W["tok"] = vocabulary.load(path)
    _W["work"], _W["unk"] = _encode_raw_chunk, unk


def _encode_raw_chunk(chunk: bytes) -> tuple[np.ndarray, np.ndarray]:
    text = chunk.decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.removesuffix("\r") for ln in lines]
    encs = _W["tok"].encode_batch_fast(lines, add_special_tokens=False)
    lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(lens.sum()))
    return ids, lens


def _encode_chunk(chunk: bytes) -> tuple[np.ndarray, np.ndarray]:
    return _W["work"](chunk)


def _encode_range(job: tuple[Range, str, str]) -> tuple[int, int]:
    """Encode one byte range into part files of ids and line lengths; return (count, unknowns)."""
    rng, part, dtype = job
    checker = io.TextChecker(rng.path, rng.start)
    count, n_unk = 0, 0
    with open(part, "wb") as out, open(part + ".len", "wb") as out_len:
        for chunk in io.read_chunks(rng.path, None, rng.start, rng.stop):
            checker.check(chunk)
            ids, lens = _W["work"](chunk)
            out.write(ids.astype(dtype).tobytes())
            out_len.write(lens.astype("<i8").tobytes())
            count += ids.size
            if _W["unk"] >= 0:
                n_unk += int(np.count_nonzero(ids == _W["unk"]))
            report_bytes(len(chunk))
    return count, n_unk


def stream_table(tok: Any) -> tuple[dict[bytes, int], int]:
    """Escaped stream token (bytes) -> id, and the unknown token's id (-1: none)."""
    vocab = tok.get_vocab(with_added_tokens=True)
    table = {tokenstream.escape(t).encode("utf-8"): i for t, i in vocab.items()}
    model = json.loads(tok.to_str()).get("model", {})
    unk_tok = model.get("unk_token")
    return table, vocab.get(unk_tok, -1) if unk_tok else -1


def encode(cfg: EncodeConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Encode token streams (or raw text with `raw`) into one id file."""
    tok = vocabulary.load(cfg.tokenizer)
    for p in cfg.inputs:
        if p != io.STDIO:
            io.check_text_file(p, "text")
    vhash = vocabulary.vocab_hash(tok)
    table, unk_id = stream_table(tok)
    init, initargs = (_init_raw, (cfg.tokenizer, unk_id)) if cfg.raw else (_init_stream, (table, unk_id))
    writer = IdWriter(cfg.output, tok.get_vocab_size(with_added_tokens=True), vhash, force,
                      extra={"tokenizer": str(cfg.tokenizer), "inputs": cfg.inputs,
                             "input_kind": "raw" if cfg.raw else "tokens"})
    n_unk = 0
    parts_dir = new_parts_dir(Path(cfg.output).resolve().parent)
    try:
        for is_files, run in _runs(cfg.inputs):
            if is_files:
                ranges = file_ranges(run, cfg.workers)
                jobs = [(r, os.path.join(parts_dir, f"part-{r.index}"), writer.dtype.str) for r in ranges]
                results = run_jobs(_encode_range, jobs, cfg.workers, _progress(on_progress, "encode", run),
                                   init, initargs)
                for (_, part, _), (count, unk) in zip(jobs, results):
                    writer.append_file(part, count, part + ".len")
                    os.unlink(part)
                    os.unlink(part + ".len")
                    n_unk += unk
            else:
                for ids, lens in imap_ordered(_encode_chunk, _chunks(run, on_progress, "encode"), cfg.workers,
                                              init, initargs):
                    if unk_id >= 0:
                        n_unk += int(np.count_nonzero(ids == unk_id))
                    writer.write(ids, lens)
        meta = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return {"output": cfg.output, "count": meta["count"], "lines": meta["lines"], "dtype": meta["dtype"],
            "unknown": n_unk, "vocab_hash": vhash}


# ---------------------------------------------------------------- decoding

def decode_lines(tok: Any, ids_file: IdFile, batch_lines: int = 4096) -> Iterator[str]:
    """Text of each line of an id file, decoded with the tokenizer."""
    spec = json.loads(tok.to_str())
    dec, model = spec.get("decoder"), spec.get("model", {}).get("type")
    joiner = None
    if model == "WordLevel":
        joiner = "" if dec and dec.get("type") == "Fuse" else (" " if dec is None else None)
    size = tok.get_vocab_size(with_added_tokens=True)
    ids_file.check_ids(size)
    offsets = np.asarray(ids_file.offsets)
    if joiner is not None:
        inv = np.empty(size, dtype=object)
        for t, i in tok.get_vocab(with_added_tokens=True).items():
            inv[i] = t
        for start in range(0, offsets.size - 1, batch_lines):
            stop = min(start + batch_lines, offsets.size - 1)
            toks = inv[np.asarray(ids_file.ids[offsets[start]:offsets[stop]])].tolist()
            base = int(offsets[start])
            for i in range(start, stop):
                yield joiner.join(toks[offsets[i] - base: offsets[i + 1] - base])
    else:
        for start in range(0, offsets.size - 1, batch_lines):
            stop = min(start + batch_lines, offsets.size - 1)
            seqs = [np.asarray(ids_file.ids[offsets[i]:offsets[i + 1]]).tolist() for i in range(start, stop)]
            yield from tok.decode_batch(seqs, skip_special_tokens=False)


def decode(cfg: DecodeConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Decode an id file to text, one line per encoded line."""
    tok = vocabulary.load(cfg.tokenizer)
    ids_file = IdFile.open(cfg.input)
    ids_file.check_vocab(vocabulary.vocab_hash(tok), cfg.tokenizer, tok.get_vocab_size(with_added_tokens=True))
    n = 0
    with io.open_output(cfg.output, force) as out:
        for line in decode_lines(tok, ids_file):
            out.write(line.encode("utf-8") + b"\n")
            n += 1
            if n % 65536 == 0:
                on_progress(Tick("decode", n, ids_file.offsets.size - 1, unit="line"))
    if n:
        on_progress(Tick("decode", n, n, unit="line"))
    return {"output": cfg.output, "lines": n}
