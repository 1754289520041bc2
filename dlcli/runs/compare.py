"""Several runs' training curves on one plot (`dlcli runs compare`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlcli.core import rundir
from dlcli.core.io import check_output
from dlcli.errors import ConfigError, InputError

AXES = ("step", "time")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _clock(records: list[dict[str, Any]]) -> list[float | None]:
    """Each record's seconds of training: its own `elapsed`, else (a validation record, logged after the
    step it measures) that of the latest record before it that has one."""
    out: list[float | None] = []
    last = None
    for r in records:
        if _number(r.get("elapsed")):
            last = float(r["elapsed"])
        out.append(last)
    return out


def curve(run: str | os.PathLike[str], metric: str = "loss", x: str = "step") -> list[tuple[float, float]]:
    """(x, value) of `metric` in a run's metrics.jsonl. x = "step": the step; the epoch for runs that log no
    step (old forecasters), else the record's position. x = "time": seconds of training (`elapsed`).
    A run without the metric, or without a clock for x = "time", is one error naming what it has."""
    if x not in AXES:
        raise ConfigError(f"--x {x!r}: choose one of {', '.join(AXES)}")
    path = Path(run)
    rundir.read_meta(path)  # a run directory, or one clear error
    records = rundir.read_metrics(path)
    clock = _clock(records) if x == "time" else None
    pts = []
    for i, r in enumerate(records):
        v = r.get(metric)
        if not _number(v):
            continue
        if clock is None:
            s = r.get("step", r.get("epoch", i + 1))
            pts.append((float(s if _number(s) else i + 1), float(v)))
        elif clock[i] is not None:
            pts.append((clock[i], float(v)))
    if not pts:
        if x == "time" and any(_number(r.get(metric)) for r in records):
            raise InputError(f"{path}/metrics.jsonl: no training time ('elapsed') beside {metric!r}; use --x step")
        keys = sorted({k for r in records for k, v in r.items() if _number(v) and k not in ("step", "epoch")})
        has = f"it logs {', '.join(keys)}" if keys else "it holds no records"
        raise InputError(f"{path}/metrics.jsonl: no {metric!r} ({has}; choose one with --metric)")
    return pts


def labels(runs: list[str]) -> list[str]:
    """Legend labels: the runs' paths, or their folder names when those alone tell them apart."""
    names = [Path(r).name or str(r) for r in runs]
    return names if len(set(names)) == len(names) else [str(r) for r in runs]


def compare(runs: list[str], output: str, metric: str = "loss", force: bool = False,
            log_y: bool = False, x: str = "step") -> dict[str, Any]:
    """Plot `metric` of each run against its step (or its training time, x="time") into `output` (PNG)."""
    if not runs:
        raise InputError("no run directories to compare")
    check_output(output, force)
    curves = [curve(r, metric, x) for r in runs]
    from dlcli.train.plots import plot_curves

    xlabel = "step"
    if x == "time":  # minutes once any run is longer than 5 of them
        scale, xlabel = (60.0, "training time (min)") if max(p[0] for c in curves for p in c) > 300 else \
            (1.0, "training time (s)")
        curves = [[(t / scale, v) for t, v in c] for c in curves]
    series = {f"run{i}": label for i, label in enumerate(labels(runs))}
    records = [{"step": px, key: y} for key, pts in zip(series, curves) for px, y in pts]
    plot_curves(records, output, series, ylabel=metric, title=f"{metric} by {x}",
                log_y=log_y, xlabel=xlabel)
    return {"output": output, "runs": len(runs), "metric": metric, "points": sum(map(len, curves))}
