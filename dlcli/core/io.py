"""File handling shared by every command: input checks, streamed reading,
atomic writes, and `-` for stdin/stdout."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
import socket
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Self

from dlcli.errors import InputError, MissingFileError, OutputError, OutputExistsError

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
        raise MissingFileError(p)
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


# ---------------------------------------------------------------- errors while writing

_WRITE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "permission denied"}
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # only writing fails with these
# `.<output name>.<pid>-<host hash>-<random>.dlcli-tmp`: groups are the output's name, the pid and the host
TEMP_NAME = re.compile(r"\.(.+)\.(\d+)-([0-9a-f]{8})-[^.]+\.dlcli-tmp$")


def cannot_write(path: str | os.PathLike[str], e: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {_WRITE_ERRNOS.get(e.errno or 0, e.strerror or str(e))}")


def os_error_line(e: OSError) -> str | None:
    """One line for an OSError a user can act on (permissions, a full or read-only disk), naming the file;
    None for any other."""
    reason = _WRITE_ERRNOS.get(e.errno or 0)
    if reason is None:
        return None
    name = os.fsdecode(e.filename) if e.filename is not None else None
    if name is None:
        return f"cannot write the output: {reason}" if e.errno in _FULL else reason
    m = TEMP_NAME.match(os.path.basename(name))
    if m:  # a temp file beside an output: name the output
        name = os.path.join(os.path.dirname(name), m.group(1))
    if e.errno in (errno.EACCES, errno.EPERM) and os.path.isfile(name) and not os.access(name, os.R_OK):
        return f"cannot read {name}: {reason}"
    return f"cannot write {name}: {reason}"


# ---------------------------------------------------------------- temp files of dead processes

_HOST = format(zlib.crc32(socket.gethostname().encode()), "08x")


def owner_tag() -> str:
    """`<pid>-<host hash>`: put in temp names so a later run can tell those of a dead process."""
    return f"{os.getpid()}-{_HOST}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(folder: str | os.PathLike[str], pattern: re.Pattern[str]) -> list[str]:
    """Remove the entries of `folder` whose names match `pattern` (its last two groups: a pid and a host
    hash, as `owner_tag` writes them) and that a dead process of this host left (killed before it could
    clean up); return their names. Those of live processes and of other hosts are left alone."""
    gone = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            m = pattern.match(entry.name)
            if not m or m.groups()[-1] != _HOST or _alive(int(m.groups()[-2])):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                gone.append(entry.name)
    return gone


def _temp_beside(p: Path) -> tuple[int, str]:
    """A temp file beside `p` named for this process, after removing those dead processes left there."""
    remove_stale(p.parent, TEMP_NAME)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{owner_tag()}-", suffix=".dlcli-tmp", dir=p.parent)
    except OSError as e:
        raise cannot_write(p, e) from None
    os.fchmod(fd, _FILE_MODE)
    return fd, tmp


def _replace(tmp: str, p: Path) -> None:
    try:
        os.replace(tmp, p)
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        raise cannot_write(p, e) from None


# ---------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], force: bool = False) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; rename it over `path` only on success.

    On any exception (Ctrl-C included) the temp file is removed, so a reader
    never sees a half-written output and an existing file is left untouched.
    A full or read-only disk is one OutputError naming `path`.
    """
    p = check_output(path, force)
    fd, tmp = _temp_beside(p)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        _replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in _FULL and e.filename in (None, tmp):
            raise cannot_write(p, e) from None
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
        fd, tmp = _temp_beside(p)
        self._pending.append((tmp, p))
        return os.fdopen(fd, "wb")

    def commit(self) -> None:
        for tmp, p in self._pending:
            _replace(tmp, p)
        self._pending.clear()

    def abort(self) -> None:
        for tmp, _ in self._pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        last = self._pending[-1][1] if self._pending else None
        self.abort()
        if isinstance(exc, OSError) and exc.errno in _FULL and exc.filename is None and last is not None:
            raise cannot_write(last, exc) from None  # the file being written when the disk filled


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


def replace_folder(tmp: Path, out: Path) -> None:
    """A finished temp folder renamed to `out`; an old `out` (file or folder, the caller checked --force) is
    moved aside first and deleted only once the new one is in place."""
    aside = None
    if out.exists():
        aside = out.with_name(f".{out.name}.{owner_tag()}.dlcli-old")
        os.replace(out, aside)
    os.replace(tmp, out)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True) if aside.is_dir() else aside.unlink()


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
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


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
