"""Lag windows and the forecasts built from them.

* 1-step ahead: predict x_t from the true window x_{t-tau..t-1}.
* k-step ahead: predictions are fed back in. Row j of the feature matrix starts with the true window
  x[j:j+tau]; column tau+i-1 holds the i-step-ahead prediction of x[j+tau+i-1], made from the row's
  previous tau columns. The matrix is built column by column, one batched forward pass per step,
  over all start positions at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

EVAL_BATCH = 65536  # windows per forward pass when predicting (bounds RNN activations)


def windows(x: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1-step examples: windows (T - tau, tau) of true values and targets x[tau:]."""
    return x.unfold(0, tau, 1)[:-1], x[tau:]


def multistep_features(x: torch.Tensor, tau: int, max_k: int,
                       step: Callable[[torch.Tensor], torch.Tensor], full: bool = False) -> torch.Tensor:
    """The k-step feature matrix, built column by column: (rows, tau + max_k).

    Row j holds x[j:j+tau], then the 1..max_k-step-ahead predictions of
    x[j+tau], ..., x[j+tau+max_k-1], each made by `step` from the previous
    tau entries of the row (true values first, then predictions). By default
    there are T - tau - max_k + 1 rows, as in the curriculum: every prediction
    has a true value. With `full`, every start window is a row (T - tau + 1):
    each horizon then reaches every target, and the last row forecasts past
    the end of the series.
    """
    n = x.shape[0] - tau + 1 if full else x.shape[0] - tau - max_k + 1
    if n < 1:
        raise ValueError(f"series of {x.shape[0]} values is too short for tau={tau} and max_k={max_k}")
    feats = torch.empty((n, tau + max_k), dtype=x.dtype, device=x.device)
    for i in range(tau):
        feats[:, i] = x[i:i + n]
    for i in range(tau, tau + max_k):
        feats[:, i] = step(feats[:, i - tau:i].contiguous())
    return feats


def _batched(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(w: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(w[i:i + EVAL_BATCH]) for i in range(0, w.shape[0], EVAL_BATCH)])

    return step


@torch.no_grad()
def forecast(model: nn.Module, values: np.ndarray, tau: int, horizons: list[int], mean: float = 0.0,
             std: float = 1.0, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Predictions aligned with `values` (NaN where undefined), in data units.

    Returns {"one_step": (T,), "k": {k: (T,)}, "future": (max_k,)}: the
    k-step array at t is the k-step-ahead prediction of x_t; `future`
    continues the series past its end from its last tau values.
    """
    model.eval()
    T, max_k = len(values), max(horizons)
    x = torch.tensor((values - mean) / std, dtype=torch.float32, device=device)
    feats = multistep_features(x, tau, max_k, _batched(model), full=True).cpu().double().numpy()
    feats = feats * std + mean
    out: dict[str, Any] = {"one_step": np.full(T, np.nan), "k": {}}
    out["one_step"][tau:] = feats[:T - tau, tau]
    for k in horizons:
        # row j predicts x[j + tau + k - 1]; rows past T - tau - k forecast beyond the data
        out["k"][k] = np.full(T, np.nan)
        out["k"][k][tau + k - 1:] = feats[:T - tau - k + 1, tau + k - 1]
    out["future"] = feats[-1, tau:]
    return out


def scores(values: np.ndarray, preds: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """MSE of the 1-step and each k-step prediction over targets lo <= t < hi."""

    def mse(p: np.ndarray) -> tuple[float | None, int]:
        d = p[lo:hi] - values[lo:hi]
        d = d[~np.isnan(d)]
        return (float(np.mean(d * d)) if len(d) else None), len(d)

    m1, n1 = mse(preds["one_step"])
    ks = {str(k): mse(p) for k, p in preds["k"].items()}
    return {"mse_1step": m1, "mse": {k: v[0] for k, v in ks.items()},
            "points_1step": n1, "points": {k: v[1] for k, v in ks.items()}}
