"""The configs of the RLHF stages: StageConfig, the keys every RLHF training stage has (its data, the run
directory, the model copied from the starting run, the optimizer, batches, the held-out share) on top of
TrainArgs, and on it SFTConfig, RewardConfig, PPOConfig and DPOConfig. Torch-free: `--help` reads them."""

from __future__ import annotations

from dataclasses import dataclass, field

from dlcli.errors import ConfigError
from dlcli.lm.config import LoRAConfig
from dlcli.models.config import GPTConfig
from dlcli.train.args import TrainArgs
from dlcli.train.config import OptimConfig

RESUMABLE = TrainArgs.RESUMABLE
TRUNCATE = ("none", "keep-end")  # what rlhf.tokens does with a line longer than the context


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
    truncate: str = "none"  # none (a line longer than the context is refused) | keep-end (cut as TRL does)

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
        if self.truncate not in TRUNCATE:
            raise ConfigError(f"truncate: '{self.truncate}' is not one of {', '.join(TRUNCATE)}")
        self.check_train()
        self.optim.validate()


@dataclass
class SFTConfig(StageConfig):
    base: str = ""  # a causal `train-transformer` run (or an earlier SFT run)
    output: str = "runs/sft"
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank > 0: train low-rank adapters only

    def validate(self) -> None:
        super().validate()
        self.lora.validate()


@dataclass
class RewardConfig(StageConfig):
    base: str = ""  # a causal GPT run: tokenizer, model shape and starting weights
    output: str = "runs/reward"
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank > 0: adapters on the trunk; the head trains too

    def validate(self) -> None:
        super().validate()
        self.lora.validate()


def _ppo_optim() -> OptimConfig:
    return OptimConfig(lr=5e-5, weight_decay=0.0, warmup_steps=0, schedule="constant")


@dataclass
class PPOConfig(StageConfig):
    sft: str = ""  # the starting policy and the frozen reference
    reward_model: str = ""
    output: str = "runs/ppo"
    optim: OptimConfig = field(default_factory=_ppo_optim)
    batch_size: int = 64  # rollouts per PPO step
    mini_batch_size: int = 0  # rollouts per gradient step; 0 = half of batch_size
    ppo_epochs: int = 4
    max_steps: int = 100
    max_new_tokens: int = 24
    temperature: float = 1.0
    kl_coef: float = 0.1  # the starting (or fixed) coefficient of the KL penalty
    adaptive_kl: bool = False
    kl_target: float = 1.0  # nats per response, for the adaptive coefficient
    kl_horizon: int = 2000
    kl_stop: float = 20.0  # stop when the mean KL per response passes this
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    clip_value: float = 0.2
    vf_coef: float = 0.1
    whiten_rewards: bool = True
    log_interval: int = 1
    eval_interval: int = 10
    sample_interval: int = 10
    num_samples: int = 4
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank > 0: adapters on the policy; the value head trains

    def validate(self) -> None:
        super().validate()
        self.lora.validate()
        if not 0 <= self.mini_batch_size <= self.batch_size:
            raise ConfigError("mini_batch_size: must be between 1 and batch_size (0 = half of it)")
        if self.ppo_epochs < 1 or self.max_new_tokens < 1:
            raise ConfigError("ppo_epochs and max_new_tokens must be >= 1")
        if self.kl_coef < 0 or self.clip <= 0 or self.kl_stop <= 0:
            raise ConfigError("kl_coef must be >= 0, clip and kl_stop > 0")

    @property
    def minibatch(self) -> int:
        return self.mini_batch_size or max(1, self.batch_size // 2)

    def check_world(self, world: int) -> None:
        """Every process gets an equal share of each batch and minibatch (so they take the same steps)."""
        if self.batch_size % world or self.minibatch % world:
            raise ConfigError(f"batch_size ({self.batch_size}) and the minibatch size ({self.minibatch}) must be "
                              f"multiples of the {world} processes that share them")


def _dpo_optim() -> OptimConfig:
    return OptimConfig(lr=1e-4, weight_decay=0.0, warmup_steps=10, min_lr_ratio=0.1)


@dataclass
class DPOConfig(StageConfig):
    sft: str = ""  # the starting policy and the frozen reference
    output: str = "runs/dpo"
    optim: OptimConfig = field(default_factory=_dpo_optim)
    beta: float = 0.1
    rpo_alpha: float = 0.0  # > 0 adds alpha * the chosen responses' NLL per token (RPO; keeps mass on them)
    max_steps: int = 200
    kl_samples: int = 64  # held-out prompts answered at each evaluation to measure the KL to the reference
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank > 0: train low-rank adapters only

    def validate(self) -> None:
        super().validate()
        self.lora.validate()
        if self.beta <= 0 or self.rpo_alpha < 0:
            raise ConfigError("beta must be > 0 and rpo_alpha >= 0")
