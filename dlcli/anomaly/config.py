"""ScoreConfig: what `dlcli anomaly score` reads (torch- and numpy-free, for `--help`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dlcli.errors import ConfigError

PROFILE_NAMES = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]  # NAB's three, as nab.PROFILES


@dataclass
class ScoreConfig:
    """Options of `dlcli anomaly score` (dlcli/anomaly/score.py)."""

    results: str = ""  # score CSVs: a folder <category>/<file>.csv[.gz] (NAB's tree) or one CSV
    labels: str = ""  # NAB's combined_windows.json; "": each CSV's 0/1 `label` column
    data: str = ""  # the series (folder or CSV) the scores were made from: check rows match; "": no check
    profiles: list[str] = field(default_factory=lambda: list(PROFILE_NAMES))
    profiles_file: str = ""  # a NAB profiles.json with other cost matrices; "": NAB's three, built in
    probation: float = 0.15  # leading share of each file not scored (NAB's probationPercent; at most 5000 x this)

    def validate(self) -> None:
        if not self.results:
            raise ConfigError("results: no score CSV or folder given")
        if not (math.isfinite(self.probation) and 0 <= self.probation < 1):
            raise ConfigError(f"probation: must be in [0, 1), not {self.probation}")
        if not self.profiles:
            raise ConfigError("profiles: none given")


DETECTORS = ["forecast", "gaussian"]  # as detect.DETECTORS


@dataclass
class DetectConfig:
    """Options of `dlcli anomaly detect` (dlcli/anomaly/detect.py)."""

    input: str = ""  # a series CSV, or a folder of them: <category>/<file>.csv (NAB's tree)
    output: str = ""  # a CSV for one series, a folder mirroring INPUT for a folder
    detector: str = "forecast"  # forecast (streaming neural forecaster + anomaly likelihood) or gaussian
    column: str = ""  # the value column ("": value)
    probation: float = 0.15  # leading share of each series only learnt from (NAB's, at most 5000 x this rows)
    labels: str = ""  # NAB's combined_windows.json: shade the windows in the plots, score the output
    threshold: float | None = None  # flag rows scoring at least this (None: the detector's tuned threshold)
    workers: int = 0  # processes across series (0: one per core)
    seed: int = 0
    plots: bool = True  # a PNG beside each output CSV

    def validate(self) -> None:
        if not self.input:
            raise ConfigError("input: no series CSV or folder given")
        if not self.output:
            raise ConfigError("output: no output given (-o)")
        if self.detector not in DETECTORS:
            raise ConfigError(f"detector: must be one of {', '.join(DETECTORS)}, not '{self.detector}'")
        if not (math.isfinite(self.probation) and 0 < self.probation < 1):
            raise ConfigError(f"probation: must be in (0, 1), not {self.probation}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and 0 <= self.threshold <= 1):
            raise ConfigError(f"threshold: must be in [0, 1], not {self.threshold}")
        if self.workers < 0:
            raise ConfigError(f"workers: must be >= 0, not {self.workers}")
