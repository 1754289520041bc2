"""`dlcli train-transformer`: a GPT-style (decoder-only) language model on an id file.

Batches are random windows of `model.block_size` tokens (nanoGPT's way); the
training loop is the one `train-rnn` uses (`dlcli.lm.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlcli.core.progress import OnProgress, nothing
from dlcli.errors import ConfigError
from dlcli.lm.loop import DataConfig, check_common
from dlcli.models.gpt import GPTConfig
from dlcli.train.optim import OptimConfig


def _optim() -> OptimConfig:
    return OptimConfig(lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99, warmup_steps=100, min_lr_ratio=0.1)


@dataclass
class TrainTransformerConfig:
    output: str = "runs/gpt"
    data: DataConfig = field(default_factory=DataConfig)
    model: GPTConfig = field(default_factory=GPTConfig)
    optim: OptimConfig = field(default_factory=_optim)
    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000  # budgets: stop at whichever comes first; 0 = no limit
    epochs: float = 0.0
    max_time: str = ""
    log_interval: int = 10
    eval_interval: int = 250
    checkpoint_interval: int = 500
    seed: int = 1337
    init_embeddings: str = ""  # an `dlcli embed` run or a .vec/.bin file: input embedding rows by token
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto: bf16 only where native and the model is wide enough)
    compile: bool = False  # torch.compile the model
    objective: str = "clm"  # clm: next-token (causal) | mlm: masked tokens (bidirectional encoder)

    @property
    def seq_len(self) -> int:
        return self.model.block_size

    @property
    def sampling(self) -> str:
        return "random"

    def validate(self) -> None:
        check_common(self)
        if self.objective not in ("clm", "mlm"):
            raise ConfigError(f"objective: '{self.objective}' is not one of clm, mlm")
        self.model.causal = self.objective == "clm"
        m = self.model
        if m.n_embd % m.n_head:
            raise ConfigError(f"model.n_head: {m.n_head} heads do not divide model.n_embd {m.n_embd}")
        if m.positions not in ("learned", "sinusoidal"):
            raise ConfigError(f"model.positions: '{m.positions}' is not one of learned, sinusoidal")
        if not 0 <= m.dropout < 1:
            raise ConfigError("model.dropout: must be in [0, 1)")
        if min(m.n_layer, m.n_head, m.n_embd, m.block_size) < 1:
            raise ConfigError("model.n_layer, n_head, n_embd and block_size must be >= 1")


def train(cfg: TrainTransformerConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Train a GPT; write the run directory; return a summary."""
    from dlcli.lm.loop import fit
    from dlcli.models.gpt import GPT

    cfg.validate()

    def build() -> Any:
        model = GPT(cfg.model)
        if cfg.compile:
            import torch

            model.forward = torch.compile(model.forward)  # type: ignore[method-assign]
        return model

    return fit(cfg, "train-transformer", build, "Transformer language model", force, resume, on_progress,
               width=cfg.model.n_embd, what="the Transformer")
