"""The series a forecaster learns: the curriculum's synthetic sine, and one numeric column of a CSV.

Rows are numbered as in the file, the header being row 1. A column named `time` is carried to the
outputs but never used as a feature.
"""

from __future__ import annotations

import csv
import difflib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.core.io import atomic_write, check_input_file
from dlcli.errors import ConfigError, InputError
from dlcli.forecast.config import DEFAULT_N_TRAIN, TimeSeriesConfig

TIME_COLUMN = "time"


def make_sine_series(T: int = 1000, seed: int = 0) -> np.ndarray:
    """x_t = sin(0.01 t) + N(0, 0.2^2) noise for t = 1..T (float64)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, T + 1, dtype=np.float64)
    return np.sin(0.01 * t) + rng.normal(0.0, 0.2, size=T)


def write_sine_csv(path: str | Path, T: int = 1000, seed: int = 0, force: bool = True) -> Path:
    """Write `make_sine_series` as a `time,x` CSV (6 decimals), atomically."""
    x = make_sine_series(T, seed)
    lines = ["time,x"] + [f"{t},{v:.6f}" for t, v in enumerate(x, 1)]
    with atomic_write(path, force=force) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return Path(path)


@dataclass
class Series:
    """One numeric column of a CSV (and its `time` column, if any)."""

    source: str
    column: str
    values: np.ndarray  # float64 (T,)
    time: list[str] | None = None
    rows: list[int] | None = None  # each value's row in the file (header = 1)


def read_series(path: str | Path, column: str = "") -> Series:
    """Read one numeric column; any bad cell is an error naming row and column."""
    p = check_input_file(path, "CSV")
    name = str(path)
    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            header: list[str] | None = None
            col = tcol = -1
            rows: list[int] = []
            cells: list[str] = []
            times: list[str] = []
            for fields in reader:
                if not fields:
                    continue
                if header is None:
                    header = _check_header(name, fields)
                    tcol = header.index(TIME_COLUMN) if TIME_COLUMN in header else -1
                    if column:
                        col = _find_column(name, header, column)
                    continue
                if len(fields) != len(header):
                    plural = "s" if len(fields) != 1 else ""
                    raise InputError(f"{name}: row {reader.line_num} has {len(fields)} field{plural}, "
                                     f"header has {len(header)}")
                if col < 0:
                    col = _first_numeric(name, header, fields, tcol)
                rows.append(reader.line_num)
                cells.append(fields[col])
                if tcol >= 0 and tcol != col:
                    times.append(fields[tcol].strip())
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise InputError(f"{name}: malformed CSV near row {reader.line_num} ({e})") from None
    if header is None:
        raise InputError(f"{name}: no header row")
    if not cells:
        raise InputError(f"{name}: has a header but no data rows")
    values = np.empty(len(cells), dtype=np.float64)
    for i, (row, cell) in enumerate(zip(rows, cells)):
        values[i] = _number(name, row, header[col], cell)
    return Series(name, header[col], values, times or None, rows)


def split_point(cfg: TimeSeriesConfig, series: Series) -> int:
    """The number of leading points used for training, checked against the series."""
    T, tau, max_k = len(series.values), cfg.tau, max(cfg.horizons)
    where = f"{series.source}: column '{series.column}' has {T} values"
    if T < tau + max_k + 1:
        raise InputError(f"{where}, too short for tau={tau} and horizon {max_k} "
                         f"(needs at least {tau + max_k + 1})")
    if cfg.train_fraction is not None:
        n_train = round(T * cfg.train_fraction)
    else:
        n_train = cfg.n_train if cfg.n_train is not None else DEFAULT_N_TRAIN
    if n_train >= T:
        raise InputError(f"{where}: n_train={n_train} leaves nothing to evaluate on (use a smaller n_train "
                         "or train_fraction=0.6)")
    if n_train <= tau:
        raise InputError(f"{where}: only {n_train} for training, needs more than tau={tau}")
    return n_train


def is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _check_header(name: str, fields: list[str]) -> list[str]:
    header = [h.strip() for h in fields]
    for k, h in enumerate(header, 1):
        if not h:
            raise InputError(f"{name}: header column {k} has no name")
        if header.index(h) != k - 1:
            raise InputError(f"{name}: duplicate column name '{h}' in header")
    return header


def _find_column(name: str, header: list[str], column: str) -> int:
    if column in header:
        return header.index(column)
    lower = {h.lower(): h for h in header}
    close = [lower[column.lower()]] if column.lower() in lower else difflib.get_close_matches(column, header, 1, 0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{name}: no column '{column}'{hint}; columns are {', '.join(header)}")


def _first_numeric(name: str, header: list[str], fields: list[str], tcol: int) -> int:
    for k, cell in enumerate(fields):
        if k != tcol and is_number(cell):
            return k
    raise InputError(f"{name}: no numeric column (columns are {', '.join(header)}); name one with column=NAME")


def _number(name: str, row: int, column: str, cell: str) -> float:
    s = cell.strip()
    if not s:
        raise InputError(f"{name}: row {row}, column '{column}': missing value (empty cell)")
    try:
        v = float(s)
    except ValueError:
        raise InputError(f"{name}: row {row}, column '{column}': {s[:40]!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{name}: row {row}, column '{column}': {s!r} is not a finite number")
    return v
