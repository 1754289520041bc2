"""Tabular feature encoding: a CSV with a header row -> a float32 matrix.

Each kept column becomes one or more features, in header order:

* numeric: the value as float32, optionally standardised as
  ``(x - mean) / std`` with the population std (a constant column is only
  centred: std 0 divides by 1). Feature name: ``age``.
* binary (exactly two distinct values): 0/1. The two values are sorted by
  code point; the first is 0 and the second 1, unless the user names the
  positive (1) value. Feature name: ``gender=<positive value>``.
* categorical: one-hot. Categories are sorted by code point (Python ``str``
  order), or taken in file order from a user list (one category per line).
  Feature names: ``nationality=France``.

Kinds not given are inferred from the fitting data, ignoring empty cells:
all values are finite numbers -> numeric; else exactly two distinct values ->
binary; else categorical. Naming a category list implies categorical, naming
a positive value implies binary.

Cells and header names are stripped of surrounding whitespace; an empty cell
is a missing value. Rows are numbered as records with the header as row 1
(blank lines are skipped but counted), so for files without quoted line
breaks the row number is the line number.

The fitted `FeatureEncoding` is saved as JSON and re-applied to new files.
Files are streamed: fitting keeps per-column statistics only, and
transforming allocates just the output matrix (after a counting pass).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core.io import STDIO, AtomicGroup, TextChecker, atomic_write, check_input_file, check_output, read_chunks
from dlcli.errors import ConfigError, InputError

FORMAT = "dlcli-feature-encoding"
VERSION = 1
KINDS = ("numeric", "binary", "categorical")
MISSING_POLICIES = ("error", "mean")
UNKNOWN_POLICIES = ("error", "zeros")
#: An inferred column with more distinct non-numeric values than this is an
#: error (usually an id or free-text column that should be dropped); declare
#: it categorical to one-hot encode it anyway.
INFER_MAX_CATEGORIES = 1000
BLOCK_ROWS = 8192
STDIN_NAME = "<stdin>"


# --------------------------------------------------------------------------
# What the user asks for


@dataclass
class FeatureSpec:
    """The requested encoding; columns not named here have inferred kinds."""

    numeric: list[str] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)  # column -> category list file
    positive: dict[str, str] = field(default_factory=dict)  # binary column -> value encoded as 1
    standardize: bool = False
    missing: str = "error"  # or "mean": fill empty numeric cells with the fitted mean
    unknown: str = "error"  # or "zeros": unseen categories become an all-zero block

    def declared_kinds(self) -> dict[str, str]:
        """Column -> kind ("numeric", "binary", "categorical" or "drop"), checked."""
        if self.missing not in MISSING_POLICIES:
            raise ConfigError(f"missing must be one of {', '.join(MISSING_POLICIES)}, not {_q(self.missing)}")
        if self.unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {_q(self.unknown)}")
        kinds: dict[str, str] = {}
        for kind, names in (("numeric", self.numeric), ("binary", self.binary),
                            ("categorical", self.categorical), ("drop", self.drop)):
            for n in names:
                if kinds.get(n, kind) != kind:
                    raise ConfigError(f"column {_q(n)} is listed as both {kinds[n]} and {kind}")
                kinds[n] = kind
        for implied, names in (("categorical", self.categories), ("binary", self.positive)):
            what = "a category list" if implied == "categorical" else "a positive value"
            for n in names:
                if kinds.get(n, implied) != implied:
                    raise ConfigError(f"column {_q(n)} has {what} but is listed as {kinds[n]}")
                kinds[n] = implied
        return kinds


# --------------------------------------------------------------------------
# What was fitted


@dataclass
class Column:
    """One encoded input column.

    `values` is [negative, positive] for binary and the category order for
    categorical; `mean`/`std` are the fitted statistics of a numeric column.
    """

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    values: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return len(self.values) if self.kind == "categorical" else 1

    @property
    def feature_names(self) -> list[str]:
        if self.kind == "numeric":
            return [self.name]
        if self.kind == "binary":
            return [f"{self.name}={self.values[1]}"]
        return [f"{self.name}={v}" for v in self.values]

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numeric":
            d.update(mean=self.mean, std=self.std)
        elif self.kind == "binary":
            d["values"] = list(self.values)
        else:
            d["categories"] = list(self.values)
        return d


@dataclass
class FeatureEncoding:
    """A fitted encoding: columns in output order plus the policies to apply."""

    columns: list[Column]
    standardize: bool = False
    missing: str = "error"
    unknown: str = "error"
    dropped: list[str] = field(default_factory=list)
    fitted_on: str = ""
    n_rows: int = 0

    def __post_init__(self) -> None:
        names = self.feature_names
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"two columns both produce the feature name {_q(dup)}; rename a column")

    @property
    def feature_names(self) -> list[str]:
        return [n for c in self.columns for n in c.feature_names]

    @property
    def dim(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def input_columns(self) -> list[str]:
        """The CSV columns that applying this encoding needs."""
        return [c.name for c in self.columns]

    # ---- JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "fitted_on": self.fitted_on,
            "n_rows": self.n_rows,
            "standardize": self.standardize,
            "missing": self.missing,
            "unknown": self.unknown,
            "dropped": list(self.dropped),
            "columns": [c.to_json() for c in self.columns],
            "dim": self.dim,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> FeatureEncoding:
        """Check and rebuild an encoding; errors name `source`."""
        def bad(msg: str) -> InputError:
            return InputError(f"{source}: {msg}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else None
            raise bad(f"not a dlcli feature encoding (format is {_q(got)}, expected {_q(FORMAT)})")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise bad(f"bad version {version!r}")
        if version > VERSION:
            raise bad(f"feature encoding version {version} is newer than this dlcli reads ({VERSION})")
        for key, allowed in (("missing", MISSING_POLICIES), ("unknown", UNKNOWN_POLICIES)):
            if data.get(key, "error") not in allowed:
                raise bad(f"{key} must be one of {', '.join(allowed)}, not {_q(data.get(key))}")
        if not isinstance(data.get("standardize", False), bool):
            raise bad("standardize must be true or false")
        cols = data.get("columns")
        if not isinstance(cols, list) or not cols:
            raise bad("'columns' must be a non-empty list")
        columns = [_column_from_json(c, k, bad) for k, c in enumerate(cols, 1)]
        seen: set[str] = set()
        for c in columns:
            if c.name in seen:
                raise bad(f"column {_q(c.name)} appears twice")
            seen.add(c.name)
        dropped = data.get("dropped", [])
        if not isinstance(dropped, list) or not all(isinstance(d, str) for d in dropped):
            raise bad("'dropped' must be a list of column names")
        n_rows = data.get("n_rows", 0)
        try:
            enc = cls(columns, standardize=data.get("standardize", False), missing=data.get("missing", "error"),
                      unknown=data.get("unknown", "error"), dropped=dropped,
                      fitted_on=str(data.get("fitted_on", "")), n_rows=n_rows if isinstance(n_rows, int) else 0)
        except ConfigError as e:
            raise bad(str(e)) from None
        if "feature_names" in data and data["feature_names"] != enc.feature_names:
            raise bad("'feature_names' do not match 'columns' (edited by hand?)")
        if "dim" in data and data["dim"] != enc.dim:
            raise bad(f"'dim' is {data['dim']!r} but the columns give {enc.dim}")
        return enc

    def save(self, path: str | os.PathLike[str], force: bool = False) -> None:
        """Write the encoding as JSON, atomically."""
        with atomic_write(path, force) as f:
            f.write(self.to_bytes())

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureEncoding:
        """Read an encoding written by `save`."""
        p = check_input_file(path, "feature encoding")
        try:
            data = json.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{p}: not UTF-8 text, expected a feature encoding (JSON)") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        return cls.from_json(data, str(p))

    # ---- applying

    def transform(self, path: str | os.PathLike[str], unknown: str | None = None) -> np.ndarray:
        """Encode the CSV at `path` (or stdin for '-') as an (n_rows, dim) float32 matrix.

        `unknown` overrides the stored policy for unseen categories. Columns
        the encoding does not use are ignored.
        """
        with _source(path) as (real, name):
            return self._transform(real, name, None, unknown)

    def _transform(self, real: str, name: str, n_rows: int | None, unknown: str | None) -> np.ndarray:
        unknown = self.unknown if unknown is None else unknown
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {_q(unknown)}")
        if n_rows is None:
            n_rows = _count_rows(real, name)
        header, rows = _open_table(real, name)
        where = {h: i for i, h in enumerate(header)}
        absent = [c for c in self.input_columns if c not in where]
        if absent:
            raise InputError(f"{name}: missing column{'s' if len(absent) > 1 else ''} "
                             f"{', '.join(map(_q, absent))} needed by the feature encoding")
        plan = []
        offset = 0
        for c in self.columns:
            plan.append((c, where[c.name], offset))
            offset += c.width
        out = np.zeros((n_rows, self.dim), dtype=np.float32)
        start = 0
        block: list[list[str]] = []
        numbers: list[int] = []
        for rownum, fields in rows:
            if start + len(block) >= n_rows:
                raise InputError(f"{name}: file changed while being read (more rows than counted)")
            block.append(fields)
            numbers.append(rownum)
            if len(block) == BLOCK_ROWS:
                self._fill(out, start, block, numbers, plan, name, unknown)
                start += len(block)
                block, numbers = [], []
        if block:
            self._fill(out, start, block, numbers, plan, name, unknown)
            start += len(block)
        if start != n_rows:
            raise InputError(f"{name}: file changed while being read (fewer rows than counted)")
        return out

    def _fill(self, out: np.ndarray, start: int, block: list[list[str]], numbers: list[int],
              plan: list[tuple[Column, int, int]], name: str, unknown: str) -> None:
        stop = start + len(block)
        for col, i, j in plan:
            if col.kind == "numeric":
                vals = np.empty(len(block), dtype=np.float64)
                for k, fields in enumerate(block):
                    s = fields[i].strip()
                    if not s:
                        if self.missing != "mean":
                            raise _missing_error(name, numbers[k], col.name, self.missing)
                        vals[k] = col.mean
                        continue
                    v = parse_number(s)
                    if v is None:
                        raise _nan_error(name, numbers[k], col.name, s)
                    vals[k] = v
                if self.standardize:
                    vals = (vals - col.mean) / (col.std if col.std > 0 else 1.0)
                out[start:stop, j] = vals
            elif col.kind == "binary":
                lookup = {col.values[0]: 0.0, col.values[1]: 1.0}
                bits = np.empty(len(block), dtype=np.float32)
                for k, fields in enumerate(block):
                    s = fields[i].strip()
                    b = lookup.get(s)
                    if b is None:
                        if not s:
                            raise _missing_error(name, numbers[k], col.name, self.missing)
                        raise InputError(f"{name}: row {numbers[k]}, column {_q(col.name)}: unseen value {_q(s)} "
                                         f"in a binary column (expected {_q(col.values[0])} or {_q(col.values[1])})")
                    bits[k] = b
                out[start:stop, j] = bits
            else:
                index = {v: n for n, v in enumerate(col.values)}
                rows_hit: list[int] = []
                cols_hit: list[int] = []
                for k, fields in enumerate(block):
                    s = fields[i].strip()
                    n = index.get(s)
                    if n is None:
                        if not s:
                            raise _missing_error(name, numbers[k], col.name, self.missing)
                        if unknown == "error":
                            raise _unseen_error(name, numbers[k], col.name, s)
                        continue
                    rows_hit.append(start + k)
                    cols_hit.append(j + n)
                out[rows_hit, cols_hit] = 1.0


def _column_from_json(c: Any, k: int, bad: Any) -> Column:
    if not isinstance(c, dict):
        raise bad(f"columns[{k}] must be an object")
    name, kind = c.get("name"), c.get("kind")
    if not isinstance(name, str) or not name:
        raise bad(f"columns[{k}] needs a non-empty 'name'")
    if kind not in KINDS:
        raise bad(f"column {_q(name)}: kind must be one of {', '.join(KINDS)}, not {_q(kind)}")
    if kind == "numeric":
        mean, std = c.get("mean"), c.get("std")
        for key, v in (("mean", mean), ("std", std)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise bad(f"column {_q(name)}: '{key}' must be a finite number")
        if std < 0:
            raise bad(f"column {_q(name)}: 'std' must not be negative")
        return Column(name, kind, mean=float(mean), std=float(std))
    key = "values" if kind == "binary" else "categories"
    vals = c.get(key)
    if not isinstance(vals, list) or not vals or not all(isinstance(v, str) for v in vals):
        raise bad(f"column {_q(name)}: '{key}' must be a non-empty list of strings")
    if len(set(vals)) != len(vals):
        raise bad(f"column {_q(name)}: '{key}' has duplicates")
    if kind == "binary" and len(vals) != 2:
        raise bad(f"column {_q(name)}: a binary column needs exactly 2 values, not {len(vals)}")
    return Column(name, kind, values=list(vals))


# --------------------------------------------------------------------------
# Fitting


def fit(path: str | os.PathLike[str], spec: FeatureSpec) -> FeatureEncoding:
    """Fit an encoding to the CSV at `path` ('-' for stdin) in one streamed pass."""
    with _source(path) as (real, name):
        return _fit(real, name, spec)


def fit_transform(path: str | os.PathLike[str], spec: FeatureSpec) -> tuple[FeatureEncoding, np.ndarray]:
    """Fit, then encode the same CSV (stdin is spooled once to a temp file)."""
    with _source(path) as (real, name):
        enc = _fit(real, name, spec)
        return enc, enc._transform(real, name, enc.n_rows, None)


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
            raise InputError(f"{p}: line {lineno}: duplicate category {_q(v)} (first on line {seen[v]})")
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
        self.first_missing: int | None = None
        self.buf: list[float] = []
        self.seen = 0  # non-empty cells
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, s: str, row: int) -> None:
        if not s:
            if self.spec.missing != "mean":
                raise _missing_error(self.source, row, self.name, self.spec.missing)
            if self.first_missing is None:
                self.first_missing = row
            return
        self.seen += 1
        if self.numeric_ok:
            v = parse_number(s)
            if v is not None:
                self.buf.append(v)
            elif self.kind == "numeric":
                raise _nan_error(self.source, row, self.name, s)
            else:
                self.numeric_ok = False
                self.first_text = (row, s)
                self.buf.clear()
                if self.overflow:
                    raise self._too_many(row, s)
        if self.allowed_set is not None:
            if s not in self.allowed_set and self.spec.unknown == "error":
                raise InputError(f"{self.source}: row {row}, column {_q(self.name)}: {_q(s)} is not in the "
                                 f"category list {self.spec.categories[self.name]}")
            return
        d = self.distinct
        if d is None or s in d:
            return
        if self.kind == "binary" and len(d) == 2:
            a, b = sorted(d)
            raise InputError(f"{self.source}: row {row}, column {_q(self.name)}: third distinct value {_q(s)} "
                             f"in a binary column (already saw {_q(a)} and {_q(b)})")
        d.add(s)
        if self.kind is None and len(d) > INFER_MAX_CATEGORIES:
            if self.numeric_ok:
                self.distinct, self.overflow = None, True
            else:
                raise self._too_many(row, s)

    def _too_many(self, row: int, s: str) -> InputError:
        return InputError(f"{self.source}: column {_q(self.name)} is not numeric (row {row}: {_q(s)}) and has over "
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
            raise InputError(f"{self.source}: column {_q(self.name)} has no values (every cell is empty); drop it")
        kind = self.kind
        if kind is None:
            if self.numeric_ok and self.n > 0:
                kind = "numeric"
            elif self.distinct is not None and len(self.distinct) == 2:
                kind = "binary"
            else:
                kind = "categorical"
        if self.first_missing is not None and kind != "numeric":
            raise InputError(f"{self.source}: row {self.first_missing}, column {_q(self.name)}: missing value "
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
                raise InputError(f"{self.source}: column {_q(self.name)} is binary but has {len(values)} distinct "
                                 f"value{'s' if len(values) != 1 else ''} ({', '.join(map(_q, values))}); "
                                 "binary needs exactly 2")
            pos = self.spec.positive.get(self.name)
            if pos is not None:
                if pos not in values:
                    raise ConfigError(f"{self.source}: column {_q(self.name)}: positive value {_q(pos)} is not one "
                                      f"of its values {_q(values[0])}, {_q(values[1])}")
                values = [values[0] if values[1] == pos else values[1], pos]
        return Column(self.name, kind, values=values)


def _fit(real: str, name: str, spec: FeatureSpec) -> FeatureEncoding:
    declared = spec.declared_kinds()
    lists = {col: read_category_list(p) for col, p in spec.categories.items()}
    header, rows = _open_table(real, name)
    for col in declared:
        if col not in header:
            close = difflib.get_close_matches(col, header, n=1, cutoff=0.5)
            hint = f" (did you mean {_q(close[0])}?)" if close else ""
            raise ConfigError(f"{name}: no column {_q(col)}{hint}; columns are {_short_list(header)}")
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


# --------------------------------------------------------------------------
# Writing


def write_features(x: np.ndarray, names: list[str], npy_path: str | None, csv_path: str | None,
                   force: bool = False, *, encoding: FeatureEncoding | None = None,
                   encoding_path: str | None = None) -> list[str]:
    """Write the matrix as .npy and/or CSV (header = feature names), and
    optionally the encoding JSON, all-or-nothing. '-' writes one of them to
    stdout. Returns the paths written, in order."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"matrix shape {x.shape} does not match {len(names)} feature names")
    x = x.astype(np.float32, copy=False)
    if (encoding is None) != (encoding_path is None):
        raise ValueError("give both encoding and encoding_path, or neither")
    jobs: list[tuple[str, Any]] = []
    if npy_path is not None:
        jobs.append((npy_path, lambda f: np.save(f, x, allow_pickle=False)))
    if csv_path is not None:
        jobs.append((csv_path, lambda f: _write_csv(f, x, names)))
    if encoding_path is not None:
        assert encoding is not None
        data = encoding.to_bytes()
        jobs.append((encoding_path, lambda f: f.write(data)))
    if not jobs:
        raise ConfigError("no output given: name a .npy path, a CSV path, or both")
    paths = [p for p, _ in jobs]
    if paths.count(STDIO) > 1:
        raise ConfigError("only one output can go to stdout ('-')")
    if len(set(paths)) != len(paths):
        raise ConfigError(f"the same output path is given twice: {_short_list(paths)}")
    for p in paths:
        if p != STDIO:
            check_output(p, force)
    with AtomicGroup(force) as group:
        for p, write in jobs:
            if p != STDIO:
                with group.open(p) as f:
                    write(f)
    for p, write in jobs:
        if p == STDIO:
            write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
    return paths


