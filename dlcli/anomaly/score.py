"""`dlcli anomaly score`: a detector's score CSVs against labelled windows, as NAB scores them.

RESULTS is a folder in NAB's layout (`<category>/<file>.csv`, `.csv.gz` too, NAB's own
`<category>/<detector>_<file>.csv` too; other files are ignored) or one CSV. The windows come from NAB's
`combined_windows.json` (--labels) or, without it, from each CSV's 0/1 `label` column (its runs of 1).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dlcli.anomaly import labels as lab
from dlcli.anomaly import nab
from dlcli.anomaly.config import ScoreConfig
from dlcli.anomaly.series import Scores, check_rows, read_scores, read_timestamps
from dlcli.errors import ConfigError, DlcliWarning, InputError


def score_files(results: str | Path) -> dict[str, Path]:
    """The score CSVs of RESULTS by name: `category/file.csv[.gz]` under a folder, or the one file."""
    root = Path(results)
    if root.is_file():
        return {root.name: root}
    if not root.is_dir():
        raise InputError(f"{root}: no such file or folder")
    found = {p.relative_to(root).as_posix(): p for pattern in ("*/*.csv", "*/*.csv.gz") for p in root.glob(pattern)
             if p.is_file()}
    if not found:
        raise InputError(f"{root}: no score CSVs in its sub-folders (expected <category>/<file>.csv)")
    return dict(sorted(found.items()))


def _profiles(cfg: ScoreConfig) -> list[nab.Profile]:
    known = lab.read_profiles(cfg.profiles_file) if cfg.profiles_file else nab.PROFILES
    for name in cfg.profiles:
        if name not in known:
            raise ConfigError(f"profiles: no profile '{name}' (known: {', '.join(known)})")
    return [known[n] for n in cfg.profiles]


def _series_path(cfg: ScoreConfig, name: str, single: bool) -> Path:
    data = Path(cfg.data)
    return data if single and data.is_file() else data / name.removesuffix(".gz")


def load(cfg: ScoreConfig) -> tuple[list[nab.File], list[str]]:
    """Each scored file weighed for NAB (`nab.prepare`), and the score files left out for want of labels."""
    files = score_files(cfg.results)
    single = Path(cfg.results).is_file()
    keys: dict[str, str] = {n: n.removesuffix(".gz") for n in files}
    windows: dict[str, list[lab.Window]] = {}
    if cfg.labels:
        windows = lab.read_windows(cfg.labels)
        keys = lab.match(list(files), list(windows), cfg.labels, cfg.results)
    left_out = [n for n in files if n not in keys]
    prepared = []
    for name, key in keys.items():
        scores: Scores = read_scores(files[name])
        if cfg.data:
            series = _series_path(cfg, key, single)
            check_rows(scores, series, read_timestamps(series))
        if cfg.labels:
            rows = lab.window_rows(scores.timestamps, windows[key], f"{cfg.labels}: '{key}'")
        elif scores.labels is not None:
            rows = lab.label_runs(scores.labels)
        else:
            raise InputError(f"{files[name]}: no 'label' column; give the windows with --labels")
        prepared.append(nab.prepare(key, scores.scores, rows, cfg.probation))
    return prepared, left_out


def score(cfg: ScoreConfig) -> dict[str, Any]:
    """NAB's score of RESULTS under each profile, with the threshold and event-wise P/R/F1: the summary."""
    profiles = _profiles(cfg)
    files, left_out = load(cfg)
    if left_out:
        warnings.warn(f"{len(left_out)} score file{'s' if len(left_out) != 1 else ''} with no key in {cfg.labels} "
                      f"left out: {', '.join(left_out[:3])}{', ...' if len(left_out) > 3 else ''}",
                      DlcliWarning, stacklevel=2)
    results = [nab.score(files, p) for p in profiles]
    return {
        "results": cfg.results,
        "labels": cfg.labels or "label column",
        "files": len(files),
        "rows": sum(len(f.scores) + f.skipped for f in files),
        "windows": sum(f.n_windows for f in files),
        "probation": cfg.probation,
        "left_out": left_out,
        "profiles": [r.as_dict() for r in results],
    }


def report(s: dict[str, Any]) -> str:
    """The summary line: files, rows, windows and each profile's score."""
    scores = ", ".join(f"{p['profile']} {_num(p['score'], '.2f')}" for p in s["profiles"])
    return (f"scored {s['files']:,} file{'s' if s['files'] != 1 else ''} ({s['rows']:,} rows, "
            f"{s['windows']:,} window{'s' if s['windows'] != 1 else ''}): NAB {scores}")


COLUMNS = ("profile", "score", "raw", "threshold", "windows_found", "false_positives", "event_precision",
           "event_recall", "event_f1")


def rows(s: dict[str, Any]) -> list[tuple[str, ...]]:
    """One table row per profile (the cells of COLUMNS)."""
    return [(p["profile"], _num(p["score"], ".2f"), f"{p['raw']:.3f}", f"{p['threshold']:.12g}",
             f"{p['detected']}/{p['windows']}", str(p["false_positives"]), _num(p["event_precision"], ".3f"),
             _num(p["event_recall"], ".3f"), _num(p["event_f1"], ".3f")) for p in s["profiles"]]


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)
