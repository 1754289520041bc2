"""TrainArgs: the keys every training config shares (budgets, intervals, seed, device, precision).

A stage's config inherits them and may redeclare a field to change its default; the keys stay at the
top level of config.yaml, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dlcli.core import precision
from dlcli.core.runtime import parse_duration
from dlcli.errors import ConfigError
from dlcli.train.loop import Budget, Every


@dataclass
class TrainArgs:
    max_steps: int = 0  # budgets: stop at whichever comes first; 0 = no limit
    epochs: float = 0.0
    max_time: str = ""  # wall-clock budget: 90s, 10m, 1h
    log_interval: int = 10  # steps between log lines
    eval_interval: int = 0  # steps between held-out evaluations (0 = only at the end)
    checkpoint_interval: int = 0  # steps between checkpoints (0 = only at the end and on Ctrl-C)
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto: bf16 only where native and it pays)

    # Keys that may change when a run is resumed: budgets, intervals, where it runs, and where the run
    # directory is (a moved or copied run resumes from its new place).
    RESUMABLE: ClassVar[tuple[str, ...]] = ("max_steps", "epochs", "max_time", "log_interval", "eval_interval",
                                            "checkpoint_interval", "device", "output")

    def check_train(self) -> None:
        """The shared checks: a budget, durations that parse, intervals >= 0, a known precision."""
        precision.check_name(self.precision)
        if self.max_steps < 0 or self.epochs < 0:
            raise ConfigError("max_steps and epochs must be >= 0")
        if self.max_time:
            parse_duration(self.max_time)
        if not (self.max_steps or self.epochs or self.max_time):
            raise ConfigError("no budget: set max_steps, epochs or max_time")
        if self.log_interval < 1:
            raise ConfigError("log_interval: must be >= 1")
        if min(self.eval_interval, self.checkpoint_interval) < 0:
            raise ConfigError("eval_interval and checkpoint_interval must be >= 0")

    def budget(self, steps_per_epoch: float = 0.0) -> Budget:
        return Budget.of(self.max_steps, self.epochs, steps_per_epoch, self.max_time)

    def every(self) -> Every:
        return Every(self.log_interval, self.eval_interval, self.checkpoint_interval)
