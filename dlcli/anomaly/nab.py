"""The Numenta Anomaly Benchmark's scoring (Lavin and Ahmad, 2015), as numenta/NAB's `sweeper.py`,
`optimizer.py` and `runner.normalize` compute it, vectorised with numpy.

Each row after the probationary period gets a weight from where it lies:

- inside a labelled window of width W ending at row r, row i sits at relative position
  p = -(r - i + 1) / W (-1 at the window's first row, -1/W at its last); a detection there is worth
  tp * S(p) / S(-1), where S(p) = 2 * sigmoid(-5 p) - 1 is NAB's scaled sigmoid (S = -1 for p > 3).
  Only the best of a window's detections counts, which is its first (S falls along the window);
  a window with no detection costs -fn.
- outside every window, a detection costs fp * S((i - r) / (W - 1)) with r and W of the window before
  it (so a detection just after a window costs little), or -fp with no window before it. Every such
  detection counts.

A row is a detection when its anomaly score is >= the threshold. The threshold is chosen once for all
files together: the one with the best total (NAB sorts every row's score and sweeps them; ties go to
the higher threshold). The score is then normalised, 100 * (raw - null) / (perfect - null), with
perfect = tp * (number of windows) and null the best total of a detector that gives every row 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROBATION = 0.15  # NAB's probationPercent: the first 15 % of each file (at most 750 rows) is not scored


@dataclass(frozen=True)
class Profile:
    """A NAB cost matrix: what a detected window, a missed window and a false positive are worth."""

    name: str
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


PROFILES = {p.name: p for p in (
    Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
)}


def scaled_sigmoid(p: np.ndarray) -> np.ndarray:
    """NAB's S(p) = 2 * sigmoid(-5 p) - 1: 0.987 at p = -1, 0 at p = 0, -0.987 at p = 1; -1 past p = 3."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(p > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(p, 3.0))) - 1.0)


MAX_TP = float(scaled_sigmoid(np.array(-1.0)))  # S(-1): a detection on a window's first row earns exactly tp


def probation_rows(n: int, fraction: float = PROBATION) -> int:
    """Rows at the start of a file that are not scored: floor(fraction * n), at most fraction * 5000
    (NAB compares the row index with that float, hence the ceil)."""
    return math.ceil(min(math.floor(fraction * n), fraction * 5000))


@dataclass
class File:
    """One scored file: its rows after the probationary period, ready for any profile.

    `where` is the window of each row (an index into the file's windows) or -1 outside them; `s` the
    scaled sigmoid of the row's position (inside) or of its distance past the window before (outside)."""

    name: str
    scores: np.ndarray  # anomaly score of each scored row
    s: np.ndarray  # S(position) of each scored row, before the profile's weights
    where: np.ndarray  # window index of each scored row, -1 outside every window
    n_windows: int  # every labelled window, those inside the probationary period too (NAB's perfect)
    skipped: int  # rows of the probationary period


def prepare(name: str, scores: np.ndarray, windows: np.ndarray, probation: float = PROBATION) -> File:
    """Weigh the rows of one file. `windows` is a (k, 2) array of first and last row indices, in order
    and not overlapping (labels.window_rows makes it); `scores` one anomaly score per row."""
    n = len(scores)
    i = np.arange(n)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    left, right = windows[:, 0], windows[:, 1]
    width = (right - left + 1).astype(np.float64)
    k = np.searchsorted(left, i, side="right") - 1  # the last window starting at or before i
    inside = (k >= 0) & (i <= np.r_[right, -1][k])  # k = -1 picks the -1 pad: never inside
    where = np.where(inside, k, -1)
    s = np.empty(n)
    kin = k[inside]
    s[inside] = scaled_sigmoid(-(right[kin] - i[inside] + 1) / width[kin])
    # outside: the window that ended before i, if any
    prev = np.searchsorted(right, i, side="left") - 1
    out = ~inside
    after = out & (prev >= 0)
    kp = prev[after]
    # NAB divides by W - 1; a one-row window would divide by zero there, so it counts as two rows wide
    s[after] = scaled_sigmoid((i[after] - right[kp]) / np.maximum(width[kp] - 1.0, 1.0))
    s[out & (prev < 0)] = -1.0
    skip = probation_rows(n, probation)
    return File(name, np.asarray(scores, dtype=np.float64)[skip:], s[skip:], where[skip:], len(windows), skip)


@dataclass
class Sweep:
    """Every candidate threshold of a corpus, highest first, with the raw score it gives."""

    thresholds: np.ndarray
    totals: np.ndarray

    def best(self) -> tuple[float, float]:
        """The threshold with the best total (the first, i.e. highest, on ties, as NAB's stable sort)."""
        j = int(np.argmax(self.totals))
        return float(self.thresholds[j]), float(self.totals[j])


