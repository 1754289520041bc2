"""StageConfig: the keys every RLHF training stage has (its data, the run directory, the model copied
from the starting run, the optimizer, batches, the held-out share), on top of TrainArgs."""

from __future__ import annotations

from dataclasses import dataclass, field

from dlcli.errors import ConfigError
from dlcli.models.gpt import GPTConfig
from dlcli.train.args import TrainArgs
from dlcli.train.optim import OptimConfig

RESUMABLE = TrainArgs.RESUMABLE


def _optim() -> OptimConfig:
    return OptimConfig(lr=5e-4, weight_decay=0.0, warmup_steps=10, min_lr_ratio=0.1)


@dataclass
class StageConfig(TrainArgs):
    """Keys every RLHF training stage has. `model` is copied from the starting run."""

    output: str = ""
    data: str = ""
    model: GPTConfig = field(default_factory=GPTConfig)
    optim: OptimConfig = field(default_factory=_optim)
    batch_size: int = 32
    max_steps: int = 300
    val_fraction: float = 0.1  # held-out share of the lines
    eval_interval: int = 50
    checkpoint_interval: int = 100
    skip_bad: bool = False

    @property
    def seq_len(self) -> int:  # what `dlcli evaluate` reads
        return self.model.block_size

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: give a JSONL file")
        if not self.output:
            raise ConfigError("output: give a run directory (-o)")
        if self.batch_size < 1:
            raise ConfigError("batch_size: must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction: must be between 0 and 1")
        self.check_train()
        self.optim.validate()
