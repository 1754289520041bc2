"""Reading and writing the CSVs of anomaly detection, plain or gzipped (`.csv.gz`):

- a series, `timestamp,value` (NAB's data files; `column` picks another value column);
- scores, `timestamp,value,anomaly_score,flag` (what `dlcli anomaly detect` writes) or NAB's published
  `timestamp,anomaly_score`; an optional 0/1 `label` column marks anomalous rows.

Bad input is one InputError naming the file and its line (the header is line 1): an unparseable or
non-increasing timestamp (beyond the
slips of real clocks that `check_order` allows), a missing or non-numeric value, a score file whose rows are not its series'.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from dlcli.errors import InputError, MissingFileError

TIME = "datetime64[us]"
SLIP = np.timedelta64(1, "h")  # how far back a timestamp may step (daylight saving)
MAX_SLIPS = 0.01  # ... in at most this share of the steps


@dataclass
class Series:
    """A series as read: the timestamps as written (for writing them back), parsed, and the values."""

    path: str
    stamps: list[str]
    timestamps: np.ndarray  # datetime64[us], increasing but for the slips check_order allows
    values: np.ndarray  # float64, finite


@dataclass
class Scores:
    """A detector's output for one series: a score per row, and the 0/1 labels when the file has them."""

    path: str
    timestamps: np.ndarray
    scores: np.ndarray  # float64, finite (NAB's detectors give [0, 1])
    labels: np.ndarray | None  # int8 0/1


@contextmanager
def _open_text(path: str | Path) -> Iterator[IO[str]]:
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(p)
    opener = gzip.open if p.name.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8", newline="") as f:
        yield f


def read_table(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """The header (stripped) and the rows of a CSV; every row as wide as the header."""
    try:
        with _open_text(path) as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, csv.Error) as e:
        raise InputError(f"{path}: not a readable CSV ({type(e).__name__}: {e})") from None
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise InputError(f"{path}: empty file, expected a header row")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise InputError(f"{path}: no rows after the header")
    for j, r in enumerate(body):
        if len(r) != len(header):
            raise InputError(f"{path} line {j + 2}: {len(r)} fields, the header has {len(header)}")
    return header, body


def _column(header: list[str], name: str, path: str | Path) -> int:
    if name not in header:
        raise InputError(f"{path}: no '{name}' column (columns: {', '.join(header)})")
    return header.index(name)


def parse_timestamps(cells: list[str], path: str | Path) -> np.ndarray:
    """ISO timestamps (`2014-07-01 00:30:00`, `2014-07-01T00:30:00.5`) -> datetime64[us], increasing
    (as `check_order` allows)."""
    try:
        t = np.array([c.strip() for c in cells], dtype=TIME)
    except ValueError:
        for j, c in enumerate(cells):
            try:
                np.datetime64(c.strip(), "us")
            except ValueError:
                raise InputError(f"{path} line {j + 2}: cannot read timestamp '{c}' "
                                 f"(expected e.g. 2014-07-01 00:30:00)") from None
        raise
    if np.isnat(t).any():
        j = int(np.flatnonzero(np.isnat(t))[0])
        raise InputError(f"{path} line {j + 2}: missing timestamp")
    check_order(t, cells, path)
    return t


def check_order(t: np.ndarray, cells: list[str], path: str | Path) -> None:
    """Timestamps must increase. Real clocks repeat or step back a little (four of NAB's 58 files do:
    a daylight-saving hour, a repeated reading), so a step that does not increase is allowed when it goes
    back at most an hour and such steps are at most 1 % of the file; the rows keep their order."""
    step = np.diff(t)
    bad = np.flatnonzero(step <= np.timedelta64(0, "us"))
    if not len(bad):
        return
    far = bad[step[bad] < -SLIP]
    j = int(far[0] if len(far) else bad[0]) + 1
    if len(far) or len(bad) > MAX_SLIPS * len(step):
        extra = "" if len(far) else f" ({len(bad)} of {len(step)} steps do not increase)"
        raise InputError(f"{path} line {j + 2}: timestamp {cells[j].strip()} is not after the one before it "
                         f"({cells[j - 1].strip()}){extra}; timestamps must increase")


