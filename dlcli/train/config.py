"""OptimConfig: the `optim` section of a training config (train/optim.py builds from it). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from dlcli.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 0.0  # decoupled (AdamW); never applied to biases or norms
    beta1: float = 0.9
    beta2: float = 0.99
    momentum: float = 0.0  # sgd
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    schedule: str = "cosine"  # constant | cosine (after warmup) | step
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of lr
    step_every: int = 1000  # step schedule: multiply by gamma every this many steps
    gamma: float = 0.5

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optim.name: '{self.name}' is not one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule: '{self.schedule}' is not one of {', '.join(SCHEDULES)}")
        if self.lr <= 0:
            raise ConfigError("optim.lr: must be > 0")
