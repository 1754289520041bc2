"""The anomaly likelihood: raw scores (a forecaster's errors) -> how unusual the recent ones are.

As Numenta's HTM detector post-processes its raw scores (Ahmad et al., 2017), written here vectorised:

1. the mean m_t of the raw scores over a short trailing window (`short` rows, row t included);
2. a normal distribution fitted to m over a long trailing window (`long` rows before t, from the end
   of the forecaster's warm-up on), its spread kept above a floor so that a quiet history does not make
   every blip a certainty;
3. the upper tail probability q_t = P(M >= m_t) under that normal;
4. a run of red tails (q <= RED) keeps only its first row red, the rest count as yellow (the first
   detection in a window is the one that scores; the rest would only add false positives);
5. the log scale, score = log(q + 1e-10) / log(1e-10), in [0, 1], so a threshold sweep can tell
   1e-5 from 1e-7.

Row t's score uses rows up to t only. Rows before `probation` score 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RED = 1e-5  # NAB's HTM: tail probability of a "red" row
YELLOW = 1e-3  # what a red row right after a red row is lowered to
EPS = 1e-10


@dataclass(frozen=True)
class LikelihoodSettings:
    short: int = 5  # rows averaged into m_t
    long: int = 8640  # rows of history the normal is fitted on (HTM's 30 days of 5-minute rows)
    min_history: int = 20  # fewer rows of history than this: no score yet
    floor: float = 0.1  # the normal's spread is at least floor x its mean ...
    floor_abs: float = 1e-3  # ... and at least this


def trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of x[max(0, t-k+1) .. t] for each t."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    t = np.arange(1, len(x) + 1)
    lo = np.maximum(0, t - k)
    return (c[t] - c[lo]) / (t - lo)


def upper_tail(z: np.ndarray) -> np.ndarray:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * _erfc(z / math.sqrt(2.0))


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def likelihood(raw: np.ndarray, probation: int, start: int = 0,
               settings: LikelihoodSettings = LikelihoodSettings()) -> np.ndarray:
    """The score of each row from the raw scores `raw` (valid from row `start` on), streaming."""
    raw = np.asarray(raw, dtype=np.float64)
    n = len(raw)
    score = np.zeros(n)
    if n <= probation:
        return score
    m = np.zeros(n)
    m[start:] = trailing_mean(raw[start:], settings.short)
    first = start + settings.short - 1  # the first full short window
    # the normal over m[lo .. t-1], lo = max(first, t - long)
    c1 = np.concatenate([[0.0], np.cumsum(m)])
    c2 = np.concatenate([[0.0], np.cumsum(m * m)])
    t = np.arange(probation, n)
    lo = np.maximum(first, t - settings.long)
    k = np.maximum(t - lo, 1)
    mu = (c1[t] - c1[lo]) / k
    var = np.maximum((c2[t] - c2[lo]) / k - mu * mu, 0.0)
    sd = np.maximum(np.sqrt(var), np.maximum(settings.floor * np.abs(mu), settings.floor_abs))
    q = upper_tail((m[t] - mu) / sd)
    q[t - lo < settings.min_history] = 0.5
    red = q <= RED
    q[red & np.r_[False, red[:-1]]] = YELLOW
    score[probation:] = np.clip(np.log(q + EPS) / math.log(EPS), 0.0, 1.0)
    return score


def beyond_range(values: np.ndarray, probation: int, tolerance: float) -> np.ndarray:
    """Rows (from `probation` on) whose value leaves the range of every row before them by more than
    `tolerance` x that range: a new high or low that a forecaster, learning online, may follow too fast
    to call unusual (NAB's HTM detector has the same check)."""
    x = np.asarray(values, dtype=np.float64)
    out = np.zeros(len(x), dtype=bool)
    if len(x) <= probation or probation < 1:
        return out
    hi = np.maximum.accumulate(x)[probation - 1:-1]
    lo = np.minimum.accumulate(x)[probation - 1:-1]
    margin = tolerance * (hi - lo)
    out[probation:] = (x[probation:] > hi + margin) | (x[probation:] < lo - margin)
    return out
