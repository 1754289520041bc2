"""`dlcli train-rnn`: train an RNN, GRU or LSTM language model on an id file.

setup (data, model, optimizer, resume) -> fit (the loop) -> evaluate -> save.
The loop is one function: read a batch, forward, backward, clip, step; log,
evaluate, checkpoint and check the budget on their intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlcli.core.progress import OnProgress, nothing
from dlcli.errors import ConfigError
from dlcli.lm.data import SAMPLING
from dlcli.lm.loop import DataConfig, check_common, evaluate_ids  # noqa: F401 - evaluate_ids re-exported
from dlcli.models.rnn import CELLS, RNNConfig
from dlcli.train.optim import OptimConfig


@dataclass
class TrainRNNConfig:
    output: str = "runs/rnn"
    data: DataConfig = field(default_factory=DataConfig)
    model: RNNConfig = field(default_factory=RNNConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 32
    seq_len: int = 64  # truncated BPTT length
    sampling: str = "sequential"  # sequential (state carried) | random (state reset)
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000  # budgets: stop at whichever comes first; 0 = no limit
    epochs: float = 0.0
    max_time: str = ""  # e.g. 90s, 10m, 1h
    log_interval: int = 10
    eval_interval: int = 250
    checkpoint_interval: int = 500
    seed: int = 1337
    init_embeddings: str = ""  # an `dlcli embed` run or a .vec/.bin file: input embedding rows by token
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto: bf16 only where native and the model is wide enough)

    def validate(self) -> None:
        check_common(self)
        if self.model.cell not in CELLS:
            raise ConfigError(f"model.cell: '{self.model.cell}' is not one of {', '.join(CELLS)}")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling: '{self.sampling}' is not one of {', '.join(SAMPLING)}")
        if self.model.tie_weights and self.model.n_embd != self.model.n_hidden:
            raise ConfigError("model.tie_weights needs model.n_embd == model.n_hidden")
        if not 0 <= self.model.dropout < 1:
            raise ConfigError("model.dropout: must be in [0, 1)")
        if min(self.model.n_layer, self.model.n_hidden) < 1:
            raise ConfigError("model.n_layer and model.n_hidden must be >= 1")


def train(cfg: TrainRNNConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Train an RNN language model; write the run directory; return a summary."""
    from dlcli.lm.loop import fit
    from dlcli.models.rnn import RNNLM

    cfg.validate()

    def build() -> RNNLM:
        return RNNLM(cfg.model)

    return fit(cfg, "train-rnn", build, f"{cfg.model.cell.upper()} language model", force, resume, on_progress,
               width=cfg.model.n_hidden, family="rnn", what=f"the {cfg.model.cell.upper()}")
