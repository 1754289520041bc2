"""Anomalies in a series from a trained forecaster: each point's 1-step forecast residual against a robust
scale, with a z-score of the raw values beside it as the baseline.

Both scores are streaming: the score of row t uses rows up to t only (the forecast of x_t reads
x_{t-tau..t-1}; the scale reads the `window` residuals before t), so the scores of a prefix of a series
are the first rows of the scores of the whole series.

* forecast residual: r_t = x_t - forecast_t; score_t = |r_t - median| / (1.4826 * MAD), the median and
  the median absolute deviation taken over r_{t-window..t-1}. 1.4826 * MAD estimates a Gaussian's
  standard deviation and a few outliers in the window barely move it. Flag score_t >= threshold.
* z-score baseline: z_t = |x_t - mean| / std of x_{t-window..t-1}. Flag z_t >= z_threshold.

A score needs MIN_HISTORY values in its window: the first rows have none (NaN, never flagged). A point
within tau points after a flagged one is not flagged (`flags(echo=tau)`): the outlier is still in the
forecaster's window and its residual an echo.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dlcli.core.io import AtomicGroup, atomic_write, check_input_file
from dlcli.core.runtime import resolve_device
from dlcli.errors import ConfigError, InputError
from dlcli.forecast.config import AnomalyConfig
from dlcli.forecast.outputs import _time_axis
from dlcli.forecast.series import Series, make_sine_series, read_series

MIN_HISTORY = 30  # values a trailing window needs before it gives a score
MAD_TO_STD = 1.4826  # 1 / Phi^-1(3/4): MAD -> standard deviation of a Gaussian
LABEL = "label"
BLOCK = 1 << 22  # window elements per block: bounds memory on long series


# --------------------------------------------------------------------------
# Scores


def _trailing(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Row t: x[t-window:t] (NaN before the start), and which rows hold MIN_HISTORY values."""
    padded = np.concatenate([np.full(window, np.nan), x])
    rows = sliding_window_view(padded, window)[: len(x)]  # a view: (T, window)
    ok = np.count_nonzero(~np.isnan(rows), axis=1) >= MIN_HISTORY
    return rows, ok


def _floor(x: np.ndarray) -> float:
    """A scale below this is treated as this: a constant stretch gives large, not infinite, scores."""
    finite = x[np.isfinite(x)]
    return 1e-9 * max(1.0, float(np.max(np.abs(finite)))) if len(finite) else 1e-9


