"""TimeSeriesConfig: what `dlcli train-rnn --task forecast` reads (config.yaml of a forecasting run).

The shared training keys come from TrainArgs; a step of the training loop is one epoch here, so
`max_steps` and `epochs` both count epochs. Runs made before TrainArgs lack its keys and load with
the defaults below.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

from dlcli.errors import ConfigError
from dlcli.models.config import FORECASTERS
from dlcli.train.args import TrainArgs

STAGE = "timeseries"  # meta.json's stage, as in runs made before the forecast package
DEFAULT_N_TRAIN = 600
DEFAULT_HIDDEN = {"linear": 0, "mlp": 10, "gru": 32, "lstm": 32}
DEFAULT_EPOCHS = {"linear": 5, "mlp": 5, "gru": 20, "lstm": 20}


@dataclass
class TimeSeriesConfig(TrainArgs):
    """Options of forecasting training (`dlcli train-rnn --task forecast`)."""

    data: str = ""  # CSV with a header row
    column: str = ""  # "": the first numeric column other than `time`
    output: str = "runs/forecast"  # the run directory
    model: str = "mlp"  # linear | mlp | gru | lstm
    tau: int = 4  # window length: predict x_t from x_{t-tau..t-1}
    n_train: int | None = None  # points used for training; None: 600 unless train_fraction
    train_fraction: float | None = None  # or this share of the series (0 < f < 1)
    hidden: int | None = None  # None: 10 for mlp, 32 for gru/lstm (unused by linear)
    layers: int = 1  # stacked GRU/LSTM layers
    epochs: int | None = None  # None: 5 for linear/mlp, 20 for gru/lstm
    batch_size: int = 16
    lr: float = 0.01  # Adam
    horizons: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    standardize: bool = False  # train on (x - mean) / std of the training part
    seed: int = 0
    log_interval: int = 1  # epochs between metrics.jsonl lines
    checkpoint_interval: int = 1  # epochs between checkpoints

    # Budgets, intervals, the device and the horizons scored may change on --resume; so may `output`
    # (a moved run).
    RESUMABLE: ClassVar[tuple[str, ...]] = (*TrainArgs.RESUMABLE, "horizons", "output")

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: no CSV file given")
        if self.model not in FORECASTERS:
            raise ConfigError(f"model: '{self.model}' is not one of {', '.join(FORECASTERS)}")
        if self.tau < 1:
            raise ConfigError(f"tau: must be at least 1, not {self.tau}")
        if self.n_train is not None and self.train_fraction is not None:
            raise ConfigError("n_train and train_fraction: give one or the other, not both")
        if self.n_train is not None and self.n_train < 2:
            raise ConfigError(f"n_train: must be at least 2, not {self.n_train}")
        if self.train_fraction is not None and not 0 < self.train_fraction < 1:
            raise ConfigError(f"train_fraction: must be between 0 and 1 (exclusive), not {self.train_fraction}")
        if self.hidden is not None and self.hidden < 1:
            raise ConfigError(f"hidden: must be at least 1, not {self.hidden}")
        if self.layers < 1:
            raise ConfigError(f"layers: must be at least 1, not {self.layers}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs: must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, not {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr: must be a positive number, not {self.lr}")
        if not self.horizons:
            raise ConfigError("horizons: give at least one horizon (such as 1,4,16,64)")
        bad = [k for k in self.horizons if k < 1]
        if bad:
            raise ConfigError(f"horizons: must be at least 1, not {bad[0]}")
        # Shared keys this stage cannot honour: refused rather than silently ignored.
        if self.eval_interval:
            raise ConfigError("eval_interval: a forecasting run is scored once, at the end (leave it 0)")
        if self.precision not in ("auto", "fp32"):
            raise ConfigError(f"precision: forecasting runs in fp32 (its models are tiny), not {self.precision}")
        self.resolved().check_train()  # epochs: None means the model's default

    def resolved(self) -> TimeSeriesConfig:
        """A copy with the per-model defaults filled in and horizons sorted."""
        return dataclasses.replace(
            self,
            hidden=self.hidden if self.hidden is not None else DEFAULT_HIDDEN[self.model],
            epochs=self.epochs if self.epochs is not None else DEFAULT_EPOCHS[self.model],
            horizons=sorted(set(self.horizons)),
        )


@dataclass
class AnomalyConfig:
    """Options of `dlcli forecast anomalies` (dlcli/forecast/anomalies.py)."""

    run: str = ""  # a forecasting run
    data: str = ""  # CSV to score; "": the run's training CSV
    column: str = ""  # "": the run's column
    label: str = ""  # 0/1 column scored against; "": `label` when the CSV has one
    window: int = 100  # trailing points of the robust scale (and of the z-score baseline)
    threshold: float = 4.0  # flag |residual - median| >= threshold * 1.4826 * MAD
    z_threshold: float = 3.0  # the baseline's: flag |x - mean| >= z_threshold * std of the raw values
    output: str = "anomalies.csv"  # the plot goes beside it, as .png
    device: str = "auto"

    def validate(self) -> None:
        if not self.run:
            raise ConfigError("run: no forecasting run given")
        if self.window < 30:
            raise ConfigError(f"window: must be at least 30 points, not {self.window}")
        for name in ("threshold", "z_threshold"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name}: must be a positive number, not {v}")
        if not self.output.endswith(".csv"):
            raise ConfigError(f"output: '{self.output}' should end in .csv (the plot is written beside it as .png)")
