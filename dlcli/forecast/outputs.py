"""What a forecasting run leaves behind: the weights (with their normalisation), forecast.json,
predictions.csv and forecast.png, written together."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcli.core.io import AtomicGroup
from dlcli.errors import InputError
from dlcli.forecast.series import TIME_COLUMN, Series, is_number

FORMAT = "dlcli-forecast"
VERSION = 1
WEIGHTS = "model.safetensors"


def model_bytes(model: nn.Module, mean: float, std: float, epoch: int) -> bytes:
    """model.safetensors: the state_dict plus `norm.mean` and `norm.std` (float64); metadata `epoch`."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors["norm.mean"] = torch.tensor(mean, dtype=torch.float64)
    tensors["norm.std"] = torch.tensor(std, dtype=torch.float64)
    return save(tensors, metadata={"format": FORMAT, "epoch": str(epoch)})


def load_model(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> tuple[float, float]:
    """Load weights into `model`; returns the saved (mean, std) normalisation."""
    try:
        mean = float(tensors.pop("norm.mean"))
        std = float(tensors.pop("norm.std"))
        model.load_state_dict(tensors)
    except (KeyError, RuntimeError) as e:
        raise InputError(f"{path}: weights do not fit the model in config.yaml ({str(e).splitlines()[0]})") from None
    return mean, std


def _fmt(v: float) -> str:
    return "" if math.isnan(v) else format(v, ".8g")


def predictions_csv(series: Series, preds: dict[str, Any]) -> bytes:
    """t, truth, pred_1step, pred_k<K>...: one row per point, empty where undefined."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ks = list(preds["k"])
    w.writerow(["t", "truth", "pred_1step"] + [f"pred_k{k}" for k in ks])
    t = series.time or [str(i) for i in range(1, len(series.values) + 1)]
    cols = [preds["one_step"]] + [preds["k"][k] for k in ks]
    for i, v in enumerate(series.values):
        w.writerow([t[i], _fmt(v)] + [_fmt(c[i]) for c in cols])
    return buf.getvalue().encode("utf-8")


def _time_axis(series: Series) -> np.ndarray:
    if series.time and all(is_number(s) for s in series.time):
        return np.array([float(s) for s in series.time])
    return np.arange(1, len(series.values) + 1, dtype=np.float64)


def forecast_png(series: Series, preds: dict[str, Any], n_train: int, title: str) -> bytes:
    """Truth and 1-step predictions above, k-step predictions below; a line where training ends."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = _time_axis(series)
    fig = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    end = (t[n_train - 1] + t[n_train]) / 2
    top.plot(t, series.values, color="0.6", lw=0.8, label="data")
    top.plot(t, preds["one_step"], lw=1.0, label="1-step preds")
    bottom.plot(t, series.values, color="0.8", lw=0.8, label="data")
    for k, p in preds["k"].items():
        bottom.plot(t, p, lw=1.0, label=f"{k}-step preds")
    for ax in (top, bottom):
        ax.axvline(end, color="k", ls="--", lw=0.8, label="end of training data" if ax is top else None)
        ax.set_ylabel(series.column)
        ax.legend(loc="best", fontsize="small")
    top.set_title(title)
    bottom.set_xlabel(TIME_COLUMN if series.time else "t")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_run_outputs(run: Path, weights: bytes, series: Series, preds: dict[str, Any], n_train: int,
                      title: str, report: dict[str, Any]) -> None:
    """The weights, predictions.csv, forecast.png and forecast.json, all or none."""
    with AtomicGroup(force=True) as group:
        with group.open(run / WEIGHTS) as f:
            f.write(weights)
        with group.open(run / "predictions.csv") as f:
            f.write(predictions_csv(series, preds))
        with group.open(run / "forecast.png") as f:
            f.write(forecast_png(series, preds, n_train, title))
        with group.open(run / "forecast.json") as f:
            f.write((json.dumps(report, indent=2) + "\n").encode("utf-8"))
