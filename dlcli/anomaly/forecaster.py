"""The streaming forecaster behind `--detector forecast`: a small MLP that predicts each value from the
values before it and the time of day and week, learning as the points arrive.

The network is the forecast stage's MLP (`models/forecast.MLPAR`: tau lags -> hidden, ReLU -> 1) with
four more inputs, sin and cos of the time of day and of the day of the week, and a linear path from the
inputs to the output beside the hidden layer (a linear autoregression the hidden units correct):

    pred_t = x_{t-1} + w . u_t + V relu(W u_t + b) + c,     u_t = (x_{t-tau} .. x_{t-1}, time features of t)

It runs as one compiled loop (numba, one thread: bit-for-bit reproducible, and a torch step per point
would cost ~100x more). Rows before `probation` only teach it: the values are standardised by the
mean and spread of those rows, the model makes `epochs` passes of SGD over them at row `probation`,
and from then on each row is predicted first and learnt from after (one SGD step on its squared error,
the error clipped so one wild point cannot wreck the weights). The error of row t therefore depends on
rows 0..t only, and the errors of the probationary rows are the trained model's errors on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from dlcli.anomaly.likelihood import LikelihoodSettings, beyond_range
from dlcli.anomaly.likelihood import likelihood as anomaly_likelihood

DAY = 86_400.0
WEEK = 7 * DAY
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday: Monday = 0


@dataclass(frozen=True)
class ForecasterSettings:
    """One set for every series (tuned on NAB's 24 shared files: docs/commands/anomaly.md)."""

    lags: int = 8  # tau: past values the model reads
    hidden: int = 16  # hidden ReLU units
    lr: float = 0.003  # SGD step in the probationary epochs
    online_lr: float = 0.01  # SGD step online, after the probationary period
    epochs: int = 10  # passes over the probationary rows at its end
    clip: float = 3.0  # errors beyond this many standard deviations count as this many in the update
    seasonal: tuple[float, ...] = (1.0, 7.0)  # also read the values this many days back (and the row after)


def time_features(timestamps: np.ndarray) -> np.ndarray:
    """(n, 4) float64: sin and cos of the time of day and of the day of the week (datetime64 input)."""
    s = timestamps.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    day = 2 * np.pi * (s % DAY) / DAY
    week = 2 * np.pi * ((s + EPOCH_WEEKDAY * DAY) % WEEK) / WEEK
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=1)


def standardise(values: np.ndarray, probation: int) -> np.ndarray:
    """Values in units of the probationary rows' spread around their mean (a flat start: of its level)."""
    head = values[:probation]
    mu = float(head.mean())
    sd = float(head.std())
    if not sd > 1e-9 * max(1.0, abs(mu)):
        sd = max(1.0, abs(mu)) * 1e-3
    return (values - mu) / sd


def seasonal_offsets(timestamps: np.ndarray, probation: int, days: tuple[float, ...]) -> np.ndarray:
    """Row offsets of the values `days` back (and one row less), from the probationary rows' median step;
    an offset the probationary rows cannot teach (over half of them) falls back to one day or is left out."""
    step = np.diff(timestamps[:probation]).astype("timedelta64[us]").astype(np.float64) / 1e6
    step = step[step > 0]
    if not len(step):
        return np.zeros(0, dtype=np.int64)
    dt = float(np.median(step))
    out: list[int] = []
    for d in days:
        k = round(d * DAY / dt)
        if k > probation // 2:
            k = round(DAY / dt)
        if 2 <= k <= probation // 2:
            out += [k, k - 1]
    return np.array(out, dtype=np.int64)


def initial_weights(inputs: int, hidden: int, seed: int | list[int]) -> tuple[np.ndarray, ...]:
    """Xavier-uniform W and V (as MLPAR), zero biases, zero linear path."""
    rng = np.random.default_rng(seed)
    a = np.sqrt(6.0 / (inputs + hidden))
    W = rng.uniform(-a, a, size=(hidden, inputs))
    b = np.zeros(hidden)
    a = np.sqrt(6.0 / (hidden + 1))
    V = rng.uniform(-a, a, size=hidden)
    return W, b, V, np.zeros(inputs), np.zeros(1)


