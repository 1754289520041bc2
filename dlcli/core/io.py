"""File handling shared by every command: input checks, streamed reading,
atomic writes, and `-` for stdin/stdout."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dlcli.errors import InputError, OutputExistsError

STDIO = "-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file
CHUNK_BYTES = 1 << 20


def check_input_file(path: str | os.PathLike[str], what: str = "input") -> Path:
    """Return `path` if it is a readable, non-empty regular file, else raise."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a {what} file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: {what} file is empty")
    return p


def check_text_file(path: str | os.PathLike[str], what: str = "text") -> Path:
    """`check_input_file`, and refuse a binary file (a NUL byte near the start)."""
    p = check_input_file(path, what)
    with open(p, "rb") as f:
        if b"\x00" in f.read(8192):
            raise InputError(f"{p}: looks like a binary file (NUL byte), expected UTF-8 text")
    return p


def check_output(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse to clobber an existing output unless `force`."""
    p = Path(path)
    if p.is_dir():
        raise OutputExistsError(f"{p}: is a directory, expected an output file path")
    if p.exists() and not force:
        raise OutputExistsError(f"{p}: already exists (use --force to overwrite)")
    if not p.parent.exists():
        raise InputError(f"{p.parent}: output directory does not exist")
    return p


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], force: bool = False) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; rename it over `path` only on success.

    On any exception (Ctrl-C included) the temp file is removed, so a reader
    never sees a half-written output and an existing file is left untouched.
    """
    p = check_output(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".dlcli-tmp", dir=p.parent)
    os.fchmod(fd, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class AtomicGroup:
    """Several outputs that appear together or not at all.

    Files are written to temps; `commit()` renames them in order (put the file
    readers check first, such as a sidecar, last).
    """

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._pending: list[tuple[str, Path]] = []

    def open(self, path: str | os.PathLike[str]) -> BinaryIO:
        p = check_output(path, self.force)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".dlcli-tmp", dir=p.parent)
        os.fchmod(fd, _FILE_MODE)
        self._pending.append((tmp, p))
        return os.fdopen(fd, "wb")

    def commit(self) -> None:
        for tmp, p in self._pending:
            os.replace(tmp, p)
        self._pending.clear()

    def abort(self) -> None:
        for tmp, _ in self._pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()

    def __enter__(self) -> AtomicGroup:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextlib.contextmanager
def open_output(path: str, force: bool = False) -> Iterator[BinaryIO]:
    """A binary output stream: stdout for `-`, else an atomic file."""
    if path == STDIO:
        out = sys.stdout.buffer
        yield out
        out.flush()
    else:
        with atomic_write(path, force) as f:
            yield f


def write_text_atomic(path: str | os.PathLike[str], text: str, force: bool = False) -> None:
    with atomic_write(path, force) as f:
        f.write(text.encode("utf-8"))


def input_size(path: str) -> int | None:
    """Bytes in a file input, or None for stdin."""
    return None if path == STDIO else Path(path).stat().st_size


def read_chunks(path: str, chunk_bytes: int | None = None, start: int = 0,
                stop: int | None = None) -> Iterator[bytes]:
    """Yield the raw bytes of `path` (or stdin) in pieces that end on a newline.

    With `start`/`stop`, only that byte range of a file is read (use
    `line_ranges` for ranges that begin and end on line boundaries). Memory
    stays bounded by the chunk size plus the longest line. The final piece
    may lack a trailing newline.
    """
    if path == STDIO:
        f: BinaryIO = sys.stdin.buffer
        close = False
    else:
        if start == 0:
            check_input_file(path)
        f = open(path, "rb")  # noqa: SIM115 - closed below
        f.seek(start)
        close = True
    left = None if stop is None else stop - start
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    try:
        rest = b""
        while True:
            want = chunk_bytes if left is None else min(chunk_bytes, left)
            block = f.read(want) if want > 0 else b""
            if left is not None:
                left -= len(block)
            if not block:
                if rest:
                    yield rest
                return
            block = rest + block
            cut = block.rfind(b"\n")
            if cut < 0:
                rest = block
                continue
            yield block[: cut + 1]
            rest = block[cut + 1 :]
    finally:
        if close:
            f.close()


def line_ranges(path: str, n: int) -> list[tuple[int, int]]:
    """Split a file into at most `n` byte ranges that start at line starts."""
    size = Path(path).stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, n):
            pos = max(size * k // n, cuts[-1])
            f.seek(pos)
            f.readline()  # move to the start of the next line
            cuts.append(min(f.tell(), size))
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def line_number(path: str, offset: int) -> int:
    """1-based line number of byte `offset` in a file."""
    n = 1
    for chunk in read_chunks(path, CHUNK_BYTES, 0, offset):
        n += chunk.count(b"\n")
    return n


class TextChecker:
    """Checks raw chunks of one input as they stream: UTF-8, binary, empty.

    Errors name the file, the line and the byte offset of the bad byte. A
    checker for a range that starts mid-file (`offset` > 0) works out the
    line number only when it has an error to report.
    """

    def __init__(self, name: str, offset: int = 0) -> None:
        self.path = name
        self.name = "<stdin>" if name == STDIO else name
        self.start = offset
        self.offset = offset
        self.line = 1 if offset == 0 else None

    def check(self, chunk: bytes) -> None:
        """Validate the next chunk of this input."""
        if self.offset == 0 and b"\x00" in chunk[:8192]:
            raise InputError(f"{self.name}: looks like a binary file (NUL byte), expected UTF-8 text")
        if not chunk.isascii():
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as e:
                if self.line is None:
                    line = line_number(self.path, self.offset + e.start)
                else:
                    line = self.line + chunk.count(b"\n", 0, e.start)
                raise InputError(
                    f"{self.name}: invalid UTF-8 at byte {self.offset + e.start} (line {line}): "
                    f"{chunk[e.start:e.start + 1]!r}"
                ) from None
        self.offset += len(chunk)
        if self.line is not None:
            self.line += chunk.count(b"\n")

    def decode(self, chunk: bytes) -> str:
        self.check(chunk)
        return chunk.decode("utf-8")

    def finish(self) -> None:
        if self.offset == 0:
            raise InputError(f"{self.name}: input is empty")
