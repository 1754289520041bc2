"""Training a forecaster on the one training loop (`train/loop.py`), one epoch a step.

Models train on the first `n_train` points (1-step windows whose target lies in that part), with
MSE and Adam over shuffled windows, and are scored on the rest. Each epoch shuffles with a generator
seeded by its number, so a resumed run equals an uninterrupted one.

A run directory holds config.yaml, meta.json, metrics.jsonl (one line per epoch), the checkpoint
(checkpoint.json, checkpoint.safetensors) for --resume, model.safetensors, forecast.json,
predictions.csv and forecast.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlcli.core import rundir
from dlcli.core.io import atomic_write
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import resolve_device, seed_everything
from dlcli.errors import ConfigError
from dlcli.forecast import legacy
from dlcli.forecast.config import STAGE, TimeSeriesConfig
from dlcli.forecast.outputs import FORMAT, VERSION, WEIGHTS, model_bytes, write_run_outputs
from dlcli.forecast.series import read_series, split_point
from dlcli.forecast.windows import forecast, scores, windows
from dlcli.models.forecast import build
from dlcli.train import checkpoint as ckpt
from dlcli.train.loop import Saved, Stage, Update, fit

_OUTPUTS = ("metrics.jsonl", ckpt.STATE, ckpt.TENSORS, WEIGHTS, legacy.OPTIMIZER, "forecast.json",
            "predictions.csv", "forecast.png")


def epoch(model: nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor, batch_size: int,
          gen: torch.Generator) -> float:
    """One pass over the shuffled windows; returns the mean training MSE."""
    model.train()
    order = torch.randperm(X.shape[0], generator=gen).to(X.device)
    total = torch.zeros((), device=X.device)
    for i in range(0, X.shape[0], batch_size):
        idx = order[i:i + batch_size]
        loss = F.mse_loss(model(X[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(idx)
    return float(total) / X.shape[0]


def _saved(run: Path, cfg: TimeSeriesConfig) -> str:
    """What a run to continue holds: "checkpoint", "legacy" (the older per-epoch files) or "" (nothing:
    start afresh); a changed config is refused."""
    found = "checkpoint" if ckpt.exists(run) else "legacy" if legacy.saved_epoch(run) is not None else ""
    if found:
        rundir.check_resume(run, cfg, cfg.RESUMABLE)
    return found


@rundir.removed_on_failure
def train(cfg: TimeSeriesConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Train a forecaster, score it, and write the run directory; returns the summary."""
    cfg.validate()
    cfg = cfg.resolved()
    series = read_series(cfg.data, cfg.column)
    cfg.column = series.column
    n_train = split_point(cfg, series)
    device = resolve_device(cfg.device)
    run = Path(cfg.output)
    found = _saved(run, cfg) if resume and run.is_dir() else ""

    seed_everything(cfg.seed)
    model = build(cfg.model, cfg.tau, cfg.hidden, cfg.layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    resumed: dict[str, Any] | None = None
    if found == "checkpoint":
        resumed, _ = ckpt.load(run, model, opt, device)
    elif found == "legacy":
        resumed = {"step": legacy.saved_epoch(run)}
        legacy.load(run, model, opt)
    start = resumed["step"] if resumed else 0
    budget = cfg.budget(steps_per_epoch=1)
    if budget.steps and start > budget.steps:
        raise ConfigError(f"{run}: already trained for {start} epochs; ask for more than that to continue")

    rundir.create(run, cfg, STAGE, inputs=[cfg.data], force=force, resume=resume)
    if not start:
        for name in _OUTPUTS:
            (run / name).unlink(missing_ok=True)
    else:  # records past the checkpoint (written just before an interruption) are done again
        kept = [m for m in rundir.read_metrics(run) if m.get("epoch", 0) <= start]
        with atomic_write(run / "metrics.jsonl", force=True) as f:
            f.write("".join(json.dumps(m) + "\n" for m in kept).encode("utf-8"))

    train_part = series.values[:n_train]
    mean, std = (float(train_part.mean()), float(train_part.std()) or 1.0) if cfg.standardize else (0.0, 1.0)
    x = torch.tensor((series.values - mean) / std, dtype=torch.float32, device=device)
    X, y = windows(x, cfg.tau)
    X, y = X[:n_train - cfg.tau], y[:n_train - cfg.tau]  # targets inside the training part only

    def step(done: int) -> Update:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + done + 1)
        return Update(epoch(model, opt, X, y, cfg.batch_size, gen))

    stage = Stage(name=f"train {cfg.model}", step=step, checkpoint=lambda: Saved(model, opt),
                  record=lambda rec, seconds: {"epoch": rec["step"], "loss": rec["loss"]},
                  hint="try a lower lr or standardize=true", unit="epoch")
    notify = on_progress or nothing
    losses = [m["loss"] for m in rundir.read_metrics(run) if "loss" in m]
    notify(Tick(stage.name, start, budget.steps or None, unit="epoch",
                metrics={"loss": losses[-1]} if losses else {}))
    result = fit(stage, run, budget, cfg.every(), on_progress=notify, resumed=resumed)

    preds = forecast(model, series.values, cfg.tau, cfg.horizons, mean, std, device)
    T = len(series.values)
    losses = [m["loss"] for m in result.history if "loss" in m]
    report = {
        "format": FORMAT, "version": VERSION, "model": cfg.model, "tau": cfg.tau, "data": cfg.data,
        "column": series.column, "points": T, "n_train": n_train, "horizons": cfg.horizons,
        "epochs": result.steps, "loss": losses[-1] if losses else None,
        "train": scores(series.values, preds, 0, n_train),
        "test": scores(series.values, preds, n_train, T),
    }
    title = f"{cfg.model}, tau={cfg.tau}: {series.source} [{series.column}]"
    write_run_outputs(run, model_bytes(model, mean, std, result.steps), series, preds, n_train, title, report)
    names = ("config.yaml", "meta.json", "metrics.jsonl", ckpt.STATE, ckpt.TENSORS, WEIGHTS, "forecast.json",
             "predictions.csv", "forecast.png")
    return {"run": str(run), "device": str(device), "resumed_from_epoch": start, **report,
            "written": [str(run / name) for name in names]}
