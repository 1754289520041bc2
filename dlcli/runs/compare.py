"""Several runs' training curves on one plot (`dlcli runs compare`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlcli.core import rundir
from dlcli.core.io import check_output
from dlcli.errors import InputError


def curve(run: str | os.PathLike[str], metric: str = "loss") -> list[tuple[float, float]]:
    """(step, value) of `metric` in a run's metrics.jsonl; x is the epoch for runs that log no step (old
    forecasters), else the record's position. A run without it is one error naming the keys it has."""
    path = Path(run)
    rundir.read_meta(path)  # a run directory, or one clear error
    records = rundir.read_metrics(path)
    pts = []
    for i, r in enumerate(records, 1):
        v = r.get(metric)
        if isinstance(v, int | float) and not isinstance(v, bool):
            x = r.get("step", r.get("epoch", i))
            pts.append((float(x if isinstance(x, int | float) else i), float(v)))
    if not pts:
        keys = sorted({k for r in records for k, v in r.items()
                       if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("step", "epoch")})
        has = f"it logs {', '.join(keys)}" if keys else "it holds no records"
        raise InputError(f"{path}/metrics.jsonl: no {metric!r} ({has}; choose one with --metric)")
    return pts


def labels(runs: list[str]) -> list[str]:
    """Legend labels: the runs' paths, or their folder names when those alone tell them apart."""
    names = [Path(r).name or str(r) for r in runs]
    return names if len(set(names)) == len(names) else [str(r) for r in runs]


def compare(runs: list[str], output: str, metric: str = "loss", force: bool = False,
            log_y: bool = False) -> dict[str, Any]:
    """Plot `metric` of each run against its step into `output` (PNG)."""
    if not runs:
        raise InputError("no run directories to compare")
    check_output(output, force)
    curves = [curve(r, metric) for r in runs]
    from dlcli.train.plots import plot_curves

    series = {f"run{i}": label for i, label in enumerate(labels(runs))}
    records = [{"step": x, key: y} for key, pts in zip(series, curves) for x, y in pts]
    plot_curves(records, output, series, ylabel=metric, title=f"{metric} by step", log_y=log_y)
    return {"output": output, "runs": len(runs), "metric": metric, "points": sum(map(len, curves))}
