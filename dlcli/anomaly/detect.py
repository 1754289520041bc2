"""`dlcli anomaly detect INPUT -o OUT`: a streaming detector over one series or a folder of them.

INPUT is one CSV (`timestamp,value`, or `column`) or a folder `<category>/<file>.csv[.gz]` (NAB's tree);
OUT is then one CSV, or a folder mirroring INPUT. Each output CSV has `timestamp,value,anomaly_score,flag`
(`series.write_scores`: the format `dlcli anomaly score` reads), one row per input row in order, and a PNG
beside it (values, score, flagged rows; the labelled windows with --labels).

A detector maps a series to one score per row in [0, 1], **streaming**: row t's score uses rows 0..t
only, given the number of probationary rows (the first `probation` share of the series, as NAB's
`probation_rows` counts it; they are only learnt from and score 0). Series run in worker processes.
The whole output is written to a temp folder beside OUT and renamed into place at the end: an error
in any series (one line naming the file and row) leaves no output behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dlcli.anomaly import labels as lab
from dlcli.anomaly import nab
from dlcli.anomaly.config import DetectConfig
from dlcli.anomaly.forecaster import ForecastDetector
from dlcli.anomaly.gaussian import GaussianDetector
from dlcli.anomaly.series import Series, read_series, write_scores
from dlcli.core.io import replace_folder
from dlcli.core.progress import Tick
from dlcli.errors import InputError, OutputExistsError


class Detector(Protocol):
    """Scores of each row, float64 in [0, 1], row t's from rows 0..t only; rows before `probation` are
    only learnt from (they score 0)."""

    min_probation: int  # the fewest probationary rows it can learn from
    threshold: float  # flag rows scoring at least this (tuned with NAB's standard profile)

    def __call__(self, timestamps: np.ndarray, values: np.ndarray, probation: int, seed: int = 0) -> np.ndarray:
        ...


DETECTORS: dict[str, Detector] = {"forecast": ForecastDetector(), "gaussian": GaussianDetector()}


def input_files(root: str | Path) -> dict[str, Path]:
    """The series of INPUT by output name: `category/file.csv` under a folder, or the one file's name."""
    p = Path(root)
    if p.is_file():
        return {p.name.removesuffix(".gz"): p}
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder")
    found = {q.relative_to(p).as_posix().removesuffix(".gz"): q for pattern in ("*/*.csv", "*/*.csv.gz")
             for q in p.glob(pattern) if q.is_file()}
    if not found:
        raise InputError(f"{p}: no series CSVs in its sub-folders (expected <category>/<file>.csv)")
    return dict(sorted(found.items()))


def probation_for(series: Series, fraction: float, detector: Detector, name: str) -> int:
    """NAB's probationary rows of the series; an error when the detector cannot learn from so few."""
    n = len(series.values)
    p = nab.probation_rows(n, fraction)
    if p < detector.min_probation:
        raise InputError(f"{series.path}: {n} rows: its probationary period ({p} rows, {fraction:g} of the series) "
                         f"is shorter than the {detector.min_probation} rows the {name} detector learns from; "
                         f"give a longer series or a larger --probation")
    return p


@dataclass
class Task:
    """One series to score: where it is, where its output goes (in the temp folder), its windows."""

    name: str
    src: Path
    dst: Path
    windows: list[lab.Window] | None


def threshold_of(cfg: DetectConfig) -> float:
    """The score at which rows are flagged: --threshold, or the detector's own."""
    return DETECTORS[cfg.detector].threshold if cfg.threshold is None else cfg.threshold


