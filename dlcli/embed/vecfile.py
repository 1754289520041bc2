"""Word-vector files: the word2vec text (.vec) and binary (.bin) formats, and
dlcli embed run directories.

Text: a header line `N D`, then N lines `word v1 ... vD` (values separated by
one space). dlcli writes each float32 in its shortest decimal form that reads
back to the same float32, so a .vec file round-trips bit for bit.

Binary (word2vec.c): the same header line, then for each word its UTF-8 bytes,
a space and D little-endian float32 (dlcli adds a newline after each vector as
word2vec.c does; readers skip it).

Both are what gensim's `KeyedVectors.load_word2vec_format` and fastText read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dlcli.core.io import AtomicGroup, check_input_file
from dlcli.errors import ConfigError, InputError

FORMAT = "dlcli-embeddings"
_ASCII_WS = re.compile(r"[ \t\n\r\v\f]")
VECTOR_FILES = ("vectors.vec", "vectors.bin")
UNK = "<unk>"


# ---------------------------------------------------------------- writing

def write_text(f: BinaryIO, words: list[str], W: np.ndarray, rows: int = 4096) -> None:
    """The word2vec text format; values in shortest round-trip float32 form."""
    words = _safe_words(words)
    W = np.asarray(W, dtype=np.float32)
    f.write(f"{W.shape[0]} {W.shape[1]}\n".encode())
    for a in range(0, W.shape[0], rows):
        text = W[a:a + rows].astype(str)  # numpy's shortest repr of each float32
        f.write("".join(f"{w} {' '.join(r)}\n" for w, r in zip(words[a:a + rows], text.tolist())).encode("utf-8"))


def write_binary(f: BinaryIO, words: list[str], W: np.ndarray) -> None:
    """The word2vec binary format (little-endian float32)."""
    words = _safe_words(words)
    W = np.ascontiguousarray(W, dtype="<f4")
    f.write(f"{W.shape[0]} {W.shape[1]}\n".encode())
    f.writelines(w.encode("utf-8") + b" " + row.tobytes() + b"\n" for w, row in zip(words, W))


def _safe_words(words: list[str]) -> list[str]:
    """Words as written: one holding whitespace (a char-level space token) is escaped as in token streams."""
    from dlcli.text.tokenstream import escape

    if any(not w for w in words):
        raise InputError("an empty word cannot be written to a word2vec file")
    return [escape(w) if _ASCII_WS.search(w) else w for w in words]


# ---------------------------------------------------------------- reading

def read(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Words and float32 matrix of a .vec (text) or .bin (binary) file; malformed files are one clear error."""
    p = check_input_file(path, "word-vector")
    data = p.read_bytes()
    nl = data.find(b"\n")
    header = data[:nl if nl >= 0 else len(data)].split()
    try:
        n, d = (int(x) for x in header)
        if n < 0 or d < 1:
            raise ValueError
    except ValueError:
        raise InputError(f"{p}: wrong header {data[:40].splitlines()[0]!r}: expected 'N D' (word count and "
                         "dimension)") from None
    body = data[nl + 1:] if nl >= 0 else b""
    if _is_binary(p, body, n, d):
        return _read_binary(p, body, n, d)
    return _read_text(p, body, n, d)


def _is_binary(p: Path, body: bytes, n: int, d: int) -> bool:
    if p.suffix == ".bin":
        return True
    if p.suffix in (".vec", ".txt"):
        return False
    head = body[:4096]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start < len(head) - 4  # a cut multi-byte character at the end is still text
    return b"\x00" in head