def _write_csv(f: Any, x: np.ndarray, names: list[str]) -> None:
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(names)
    f.write(head.getvalue().encode("utf-8"))
    if x.shape[0]:
        # %.9g round-trips float32 exactly; 0/1 print as "0"/"1".
        np.savetxt(f, x, fmt="%.9g", delimiter=",", encoding="utf-8")


# --------------------------------------------------------------------------
# Reading CSV


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
def _source(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
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


def _records(path: str, name: str) -> Iterator[tuple[int, list[str]]]:
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


def _open_table(path: str, name: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The checked header and an iterator over data rows (field counts checked;
    raises at the end if there were none)."""
    records = _records(path, name)
    first = next(records, None)
    if first is None:
        raise InputError(f"{name}: no header row (only blank lines)")
    _, raw = first
    header = [h.strip() for h in raw]
    seen: dict[str, int] = {}
    for k, h in enumerate(header, 1):
        if not h:
            raise InputError(f"{name}: header column {k} has no name")
        if h in seen:
            raise InputError(f"{name}: duplicate column name {_q(h)} in header (columns {seen[h]} and {k})")
        seen[h] = k
    width = len(header)

    def rows() -> Iterator[tuple[int, list[str]]]:
        n = 0
        for rownum, fields in records:
            if len(fields) != width:
                raise InputError(f"{name}: row {rownum} has {len(fields)} field{'s' if len(fields) != 1 else ''}, "
                                 f"header has {width}")
            n += 1
            yield rownum, fields
        if n == 0:
            raise InputError(f"{name}: has a header but no data rows")

    return header, rows()


def _count_rows(path: str, name: str) -> int:
    _, rows = _open_table(path, name)
    return sum(1 for _ in rows)


# --------------------------------------------------------------------------
# Messages


def _q(v: Any, limit: int = 60) -> str:
    """A value quoted for a one-line message."""
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 4] + "...'"


def _short_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(map(_q, names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _missing_error(source: str, row: int, column: str, missing: str) -> InputError:
    hint = "" if missing == "mean" else " (use missing=mean to fill numeric columns with the mean)"
    return InputError(f"{source}: row {row}, column {_q(column)}: missing value (empty cell){hint}")


def _nan_error(source: str, row: int, column: str, value: str) -> InputError:
    return InputError(f"{source}: row {row}, column {_q(column)}: {_q(value)} is not a number")


def _unseen_error(source: str, row: int, column: str, value: str) -> InputError:
    return InputError(f"{source}: row {row}, column {_q(column)}: unseen category {_q(value)} "
                      "(use unknown=zeros to encode unseen categories as all zeros)")


# --------------------------------------------------------------------------
# The `preprocess --table` stage


@dataclass
class TableConfig:
    """Options of `dlcli preprocess --table`."""

    inputs: list[str] = field(default_factory=lambda: ["-"])
    output: str = "features.npy"
    csv: str | None = None
    numeric: list[str] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # COLUMN=FILE items
    standardize: bool = False
    missing: str = "error"
    unknown: str = "error"
    encoding: str | None = None  # apply this saved encoding instead of fitting
    save_encoding: str | None = None  # default: <output>.encoding.json when fitting

    def validate(self) -> None:
        if len(self.inputs) != 1:
            raise ConfigError("--table takes exactly one CSV input (or - for stdin)")
        if self.missing not in ("error", "mean"):
            raise ConfigError(f"missing: '{self.missing}' is not one of error, mean")
        if self.unknown not in ("error", "zeros"):
            raise ConfigError(f"unknown: '{self.unknown}' is not one of error, zeros")
        for item in self.categories:
            if "=" not in item:
                raise ConfigError(f"categories: '{item}' should be COLUMN=FILE")

    def spec(self) -> FeatureSpec:
        cats = dict(item.split("=", 1) for item in self.categories)
        return FeatureSpec(numeric=list(self.numeric), binary=list(self.binary),
                           categorical=list(self.categorical), drop=list(self.drop), categories=cats,
                           standardize=self.standardize, missing=self.missing, unknown=self.unknown)


def run(cfg: TableConfig, force: bool = False) -> dict[str, Any]:
    """Fit (or load) an encoding, encode the CSV, write the outputs together."""
    cfg.validate()
    src = cfg.inputs[0]
    if cfg.encoding:
        enc = FeatureEncoding.load(cfg.encoding)
        x = enc.transform(src, unknown=cfg.unknown if cfg.unknown != "error" else None)
        enc_path = cfg.save_encoding
    else:
        enc, x = fit_transform(src, cfg.spec())
        enc_path = cfg.save_encoding or (f"{cfg.output}.encoding.json" if cfg.output != STDIO else None)
    written = write_features(x, enc.feature_names, cfg.output, cfg.csv, force,
                             encoding=enc if enc_path else None, encoding_path=enc_path)
    return {"rows": int(x.shape[0]), "dim": enc.dim, "written": [p for p in written if p != STDIO]}
