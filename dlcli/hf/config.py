"""The configs of `dlcli import-hf` and `dlcli export-hf`. Torch-free: a command's `--help` reads them."""

from __future__ import annotations

from dataclasses import dataclass, field

from dlcli.errors import ConfigError
from dlcli.models.config import GPTConfig


@dataclass
class ImportConfig:
    source: str = ""  # a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)
    output: str = ""  # the run directory to write
    block_size: int = 0  # the longest context the run uses; 0 = the model's own
    batch_size: int = 8  # the batches `dlcli evaluate` uses by default
    model: GPTConfig = field(default_factory=GPTConfig)  # filled in from config.json

    def validate(self) -> None:
        if not self.source:
            raise ConfigError("source: give a Hugging Face model folder")
        if not self.output:
            raise ConfigError("output: give the run directory to write (-o)")
        if self.block_size < 0 or self.batch_size < 1:
            raise ConfigError("block_size must be >= 0 (0 = the model's own), batch_size >= 1")
        if self.model != GPTConfig():
            raise ConfigError("model: comes from the source's config.json and cannot be set (the context length "
                              "can: --block-size)")


@dataclass
class ExportConfig:
    run: str = ""  # a GPT language-model run
    output: str = ""  # the folder to write

    def validate(self) -> None:
        if not self.run:
            raise ConfigError("run: give a GPT run directory")
        if not self.output:
            raise ConfigError("output: give the folder to write (-o)")