def parse_numbers(cells: list[str], path: str | Path, name: str) -> np.ndarray:
    """A column of finite numbers; an empty, non-numeric, NaN or infinite cell is an error naming its line."""
    try:
        x = np.array(cells, dtype=np.float64)
    except ValueError:
        x = None
    if x is None or not np.isfinite(x).all():
        for j, c in enumerate(cells):
            try:
                v = float(c)
            except ValueError:
                v = float("nan")
            if not np.isfinite(v):
                what = "missing" if not c.strip() else f"'{c}' is not a number"
                raise InputError(f"{path} line {j + 2}: {name} {what}")
    return x  # type: ignore[return-value]


def parse_labels(cells: list[str], path: str | Path, name: str = "label") -> np.ndarray:
    """A 0/1 column."""
    x = parse_numbers(cells, path, name)
    bad = np.flatnonzero((x != 0) & (x != 1))
    if len(bad):
        j = int(bad[0])
        raise InputError(f"{path} line {j + 2}: {name} '{cells[j]}' is not 0 or 1")
    return x.astype(np.int8)


def read_series(path: str | Path, column: str = "") -> Series:
    """A `timestamp,value` CSV (or `column` instead of `value`)."""
    header, rows = read_table(path)
    it = _column(header, "timestamp", path)
    iv = _column(header, column or "value", path)
    stamps = [r[it] for r in rows]
    return Series(str(path), stamps, parse_timestamps(stamps, path),
                  parse_numbers([r[iv] for r in rows], path, column or "value"))


def read_scores(path: str | Path, label: str = "label") -> Scores:
    """A score CSV: `timestamp` and `anomaly_score` columns (others ignored), `label` (0/1) if present."""
    header, rows = read_table(path)
    it = _column(header, "timestamp", path)
    ia = _column(header, "anomaly_score", path)
    labels = None
    if label in header:
        il = header.index(label)
        labels = parse_labels([r[il] for r in rows], path, label)
    return Scores(str(path), parse_timestamps([r[it] for r in rows], path),
                  parse_numbers([r[ia] for r in rows], path, "anomaly_score"), labels)


def read_timestamps(path: str | Path) -> np.ndarray:
    """Only the `timestamp` column of a CSV (to check a score file against its series)."""
    header, rows = read_table(path)
    it = _column(header, "timestamp", path)
    return parse_timestamps([r[it] for r in rows], path)


def check_rows(scores: Scores, series: str | Path, timestamps: np.ndarray) -> None:
    """A score file must have one row per row of its series (`timestamps`, read from `series`), in order."""
    n, m = len(scores.timestamps), len(timestamps)
    k = min(n, m)
    diff = np.flatnonzero(scores.timestamps[:k] != timestamps[:k])
    if len(diff):
        j = int(diff[0])
        raise InputError(f"{scores.path} line {j + 2}: timestamp {show_time(scores.timestamps[j])}, but row "
                         f"{j + 1} of its series {series} is {show_time(timestamps[j])}")
    if n != m:
        raise InputError(f"{scores.path}: {n} rows, but its series {series} has {m}")


def show_time(t: np.datetime64) -> str:
    """`2014-07-01 00:30:00`."""
    return str(np.datetime_as_string(t, unit="s")).replace("T", " ")


def write_scores(path: str | Path, series: Series, scores: np.ndarray, flags: np.ndarray,
                 force: bool = False) -> None:
    """Write `timestamp,value,anomaly_score,flag`, one row per row of `series`, atomically (making its
    folder: OUT mirrors INPUT's `<category>/` folders)."""
    from dlcli.core.io import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["timestamp", "value", "anomaly_score", "flag"])
    for t, v, a, f in zip(series.stamps, series.values.tolist(), np.asarray(scores).tolist(),
                          np.asarray(flags).astype(int).tolist(), strict=True):
        w.writerow([t, repr(v), repr(a), f])
    with atomic_write(path, force) as f:
        f.write(buf.getvalue().encode("utf-8"))
