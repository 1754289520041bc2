"""Forecasting with a trained run: load it (through core/rundir), predict a CSV, score the horizons
beside the naive last-value forecast."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from dlcli.core import rundir
from dlcli.core.io import atomic_write
from dlcli.core.runtime import resolve_device
from dlcli.errors import ConfigError, InputError
from dlcli.forecast.config import DEFAULT_HIDDEN, STAGE, TimeSeriesConfig
from dlcli.forecast.outputs import WEIGHTS, load_model, predictions_csv
from dlcli.forecast.series import read_series, split_point
from dlcli.forecast.windows import forecast, scores
from dlcli.models.forecast import build


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[TimeSeriesConfig, nn.Module, float, float]:
    """The config, the trained model (eval mode) and its (mean, std) normalisation."""
    run = Path(run_dir)
    cfg, _ = rundir.open_run(run, STAGE, TimeSeriesConfig, "a forecasting run", needs=(WEIGHTS,))
    hidden = cfg.hidden if cfg.hidden is not None else DEFAULT_HIDDEN[cfg.model]
    model = build(cfg.model, cfg.tau, hidden, cfg.layers)
    mean, std = load_model(model, rundir.load_tensors(run / WEIGHTS), run / WEIGHTS)
    return cfg, model.to(device).eval(), mean, std


def last_value(values: np.ndarray, preds: dict[str, Any]) -> dict[str, Any]:
    """The naive forecast aligned like `preds`: x_{t-k} predicts x_t, only where the model has a prediction
    too, so both are scored on the same targets."""

    def lag(p: np.ndarray, k: int) -> np.ndarray:
        out = np.full(len(values), np.nan)
        out[k:] = values[:len(values) - k]
        out[np.isnan(p)] = np.nan
        return out

    return {"one_step": lag(preds["one_step"], 1), "k": {k: lag(p, k) for k, p in preds["k"].items()}}


def score(values: np.ndarray, preds: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """`windows.scores` (MSE, points) plus the MAE of each horizon over targets lo <= t < hi."""

    def mae(p: np.ndarray) -> float | None:
        d = np.abs(p[lo:hi] - values[lo:hi])
        d = d[~np.isnan(d)]
        return float(np.mean(d)) if len(d) else None

    out = scores(values, preds, lo, hi)
    out["mae_1step"] = mae(preds["one_step"])
    out["mae"] = {str(k): mae(p) for k, p in preds["k"].items()}
    return out


def _part(values: np.ndarray, preds: dict[str, Any], naive: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    return {**score(values, preds, lo, hi), "last_value": score(values, naive, lo, hi)}


def predict(run_dir: str | Path, csv_path: str | Path | None = None, horizons: list[int] | None = None,
            output: str | Path | None = None, force: bool = False, column: str | None = None,
            device: str = "auto") -> dict[str, Any]:
    """Forecast a CSV (default: the training data) with a trained run.

    Scores cover every point ("all"); on the training data also the "train"
    and "test" parts of the run. Each part holds the model's MSE and MAE per
    horizon and, under "last_value", those of the naive forecast x_{t-k}. Writes predictions CSV only when `output`
    is given. "future" continues the series max(horizons) steps past its end.
    """
    dev = resolve_device(device)
    cfg, model, mean, std = load_run(run_dir, str(dev))
    ks = sorted(set(horizons or cfg.horizons))
    if any(k < 1 for k in ks):
        raise ConfigError("horizons: must be at least 1")
    same = csv_path is None or Path(csv_path).resolve() == Path(cfg.data).resolve()
    series = read_series(csv_path if csv_path is not None else cfg.data, column or cfg.column)
    T = len(series.values)
    if T < cfg.tau + ks[-1] + 1:
        raise InputError(f"{series.source}: column '{series.column}' has {T} values, too short for "
                         f"tau={cfg.tau} and horizon {ks[-1]} (needs at least {cfg.tau + ks[-1] + 1})")
    preds = forecast(model, series.values, cfg.tau, ks, mean, std, dev)
    naive = last_value(series.values, preds)
    result: dict[str, Any] = {"run": str(run_dir), "data": series.source, "column": series.column,
                              "model": cfg.model, "tau": cfg.tau, "points": T, "horizons": ks,
                              "all": _part(series.values, preds, naive, 0, T)}
    if same:
        n_train = split_point(dataclasses.replace(cfg, horizons=ks), series)
        result.update(n_train=n_train, train=_part(series.values, preds, naive, 0, n_train),
                      test=_part(series.values, preds, naive, n_train, T))
    result["future"] = [float(v) for v in preds["future"]]
    result["written"] = []
    if output is not None:
        with atomic_write(output, force=force) as f:
            f.write(predictions_csv(series, preds))
        result["written"] = [str(output)]
    return result
