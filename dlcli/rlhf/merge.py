"""`dlcli lora merge RUN`: a LoRA run's full weights, W + (alpha / r) B A for every adapted layer, written
as RUN/model.safetensors, as `--merge` does at the end of training. The run then needs no base run
(`lm.run.open_run` and `reward.open_rm` read model.safetensors first). Works for the language-model runs
(train-transformer --init, rlhf sft and dpo) and reward models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlcli.core import rundir
from dlcli.errors import InputError
from dlcli.lm.lora import ADAPTER
from dlcli.lm.run import open_run
from dlcli.rlhf.reward import open_rm


def run(path: str) -> dict[str, Any]:
    """Write RUN/model.safetensors from its base and adapter; return a summary."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: no such run directory")
    if not (p / ADAPTER).is_file():
        raise InputError(f"{p}: not a LoRA run (no {ADAPTER})")
    if (p / "model.safetensors").is_file():
        raise InputError(f"{p}: already merged (it has model.safetensors)")
    model = open_rm(path, "cpu").model if rundir.read_meta(p).get("stage") == "rlhf-reward" else \
        open_run(p, "cpu").model
    rundir.save_tensors(model.state_dict(), p / "model.safetensors")
    return {"run": str(p), "output": str(p / "model.safetensors"), "params": sum(x.numel() for x in model.parameters())}
