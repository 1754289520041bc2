"""Fitting an encoding to a CSV in one streamed pass: per-column statistics only.

Kinds not given are inferred from the fitting data, ignoring empty cells: all values are finite
numbers -> numeric; else exactly two distinct values -> binary; else categorical (with a warning
naming the first non-number when most values are numbers: usually a typo). Naming a category
list implies categorical, naming a positive value implies binary.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings

import numpy as np

from dlcli.core.io import check_input_file
from dlcli.errors import ConfigError, InputError
from dlcli.tabular.csv import BLOCK_ROWS, open_table, parse_number, source
from dlcli.tabular.encoding import Column, FeatureEncoding
from dlcli.tabular.messages import inferred_text_warning, missing_error, nan_error, q, short_list
from dlcli.tabular.spec import FeatureSpec

#: An inferred column with more distinct non-numeric values than this is an
#: error (usually an id or free-text column that should be dropped); declare
#: it categorical to one-hot encode it anyway.
INFER_MAX_CATEGORIES = 1000
#: An inferred column keeps counting its numbers after its first non-number
#: until it has this many non-numbers and more of them than numbers (a text
#: column, then): enough to warn about a number column with a few typos.
PROBE_TEXTS = 100


def fit(path: str | os.PathLike[str], spec: FeatureSpec) -> FeatureEncoding:
    """Fit an encoding to the CSV at `path` ('-' for stdin) in one streamed pass."""
    with source(path) as (real, name):
        return _fit(real, name, spec)


def fit_transform(path: str | os.PathLike[str], spec: FeatureSpec) -> tuple[FeatureEncoding, np.ndarray]:
    """Fit, then encode the same CSV (stdin is spooled once to a temp file)."""
    with source(path) as (real, name):
        enc = _fit(real, name, spec)
        return enc, enc.transform_file(real, name, enc.n_rows, None)


def read_category_list(path: str | os.PathLike[str]) -> list[str]:
    """Categories from a text file, one per line, in file order (blank lines skipped)."""
    p = check_input_file(path, "category list")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: invalid UTF-8 at byte {e.start}") from None
    cats: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        v = line.strip()
        if not v:
            continue
        if v in seen:
            raise InputError(f"{p}: line {lineno}: duplicate category {q(v)} (first on line {seen[v]})")
        seen[v] = lineno
        cats.append(v)
    if not cats:
        raise InputError(f"{p}: category list has no categories")
    return cats


class _ColumnFit:
    """Streaming statistics for one column during fitting."""

    def __init__(self, name: str, index: int, kind: str | None, spec: FeatureSpec, source: str,
                 allowed: list[str] | None) -> None:
        self.name, self.index, self.kind, self.spec, self.source = name, index, kind, spec, source
        self.allowed = allowed
        self.allowed_set = set(allowed) if allowed is not None else None
        self.numeric_ok = kind in (None, "numeric")
        self.distinct: set[str] | None = set() if kind != "numeric" and allowed is None else None
        self.overflow = False  # inferred numeric-looking column with too many distinct values to track
        self.first_text: tuple[int, str] | None = None
        self.numbers = 0  # cells that are numbers ...
        self.texts = 0  # ... and cells that are not, while an inferred column is probed
        self.probing = kind is None
        self.first_missing: int | None = None
        self.buf: list[float] = []
        self.seen = 0  # non-empty cells
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, s: str, row: int) -> None:
        if not s:
            if self.spec.missing != "mean":
                raise missing_error(self.source, row, self.name, self.spec.missing)
            if self.first_missing is None:
                self.first_missing = row
            return
        self.seen += 1
        if self.numeric_ok:
            v = parse_number(s)
            if v is not None:
                self.buf.append(v)
                self.numbers += 1
            elif self.kind == "numeric":
                raise nan_error(self.source, row, self.name, s)
            else:
                self.numeric_ok = False
                self.first_text = (row, s)
                self.texts = 1
                self.buf.clear()
                if self.overflow:
                    raise self._too_many(row, s)
        elif self.probing:
            if parse_number(s) is None:
                self.texts += 1
                self.probing = self.texts < PROBE_TEXTS or self.texts <= self.numbers
            else:
                self.numbers += 1
        if self.allowed_set is not None:
            if s not in self.allowed_set and self.spec.unknown == "error":
                raise InputError(f"{self.source}: row {row}, column {q(self.name)}: {q(s)} is not in the "
                                 f"category list {self.spec.category_files()[self.name]}")
            return
        d = self.distinct
        if d is None or s in d:
            return
        if self.kind == "binary" and len(d) == 2:
            a, b = sorted(d)
            raise InputError(f"{self.source}: row {row}, column {q(self.name)}: third distinct value {q(s)} "
                             f"in a binary column (already saw {q(a)} and {q(b)})")
        d.add(s)
        if self.kind is None and len(d) > INFER_MAX_CATEGORIES:
            if self.numeric_ok:
                self.distinct, self.overflow = None, True
            else:
                raise self._too_many(row, s)

    def _too_many(self, row: int, s: str) -> InputError:
        return InputError(f"{self.source}: column {q(self.name)} is not numeric (row {row}: {q(s)}) and has over "
                          f"{INFER_MAX_CATEGORIES} distinct values; drop it, fix the value, or declare it categorical")

    def flush(self) -> None:
        """Fold buffered numbers into the running mean and M2 (Chan et al.)."""
        if not self.buf:
            return
        a = np.asarray(self.buf, dtype=np.float64)
        self.buf.clear()
        nb = a.size
        mb = float(a.mean())
        m2b = float(((a - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.n = n

    def finish(self) -> Column:
        self.flush()
        if self.seen == 0:
            raise InputError(f"{self.source}: column {q(self.name)} has no values (every cell is empty); drop it")
        kind = self.kind
        if kind is None:
            if self.numeric_ok and self.n > 0:
                kind = "numeric"
            elif self.distinct is not None and len(self.distinct) == 2:
                kind = "binary"
            else:
                kind = "categorical"
            if kind != "numeric" and self.first_text is not None and self.probing and self.numbers >= self.texts:
                row, value = self.first_text
                warnings.warn(inferred_text_warning(self.source, self.name, kind, row, value, self.numbers,
                                                    self.texts), stacklevel=2)
        if self.first_missing is not None and kind != "numeric":
            raise InputError(f"{self.source}: row {self.first_missing}, column {q(self.name)}: missing value "
                             f"(empty cell) in a {kind} column; missing=mean only fills numeric columns")
        if kind == "numeric":
            std = math.sqrt(max(self.m2, 0.0) / self.n)
            return Column(self.name, kind, mean=self.mean, std=std)
        if self.allowed is not None:
            return Column(self.name, kind, values=list(self.allowed))
        assert self.distinct is not None
        values = sorted(self.distinct)
        if kind == "binary":
            if len(values) != 2:
                raise InputError(f"{self.source}: column {q(self.name)} is binary but has {len(values)} distinct "
                                 f"value{'s' if len(values) != 1 else ''} ({', '.join(map(q, values))}); "
                                 "binary needs exactly 2")
            pos = self.spec.positive.get(self.name)
            if pos is not None:
                if pos not in values:
                    raise ConfigError(f"{self.source}: column {q(self.name)}: positive value {q(pos)} is not one "
                                      f"of its values {q(values[0])}, {q(values[1])}")
                values = [values[0] if values[1] == pos else values[1], pos]
        return Column(self.name, kind, values=values)


def _fit(real: str, name: str, spec: FeatureSpec) -> FeatureEncoding:
    declared = spec.declared_kinds()
    lists = {col: read_category_list(p) for col, p in spec.category_files().items()}
    header, rows = open_table(real, name)
    for col in declared:
        if col not in header:
            close = difflib.get_close_matches(col, header, n=1, cutoff=0.5)
            hint = f" (did you mean {q(close[0])}?)" if close else ""
            raise ConfigError(f"{name}: no column {q(col)}{hint}; columns are {short_list(header)}")
    fits = [_ColumnFit(h, i, declared.get(h), spec, name, lists.get(h))
            for i, h in enumerate(header) if declared.get(h) != "drop"]
    if not fits:
        raise ConfigError(f"{name}: every column is dropped; nothing to encode")
    n = 0
    for rownum, fields in rows:
        for f in fits:
            f.add(fields[f.index].strip(), rownum)
        n += 1
        if n % BLOCK_ROWS == 0:
            for f in fits:
                f.flush()
    columns = [f.finish() for f in fits]
    try:
        return FeatureEncoding(columns, standardize=spec.standardize, missing=spec.missing, unknown=spec.unknown,
                               dropped=[h for h in header if declared.get(h) == "drop"], fitted_on=name, n_rows=n)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None
