"""LoRA runs: a model adapted by a config's `lora` section, what such a run writes, and reading it back.

    RUN/adapter.safetensors  the trainable tensors only (lora_A, lora_B of each adapted layer; a reward
                             model's head too), under the model's own parameter names
    RUN/meta.json            "lora_base": the run the frozen weights come from (its absolute path and
                             when it was created, so a base replaced since is noticed)
    RUN/model.safetensors    only with lora.merge: the full weights, W + (alpha / r) B A, needing no base

A run without model.safetensors is opened as its base run with the adapter put back in and merged
(`lm.run.open_run` does this); `apply_saved` is that last step.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from dlcli.core import rundir
from dlcli.errors import ConfigError, InputError
from dlcli.lm.config import LoRAConfig
from dlcli.models import lora

ADAPTER = "adapter.safetensors"
FORMAT = "dlcli-lora"  # adapter.safetensors metadata "format"


def adapt(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Put adapters into the linear layers of `model` that `cfg.targets` name and freeze the rest.
    Returns the adapted layers' names; a target list that matches nothing is a config error."""
    names = lora.linear_names(model)
    chosen = lora.inject(model, cfg.targets, cfg.rank, cfg.alpha, cfg.dropout)
    if not chosen:
        raise ConfigError(f"lora.targets: {','.join(cfg.targets)} match none of the model's linear layers "
                          f"({', '.join(names[:6])}{' ...' if len(names) > 6 else ''})")
    return chosen


def base_record(base: str | Path) -> dict[str, Any]:
    """What meta.json keeps of the base run: where it is and when it was made."""
    p = Path(base).resolve()
    return {"path": str(p), "created": rundir.read_meta(p).get("created")}


def write(run: Path, model: nn.Module, cfg: LoRAConfig, base: str | Path) -> None:
    """adapter.safetensors and the base run in meta.json; with `cfg.merge` also model.safetensors (the
    merged weights of a copy: `model` keeps its adapters)."""
    meta = {"format": FORMAT, "rank": str(cfg.rank), "alpha": f"{cfg.alpha:g}"}
    rundir.save_tensors(lora.adapter_state(model), run / ADAPTER, metadata=meta)
    rundir.update_meta(run, lora_base=base_record(base))
    if cfg.merge:
        rundir.save_tensors(lora.merge(copy.deepcopy(model)).state_dict(), run / "model.safetensors")


def base_of(run: Path) -> Path:
    """The base run an adapter-only run needs, checked to be the one it was trained on."""
    rec = rundir.read_meta(run).get("lora_base")
    if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
        raise InputError(f"{run / 'meta.json'}: an adapter-only run without its base run (no lora_base)")
    base = Path(rec["path"])
    if not base.is_dir():
        raise InputError(f"{run}: its base run {base} is gone (move it back; 'dlcli lora merge' or training "
                         "with --merge keeps full weights in the run)")
    made = rundir.read_meta(base).get("created")
    if rec.get("created") and made != rec["created"]:
        raise InputError(f"{run}: its base run {base} was replaced after the adapter was trained (made {made}, "
                         f"the adapter's base {rec['created']})")
    return base


def load(model: nn.Module, run: Path) -> None:
    """RUN's adapter.safetensors into the trainable parameters of `model` (adapted as the run was)."""
    where = run / ADAPTER
    try:
        lora.load_adapter_state(model, rundir.load_tensors(where))
    except ValueError as e:
        raise InputError(f"{where}: does not fit the base model ({e})") from None


def apply_saved(model: nn.Module, run: Path, cfg: LoRAConfig) -> nn.Module:
    """`model` (the base run's, in place) with RUN's adapter put in and merged: a plain model again."""
    adapt(model, cfg)
    load(model, run)
    return lora.merge(model)
