"""Id files: token ids as a flat memory-mappable array plus a JSON sidecar.

    corpus.ids               raw little-endian uint16 (vocab <= 65,536) or uint32
    corpus.ids.json          {"format": "dlcli-ids", "version": 1, "dtype", "count",
                              "lines", "vocab_size", "vocab_hash", "tokenizer", ...}
    corpus.ids.offsets.npy   int64[lines + 1]: line i is ids[offsets[i]:offsets[i+1]]

`numpy.memmap("corpus.ids", dtype=meta["dtype"], mode="r")` reads the ids;
`numpy.load("corpus.ids.offsets.npy", mmap_mode="r")` the line offsets.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core.io import AtomicGroup, check_input_file, check_output
from dlcli.errors import InputError

FORMAT = "dlcli-ids"
STREAM_FORMAT = "dlcli-tokens"  # a token stream's sidecar (text/preprocess.py)
VERSION = 1
_MAX_BLOCK = 1 << 24  # ids read at once when looking for the largest (64 MB of uint32)


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def sidecar_path(path: str | Path) -> Path:
    return Path(f"{path}.json")


def offsets_path(path: str | Path) -> Path:
    return Path(f"{path}.offsets.npy")


def _beside(path: Path, side: Path, name: object) -> Path:
    """The file the sidecar's `offsets` entry names, which must lie beside the ids: a bare file name, and
    not a link out of the folder (unless the id file is itself a link, as in a dataset cache)."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise InputError(f"{side}: 'offsets' must name a file beside {path.name}, not {name!r}")
    off = path.parent / name
    if not path.is_symlink() and not off.resolve().is_relative_to(path.parent.resolve()):
        raise InputError(f"{side}: 'offsets' {name} links to {off.resolve()}, outside {path.parent} (refused)")
    return off


