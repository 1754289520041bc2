"""Where the anomalies are: NAB's `combined_windows.json`, a 0/1 `label` column, NAB's `profiles.json`.

Windows become row ranges of a file: a window [start, end] holds the rows whose timestamps lie in it
(NAB's windows start and end on rows of their file, so this is NAB's window exactly). A label column's
windows are its maximal runs of 1, which is how NAB's own per-row labels mark its windows.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from dlcli.anomaly.nab import Profile
from dlcli.anomaly.series import show_time
from dlcli.errors import InputError, MissingFileError

Window = tuple[np.datetime64, np.datetime64]


def _load_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(p)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not valid JSON ({e})") from None


def read_windows(path: str | Path) -> dict[str, list[Window]]:
    """NAB's windows file: {"category/file.csv": [["start", "end"], ...], ...}."""
    raw = _load_json(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected an object of file names -> lists of [start, end] windows")
    out: dict[str, list[Window]] = {}
    for key, windows in raw.items():
        if not isinstance(windows, list) or not all(isinstance(w, list) and len(w) == 2 for w in windows):
            raise InputError(f"{path}: '{key}': expected a list of [start, end] windows")
        parsed = []
        for start, end in windows:
            try:
                a, b = np.datetime64(str(start).strip(), "us"), np.datetime64(str(end).strip(), "us")
            except ValueError:
                raise InputError(f"{path}: '{key}': cannot read the window [{start}, {end}] as two timestamps") \
                    from None
            if b < a:
                raise InputError(f"{path}: '{key}': window [{start}, {end}] ends before it starts")
            parsed.append((a, b))
        out[key] = sorted(parsed)
    return out


def read_profiles(path: str | Path) -> dict[str, Profile]:
    """NAB's profiles.json: {"name": {"CostMatrix": {"tpWeight": .., "fpWeight": .., "fnWeight": ..}}}."""
    raw = _load_json(path)
    out = {}
    try:
        for name, spec in raw.items():
            m = spec["CostMatrix"]
            out[name] = Profile(name, tp=float(m["tpWeight"]), fp=float(m["fpWeight"]), fn=float(m["fnWeight"]))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: not a NAB profiles file (each profile needs CostMatrix tpWeight, fpWeight, "
                         f"fnWeight; {type(e).__name__}: {e})") from None
    if not out:
        raise InputError(f"{path}: no profiles")
    return out


def window_rows(timestamps: np.ndarray, windows: list[Window], where: str) -> np.ndarray:
    """The (k, 2) first and last row index of each window in a file's timestamps, as NAB finds them: the
    first row at or after its start, and the first row at its end (or the row before the first one past
    it). Rows are taken in file order, so the few repeated or slipped timestamps of real files are fine."""
    rows = np.zeros((len(windows), 2), dtype=np.int64)
    for j, (a, b) in enumerate(windows):
        at_end = np.flatnonzero(timestamps == b)
        past = np.flatnonzero(timestamps > b)
        from_start = np.flatnonzero(timestamps >= a)
        first = int(from_start[0]) if len(from_start) else len(timestamps)
        last = int(at_end[0]) if len(at_end) else (int(past[0]) if len(past) else len(timestamps)) - 1
        if first > last:
            raise InputError(f"{where}: the window [{show_time(a)}, {show_time(b)}] holds no row of the file")
        if j and first <= rows[j - 1, 1]:
            (a0, b0) = windows[j - 1]
            raise InputError(f"{where}: the windows [{show_time(a0)}, {show_time(b0)}] and [{show_time(a)}, "
                             f"{show_time(b)}] overlap")
        rows[j] = first, last
    return rows


def label_runs(labels: np.ndarray) -> np.ndarray:
    """The (k, 2) first and last row of each maximal run of 1 in a 0/1 array."""
    x = np.r_[0, np.asarray(labels, dtype=np.int8), 0]
    edges = np.diff(x)
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1], axis=1)


def label_key(name: str, keys: list[str]) -> str | None:
    """The labels key of a score file named `category/file.csv` (`.gz` too), or of NAB's results layout
    `category/<detector>_file.csv`; a bare `file.csv` matches the one key with that file name."""
    name = name.removesuffix(".gz")
    if name in keys:
        return name
    p = PurePosixPath(name)
    found = [k for k in keys if (PurePosixPath(k).parent == p.parent or p.parent == PurePosixPath("."))
             and (p.name == PurePosixPath(k).name or p.name.endswith("_" + PurePosixPath(k).name))]
    return found[0] if len(found) == 1 else None


def match(names: list[str], keys: list[str], labels_path: str | Path, where: str | Path) -> dict[str, str]:
    """Each score file's labels key (files without one are left out); an error when none matches."""
    found = {n: k for n in names if (k := label_key(n, keys)) is not None}
    seen: dict[str, str] = {}
    for n, k in found.items():
        if k in seen:
            raise InputError(f"{where}: two score files for '{k}' of {labels_path}: {seen[k]} and {n}")
        seen[k] = n
    if not found:
        raise InputError(f"{labels_path}: no key matches a score file under {where} (keys look like "
                         f"'{keys[0] if keys else '(none)'}', files like '{names[0] if names else '(none)'}')")
    return found
