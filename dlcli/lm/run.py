"""Open a language-model run directory: its model, tokenizer, and the shape of the batches it trained on.

`generate`, `evaluate` and the RLHF stages open every kind of language-model run here. The stage that
wrote a run (meta.json) names its model kind; the `model` section of its config.yaml is that kind's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from dlcli.core import rundir
from dlcli.core.config import from_dict, load_yaml
from dlcli.core.runtime import resolve_device
from dlcli.errors import ConfigError, InputError
from dlcli.lm import lora
from dlcli.lm.config import LoRAConfig
from dlcli.models.config import GPTConfig, RNNConfig
from dlcli.models.gpt import GPT
from dlcli.models.rnn import RNNLM
from dlcli.text import vocabulary

# the stage that wrote a run -> its model kind
KIND = {"train-rnn": "rnn", "train-transformer": "gpt", "rlhf-sft": "gpt", "rlhf-ppo": "gpt", "rlhf-dpo": "gpt",
        "import-hf": "gpt"}  # import-hf: a Hugging Face model (dlcli/hf)


@dataclass
class LMRun:
    path: Path
    stage: str
    model: RNNLM | GPT  # in eval mode, on `device`
    tokenizer: Tokenizer
    device: torch.device
    batch_size: int  # the batches it trained on (evaluation's defaults)
    seq_len: int

    @property
    def masked(self) -> bool:
        """A masked-LM encoder: it fills in masked tokens and cannot generate left to right."""
        return isinstance(self.model, GPT) and not self.model.cfg.causal

    @property
    def level(self) -> str:
        """'char' when the vocabulary is characters (bits per character make sense)."""
        d = json.loads(self.tokenizer.to_str())
        if d.get("model", {}).get("type") == "WordLevel" and (d.get("decoder") or {}).get("type") == "Fuse":
            return "char"
        return "other"


def open_run(path: str | Path, device: str = "auto") -> LMRun:
    run = Path(path)
    if not run.is_dir():
        raise InputError(f"{run}: no such run directory")
    stage = rundir.read_meta(run).get("stage")
    if stage not in KIND:
        raise InputError(f"{run}: a '{stage}' run is not a language model (expected one of {', '.join(KIND)})")
    adapter_only = not (run / "model.safetensors").is_file() and (run / lora.ADAPTER).is_file()  # LoRA
    for name in ("config.yaml", "tokenizer.json") + (() if adapter_only else ("model.safetensors",)):
        if not (run / name).is_file():
            raise InputError(f"{run}: missing {name} (was the run finished? a checkpoint alone is not enough)")
    where = run / "config.yaml"
    try:
        raw = load_yaml(where)
        cfg: RNNConfig | GPTConfig
        if KIND[stage] == "rnn":
            cfg = from_dict(RNNConfig, raw.get("model", {}))
            seq_len = _int(raw, "seq_len")
        else:  # the block is the window (rlhf runs keep no seq_len)
            cfg = from_dict(GPTConfig, raw.get("model", {}))
            seq_len = cfg.block_size
        batch_size = _int(raw, "batch_size")
    except ConfigError as e:
        raise InputError(f"{where}: {e}") from None
    tok = vocabulary.load(run / "tokenizer.json")
    n = tok.get_vocab_size(with_added_tokens=True)
    if cfg.vocab_size != n:
        raise InputError(f"{run}: tokenizer.json has {n} entries but the model was trained with {cfg.vocab_size}")
    model: RNNLM | GPT
    if adapter_only:
        model = _adapted(run, raw, cfg, tok)
    else:
        model = RNNLM(cfg) if isinstance(cfg, RNNConfig) else GPT(cfg)
        rundir.load_weights(model, run / "model.safetensors")
    dev = resolve_device(device)
    model.to(dev).eval()
    return LMRun(run, stage, model, tok, dev, batch_size, seq_len)


def _adapted(run: Path, raw: dict[str, Any], cfg: RNNConfig | GPTConfig, tok: Tokenizer) -> RNNLM | GPT:
    """A LoRA run saved as its adapter alone: its base run's model with the adapter merged in."""
    base = open_run(lora.base_of(run), "cpu")
    if base.model.cfg != cfg or vocabulary.vocab_hash(base.tokenizer) != vocabulary.vocab_hash(tok):
        raise InputError(f"{run}: its base run {base.path} has another model shape or tokenizer")
    try:
        lcfg = from_dict(LoRAConfig, raw.get("lora") or {})
    except ConfigError as e:
        raise InputError(f"{run / 'config.yaml'}: {e}") from None
    lora.apply_saved(base.model, run, lcfg)
    return base.model


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value