class IdWriter:
    """Streams ids to disk; the three files appear together on `close()`."""

    def __init__(self, path: str | Path, vocab_size: int, vocab_hash: str, force: bool = False,
                 extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        for p in (self.path, sidecar_path(path), offsets_path(path)):
            check_output(p, force)
        self.dtype = dtype_for(vocab_size)
        self.vocab_size = vocab_size
        self.vocab_hash = vocab_hash
        self.extra = extra or {}
        self.group = AtomicGroup(force)
        self._ids = self.group.open(self.path)
        # Line offsets stream to a raw temp file (memory stays flat however
        # many lines); close() turns it into the .npy.
        self._offsets = tempfile.TemporaryFile(dir=self.path.resolve().parent)  # noqa: SIM115 - closed in close()/abort()
        self._offsets.write(np.zeros(1, dtype="<i8").tobytes())
        self.count = 0
        self.lines = 0

    def _add_lengths(self, line_lengths: np.ndarray) -> None:
        offsets = self.count + np.cumsum(np.asarray(line_lengths, dtype=np.int64))
        self._offsets.write(offsets.astype("<i8").tobytes())
        self.lines += offsets.size

    def write(self, ids: np.ndarray, line_lengths: np.ndarray | list[int]) -> None:
        """Append the ids of some whole lines and the number of ids in each."""
        if ids.size and int(ids.max()) >= self.vocab_size:
            raise ValueError("id out of range for the vocabulary")
        self._ids.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self._add_lengths(np.asarray(line_lengths))
        self.count += int(ids.size)

    def append_file(self, path: str, count: int, lengths_path: str) -> None:
        """Append ids already written in this writer's dtype to a part file,
        with their line lengths (raw int64) in another."""
        with open(path, "rb") as f:
            shutil.copyfileobj(f, self._ids, 1 << 22)
        start = self.count
        with open(lengths_path, "rb") as f:
            while block := f.read(1 << 23):
                lengths = np.frombuffer(block, dtype="<i8")
                self._add_lengths(lengths)
                self.count += int(lengths.sum())
        assert self.count == start + int(count), "line lengths do not add up to the id count"

    def close(self) -> dict[str, Any]:
        self._ids.close()
        with self.group.open(offsets_path(self.path)) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<i8", "fortran_order": False, "shape": (self.lines + 1,)})
            self._offsets.seek(0)
            shutil.copyfileobj(self._offsets, f, 1 << 22)
        self._offsets.close()
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": self.dtype.name,
            "byteorder": "little",
            "count": self.count,
            "lines": self.lines,
            "vocab_size": self.vocab_size,
            "vocab_hash": self.vocab_hash,
            "offsets": offsets_path(self.path).name,
            **self.extra,
        }
        with self.group.open(sidecar_path(self.path)) as f:
            f.write((json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode())
        self.group.commit()  # sidecar last: a reader that finds it finds the rest
        return meta

    def abort(self) -> None:
        if not self._ids.closed:
            self._ids.close()
        self._offsets.close()
        self.group.abort()


def _refuse_text(path: Path, sidecar: Any) -> None:
    """A token stream (its sidecar says so, or its name ends in .tok) or a text file given where ids are
    wanted: say how to make the id file."""
    stream = isinstance(sidecar, dict) and sidecar.get("format") == STREAM_FORMAT
    if not stream:
        with open(path, "rb") as f:
            head = f.read(8192)
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(head) - 3:  # not just a character cut at the end of the block
                return
        if b"\x00" in head:
            return
        stream = path.suffix == ".tok"
    what, raw = ("a token stream", "") if stream else ("a text file", " --raw")
    raise InputError(f"{path} is {what}, not an id file: run `dlcli vocab encode {path}{raw} -t TOKENIZER "
                     f"-o {path.with_suffix('.ids')}` first")


@dataclass
class IdFile:
    """A read-only view of an id file."""

    path: Path
    meta: dict[str, Any]
    ids: np.ndarray
    offsets: np.ndarray
    _max_id: int | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> IdFile:
        p = Path(path)
        check_input_file(p, "id")
        side = sidecar_path(p)
        if not side.is_file():
            _refuse_text(p, None)
            raise InputError(f"{p}: missing sidecar {side.name} (is this an id file written by 'dlcli vocab encode'?)")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{side}: malformed JSON: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            _refuse_text(p, meta)
            raise InputError(f"{side}: not a dlcli id file sidecar (format is not '{FORMAT}')")
        if meta.get("version") != VERSION:
            raise InputError(f"{side}: unsupported id file version {meta.get('version')!r}")
        try:
            dtype = np.dtype(meta["dtype"]).newbyteorder("<")
            count = int(meta["count"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{side}: bad or missing field: {e}") from None
        size = p.stat().st_size
        if size != count * dtype.itemsize:
            raise InputError(f"{p}: size {size} bytes does not match {count} ids of {dtype.name} in {side.name} "
                             "(truncated or from another run?)")
        ids = np.memmap(p, dtype=dtype, mode="r")
        off_path = _beside(p, side, meta.get("offsets", offsets_path(p).name))
        try:
            offsets = np.load(off_path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise InputError(f"{off_path}: cannot read line offsets: {e}") from None
        if offsets.ndim != 1 or offsets.size != meta.get("lines", -1) + 1 or int(offsets[-1]) != count:
            raise InputError(f"{off_path}: line offsets do not match {side.name}")
        return cls(p, meta, ids, offsets)

    @property
    def vocab_hash(self) -> str:
        return str(self.meta.get("vocab_hash", ""))

    def check_vocab(self, vocab_hash: str, tokenizer_name: str, vocab_size: int) -> None:
        """Refuse ids made with a different vocabulary, or any id the tokenizer (and so a model's
        embedding) has no row for."""
        if self.vocab_hash != vocab_hash:
            raise InputError(
                f"{self.path}: vocabulary mismatch: ids were made with vocabulary {self.vocab_hash[:12]} "
                f"({self.meta.get('tokenizer', '?')}), but {tokenizer_name} has {vocab_hash[:12]}"
            )
        self.check_ids(vocab_size, tokenizer_name)

    def check_ids(self, vocab_size: int, tokenizer_name: str = "the tokenizer") -> None:
        """Refuse an id at or beyond `vocab_size` (the sidecar's hash can match while the ids do not)."""
        top = self.max_id()
        if top >= vocab_size:
            raise InputError(f"{self.path}: ids go up to {top}, but {tokenizer_name} has {vocab_size} entries "
                             f"(ids must be below {vocab_size}; was the id file made with another tokenizer "
                             "or damaged?)")

    def max_id(self) -> int:
        """The largest id (-1 for no ids), read once in blocks from the memory map."""
        if self._max_id is None:
            top = -1
            for a in range(0, self.ids.size, _MAX_BLOCK):
                top = max(top, int(self.ids[a:a + _MAX_BLOCK].max()))
            self._max_id = top
        return self._max_id

    def line(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def __len__(self) -> int:
        return int(self.meta["count"])
