"""TrainTranslateConfig: what `dlcli train-transformer --task translate` reads (config.yaml of a run).

Both training (`train.py`) and using a run (`run.py`) need it, so it lives here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dlcli.errors import ConfigError
from dlcli.models.config import Seq2SeqConfig
from dlcli.text import normalize as norm
from dlcli.train.args import TrainArgs
from dlcli.train.config import OptimConfig


@dataclass
class ParallelData:
    tsv: str = ""  # source<TAB>target[<TAB>anything else]
    # the d2l.ai recipe, lowercased; [] keeps the text as it is, cased (configs/translate-fra-eng-cpu.yaml).
    # Changing this default would stop old runs resuming with the command that made them.
    normalize: list[str] = field(default_factory=lambda: ["nmt", "lower"])
    held_out: int = 1000  # random pairs kept for BLEU
    vocab_size: int = 8000  # byte-level BPE size (for each side when not shared)
    shared_vocab: bool = True  # one BPE for both languages (and, by default, one embedding table)
    src_tokenizer: str = ""  # a tokenizer.json from `dlcli vocab train` instead of training one
    tgt_tokenizer: str = ""  # (both need <pad>, <unk>, <bos>, <eos>); empty = same as src_tokenizer
    limit: int = 0  # use only the first N pairs (0 = all)

    def validate(self) -> None:
        if not self.tsv:
            raise ConfigError("data.tsv: give a parallel TSV file (source<TAB>target per line)")
        norm.check_steps(self.normalize)
        if self.tgt_tokenizer and not self.src_tokenizer:
            raise ConfigError("data.tgt_tokenizer: give data.src_tokenizer too")


def _optim() -> OptimConfig:
    return OptimConfig(lr=1e-3, weight_decay=0.01, beta1=0.9, beta2=0.98, warmup_steps=400, min_lr_ratio=0.05)


@dataclass
class TrainTranslateConfig(TrainArgs):
    output: str = "runs/translate"
    data: ParallelData = field(default_factory=ParallelData)
    model: Seq2SeqConfig = field(default_factory=lambda: Seq2SeqConfig(share_embeddings=True))
    optim: OptimConfig = field(default_factory=_optim)
    batch_size: int = 128  # sentence pairs per step, over all processes
    label_smoothing: float = 0.1
    max_time: str = "20m"
    log_interval: int = 20
    eval_interval: int = 500  # steps between held-out loss and BLEU (0 = only at the end)
    bleu_sample: int = 200  # held-out pairs translated (greedy) for BLEU during training
    checkpoint_interval: int = 500  # steps (0 = only at the end and on Ctrl-C)
    strict: bool = False  # sentences longer than model.max_len: error instead of truncating

    RESUMABLE: ClassVar[tuple[str, ...]] = (*TrainArgs.RESUMABLE, "bleu_sample")

    def validate(self) -> None:
        self.data.validate()
        if self.model.n_embd % self.model.n_head:
            raise ConfigError(f"model.n_head: {self.model.n_head} heads do not divide model.n_embd "
                              f"{self.model.n_embd}")
        if self.model.share_embeddings and not self.data.shared_vocab and not self.data.src_tokenizer:
            raise ConfigError("model.share_embeddings needs one vocabulary for both sides: set data.shared_vocab "
                              "true or model.share_embeddings false")
        self.check_train()
        self.optim.validate()
