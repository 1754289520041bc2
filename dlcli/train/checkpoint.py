"""Training checkpoints without pickle: tensors in safetensors, the rest in JSON.

    RUN/checkpoint.safetensors  model.*, optim.<param>.<name>, rng.*, and any extra tensors
    RUN/checkpoint.json         step, data position, optimizer hyperparameters, ...

Both are written atomically; the JSON goes last and names the step, so a
checkpoint interrupted half-way is never taken for a complete one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcli.core import rundir
from dlcli.core.io import write_text_atomic
from dlcli.errors import InputError

TENSORS = "checkpoint.safetensors"
STATE = "checkpoint.json"


def save(run: str | Path, model: nn.Module | None, optimizer: torch.optim.Optimizer | None,
         state: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> None:
    run = Path(run)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in (model.state_dict() if model else {}).items()}
    opt = optimizer.state_dict() if optimizer else {"state": {}, "param_groups": []}
    for idx, per_param in opt["state"].items():
        for name, value in per_param.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    for k, v in (extra or {}).items():
        tensors[f"extra.{k}"] = v
    tied = _dedupe(tensors)
    rundir.save_tensors(tensors, run / TENSORS)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    doc = {"state": state, "param_groups": groups, "tied": tied}
    write_text_atomic(run / STATE, json.dumps(doc, indent=2) + "\n", force=True)


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """safetensors refuses shared storage (tied weights): keep one copy."""
    seen: dict[tuple[int, int], str] = {}
    tied = {}
    for k in list(tensors):
        t = tensors[k]
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen and t.numel() > 0:
            tied[k] = seen[key]
            del tensors[k]
        else:
            seen[key] = k
    return tied


def exists(run: str | Path) -> bool:
    return (Path(run) / STATE).is_file() and (Path(run) / TENSORS).is_file()


def load(run: str | Path, model: nn.Module | None, optimizer: torch.optim.Optimizer | None, device: torch.device
         ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model, optimizer and RNG; return (state, extra tensors)."""
    run = Path(run)
    if not exists(run):
        raise InputError(f"{run}: no checkpoint to resume from ({STATE} and {TENSORS} are needed)")
    try:
        doc = json.loads((run / STATE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{run / STATE}: malformed JSON: {e}") from None
    tensors = rundir.load_tensors(run / TENSORS)
    for k, src in doc.get("tied", {}).items():
        tensors[k] = tensors[src]
    model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        if model is not None:
            model.load_state_dict(model_sd)
    except RuntimeError as e:
        raise InputError(f"{run / TENSORS}: does not fit the model: {str(e).splitlines()[0]}") from None
    if optimizer is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v.to(device)
        groups = doc["param_groups"]
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    extra = {k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("extra.")}
    return doc["state"], extra