def robust_scores(residuals: np.ndarray, window: int) -> np.ndarray:
    """|r_t - median| / (1.4826 * MAD) over the `window` residuals before t; NaN without MIN_HISTORY of them."""
    rows, ok = _trailing(residuals, window)
    out = np.full(len(residuals), np.nan)
    floor = _floor(residuals)
    step = max(1, BLOCK // window)
    for lo in range(0, len(residuals), step):  # blocks of rows, each one vectorised call
        idx = lo + np.flatnonzero(ok[lo:lo + step])
        if not len(idx):
            continue
        w = rows[idx]
        med = np.nanmedian(w, axis=1)
        mad = np.nanmedian(np.abs(w - med[:, None]), axis=1)
        out[idx] = np.abs(residuals[idx] - med) / np.maximum(MAD_TO_STD * mad, floor)
    return out


def z_scores(values: np.ndarray, window: int) -> np.ndarray:
    """|x_t - mean| / std over the `window` raw values before t: the baseline."""
    rows, ok = _trailing(values, window)
    out = np.full(len(values), np.nan)
    floor = _floor(values)
    step = max(1, BLOCK // window)
    for lo in range(0, len(values), step):
        idx = lo + np.flatnonzero(ok[lo:lo + step])
        if not len(idx):
            continue
        w = rows[idx]
        out[idx] = np.abs(values[idx] - np.nanmean(w, axis=1)) / np.maximum(np.nanstd(w, axis=1), floor)
    return out


def flags(scores: np.ndarray, threshold: float, echo: int = 0) -> np.ndarray:
    """score >= threshold (a NaN score is never flagged), except within `echo` points after such a score.

    With echo = tau, an outlier x_s sits in the forecaster's window for the tau forecasts after it and
    pulls their residuals: those echoes are not new anomalies.
    """
    over = np.nan_to_num(scores, nan=-np.inf) >= threshold
    if echo < 1 or not over.any():
        return over
    before = sliding_window_view(np.concatenate([np.zeros(echo, bool), over[:-1]]), echo)  # row t: over[t-echo:t]
    return over & ~before.any(axis=1)


def prf(flagged: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Point-wise precision, recall and F1 (0 where undefined)."""
    tp = int(np.count_nonzero(flagged & labels))
    n_flag, n_true = int(np.count_nonzero(flagged)), int(np.count_nonzero(labels))
    p = tp / n_flag if n_flag else 0.0
    r = tp / n_true if n_true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The highest F1 over all thresholds, and that threshold: how well a score ranks, whatever its scale."""
    s = np.nan_to_num(scores, nan=-np.inf)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], labels[order]
    tp = np.cumsum(y)
    k = np.arange(1, len(s) + 1)
    last = np.append(s[1:] != s[:-1], True) & np.isfinite(s)  # cut only between distinct scores
    if not np.any(last) or not tp[-1]:
        return 0.0, float("inf")
    f1 = np.where(last, 2 * tp / (k + tp[-1]), -1.0)
    i = int(np.argmax(f1))
    return float(f1[i]), float(s[i])


def score_series(model: Any, values: np.ndarray, tau: int, mean: float, std: float, window: int,
                 device: Any = "cpu") -> dict[str, np.ndarray]:
    """1-step forecasts, residuals, robust scores and the z-score baseline of one series (NaN where undefined)."""
    from dlcli.forecast.windows import forecast

    pred = forecast(model, values, tau, [1], mean, std, device)["one_step"]
    residual = values - pred
    return {"forecast": pred, "residual": residual, "score": robust_scores(residual, window),
            "zscore": z_scores(values, window)}


# --------------------------------------------------------------------------
# A test series


def make_anomaly_series(T: int = 1000, seed: int = 1, spikes: int = 8, shift: float = 1.5,
                        shift_at: float = 0.7, shift_label: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The sine of `make_sine_series` with spikes and a level shift, and their 0/1 labels.

    Spikes: `spikes` single points, at least 20 apart, in the middle 10-90 % of the series away from
    the shift, moved by +-(1.0..2.0) (5-10 noise standard deviations). Level shift: from
    t = shift_at * T on, every value moves by `shift`; its first `shift_label` points are labelled (the
    change itself: the points after it are the new normal).
    """
    rng = np.random.default_rng(seed)
    x = make_sine_series(T, seed)
    labels = np.zeros(T, dtype=np.int64)
    at = int(shift_at * T)
    x[at:] += shift
    labels[at:at + shift_label] = 1
    taken = [at - 10, at + 10]
    where: list[int] = []
    while len(where) < spikes:
        t = int(rng.integers(int(0.1 * T), int(0.9 * T)))
        if all(abs(t - u) >= 20 for u in taken):
            taken.append(t)
            where.append(t)
    x[where] += rng.choice([-1.0, 1.0], len(where)) * rng.uniform(1.0, 2.0, len(where))
    labels[where] = 1
    return x, labels


def write_anomaly_csv(path: str | Path, T: int = 1000, seed: int = 1, force: bool = True) -> Path:
    """Write `make_anomaly_series` as `time,x,label` (the sine run's column name), atomically."""
    x, y = make_anomaly_series(T, seed)
    lines = ["time,x,label"] + [f"{t},{v:.6f},{k}" for t, (v, k) in enumerate(zip(x, y), 1)]
    with atomic_write(path, force=force) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return Path(path)


# --------------------------------------------------------------------------
# The command


def _header(path: str) -> list[str]:
    p = check_input_file(path, "CSV")
    with open(p, encoding="utf-8-sig", newline="") as f:
        for fields in csv.reader(f):
            if fields:
                return [h.strip() for h in fields]
    return []


def read_labels(path: str, name: str) -> tuple[str, np.ndarray] | None:
    """The 0/1 label column (`name`, or `label` when present and `name` is ""), or None."""
    if not name:
        if LABEL not in _header(path):
            return None
        name = LABEL
    col = read_series(path, name)
    bad = np.flatnonzero((col.values != 0) & (col.values != 1))
    if len(bad):
        row = col.rows[bad[0]] if col.rows else bad[0] + 2
        raise InputError(f"{path}: row {row}, column '{name}': {col.values[bad[0]]:g} is not a 0/1 label")
    return name, col.values.astype(bool)


def _fmt(v: float) -> str:
    return "" if np.isnan(v) else format(v, ".8g")


def anomalies_csv(series: Series, out: dict[str, np.ndarray], flagged: np.ndarray, zflagged: np.ndarray,
                  labels: np.ndarray | None) -> bytes:
    """t,value,forecast,residual,score,flag,zscore,zflag[,label]: one row per point, empty where undefined."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["t", "value", "forecast", "residual", "score", "flag", "zscore", "zflag"]
               + ([LABEL] if labels is not None else []))
    t = series.time or [str(i) for i in range(1, len(series.values) + 1)]
    for i, v in enumerate(series.values):
        w.writerow([t[i], _fmt(v), _fmt(out["forecast"][i]), _fmt(out["residual"][i]), _fmt(out["score"][i]),
                    int(flagged[i]), _fmt(out["zscore"][i]), int(zflagged[i])]
                   + ([int(labels[i])] if labels is not None else []))
    return buf.getvalue().encode("utf-8")


def anomalies_png(series: Series, out: dict[str, np.ndarray], flagged: np.ndarray, zflagged: np.ndarray,
                  labels: np.ndarray | None, threshold: float, title: str) -> bytes:
    """The series, its forecast and the flagged points above; the score and the threshold below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = _time_axis(series)
    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(t, series.values, color="0.6", lw=0.8, label="data")
    top.plot(t, out["forecast"], lw=0.8, label="1-step forecast")
    if labels is not None and labels.any():
        top.scatter(t[labels], series.values[labels], s=80, facecolors="none", edgecolors="k", lw=1.0,
                    label="labelled", zorder=3)
    top.scatter(t[zflagged], series.values[zflagged], s=14, marker="x", color="tab:green", label="z-score flags",
                zorder=4)
    top.scatter(t[flagged], series.values[flagged], s=18, color="tab:red", label="flagged", zorder=5)
    top.set_ylabel(series.column)
    top.set_title(title)
    top.legend(loc="best", fontsize="small")
    bottom.plot(t, out["score"], lw=0.8, color="tab:red", label="residual score")
    bottom.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    bottom.set_ylabel("score")
    bottom.set_xlabel("time" if series.time else "t")
    bottom.legend(loc="best", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def detect(cfg: AnomalyConfig, force: bool = False) -> dict[str, Any]:
    """Score a CSV with a forecasting run; write anomalies.csv and its plot; the summary, with precision,
    recall and F1 of both detectors when the CSV has labels."""
    from dlcli.forecast.predict import load_run

    dev = resolve_device(cfg.device)
    run, model, mean, std = load_run(cfg.run, str(dev))
    data = cfg.data or run.data
    series = read_series(data, cfg.column or run.column)
    labelled = read_labels(data, cfg.label)
    if labelled is not None and labelled[0] == series.column:
        raise ConfigError(f"{data}: column '{series.column}' cannot be both the series and its labels")
    T = len(series.values)
    if T <= run.tau + MIN_HISTORY:
        raise InputError(f"{series.source}: column '{series.column}' has {T} values; scoring needs more than "
                         f"tau + {MIN_HISTORY} = {run.tau + MIN_HISTORY}")
    out = score_series(model, series.values, run.tau, mean, std, cfg.window, dev)
    flagged, zflagged = flags(out["score"], cfg.threshold, run.tau), flags(out["zscore"], cfg.z_threshold)
    labels = labelled[1] if labelled is not None else None
    summary: dict[str, Any] = {
        "run": cfg.run, "data": series.source, "column": series.column, "points": T,
        "scored": int(np.count_nonzero(~np.isnan(out["score"]))), "window": cfg.window,
        "label": labelled[0] if labelled is not None else None,
        "anomalies": int(labels.sum()) if labels is not None else None,
        "forecast": {"threshold": cfg.threshold, "flagged": int(flagged.sum())},
        "zscore": {"threshold": cfg.z_threshold, "flagged": int(zflagged.sum())},
    }
    if labels is not None:
        for name, f, s in (("forecast", flagged, out["score"]), ("zscore", zflagged, out["zscore"])):
            best, at = best_f1(s, labels)
            summary[name].update(prf(f, labels), best_f1=best, best_threshold=at)
    csv_path = Path(cfg.output)
    png_path = csv_path.with_suffix(".png")
    title = f"{Path(series.source).name}: {series.column}, {run.model} tau={run.tau}, threshold {cfg.threshold:g}"
    with AtomicGroup(force=force) as group:
        with group.open(csv_path) as f:
            f.write(anomalies_csv(series, out, flagged, zflagged, labels))
        with group.open(png_path) as f:
            f.write(anomalies_png(series, out, flagged, zflagged, labels, cfg.threshold, title))
    summary["written"] = [str(csv_path), str(png_path)]
    return summary


def report(s: dict[str, Any]) -> str:
    """The summary line: flags, and precision/recall/F1 of both detectors against the labels."""
    f, z = s["forecast"], s["zscore"]
    line = (f"flagged {f['flagged']} of {s['points']} points (residual score >= {f['threshold']:g}); "
            f"z-score baseline {z['flagged']} (>= {z['threshold']:g})")
    if s["label"] is None:
        return line
    return (f"{line}\nagainst '{s['label']}' ({s['anomalies']} anomalies): forecast residual "
            f"P {f['precision']:.2f} R {f['recall']:.2f} F1 {f['f1']:.2f}; z-score P {z['precision']:.2f} "
            f"R {z['recall']:.2f} F1 {z['f1']:.2f}")
