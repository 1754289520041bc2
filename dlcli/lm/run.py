"""Open a language-model run directory: its config, tokenizer and weights.

`generate` and `evaluate` work for every kind of language-model run; this is
the one place that knows which stage wrote a run and how to rebuild its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcli.core import rundir
from dlcli.core.config import from_dict, load_yaml
from dlcli.errors import ConfigError, InputError

# stage -> (config class, model class)
LM_STAGES = {
    "train-rnn": ("dlcli.lm.rnn:TrainRNNConfig", "dlcli.models.rnn:RNNLM"),
    "train-transformer": ("dlcli.lm.transformer:TrainTransformerConfig", "dlcli.models.gpt:GPT"),
    **{f"rlhf-{s}": (f"dlcli.rlhf.{s}:{s.upper()}Config", "dlcli.models.gpt:GPT") for s in ("sft", "ppo", "dpo")},
}


def read_config(run: Path, cls: type) -> Any:
    """A run's config.yaml as its config class; a bad file is an input error."""
    try:
        return from_dict(cls, load_yaml(run / "config.yaml"))
    except ConfigError as e:
        raise InputError(f"{run / 'config.yaml'}: {e}") from None


@dataclass
class LMRun:
    path: Path
    stage: str
    cfg: Any
    model: Any  # nn.Module, in eval mode
    tokenizer: Any  # tokenizers.Tokenizer
    device: Any

    @property
    def level(self) -> str:
        """'char' when the vocabulary is characters (bits per character make sense)."""
        import json

        d = json.loads(self.tokenizer.to_str())
        if d.get("model", {}).get("type") == "WordLevel" and (d.get("decoder") or {}).get("type") == "Fuse":
            return "char"
        return "other"


def open_run(path: str | Path, device: str = "auto") -> LMRun:
    from dlcli.core.runtime import resolve_device
    from dlcli.text import vocabulary

    run = Path(path)
    if not run.is_dir():
        raise InputError(f"{run}: no such run directory")
    meta = rundir.read_meta(run)
    stage = meta.get("stage")
    if stage not in LM_STAGES:
        raise InputError(f"{run}: a '{stage}' run is not a language model (expected one of {', '.join(LM_STAGES)})")
    for name in ("config.yaml", "tokenizer.json", "model.safetensors"):
        if not (run / name).is_file():
            raise InputError(f"{run}: missing {name} (was the run finished? a checkpoint alone is not enough)")
    dev = resolve_device(device)
    tok = vocabulary.load(run / "tokenizer.json")
    import importlib

    cfg_path, model_path = LM_STAGES[stage]
    cfg_cls = getattr(importlib.import_module(cfg_path.split(":")[0]), cfg_path.split(":")[1])
    model_cls = getattr(importlib.import_module(model_path.split(":")[0]), model_path.split(":")[1])
    cfg = read_config(run, cfg_cls)
    if cfg.model.vocab_size != tok.get_vocab_size(with_added_tokens=True):
        raise InputError(f"{run}: tokenizer.json has {tok.get_vocab_size(with_added_tokens=True)} entries but "
                         f"the model was trained with {cfg.model.vocab_size}")
    model = model_cls(cfg.model)
    rundir.load_weights(model, run / "model.safetensors")
    model.to(dev).eval()
    return LMRun(run, stage, cfg, model, tok, dev)
