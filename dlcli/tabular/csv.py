"""Reading a CSV table as a stream: (row number, fields) records, the checked header, numbers.

Cells and header names are stripped of surrounding whitespace by the callers; an empty cell is a
missing value. Rows are numbered as records with the header as row 1 (blank lines are skipped but
counted), so for files without quoted line breaks the row number is the line number. Standard
input is spooled to a temporary file, since fitting and encoding read it more than once.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlcli.core.io import STDIO, TextChecker, check_input_file, read_chunks
from dlcli.errors import InputError
from dlcli.tabular.messages import q

BLOCK_ROWS = 8192  # rows handled at once when fitting and encoding
STDIN_NAME = "<stdin>"


def parse_number(s: str) -> float | None:
    """A finite float, or None (no nan/inf, no '1_000')."""
    try:
        v = float(s)
    except ValueError:
        return None
    if not math.isfinite(v) or "_" in s:
        return None
    return v


@contextmanager
def source(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """(readable file path, name for messages); stdin is spooled to a temp file."""
    path = os.fspath(path)
    if path != STDIO:
        check_input_file(path, "CSV")
        yield path, path
        return
    fd, tmp = tempfile.mkstemp(prefix="dlcli-stdin-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f)
        if Path(tmp).stat().st_size == 0:
            raise InputError(f"{STDIN_NAME}: input is empty")
        yield tmp, STDIN_NAME
    finally:
        Path(tmp).unlink(missing_ok=True)


def records(path: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, fields) for every CSV record, header included; blank
    lines are counted but not yielded."""
    checker = TextChecker(name)

    def lines() -> Iterator[str]:
        first = True
        for chunk in read_chunks(path):
            text = checker.decode(chunk)
            if first:
                text = text.removeprefix("\ufeff")
                first = False
            parts = text.split("\n")
            last = parts.pop()
            for p in parts:
                yield p + "\n"
            if last:
                yield last

    reader = csv.reader(lines(), strict=True)
    rownum = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(f"{name}: row {rownum + 1}: malformed CSV ({e})") from None
        rownum += 1
        if fields:
            yield rownum, fields


def open_table(path: str, name: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The checked header and an iterator over data rows (field counts checked;
    raises at the end if there were none)."""
    recs = records(path, name)
    first = next(recs, None)
    if first is None:
        raise InputError(f"{name}: no header row (only blank lines)")
    _, raw = first
    header = [h.strip() for h in raw]
    seen: dict[str, int] = {}
    for k, h in enumerate(header, 1):
        if not h:
            raise InputError(f"{name}: header column {k} has no name")
        if h in seen:
            raise InputError(f"{name}: duplicate column name {q(h)} in header (columns {seen[h]} and {k})")
        seen[h] = k
    width = len(header)

    def rows() -> Iterator[tuple[int, list[str]]]:
        n = 0
        for rownum, fields in recs:
            if len(fields) != width:
                raise InputError(f"{name}: row {rownum} has {len(fields)} field{'s' if len(fields) != 1 else ''}, "
                                 f"header has {width}")
            n += 1
            yield rownum, fields
        if n == 0:
            raise InputError(f"{name}: has a header but no data rows")

    return header, rows()


def count_rows(path: str, name: str) -> int:
    _, rows = open_table(path, name)
    return sum(1 for _ in rows)
