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