def _stack(files: list[File], profile: Profile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All scored rows of all files: scores, profile-weighted values, corpus-wide window ids (-1 outside)."""
    scores, weights, ids = [], [], []
    offset = 0
    for f in files:
        scores.append(f.scores)
        weights.append(np.where(f.where >= 0, f.s * profile.tp / MAX_TP, f.s * profile.fp))
        ids.append(np.where(f.where >= 0, f.where + offset, -1))
        offset += f.n_windows
    if not files:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(scores), np.concatenate(weights), np.concatenate(ids)


def sweep(files: list[File], profile: Profile) -> Sweep:
    """The raw NAB total at every distinct score (detection = score >= threshold), from no detection
    (a threshold above every score) down to every row detected."""
    a, w, win = _stack(files, profile)
    order = np.argsort(-a, kind="stable")
    a, w, win = a[order], w[order], win[order]
    delta = np.where(win < 0, w, 0.0)  # each false positive counts as it is passed
    # a window's value is the best detection so far (-fn before any): add each step up of its running best
    inwin = np.flatnonzero(win >= 0)
    grouped = inwin[np.argsort(win[inwin], kind="stable")]  # window by window, each in sweep order
    for rows in np.split(grouped, np.flatnonzero(np.diff(win[grouped])) + 1):
        best = np.maximum.accumulate(np.maximum(w[rows], -profile.fn))
        delta[rows] += np.diff(np.r_[-profile.fn, best])
    n_windows = len(np.unique(win[inwin]))
    base = -profile.fn * n_windows  # nothing detected: every window with a scored row missed
    if len(a) == 0:
        return Sweep(np.array([1.1]), np.array([base]))
    total = base + np.cumsum(delta)
    ends = np.flatnonzero(np.r_[a[1:] != a[:-1], True])  # the last row of each distinct score
    above = max(1.1, float(np.nextafter(a[0], np.inf)))  # NAB starts at 1.1: no score reaches it
    return Sweep(np.r_[above, a[ends]], np.r_[base, total[ends]])


@dataclass
class Counts:
    """One file's (or the corpus's) figures at a threshold."""

    raw: float = 0.0  # the NAB total
    windows: int = 0  # windows with a scored row
    detected: int = 0  # ... with at least one detection (true-positive events)
    false_positives: int = 0  # detections outside every window (each row is one event)
    tp_rows: int = 0  # NAB's point counts, as its results CSVs give them
    fp_rows: int = 0
    fn_rows: int = 0
    tn_rows: int = 0

    def add(self, o: Counts) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(o, k))

    def event_prf(self) -> dict[str, float | None]:
        """Event-wise precision, recall and F1: each window counts once (detected or missed), each
        detection outside every window is one false positive; no point adjustment. None when undefined."""
        tp, fp, fn = self.detected, self.false_positives, self.windows - self.detected
        p = tp / (tp + fp) if tp + fp else None
        r = tp / (tp + fn) if tp + fn else None
        f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else (
            0.0 if p is not None and r is not None else None)
        return {"precision": p, "recall": r, "f1": f1}


def count(f: File, profile: Profile, threshold: float) -> Counts:
    """One file's NAB total and counts with detection = score >= threshold."""
    hit = f.scores >= threshold
    w = np.where(f.where >= 0, f.s * profile.tp / MAX_TP, f.s * profile.fp)
    out = f.where < 0
    scored = np.unique(f.where[~out])
    best = np.full(f.n_windows, -profile.fn)
    np.maximum.at(best, f.where[hit & ~out], w[hit & ~out])
    detected = np.zeros(f.n_windows, dtype=bool)
    detected[f.where[hit & ~out]] = True
    return Counts(
        raw=float(w[hit & out].sum() + best[scored].sum()),
        windows=len(scored), detected=int(detected.sum()), false_positives=int((hit & out).sum()),
        tp_rows=int((hit & ~out).sum()), fp_rows=int((hit & out).sum()),
        fn_rows=int((~hit & ~out).sum()), tn_rows=int((~hit & out).sum()))


@dataclass
class Result:
    """A profile's result on a corpus: the NAB score and what makes it."""

    profile: Profile
    threshold: float
    score: float | None  # normalised: null = 0, perfect = 100 (None without any window)
    raw: float
    null: float
    perfect: float
    total: Counts
    files: dict[str, Counts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "threshold": self.threshold, "score": self.score, "raw": self.raw,
                "null": self.null, "perfect": self.perfect, **vars(self.total),
                **{f"event_{k}": v for k, v in self.total.event_prf().items()},
                "files": {n: {**vars(c), **{f"event_{k}": v for k, v in c.event_prf().items()}}
                          for n, c in self.files.items()}}


def null_files(files: list[File]) -> list[File]:
    """The same files scored by NAB's null detector (0.5 on every row)."""
    return [File(f.name, np.full_like(f.scores, 0.5), f.s, f.where, f.n_windows, f.skipped) for f in files]


def score(files: list[File], profile: Profile) -> Result:
    """A detector's NAB score on a corpus under one profile: the threshold optimised over all files
    together, each file's figures at it, the total normalised against the null and perfect detectors."""
    threshold, raw = sweep(files, profile).best()
    _, null = sweep(null_files(files), profile).best()
    perfect = profile.tp * sum(f.n_windows for f in files)
    total, per_file = Counts(), {}
    for f in files:
        per_file[f.name] = count(f, profile, threshold)
        total.add(per_file[f.name])
    norm = 100.0 * (raw - null) / (perfect - null) if perfect != null else None
    return Result(profile, threshold, norm, raw, null, perfect, total, per_file)