def score_series(series: Series, cfg: DetectConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The scores and 0/1 flags of one series, and its probationary rows."""
    detector = DETECTORS[cfg.detector]
    p = probation_for(series, cfg.probation, detector, cfg.detector)
    scores = np.clip(detector(series.timestamps, series.values, p, cfg.seed), 0.0, 1.0)
    flags = (scores >= threshold_of(cfg)) & (np.arange(len(scores)) >= p)
    return scores, flags.astype(np.int8), p


def _run_task(job: tuple[Task, DetectConfig]) -> tuple[str, int, int]:
    """Read, score, write and plot one series (in a worker process): its name, rows and flags."""
    task, cfg = job
    series = read_series(task.src, cfg.column)
    scores, flags, p = score_series(series, cfg)
    write_scores(task.dst, series, scores, flags)
    if cfg.plots:
        from dlcli.anomaly.plot import plot_series

        rows = None if task.windows is None else lab.window_rows(series.timestamps, task.windows,
                                                                 f"{cfg.labels}: '{task.name}'")
        plot_series(task.dst.with_suffix(".png"), series, scores, flags, p, threshold_of(cfg), rows, task.name)
    return task.name, len(scores), int(flags.sum())


def _tasks(cfg: DetectConfig, tmp: Path, single: bool) -> list[Task]:
    files = input_files(cfg.input)
    windows: dict[str, list[lab.Window]] = {}
    keys: dict[str, str] = {}
    if cfg.labels:
        windows = lab.read_windows(cfg.labels)
        keys = lab.match(list(files), list(windows), cfg.labels, cfg.input)
    return [Task(name, src, tmp / (Path(cfg.output).name if single else name),
                 windows[keys[name]] if name in keys else None) for name, src in files.items()]


def detect(cfg: DetectConfig, force: bool = False, on_progress: Callable[[Tick], None] | None = None) -> dict[str, Any]:
    """Score every series of INPUT into OUT; the summary (and NAB's scores of OUT with --labels)."""
    from dlcli.core.parallel import default_workers, imap_ordered

    start = time.monotonic()
    out = Path(cfg.output)
    single = Path(cfg.input).is_file()
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists (use --force to replace it)")
    if out.exists() and single == out.is_dir():
        raise OutputExistsError(f"{out}: is a {'folder' if out.is_dir() else 'file'}; the output of "
                                f"{'one CSV is a CSV' if single else 'a folder is a folder'}")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".dlcli-tmp", dir=out.parent))
    try:
        tasks = _tasks(cfg, tmp, single)
        jobs = sorted(((t, cfg) for t in tasks), key=lambda j: -j[0].src.stat().st_size)  # longest first
        done: dict[str, tuple[int, int]] = {}
        for name, rows, flags in imap_ordered(_run_task, jobs, min(cfg.workers or default_workers(), len(jobs))):
            done[name] = rows, flags
            if on_progress:
                on_progress(Tick("detect", len(done), len(jobs), "file"))
        _move_into_place(tmp, out, single)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.monotonic() - start
    rows = sum(r for r, _ in done.values())
    summary: dict[str, Any] = {
        "output": str(out), "detector": cfg.detector, "files": len(done), "rows": rows,
        "flags": sum(f for _, f in done.values()), "seconds": seconds, "points_per_s": rows / seconds,
        "threshold": threshold_of(cfg),
    }
    if cfg.labels:
        from dlcli.anomaly.config import ScoreConfig
        from dlcli.anomaly.score import score

        s = score(ScoreConfig(results=str(out), labels=cfg.labels, probation=cfg.probation))
        summary["nab"] = s["profiles"]
    return summary


def _move_into_place(tmp: Path, out: Path, single: bool) -> None:
    """The finished output (a temp folder's contents) renamed to OUT; with --force the old one goes."""
    if single:
        plot = (tmp / out.name).with_suffix(".png")
        if plot.exists():
            os.replace(plot, out.with_suffix(".png"))
        os.replace(tmp / out.name, out)
        return
    replace_folder(tmp, out)


def report(s: dict[str, Any]) -> str:
    """The summary line."""
    line = (f"{s['detector']}: scored {s['files']:,} series ({s['rows']:,} rows) in {s['seconds']:.1f} s "
            f"({s['points_per_s']:,.0f} points/s), {s['flags']:,} rows flagged at {s['threshold']:g}")
    if "nab" in s:
        line += "; NAB " + ", ".join(f"{p['profile']} {p['score']:.2f}" for p in s["nab"] if p["score"] is not None)
    return line