def errors(timestamps: np.ndarray, values: np.ndarray, probation: int,
           settings: ForecasterSettings = ForecasterSettings(), seed: int | list[int] = 0) -> np.ndarray:
    """Each row's prediction error in standardised units (0 for the first `lags` rows), streaming."""
    x = standardise(np.asarray(values, dtype=np.float64), probation)
    feats = time_features(timestamps)
    offsets = seasonal_offsets(timestamps, probation, settings.seasonal)
    W, b, V, w, c = initial_weights(settings.lags + len(offsets) + feats.shape[1], settings.hidden, seed)
    return _run(x, feats, offsets, probation, settings.lags, settings.lr, settings.online_lr, settings.epochs,
                settings.clip,
                W, b, V, w, c)


@njit(cache=True)
def _step(x: np.ndarray, feats: np.ndarray, offsets: np.ndarray, t: int, lags: int, lr: float, clip: float, learn: bool,
          W: np.ndarray, b: np.ndarray, V: np.ndarray, w: np.ndarray, c: np.ndarray,
          u: np.ndarray, h: np.ndarray) -> float:
    """Predict row t, learn from it if `learn`; returns its error x_t - pred_t."""
    for j in range(lags):
        u[j] = x[t - lags + j]
    for j in range(offsets.shape[0]):
        u[lags + j] = x[max(t - offsets[j], 0)]
    m = lags + offsets.shape[0]
    for j in range(feats.shape[1]):
        u[m + j] = feats[t, j]
    pred = x[t - 1] + c[0]
    for j in range(u.shape[0]):
        pred += w[j] * u[j]
    for k in range(W.shape[0]):
        z = b[k]
        for j in range(u.shape[0]):
            z += W[k, j] * u[j]
        h[k] = max(0.0, z)
        pred += V[k] * h[k]
    err = x[t] - pred
    if learn:
        g = min(max(err, -clip), clip) * lr  # minus the gradient of err^2 / 2, times lr
        c[0] += g
        for j in range(u.shape[0]):
            w[j] += g * u[j]
        for k in range(W.shape[0]):
            if h[k] > 0.0:
                gk = g * V[k]
                b[k] += gk
                for j in range(u.shape[0]):
                    W[k, j] += gk * u[j]
            V[k] += g * h[k]
    return err


@njit(cache=True)
def _run(x: np.ndarray, feats: np.ndarray, offsets: np.ndarray, probation: int, lags: int, lr: float, online_lr: float, epochs: int,
         clip: float,
         W: np.ndarray, b: np.ndarray, V: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    err = np.zeros(n)
    u = np.zeros(W.shape[1])
    h = np.zeros(W.shape[0])
    for _ in range(epochs):
        for t in range(lags, probation):
            _step(x, feats, offsets, t, lags, lr, clip, True, W, b, V, w, c, u, h)
    for t in range(lags, probation):  # the trained model's errors on what it learnt from
        err[t] = _step(x, feats, offsets, t, lags, lr, clip, False, W, b, V, w, c, u, h)
    for t in range(probation, n):
        err[t] = _step(x, feats, offsets, t, lags, online_lr, clip, True, W, b, V, w, c, u, h)
    return err


@dataclass(frozen=True)
class ForecastDetector:
    """`--detector forecast`: `members` forecasters (seeded apart) -> the mean of their absolute errors ->
    log(1 + e) as the raw score -> the anomaly likelihood; a value beyond the range seen so far scores 1."""

    forecaster: ForecasterSettings = field(default_factory=ForecasterSettings)
    likelihood: LikelihoodSettings = field(default_factory=LikelihoodSettings)
    members: int = 10
    range_tolerance: float = 0.05  # likelihood.beyond_range
    threshold: float = 0.52  # flag rows scoring at least this (about NAB standard's best on the shared files)

    @property
    def min_probation(self) -> int:
        """Probationary rows it needs: the lags, a short window and the least history of the likelihood."""
        return self.forecaster.lags + self.likelihood.short + self.likelihood.min_history

    def __call__(self, timestamps: np.ndarray, values: np.ndarray, probation: int, seed: int = 0) -> np.ndarray:
        e = np.mean([np.abs(errors(timestamps, values, probation, self.forecaster, seed=[seed, k]))
                     for k in range(self.members)], axis=0)
        score = anomaly_likelihood(np.log1p(e), probation, self.forecaster.lags, self.likelihood)
        score[beyond_range(values, probation, self.range_tolerance)] = 1.0
        return score