def _read_text(p: Path, body: bytes, n: int, d: int) -> tuple[list[str], np.ndarray]:
    lines = body.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != n:
        raise InputError(f"{p}: header says {n} words but the file has {len(lines)} vector lines")
    words: list[str] = []
    values: list[bytes] = []
    for i, line in enumerate(lines, 2):
        parts = line.split()
        if len(parts) != d + 1:
            raise InputError(f"{p}: line {i} has {len(parts) - 1} values, expected {d} (ragged row)")
        try:
            words.append(parts[0].decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{p}: line {i}: the word is not UTF-8") from None
        values += parts[1:]
    try:
        W = np.array(values, dtype=np.bytes_).astype(np.float32) if values else np.zeros(0, np.float32)
    except ValueError:
        bad = next(i for i, line in enumerate(lines, 2) if not _floats_ok(line))
        raise InputError(f"{p}: line {bad} has a value that is not a number") from None
    return words, W.reshape(n, d)


def _floats_ok(line: bytes) -> bool:
    try:
        np.array(line.split()[1:], dtype=np.bytes_).astype(np.float32)
        return True
    except ValueError:
        return False


def _read_binary(p: Path, body: bytes, n: int, d: int) -> tuple[list[str], np.ndarray]:
    # Find every vector before allocating: a header claiming more than the file holds (999999999999 x
    # 99999999) then fails at the word where the bytes run out, not in np.empty.
    words: list[str] = []
    starts: list[int] = []
    pos, size = 0, d * 4
    for i in range(n):
        while pos < len(body) and body[pos:pos + 1] in (b"\n", b" "):
            pos += 1
        sp = body.find(b" ", pos)
        if sp < 0 or sp + 1 + size > len(body):
            raise InputError(f"{p}: binary vectors end early at word {i + 1} of {n} (truncated file, or a header "
                             "that claims too much?)")
        try:
            words.append(body[pos:sp].decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{p}: word {i + 1} is not UTF-8 (is this really a binary word2vec file?)") from None
        starts.append(sp + 1)
        pos = sp + 1 + size
    if body[pos:].strip():
        raise InputError(f"{p}: {len(body) - pos} bytes after the {n} vectors the header announces")
    W = np.empty((n, d), dtype=np.float32)
    for i, start in enumerate(starts):
        W[i] = np.frombuffer(body, dtype="<f4", count=d, offset=start)
    return words, W


# ---------------------------------------------------------------- safetensors (numpy, no torch)

def tensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)


def load_tensors(path: str | Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such weights file")
    try:
        return load_file(str(p))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise InputError(f"{p}: damaged or not a safetensors file ({str(e).splitlines()[0]})") from None


# ---------------------------------------------------------------- any source of vectors

def load_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(words, float32 matrix) from an embed run directory, a .vec or a .bin file.

    For a run directory the words are its trained words, most frequent first
    (specials and words below min-count are left out).
    """
    p = Path(path)
    if p.is_dir():
        if (p / "embeddings.safetensors").is_file() and (p / "tokenizer.json").is_file():
            return _from_run(p)
        for name in VECTOR_FILES:
            if (p / name).is_file():
                return read(p / name)
        raise InputError(f"{p}: not an embed run directory (no embeddings.safetensors or vectors.vec)")
    return read(p)


def _from_run(run: Path) -> tuple[list[str], np.ndarray]:
    import json

    t = load_tensors(run / "embeddings.safetensors")
    if "embeddings" not in t:
        raise InputError(f"{run / 'embeddings.safetensors'}: no 'embeddings' tensor (not an embed run?)")
    emb = t["embeddings"].astype(np.float32, copy=False)
    try:
        vocab = json.loads((run / "tokenizer.json").read_text(encoding="utf-8"))
        added = {a["content"]: a["id"] for a in vocab.get("added_tokens", [])}
        mapping: dict[str, int] = {**vocab["model"]["vocab"], **added} if isinstance(
            vocab["model"].get("vocab"), dict) else _pairs(vocab["model"]["vocab"], added)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise InputError(f"{run / 'tokenizer.json'}: not a readable tokenizer.json") from None
    inv = [""] * emb.shape[0]
    for tok, i in mapping.items():
        if 0 <= i < len(inv):
            inv[i] = tok
    rows = np.flatnonzero(t["trained"]) if "trained" in t else np.arange(emb.shape[0])
    if "counts" in t:
        rows = rows[np.argsort(-t["counts"][rows], kind="stable")]
    return [inv[i] for i in rows], emb[rows]


def _pairs(vocab: Any, added: dict[str, int]) -> dict[str, int]:
    """Unigram vocabularies are [token, score] lists: id = position."""
    return {**{tok: i for i, (tok, _) in enumerate(vocab)}, **added}


def vectors_mapping(path: str | Path) -> dict[str, np.ndarray]:
    """{word: vector} for `dlcli.lm.embeddings.init_embedding`."""
    words, W = load_vectors(path)
    return dict(zip(words, W))


# ---------------------------------------------------------------- run directories

def write_run(run: Path, tokenizer: Any, words: list[str], rows: np.ndarray, W_in: np.ndarray,
              W_out: np.ndarray | None = None, counts: np.ndarray | None = None, binary: bool = False) -> list[str]:
    """tokenizer.json, embeddings.safetensors (one row per tokenizer id), vectors.vec (and .bin), together.

    Row rows[i] of the saved matrices holds word i; other rows (specials,
    trimmed words) are zero and marked untrained.
    """
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    tensors = {"embeddings": np.zeros((size, W_in.shape[1]), dtype=np.float32),
               "trained": np.zeros(size, dtype=np.uint8)}
    tensors["embeddings"][rows] = W_in
    tensors["trained"][rows] = 1
    if W_out is not None:
        tensors["context"] = np.zeros_like(tensors["embeddings"])
        tensors["context"][rows] = W_out
    if counts is not None:
        tensors["counts"] = np.zeros(size, dtype=np.int64)
        tensors["counts"][rows] = counts
    names = ["tokenizer.json", "embeddings.safetensors", "vectors.vec"] + (["vectors.bin"] if binary else [])
    with AtomicGroup(force=True) as group:
        with group.open(run / "tokenizer.json") as f:
            f.write((tokenizer.to_str(pretty=True) + "\n").encode("utf-8"))
        with group.open(run / "vectors.vec") as f:
            write_text(f, words, W_in)
        if binary:
            with group.open(run / "vectors.bin") as f:
                write_binary(f, words, W_in)
        with group.open(run / "embeddings.safetensors") as f:
            f.write(tensors_bytes(tensors, {"format": FORMAT}))
    return [str(run / n) for n in names]


@dataclass
class ImportConfig:
    """Options of `dlcli embed import` (a .vec/.bin file -> an embed run directory)."""

    input: str = ""
    output: str = "runs/vectors"
    binary: bool = False  # also write vectors.bin


def import_vectors(cfg: ImportConfig, force: bool = False) -> dict[str, Any]:
    """Make a run directory from vectors trained elsewhere, so every embed command (and
    --init-embeddings) can use them."""
    from dlcli.core import rundir
    from dlcli.text import vocabulary

    if not cfg.input:
        raise ConfigError("input: no vector file given")
    words, W = read(cfg.input)
    if not words:
        raise InputError(f"{cfg.input}: holds no vectors")
    first: dict[str, int] = {}
    for i, w in enumerate(words):
        first.setdefault(w, i)
    keep = np.array(sorted(first.values()), dtype=np.int64)
    words = [words[i] for i in keep]
    specials = [] if UNK in first else [UNK]
    tok = vocabulary.word_level(specials + words, UNK if specials else None, "word", [])
    if specials:
        tok.add_special_tokens(specials)
    run = rundir.create(cfg.output, cfg, "embed-import", inputs=[cfg.input], force=force)
    for name in VECTOR_FILES:
        (run / name).unlink(missing_ok=True)
    written = write_run(run, tok, words, np.arange(len(specials), len(specials) + len(words)), W[keep],
                       binary=cfg.binary)
    return {"run": str(run), "words": len(words), "dim": int(W.shape[1]), "duplicates": int(W.shape[0] - keep.size),
            "written": written}
