"""Resuming a forecasting run made before checkpoints went through train/checkpoint.

Such a run saved, after every epoch, model.safetensors (weights, `norm.mean`, `norm.std`) and
optimizer.safetensors (Adam state keyed `<param index>.<name>`), both with metadata `epoch`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlcli.core import rundir
from dlcli.forecast.outputs import WEIGHTS, load_model

OPTIMIZER = "optimizer.safetensors"


def saved_epoch(run: Path) -> int | None:
    """The epoch both files hold; None when there is no such pair (nothing to resume)."""
    epochs = [_epoch(run / name) for name in (WEIGHTS, OPTIMIZER)]
    return epochs[0] if epochs[0] is not None and epochs[0] == epochs[1] else None


def load(run: Path, model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Restore the weights and the Adam state of the saved epoch."""
    load_model(model, rundir.load_tensors(run / WEIGHTS), run / WEIGHTS)
    params = list(model.parameters())
    for name, value in rundir.load_tensors(run / OPTIMIZER).items():
        i, key = name.split(".", 1)
        p = params[int(i)]
        opt.state[p][key] = value.to(p.device) if key != "step" else value.cpu()


def _epoch(path: Path) -> int | None:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {}).get("epoch", ""))
    except (OSError, ValueError, SafetensorError):  # damaged, or no epoch recorded: start afresh
        return None
