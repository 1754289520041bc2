"""Training checkpoints without pickle: one safetensors file that carries its own bookkeeping.

    RUN/checkpoint.safetensors  model.*, optim.<param>.<name>, rng.*, extra.*; its metadata
                                "dlcli.checkpoint" holds JSON {"state", "param_groups", "tied", "tensors"}
    RUN/checkpoint.json         a readable copy of that JSON, written after it; never read back

The file is written to a temp file and renamed, so a checkpoint is the old one or the new one, whole:
the step in its metadata is the step of its weights. `load` checks the bookkeeping (a step, the names
of the tensors) and refuses a checkpoint that does not add up with one line naming the file. Runs
written before kept the bookkeeping in checkpoint.json only; they are read from there as before.

torch is imported where tensors are handled: the embedding stage reads and writes its own checkpoint
(numpy arrays) with `parse` and `metadata` without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.core import rundir, runguard
from dlcli.core.io import write_text_atomic
from dlcli.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

TENSORS = "checkpoint.safetensors"
STATE = "checkpoint.json"
KEY = "dlcli.checkpoint"  # the metadata entry of TENSORS holding the bookkeeping


def metadata(doc: dict[str, Any], names: list[str]) -> dict[str, str]:
    """The safetensors metadata for a checkpoint of the tensors `names` with the bookkeeping `doc`."""
    return {KEY: json.dumps({**doc, "tensors": sorted(names)})}


def save(run: str | Path, model: nn.Module | None, optimizer: torch.optim.Optimizer | None,
         state: dict[str, Any], extra: dict[str, torch.Tensor] | None = None, trainable_only: bool = False) -> None:
    """`trainable_only`: the model's trainable parameters alone (LoRA adapters; the frozen rest comes from
    the run it started from)."""
    import torch

    run = Path(run)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in _weights(model, trainable_only).items()}
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
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    doc = {"state": state, "param_groups": groups, "tied": tied}
    meta = metadata(doc, list(tensors))
    rundir.save_tensors(tensors, run / TENSORS, metadata=meta)  # the checkpoint: one rename
    write_text_atomic(run / STATE, json.dumps(json.loads(meta[KEY]), indent=2) + "\n", force=True)
    runguard.saved(run)


def _weights(model: nn.Module | None, trainable_only: bool) -> dict[str, torch.Tensor]:
    if model is None:
        return {}
    if trainable_only:
        return {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    return model.state_dict()


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
    return (Path(run) / TENSORS).is_file()


def parse(text: str, where: Path, needs: tuple[str, ...] = ("step",)) -> dict[str, Any]:
    """The bookkeeping JSON of a checkpoint, checked: a "state" object holding the keys `needs` (a
    `step` >= 0), and well-formed optimizer groups, tied names and tensor names where present. Anything
    else is one InputError naming `where`."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: damaged checkpoint (its bookkeeping is not valid JSON: {e})") from None
    state = doc.get("state") if isinstance(doc, dict) else None
    if not isinstance(state, dict):
        raise InputError(f"{where}: damaged checkpoint (no \"state\" in its bookkeeping)")
    missing = [k for k in needs if k not in state]
    if missing:
        raise InputError(f"{where}: damaged checkpoint (no {', '.join(map(repr, missing))} in its state)")
    step = state.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise InputError(f"{where}: damaged checkpoint (its step is {step!r}, not a count)")
    kinds = {"param_groups": list, "tied": dict, "tensors": list}
    for key, kind in kinds.items():
        if key in doc and not isinstance(doc[key], kind):
            raise InputError(f"{where}: damaged checkpoint ({key!r} is not a {kind.__name__})")
    if not all(isinstance(g, dict) for g in doc.get("param_groups", [])):
        raise InputError(f"{where}: damaged checkpoint (an optimizer group is not an object)")
    return doc


def read(run: str | Path, needs: tuple[str, ...] = ("step",)) -> dict[str, Any]:
    """The bookkeeping of RUN's checkpoint: from the metadata of checkpoint.safetensors, or, for a run
    written before it was kept there, from checkpoint.json."""
    run = Path(run)
    if not exists(run):
        raise InputError(f"{run}: no checkpoint to resume from (no {TENSORS})")
    meta = rundir.read_metadata(run / TENSORS)
    if KEY in meta:
        return parse(meta[KEY], run / TENSORS, needs)
    if not (run / STATE).is_file():  # an old two-file checkpoint stopped between its two writes
        raise InputError(f"{run / TENSORS}: incomplete checkpoint (no bookkeeping in it and no {STATE})")
    try:
        text = (run / STATE).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{run / STATE}: damaged checkpoint (not UTF-8 text)") from None
    return parse(text, run / STATE, needs)


def load(run: str | Path, model: nn.Module | None, optimizer: torch.optim.Optimizer | None, device: torch.device,
         trainable_only: bool = False) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model (its trainable parameters alone with `trainable_only`), optimizer and RNG; return
    (state, extra tensors)."""
    import torch

    run = Path(run)
    doc = read(run)
    where = run / TENSORS
    tensors = rundir.load_tensors(where)
    names = doc.get("tensors")
    if names is not None and set(names) != set(tensors):
        odd = sorted(set(names) ^ set(tensors))
        raise InputError(f"{where}: damaged checkpoint (its tensors do not match its bookkeeping: "
                         f"{', '.join(odd[:3])}{' ...' if len(odd) > 3 else ''})")
    tied = doc.get("tied", {})
    for k, src in tied.items():
        if src not in tensors:
            raise InputError(f"{where}: damaged checkpoint ({k} is tied to {src}, which it lacks)")
        tensors[k] = tensors[src]
    if "rng.torch" not in tensors:
        raise InputError(f"{where}: damaged checkpoint (no rng.torch)")
    model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        if model is not None and trainable_only:
            _load_trainable(model, model_sd)
        elif model is not None:
            model.load_state_dict(model_sd)
    except RuntimeError as e:
        raise InputError(f"{where}: does not fit the model: {str(e).splitlines()[0]}") from None
    if optimizer is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                state.setdefault(int(idx), {})[name] = v.to(device)
        groups = doc.get("param_groups", [])
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError) as e:
            raise InputError(f"{where}: does not fit the optimizer: {str(e).splitlines()[0]}") from None
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    extra = {k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("extra.")}
    return doc["state"], extra


def _load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy `tensors` into the model's trainable parameters: exactly those, of the same shapes."""
    import torch

    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    odd = sorted(set(params) ^ set(tensors)) or [k for k in params if params[k].shape != tensors[k].shape]
    if odd:
        raise RuntimeError(f"its trainable weights differ from the model's at {odd[0]}")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(tensors[k])
