"""The training corpus of `dlcli embed train`: word ids, sentences, vocabulary,
subsampling and noise distributions.

Input is a token stream from `dlcli preprocess` (its vocabulary is counted
here) or an id file from `dlcli vocab encode` with its tokenizer.json. Words
seen fewer than `min_count` times and special tokens are dropped from the
sentences before windows are formed, as word2vec does; each input line is a
sentence (long lines are cut every MAX_SENTENCE words, as gensim does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core import io
from dlcli.core.idfile import IdFile, sidecar_path
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import InputError

MAX_SENTENCE = 10_000
NOISE_POWER = 0.75
UNK = "<unk>"


@dataclass
class Corpus:
    """Word ids ready for the kernels, and how they map back to the tokenizer."""

    source: str
    tokenizer: Any  # tokenizers.Tokenizer whose ids are the rows of the saved matrices
    words: list[str]  # the trained vocabulary, most frequent first
    counts: np.ndarray  # int64, per trained word
    rows: np.ndarray  # int64, the tokenizer id of each trained word
    ids: np.ndarray  # int32, trained-word ids of the corpus with dropped words removed
    sent_starts: np.ndarray  # int64[sentences + 1]: sentence i is ids[sent_starts[i]:sent_starts[i+1]]
    raw_words: int  # tokens in the input, dropped ones included

    @property
    def words_total(self) -> int:
        return int(self.ids.size)


def is_id_file(path: str) -> bool:
    side = sidecar_path(path)
    if not side.is_file():
        return False
    try:
        return json.loads(side.read_text(encoding="utf-8")).get("format") == "dlcli-ids"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def load(path: str, tokenizer: str = "", min_count: int = 5, workers: int = 0,
         on_progress: OnProgress = nothing) -> Corpus:
    """Read an id file or a token stream and trim its vocabulary to words seen `min_count` times."""
    from dlcli.text import vocabulary

    if path != io.STDIO and is_id_file(path):
        f = IdFile.open(path)
        tok_path = tokenizer or _sidecar_tokenizer(f)
        tok = vocabulary.load(tok_path)
        f.check_vocab(vocabulary.vocab_hash(tok), str(tok_path), tok.get_vocab_size(with_added_tokens=True))
        ids, offsets = f.ids, np.asarray(f.offsets)
    else:
        if tokenizer:
            raise InputError(f"{path}: --tokenizer goes with an id file; a token stream's vocabulary is counted "
                             "from the stream itself")
        tok, ids, offsets = _read_stream(path, workers, on_progress)
    return _trim(path, tok, ids, offsets, min_count)


def _sidecar_tokenizer(f: IdFile) -> str:
    name = f.meta.get("tokenizer")
    if not name:
        raise InputError(f"{f.path}: the id file does not name its tokenizer; give one with --tokenizer")
    for cand in (Path(name), f.path.parent / name, f.path.parent / Path(name).name):
        if cand.is_file():
            return str(cand)
    raise InputError(f"{f.path}: its tokenizer {name} was not found; give it with --tokenizer")


def _read_stream(path: str, workers: int, on_progress: OnProgress) -> tuple[Any, np.ndarray, np.ndarray]:
    """Count a token stream, build its full word-level tokenizer and look every token up (vectorised)."""
    from dlcli.text import tokenkeys, vocab, vocabulary
    from dlcli.text.preprocess import read_stream_meta

    if path == io.STDIO:
        raise InputError("-: embed train reads a file (it passes over the corpus more than once), not stdin")
    io.check_text_file(path, "token stream")
    meta = read_stream_meta(path) or {}
    if meta.get("level") == "tokenizer":
        raise InputError(f"{path}: this stream was made with a trained tokenizer; encode it with 'dlcli vocab "
                         "encode' and train on the id file")
    counts = vocab.count_tokens([path], workers, on_progress)
    if not counts:
        raise InputError(f"{path}: no tokens found")
    ordered = vocabulary.order_tokens(counts, [UNK])
    tok = vocabulary.word_level([t for t, _ in ordered], UNK, meta.get("level") or "word",
                                list(meta.get("normalize", [])))
    tok.add_special_tokens([UNK])
    table, unk = vocab.stream_table(tok)
    keys = tokenkeys.KeyTable(table, unk)
    id_parts, len_parts = [], []
    size, done = io.input_size(path), 0
    for chunk in io.read_chunks(path, 4 << 20):
        ids, lengths, _ = keys.lookup(chunk)
        id_parts.append(ids.astype(np.int32))
        len_parts.append(lengths)
        done += len(chunk)
        on_progress(Tick("read", done, size))
    lengths = np.concatenate(len_parts)
    return tok, np.concatenate(id_parts), np.concatenate(([0], np.cumsum(lengths)))


def _trim(source: str, tok: Any, ids: np.ndarray, offsets: np.ndarray, min_count: int) -> Corpus:
    """Keep non-special words seen at least `min_count` times; renumber them by count."""
    size = tok.get_vocab_size(with_added_tokens=True)
    counts = np.zeros(size, dtype=np.int64)
    for a in range(0, ids.size, 1 << 24):  # bounded memory on a memory-mapped id file
        counts += np.bincount(np.asarray(ids[a:a + (1 << 24)]), minlength=size)[:size]
    special = np.zeros(size, dtype=bool)
    special[list(tok.get_added_tokens_decoder())] = True
    trained = np.flatnonzero((counts >= min_count) & ~special)
    if trained.size == 0:
        top = int(counts[~special].max()) if (~special).any() else 0
        raise InputError(f"{source}: every word is below min-count {min_count} (the most frequent is seen {top} "
                         "times); lower --min-count")
    trained = trained[np.argsort(-counts[trained], kind="stable")]  # by count, ties by tokenizer id
    remap = np.full(size, -1, dtype=np.int64)
    remap[trained] = np.arange(trained.size)
    kept_ids, kept_per_line = [], np.zeros(offsets.size, dtype=np.int64)
    for a in range(0, ids.size, 1 << 24):
        m = remap[np.asarray(ids[a:a + (1 << 24)])]
        keep = m >= 0
        kept_ids.append(m[keep].astype(np.int32))
        # kept words before each line start, by differences of a running count
        ends = np.clip(offsets - a, 0, keep.size)
        kept_per_line += np.concatenate(([0], np.cumsum(keep)))[ends]
    new_ids = np.concatenate(kept_ids) if kept_ids else np.zeros(0, dtype=np.int32)
    starts = _cut_long(kept_per_line)
    vocab = tok.get_vocab(with_added_tokens=True)
    inv = [""] * size
    for t, i in vocab.items():
        inv[i] = t
    words = [inv[i] for i in trained]
    out_tok, rows = _trimmed_tokenizer(tok, words, special, inv)
    return Corpus(source, out_tok, words, counts[trained], rows if rows is not None else trained.astype(np.int64),
                  new_ids, starts, int(ids.size))


def _cut_long(starts: np.ndarray) -> np.ndarray:
    """Drop empty sentences and cut those longer than MAX_SENTENCE words."""
    starts = np.unique(starts)
    lengths = np.diff(starts)
    if lengths.size and lengths.max() > MAX_SENTENCE:
        extra = [np.arange(s + MAX_SENTENCE, e, MAX_SENTENCE) for s, e in zip(starts[:-1], starts[1:])
                 if e - s > MAX_SENTENCE]
        starts = np.unique(np.concatenate([starts, *extra]))
    return starts.astype(np.int64)


def _trimmed_tokenizer(tok: Any, words: list[str], special: np.ndarray, inv: list[str]
                       ) -> tuple[Any, np.ndarray | None]:
    """A word-level tokenizer holding the specials, then the trained words (by count).

    Subword tokenizers are kept as they are (their rows then cover every id;
    rows of untrained tokens stay zero): returns (tokenizer, None) for them.
    """
    from tokenizers import Tokenizer

    spec = json.loads(tok.to_str())
    if spec.get("model", {}).get("type") != "WordLevel":
        return tok, None
    specials = [inv[i] for i in np.flatnonzero(special)]
    vocab = {t: i for i, t in enumerate(specials + words)}
    spec["model"]["vocab"] = vocab
    for added in spec.get("added_tokens", []):
        added["id"] = vocab[added["content"]]
    return Tokenizer.from_str(json.dumps(spec)), np.arange(len(specials), len(specials) + len(words), dtype=np.int64)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Mikolov's subsampling: P(keep w) = (sqrt(f/(sT)) + 1) sT/f, capped at 1; scaled to 2**32 for the kernel."""
    if sample <= 0:
        p = np.ones(counts.size)
    else:
        threshold = sample * counts.sum()
        p = np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)
    return np.round(p * 2.0**32).astype(np.uint64)


def keep_fractions(counts: np.ndarray, sample: float) -> np.ndarray:
    """keep_probabilities as fractions in [0, 1]."""
    return keep_probabilities(counts, sample).astype(np.float64) / 2.0**32


def noise_weights(counts: np.ndarray, power: float = NOISE_POWER) -> np.ndarray:
    """The noise distribution of negative sampling, unnormalised: count ** 0.75."""
    return counts.astype(np.float64) ** power


def effective_words(counts: np.ndarray, sample: float) -> float:
    """Expected words per epoch after subsampling."""
    return float((keep_fractions(counts, sample) * counts).sum())
