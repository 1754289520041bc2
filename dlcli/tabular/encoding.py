"""FeatureEncoding: a fitted encoding (columns in output order and the policies to apply), its JSON
file, and applying it to a CSV."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlcli.core.io import atomic_write, check_input_file
from dlcli.errors import ConfigError, InputError
from dlcli.tabular.csv import BLOCK_ROWS, count_rows, open_table, parse_number, source
from dlcli.tabular.messages import missing_error, nan_error, q, unseen_error
from dlcli.tabular.spec import KINDS, MISSING_POLICIES, UNKNOWN_POLICIES

FORMAT = "dlcli-feature-encoding"
VERSION = 1


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
            raise ConfigError(f"two columns both produce the feature name {q(dup)}; rename a column")

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
            raise bad(f"not a dlcli feature encoding (format is {q(got)}, expected {q(FORMAT)})")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise bad(f"bad version {version!r}")
        if version > VERSION:
            raise bad(f"feature encoding version {version} is newer than this dlcli reads ({VERSION})")
        for key, allowed in (("missing", MISSING_POLICIES), ("unknown", UNKNOWN_POLICIES)):
            if data.get(key, "error") not in allowed:
                raise bad(f"{key} must be one of {', '.join(allowed)}, not {q(data.get(key))}")
        if not isinstance(data.get("standardize", False), bool):
            raise bad("standardize must be true or false")
        cols = data.get("columns")
        if not isinstance(cols, list) or not cols:
            raise bad("'columns' must be a non-empty list")
        columns = [_column_from_json(c, k, bad) for k, c in enumerate(cols, 1)]
        seen: set[str] = set()
        for c in columns:
            if c.name in seen:
                raise bad(f"column {q(c.name)} appears twice")
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
        with source(path) as (real, name):
            return self.transform_file(real, name, None, unknown)

    def transform_file(self, real: str, name: str, n_rows: int | None, unknown: str | None) -> np.ndarray:
        """`transform` of a readable file (`real`) named `name` in messages; `n_rows` if already counted."""
        unknown = self.unknown if unknown is None else unknown
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {q(unknown)}")
        if n_rows is None:
            n_rows = count_rows(real, name)
        header, rows = open_table(real, name)
        where = {h: i for i, h in enumerate(header)}
        absent = [c for c in self.input_columns if c not in where]
        if absent:
            raise InputError(f"{name}: missing column{'s' if len(absent) > 1 else ''} "
                             f"{', '.join(map(q, absent))} needed by the feature encoding")
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
                            raise missing_error(name, numbers[k], col.name, self.missing)
                        vals[k] = col.mean
                        continue
                    v = parse_number(s)
                    if v is None:
                        raise nan_error(name, numbers[k], col.name, s)
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
                            raise missing_error(name, numbers[k], col.name, self.missing)
                        raise InputError(f"{name}: row {numbers[k]}, column {q(col.name)}: unseen value {q(s)} "
                                         f"in a binary column (expected {q(col.values[0])} or {q(col.values[1])})")
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
                            raise missing_error(name, numbers[k], col.name, self.missing)
                        if unknown == "error":
                            raise unseen_error(name, numbers[k], col.name, s)
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
        raise bad(f"column {q(name)}: kind must be one of {', '.join(KINDS)}, not {q(kind)}")
    if kind == "numeric":
        mean, std = c.get("mean"), c.get("std")
        for key, v in (("mean", mean), ("std", std)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise bad(f"column {q(name)}: '{key}' must be a finite number")
        if std < 0:
            raise bad(f"column {q(name)}: 'std' must not be negative")
        return Column(name, kind, mean=float(mean), std=float(std))
    key = "values" if kind == "binary" else "categories"
    vals = c.get(key)
    if not isinstance(vals, list) or not vals or not all(isinstance(v, str) for v in vals):
        raise bad(f"column {q(name)}: '{key}' must be a non-empty list of strings")
    if len(set(vals)) != len(vals):
        raise bad(f"column {q(name)}: '{key}' has duplicates")
    if kind == "binary" and len(vals) != 2:
        raise bad(f"column {q(name)}: a binary column needs exactly 2 values, not {len(vals)}")
    return Column(name, kind, values=list(vals))
