"""The seam for `dlcli anomaly detect` (issue 22, item 1), which is not built yet.

A detector turns one series into one anomaly score per row, in [0, 1], streaming: the score of row t
may use rows 0..t only (a test should check that scoring a prefix gives the first rows of scoring the
whole series). The first `probation` rows (`nab.probation_rows(len(series.values), fraction)`, NAB's
15 %, at most 750 rows) are for learning; their scores are not scored.

What exists for it:

- `series.read_series(path, column)` reads INPUT (`timestamp,value`, .csv.gz too) with one-line errors
  naming the file and line; `series.write_scores(path, series, scores, flags, force)` writes
  `timestamp,value,anomaly_score,flag` atomically, the format `dlcli anomaly score` reads;
- `labels.read_windows` / `labels.window_rows` give the labelled windows of a file as row ranges
  (for the plot);
- `score.score(ScoreConfig(results=OUT, labels=..., data=INPUT))` scores the output as NAB does, and its
  threshold (per profile) is the one to flag rows with, e.g. in the closing note.

A detector should have this shape (a plain function or a callable object):
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from dlcli.anomaly.series import Series


class Detector(Protocol):
    def __call__(self, series: Series, probation: int) -> np.ndarray:
        """The anomaly score of each row of `series`, float64 in [0, 1], one per row, in row order; row t's
        score from rows 0..t only; rows before `probation` are for learning (their scores are not used).

        The planned two: `gaussian` (the windowed z-score baseline, NAB's windowedGaussian) and `forecast`
        (a small forecaster learning online, its errors turned into a score by an anomaly likelihood).
        `dlcli anomaly detect INPUT -o OUT` runs one over each `<category>/<file>.csv` under INPUT (in
        parallel across series) and writes OUT/<category>/<file>.csv with `series.write_scores`."""
        ...
