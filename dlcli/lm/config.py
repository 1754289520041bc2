"""The configs of `dlcli train-rnn` and `dlcli train-transformer`.

    TrainArgs      budgets, intervals, seed, device, precision (every training stage)
      LMArgs       what every language model adds: data, optimizer, batches, sampling, init embeddings
        TrainRNNConfig          an RNN, GRU or LSTM; seq_len is the truncated-BPTT length
        TrainTransformerConfig  a GPT; a batch row is one block of model.block_size tokens

Every key stays at the top level of config.yaml, as runs have always written it.

Also the configs of `dlcli generate` and `dlcli evaluate`. Torch-free: a command's `--help` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlcli.errors import ConfigError
from dlcli.models.config import CELLS, GPTConfig, RNNConfig
from dlcli.train.args import TrainArgs
from dlcli.train.config import OptimConfig

SAMPLING = ("sequential", "random")


@dataclass
class LoRAConfig:
    """Low-rank adapters (models/lora.py): with rank > 0 only they train and the run saves only them."""

    rank: int = 0  # 0 = off: every weight trains
    # the update is scaled by alpha / rank; a fixed alpha (the LoRA paper's practice) keeps the step size
    # about the same when the rank changes, so the learning rate need not be tuned again; 16 at rank 8 = 2x
    alpha: float = 16.0
    dropout: float = 0.0  # on the adapter's input
    # linear layers whose dotted names contain one of these: attn (Q/K/V and the output projection) and mlp
    # (every MLP projection, whatever a model family calls them); e.g. attn.qkv for Q/K/V only
    targets: list[str] = field(default_factory=lambda: ["attn", "mlp"])
    merge: bool = False  # also write the merged full weights (model.safetensors) at the end

    def validate(self) -> None:
        if self.rank < 0:
            raise ConfigError("lora.rank: must be >= 0 (0 = off)")
        if self.rank and self.alpha <= 0:
            raise ConfigError("lora.alpha: must be > 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError("lora.dropout: must be in [0, 1)")
        if self.rank and not self.targets:
            raise ConfigError("lora.targets: name at least one module (e.g. attn,mlp)")


@dataclass
class DataConfig:
    train: str = ""  # id file from `dlcli vocab encode`
    val: str | None = None  # separate validation id file; else the last val_fraction of train
    val_fraction: float = 0.1
    tokenizer: str | None = None  # default: the tokenizer named in the id file's sidecar


@dataclass
class LMArgs(TrainArgs):
    """The keys every language-model training config shares."""

    output: str = "runs/lm"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 32  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    # sequential: the corpus as batch_size parallel streams, each batch continuing the last (an RNN carries
    # its state across them); random: windows from a random offset in random order (the state starts fresh)
    sampling: str = "sequential"
    init_embeddings: str = ""  # an `dlcli embed` run or a .vec/.bin file: input embedding rows by token
    max_steps: int = 2000
    eval_interval: int = 250
    checkpoint_interval: int = 500

    def check_lm(self, seq_len: int) -> None:
        """Checks every language-model config shares; `seq_len` is the tokens per row of a batch (the RNN's
        key, the GPT's context)."""
        if not self.data.train:
            raise ConfigError("data.train: give an id file to train on (from 'dlcli vocab encode')")
        self.check_train()
        if min(self.batch_size, seq_len, self.grad_accum) < 1:
            raise ConfigError("batch_size, seq_len and grad_accum must be >= 1")
        if not 0 < self.data.val_fraction < 1 and self.data.val is None:
            raise ConfigError("data.val_fraction: must be between 0 and 1")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling: '{self.sampling}' is not one of {', '.join(SAMPLING)}")
        self.optim.validate()


@dataclass
class TrainRNNConfig(LMArgs):
    output: str = "runs/rnn"
    model: RNNConfig = field(default_factory=RNNConfig)
    seq_len: int = 64  # truncated BPTT length

    def validate(self) -> None:
        self.check_lm(self.seq_len)
        m = self.model
        if m.cell not in CELLS:
            raise ConfigError(f"model.cell: '{m.cell}' is not one of {', '.join(CELLS)}")
        if m.tie_weights and m.n_embd != m.n_hidden:
            raise ConfigError("model.tie_weights needs model.n_embd == model.n_hidden")
        if not 0 <= m.dropout < 1:
            raise ConfigError("model.dropout: must be in [0, 1)")
        if min(m.n_layer, m.n_hidden) < 1:
            raise ConfigError("model.n_layer and model.n_hidden must be >= 1")


def _gpt_optim() -> OptimConfig:
    return OptimConfig(lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99, warmup_steps=100, min_lr_ratio=0.1)


@dataclass
class TrainTransformerConfig(LMArgs):
    output: str = "runs/gpt"
    model: GPTConfig = field(default_factory=GPTConfig)
    optim: OptimConfig = field(default_factory=_gpt_optim)
    batch_size: int = 12
    # random windows, nanoGPT's way; sequential works too (a GPT carries nothing from batch to batch, so it only
    # changes the order the windows come in). Runs written before the key existed trained with random.
    sampling: str = "random"
    compile: bool = False  # torch.compile the model
    objective: str = "clm"  # clm: next-token (causal) | mlm: masked tokens (bidirectional encoder)
    init: str = ""  # a GPT language-model run to start from: its weights, model shape and tokenizer
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # with init: train low-rank adapters only

    @property
    def seq_len(self) -> int:
        return self.model.block_size

    def validate(self) -> None:
        self.check_lm(self.seq_len)
        if self.objective not in ("clm", "mlm"):
            raise ConfigError(f"objective: '{self.objective}' is not one of clm, mlm")
        self.model.causal = self.objective == "clm"
        self.lora.validate()
        if self.lora.rank and not self.init:
            raise ConfigError("lora.rank: LoRA fine-tunes a trained model; give one with --init RUN")
        m = self.model
        if m.n_embd % m.n_head:
            raise ConfigError(f"model.n_head: {m.n_head} heads do not divide model.n_embd {m.n_embd}")
        if m.positions not in ("learned", "sinusoidal"):
            raise ConfigError(f"model.positions: '{m.positions}' is not one of learned, sinusoidal")
        if not 0 <= m.dropout < 1:
            raise ConfigError("model.dropout: must be in [0, 1)")
        if min(m.n_layer, m.n_head, m.n_embd, m.block_size) < 1:
            raise ConfigError("model.n_layer, n_head, n_embd and block_size must be >= 1")


LMConfig = TrainRNNConfig | TrainTransformerConfig  # what the shared language-model training takes


@dataclass
class GenerateConfig:
    run: str = ""
    prompt: str = ""
    max_new_tokens: int = 200
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    num_samples: int = 1
    seed: int | None = None
    strict: bool = False  # unknown prompt characters are an error instead of a warning
    device: str = "auto"

    def validate(self) -> None:
        if self.temperature < 0:
            raise ConfigError("temperature: must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p: must be in (0, 1]")
        if self.top_k < 0 or self.max_new_tokens < 0 or self.num_samples < 1:
            raise ConfigError("top_k and max_new_tokens must be >= 0, num_samples >= 1")


@dataclass
class EvaluateConfig:
    run: str = ""
    ids: str | None = None  # an id file made with the run's tokenizer
    text: str | None = None  # or raw text, encoded with the run's tokenizer
    batch_size: int = 0  # 0: the run's
    seq_len: int = 0  # 0: the run's
    device: str = "auto"
    beam: int = 4  # translation runs (evaluated by dlcli.translation): beam-search BLEU beam (1 = greedy only)

    def validate(self) -> None:
        if self.ids is not None and self.text is not None:
            raise ConfigError("give one of an id file (--ids) or a text file (--text), not both")
