"""A summary row per run directory: stage, steps, training time, best held-out figure, precision, device."""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlcli.core import rundir
from dlcli.errors import DlcliError, DlcliWarning, InputError

# The held-out figures stages log, the most telling first: (metrics.jsonl key, higher is better).
# A run shows the first one it has, at its best over the run.
HELD_OUT: tuple[tuple[str, bool], ...] = (
    ("bleu_beam", True), ("bleu_greedy", True), ("val_bleu", True),  # translation
    ("val_psnr", True),  # NeRF
    ("val_reward", True),  # PPO
    ("val_accuracy", True),  # reward model, DPO
    ("val_ppl", False),  # language models
    ("val_loss", False),  # SFT and any stage with a held-out loss
    ("reverse_kl", False),  # GAN: distance to the real modes
)


@dataclass
class Row:
    run: str
    stage: str
    steps: int | None  # the last step logged (epochs for a stage that logs no step)
    unit: str  # "steps" or "epochs"
    seconds: float | None  # training time across resumes
    metric: str | None  # the best held-out figure's key
    best: float | None
    best_step: int | None
    precision: str | None
    device: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find(folder: str | os.PathLike[str]) -> list[Path]:
    """The run directories (folders holding meta.json) at or under `folder`, in path order; a run's own
    subfolders and hidden folders (a run replaced by --force) are not searched."""
    top = Path(folder)
    if not top.is_dir():
        raise InputError(f"{top}: no such directory (dlcli runs DIR lists the run directories under DIR)")
    found = []
    for here, dirs, files in os.walk(top):
        if "meta.json" in files:
            found.append(Path(here))
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _checkpoint_state(run: Path) -> dict[str, Any]:
    try:
        state = json.loads((run / "checkpoint.json").read_text(encoding="utf-8")).get("state", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return state if isinstance(state, dict) else {}


def best(records: list[dict[str, Any]]) -> tuple[str, float, int | None] | None:
    """The first figure of HELD_OUT the records hold, at its best: (key, value, its step)."""
    for key, higher in HELD_OUT:
        pts = [(r[key], r.get("step")) for r in records if _finite(r.get(key))]
        if pts:
            value, step = (max if higher else min)(pts, key=lambda p: p[0])
            return key, float(value), step if isinstance(step, int) else None
    return None


def _forecast_test(run: Path) -> tuple[str, float, None] | None:
    """A forecaster scores its held-out part once, into forecast.json (its metrics are training losses)."""
    try:
        test = json.loads((run / "forecast.json").read_text(encoding="utf-8"))["test"]
        return ("test_mse_1step", float(test["mse_1step"]), None) if _finite(test["mse_1step"]) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def summarize(run: str | os.PathLike[str]) -> Row:
    """The row of one run directory, from meta.json and metrics.jsonl (checkpoint.json where they lack
    the step count or the time)."""
    path = Path(run)
    meta = rundir.read_meta(path)
    records = rundir.read_metrics(path)
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    epochs = [r["epoch"] for r in records if isinstance(r.get("epoch"), int)]
    state = _checkpoint_state(path)
    unit = "steps"
    n: int | None = max(steps) if steps else state.get("step") if isinstance(state.get("step"), int) else None
    if n is None and epochs:
        n, unit = max(epochs), "epochs"
    times = [r["elapsed"] for r in records if _finite(r.get("elapsed"))]
    timings = meta.get("timings") if isinstance(meta.get("timings"), dict) else {}
    seconds = max(times) if times else next(
        (float(v) for v in (state.get("elapsed"), timings.get("total")) if _finite(v)), None)
    found = best(records) or _forecast_test(path)
    prec = meta.get("precision")
    prec = prec.get("used") if isinstance(prec, dict) else prec
    return Row(str(path), str(meta.get("stage", "?")), n, unit, seconds, *(found or (None, None, None)),
               str(prec) if prec else None, str(meta["device"]) if meta.get("device") else None)


def rows(folder: str | os.PathLike[str]) -> list[Row]:
    """A row per run directory under `folder`; one that cannot be read is left out with a warning."""
    out = []
    for run in find(folder):
        try:
            out.append(summarize(run))
        except DlcliError as e:
            warnings.warn(DlcliWarning(f"{e} (left out)"), stacklevel=2)
    return out


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def cells(row: Row) -> tuple[str, ...]:
    """The row as the table prints it."""
    steps = "-" if row.steps is None else f"{row.steps:,}" + (
        (" epoch" if row.steps == 1 else " epochs") if row.unit == "epochs" else "")
    metric = "-" if row.metric is None or row.best is None else f"{row.metric} {row.best:.4g}" + (
        f" @{row.best_step:,}" if row.best_step is not None else "")
    return (row.run, row.stage, steps, duration(row.seconds), metric, row.precision or "-", row.device or "-")


COLUMNS = ["run", "stage", "steps", "time", "best held-out", "precision", "device"]
