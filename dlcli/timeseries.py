"""Forecasting a numeric CSV column with autoregressive models.

The curriculum's sequence-model lesson: predict x_t from the window
x_{t-tau..t-1}. Models train on the first `n_train` points (1-step windows
whose target lies in that part) and are scored on the rest, both

* 1-step ahead: every prediction uses true past values, and
* k-step ahead: predictions are fed back in. Row j of the feature matrix
  starts with the true window x[j:j+tau]; column tau+i-1 holds the
  i-step-ahead prediction of x[j+tau+i-1], made from the row's previous tau
  columns. The matrix is built column by column, one batched forward pass per
  step, over all start positions at once.

Rows are numbered as in the file, the header being row 1. A column named
`time` is carried to the outputs but never used as a feature.

A run directory holds config.yaml, meta.json, metrics.jsonl (one line per
epoch), model.safetensors, optimizer.safetensors (for --resume),
forecast.json, predictions.csv and forecast.png.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from dlcli.core import rundir
from dlcli.core.config import diff, from_dict
from dlcli.core.io import AtomicGroup, atomic_write, check_input_file
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import resolve_device, seed_everything
from dlcli.errors import ConfigError, InputError, Interrupted, TrainingDiverged
from dlcli.models.forecast import MODELS, build

FORMAT = "dlcli-forecast"
VERSION = 1
TIME_COLUMN = "time"
DEFAULT_N_TRAIN = 600
DEFAULT_HIDDEN = {"linear": 0, "mlp": 10, "gru": 32, "lstm": 32}
DEFAULT_EPOCHS = {"linear": 5, "mlp": 5, "gru": 20, "lstm": 20}
EVAL_BATCH = 65536  # windows per forward pass when predicting (bounds RNN activations)
# Changing these would make saved weights or the optimizer state meaningless.
_RESUME_KEYS = ("data", "column", "model", "tau", "hidden", "layers", "n_train", "train_fraction",
                "standardize", "batch_size", "lr", "seed")
_OUTPUTS = ("metrics.jsonl", "model.safetensors", "optimizer.safetensors", "forecast.json",
            "predictions.csv", "forecast.png")


# --------------------------------------------------------------------------
# Config


@dataclass
class TimeSeriesConfig:
    """Options of forecasting training (`dlcli train-rnn --task forecast`)."""

    data: str = ""  # CSV with a header row
    column: str = ""  # "": the first numeric column other than `time`
    output: str = "runs/forecast"  # the run directory
    model: str = "mlp"  # linear | mlp | gru | lstm
    tau: int = 4  # window length: predict x_t from x_{t-tau..t-1}
    n_train: int | None = None  # points used for training; None: 600 unless train_fraction
    train_fraction: float | None = None  # or this share of the series (0 < f < 1)
    hidden: int | None = None  # None: 10 for mlp, 32 for gru/lstm (unused by linear)
    layers: int = 1  # stacked GRU/LSTM layers
    epochs: int | None = None  # None: 5 for linear/mlp, 20 for gru/lstm
    batch_size: int = 16
    lr: float = 0.01  # Adam
    horizons: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    standardize: bool = False  # train on (x - mean) / std of the training part
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: no CSV file given")
        if self.model not in MODELS:
            raise ConfigError(f"model: '{self.model}' is not one of {', '.join(MODELS)}")
        if self.tau < 1:
            raise ConfigError(f"tau: must be at least 1, not {self.tau}")
        if self.n_train is not None and self.train_fraction is not None:
            raise ConfigError("n_train and train_fraction: give one or the other, not both")
        if self.n_train is not None and self.n_train < 2:
            raise ConfigError(f"n_train: must be at least 2, not {self.n_train}")
        if self.train_fraction is not None and not 0 < self.train_fraction < 1:
            raise ConfigError(f"train_fraction: must be between 0 and 1 (exclusive), not {self.train_fraction}")
        if self.hidden is not None and self.hidden < 1:
            raise ConfigError(f"hidden: must be at least 1, not {self.hidden}")
        if self.layers < 1:
            raise ConfigError(f"layers: must be at least 1, not {self.layers}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs: must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, not {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr: must be a positive number, not {self.lr}")
        if not self.horizons:
            raise ConfigError("horizons: give at least one horizon (such as 1,4,16,64)")
        bad = [k for k in self.horizons if k < 1]
        if bad:
            raise ConfigError(f"horizons: must be at least 1, not {bad[0]}")

    def resolved(self) -> TimeSeriesConfig:
        """A copy with the per-model defaults filled in and horizons sorted."""
        return dataclasses.replace(
            self,
            hidden=self.hidden if self.hidden is not None else DEFAULT_HIDDEN[self.model],
            epochs=self.epochs if self.epochs is not None else DEFAULT_EPOCHS[self.model],
            horizons=sorted(set(self.horizons)),
        )


# --------------------------------------------------------------------------
# The curriculum's series


def make_sine_series(T: int = 1000, seed: int = 0) -> np.ndarray:
    """x_t = sin(0.01 t) + N(0, 0.2^2) noise for t = 1..T (float64)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, T + 1, dtype=np.float64)
    return np.sin(0.01 * t) + rng.normal(0.0, 0.2, size=T)


def write_sine_csv(path: str | Path, T: int = 1000, seed: int = 0, force: bool = True) -> Path:
    """Write `make_sine_series` as a `time,x` CSV (6 decimals), atomically."""
    x = make_sine_series(T, seed)
    lines = ["time,x"] + [f"{t},{v:.6f}" for t, v in enumerate(x, 1)]
    with atomic_write(path, force=force) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return Path(path)


# --------------------------------------------------------------------------
# Reading a series


@dataclass
class Series:
    """One numeric column of a CSV (and its `time` column, if any)."""

    source: str
    column: str
    values: np.ndarray  # float64 (T,)
    time: list[str] | None = None


def read_series(path: str | Path, column: str = "") -> Series:
    """Read one numeric column; any bad cell is an error naming row and column."""
    p = check_input_file(path, "CSV")
    name = str(path)
    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            header: list[str] | None = None
            col = tcol = -1
            rows: list[int] = []
            cells: list[str] = []
            times: list[str] = []
            for fields in reader:
                if not fields:
                    continue
                if header is None:
                    header = _check_header(name, fields)
                    tcol = header.index(TIME_COLUMN) if TIME_COLUMN in header else -1
                    if column:
                        col = _find_column(name, header, column)
                    continue
                if len(fields) != len(header):
                    plural = "s" if len(fields) != 1 else ""
                    raise InputError(f"{name}: row {reader.line_num} has {len(fields)} field{plural}, "
                                     f"header has {len(header)}")
                if col < 0:
                    col = _first_numeric(name, header, fields, tcol)
                rows.append(reader.line_num)
                cells.append(fields[col])
                if tcol >= 0 and tcol != col:
                    times.append(fields[tcol].strip())
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise InputError(f"{name}: malformed CSV near row {reader.line_num} ({e})") from None
    if header is None:
        raise InputError(f"{name}: no header row")
    if not cells:
        raise InputError(f"{name}: has a header but no data rows")
    values = np.empty(len(cells), dtype=np.float64)
    for i, (row, cell) in enumerate(zip(rows, cells)):
        values[i] = _number(name, row, header[col], cell)
    return Series(name, header[col], values, times or None)


def _check_header(name: str, fields: list[str]) -> list[str]:
    header = [h.strip() for h in fields]
    for k, h in enumerate(header, 1):
        if not h:
            raise InputError(f"{name}: header column {k} has no name")
        if header.index(h) != k - 1:
            raise InputError(f"{name}: duplicate column name '{h}' in header")
    return header


def _find_column(name: str, header: list[str], column: str) -> int:
    if column in header:
        return header.index(column)
    lower = {h.lower(): h for h in header}
    close = [lower[column.lower()]] if column.lower() in lower else difflib.get_close_matches(column, header, 1, 0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{name}: no column '{column}'{hint}; columns are {', '.join(header)}")


def _first_numeric(name: str, header: list[str], fields: list[str], tcol: int) -> int:
    for k, cell in enumerate(fields):
        if k != tcol and _is_number(cell):
            return k
    raise InputError(f"{name}: no numeric column (columns are {', '.join(header)}); name one with column=NAME")


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _number(name: str, row: int, column: str, cell: str) -> float:
    s = cell.strip()
    if not s:
        raise InputError(f"{name}: row {row}, column '{column}': missing value (empty cell)")
    try:
        v = float(s)
    except ValueError:
        raise InputError(f"{name}: row {row}, column '{column}': {s[:40]!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{name}: row {row}, column '{column}': {s!r} is not a finite number")
    return v


def split_point(cfg: TimeSeriesConfig, series: Series) -> int:
    """The number of leading points used for training, checked against the series."""
    T, tau, max_k = len(series.values), cfg.tau, max(cfg.horizons)
    where = f"{series.source}: column '{series.column}' has {T} values"
    if T < tau + max_k + 1:
        raise InputError(f"{where}, too short for tau={tau} and horizon {max_k} "
                         f"(needs at least {tau + max_k + 1})")
    if cfg.train_fraction is not None:
        n_train = round(T * cfg.train_fraction)
    else:
        n_train = cfg.n_train if cfg.n_train is not None else DEFAULT_N_TRAIN
    if n_train >= T:
        raise InputError(f"{where}: n_train={n_train} leaves nothing to evaluate on (use a smaller n_train "
                         "or train_fraction=0.6)")
    if n_train <= tau:
        raise InputError(f"{where}: only {n_train} for training, needs more than tau={tau}")
    return n_train


# --------------------------------------------------------------------------
# Features and forecasts


def windows(x: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1-step examples: windows (T - tau, tau) of true values and targets x[tau:]."""
    return x.unfold(0, tau, 1)[:-1], x[tau:]


def multistep_features(x: torch.Tensor, tau: int, max_k: int,
                       step: Callable[[torch.Tensor], torch.Tensor], full: bool = False) -> torch.Tensor:
    """The k-step feature matrix, built column by column: (rows, tau + max_k).

    Row j holds x[j:j+tau], then the 1..max_k-step-ahead predictions of
    x[j+tau], ..., x[j+tau+max_k-1], each made by `step` from the previous
    tau entries of the row (true values first, then predictions). By default
    there are T - tau - max_k + 1 rows, as in the curriculum: every prediction
    has a true value. With `full`, every start window is a row (T - tau + 1):
    each horizon then reaches every target, and the last row forecasts past
    the end of the series.
    """
    n = x.shape[0] - tau + 1 if full else x.shape[0] - tau - max_k + 1
    if n < 1:
        raise ValueError(f"series of {x.shape[0]} values is too short for tau={tau} and max_k={max_k}")
    feats = torch.empty((n, tau + max_k), dtype=x.dtype, device=x.device)
    for i in range(tau):
        feats[:, i] = x[i:i + n]
    for i in range(tau, tau + max_k):
        feats[:, i] = step(feats[:, i - tau:i].contiguous())
    return feats


def _batched(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(w: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(w[i:i + EVAL_BATCH]) for i in range(0, w.shape[0], EVAL_BATCH)])

    return step


@torch.no_grad()
def forecast(model: nn.Module, values: np.ndarray, tau: int, horizons: list[int], mean: float = 0.0,
             std: float = 1.0, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Predictions aligned with `values` (NaN where undefined), in data units.

    Returns {"one_step": (T,), "k": {k: (T,)}, "future": (max_k,)}: the
    k-step array at t is the k-step-ahead prediction of x_t; `future`
    continues the series past its end from its last tau values.
    """
    model.eval()
    T, max_k = len(values), max(horizons)
    x = torch.tensor((values - mean) / std, dtype=torch.float32, device=device)
    feats = multistep_features(x, tau, max_k, _batched(model), full=True).cpu().double().numpy()
    feats = feats * std + mean
    out: dict[str, Any] = {"one_step": np.full(T, np.nan), "k": {}}
    out["one_step"][tau:] = feats[:T - tau, tau]
    for k in horizons:
        # row j predicts x[j + tau + k - 1]; rows past T - tau - k forecast beyond the data
        out["k"][k] = np.full(T, np.nan)
        out["k"][k][tau + k - 1:] = feats[:T - tau - k + 1, tau + k - 1]
    out["future"] = feats[-1, tau:]
    return out


def scores(values: np.ndarray, preds: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """MSE of the 1-step and each k-step prediction over targets lo <= t < hi."""

    def mse(p: np.ndarray) -> tuple[float | None, int]:
        d = p[lo:hi] - values[lo:hi]
        d = d[~np.isnan(d)]
        return (float(np.mean(d * d)) if len(d) else None), len(d)

    m1, n1 = mse(preds["one_step"])
    ks = {str(k): mse(p) for k, p in preds["k"].items()}
    return {"mse_1step": m1, "mse": {k: v[0] for k, v in ks.items()},
            "points_1step": n1, "points": {k: v[1] for k, v in ks.items()}}


# --------------------------------------------------------------------------
# Outputs


def _fmt(v: float) -> str:
    return "" if math.isnan(v) else format(v, ".8g")


def predictions_csv(series: Series, preds: dict[str, Any]) -> bytes:
    """t, truth, pred_1step, pred_k<K>...: one row per point, empty where undefined."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ks = list(preds["k"])
    w.writerow(["t", "truth", "pred_1step"] + [f"pred_k{k}" for k in ks])
    t = series.time or [str(i) for i in range(1, len(series.values) + 1)]
    cols = [preds["one_step"]] + [preds["k"][k] for k in ks]
    for i, v in enumerate(series.values):
        w.writerow([t[i], _fmt(v)] + [_fmt(c[i]) for c in cols])
    return buf.getvalue().encode("utf-8")


def _time_axis(series: Series) -> np.ndarray:
    if series.time and all(_is_number(s) for s in series.time):
        return np.array([float(s) for s in series.time])
    return np.arange(1, len(series.values) + 1, dtype=np.float64)


def forecast_png(series: Series, preds: dict[str, Any], n_train: int, title: str) -> bytes:
    """Truth and 1-step predictions above, k-step predictions below; a line where training ends."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = _time_axis(series)
    fig = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    end = (t[n_train - 1] + t[n_train]) / 2
    top.plot(t, series.values, color="0.6", lw=0.8, label="data")
    top.plot(t, preds["one_step"], lw=1.0, label="1-step preds")
    bottom.plot(t, series.values, color="0.8", lw=0.8, label="data")
    for k, p in preds["k"].items():
        bottom.plot(t, p, lw=1.0, label=f"{k}-step preds")
    for ax in (top, bottom):
        ax.axvline(end, color="k", ls="--", lw=0.8, label="end of training data" if ax is top else None)
        ax.set_ylabel(series.column)
        ax.legend(loc="best", fontsize="small")
    top.set_title(title)
    bottom.set_xlabel(TIME_COLUMN if series.time else "t")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------
# Training


def _optimizer_tensors(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
    out = {}
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            out[f"{i}.{key}"] = torch.as_tensor(value)
    return out


def _load_optimizer(opt: torch.optim.Optimizer, params: list[nn.Parameter], tensors: dict[str, torch.Tensor]
                    ) -> None:
    for name, value in tensors.items():
        i, key = name.split(".", 1)
        p = params[int(i)]
        opt.state[p][key] = value.to(p.device) if key != "step" else value.cpu()


def _model_tensors(model: nn.Module, mean: float, std: float) -> dict[str, torch.Tensor]:
    tensors = dict(model.state_dict())
    tensors["norm.mean"] = torch.tensor(mean, dtype=torch.float64)
    tensors["norm.std"] = torch.tensor(std, dtype=torch.float64)
    return tensors


def _load_model(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> tuple[float, float]:
    """Load weights into `model`; returns the saved (mean, std) normalisation."""
    try:
        mean = float(tensors.pop("norm.mean"))
        std = float(tensors.pop("norm.std"))
        model.load_state_dict(tensors)
    except (KeyError, RuntimeError) as e:
        raise InputError(f"{path}: weights do not fit the model in config.yaml ({str(e).splitlines()[0]})") from None
    return mean, std


def _read_run_config(run: Path) -> TimeSeriesConfig:
    p = run / "config.yaml"
    if not p.is_file():
        raise InputError(f"{run}: not a run directory (no config.yaml)")
    try:
        return from_dict(TimeSeriesConfig, yaml.safe_load(p.read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, UnicodeDecodeError):
        raise InputError(f"{p}: malformed YAML") from None
    except ConfigError as e:
        raise InputError(f"{p}: {e}") from None


def _checkpoint(run: Path, model: nn.Module, opt: torch.optim.Optimizer, mean: float, std: float,
                epoch: int) -> None:
    """Weights and optimizer state of one epoch, written together."""
    from safetensors.torch import save

    meta = {"format": FORMAT, "epoch": str(epoch)}
    params = list(model.parameters())
    with AtomicGroup(force=True) as group:
        with group.open(run / "optimizer.safetensors") as f:
            f.write(save({k: v.detach().contiguous().cpu() for k, v in _optimizer_tensors(opt, params).items()},
                         metadata=meta))
        with group.open(run / "model.safetensors") as f:
            f.write(save({k: v.detach().contiguous().cpu() for k, v in _model_tensors(model, mean, std).items()},
                         metadata=meta))


def _saved_epoch(path: Path) -> int | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {}).get("epoch", ""))
    except (OSError, ValueError, SafetensorError):  # damaged, or no epoch recorded: start afresh
        return None


def _resume_point(run: Path, cfg: TimeSeriesConfig) -> int:
    """The last completed epoch of a run to continue (0: start afresh)."""
    model_p, opt_p = run / "model.safetensors", run / "optimizer.safetensors"
    if not (model_p.is_file() and opt_p.is_file()):
        return 0
    old = _read_run_config(run)
    changed = [d for d in diff(old, cfg) if d.split(":", 1)[0] in _RESUME_KEYS]
    if changed:
        raise ConfigError(f"{run}: cannot resume with a different {'; '.join(changed)} (use --force to start over)")
    epoch = _saved_epoch(model_p)
    if epoch is None or epoch != _saved_epoch(opt_p):
        return 0
    if epoch > cfg.epochs:
        raise ConfigError(f"{run}: already trained for {epoch} epochs; ask for more than that to continue")
    return epoch


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor, batch_size: int,
           gen: torch.Generator) -> float:
    """One pass over the shuffled windows; returns the mean training MSE."""
    model.train()
    # A seeded generator per epoch: a resumed run shuffles exactly as an uninterrupted one.
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
    start = _resume_point(run, cfg) if resume and run.is_dir() else 0
    rundir.create(run, cfg, "timeseries", inputs=[cfg.data], force=force, resume=resume)
    if start == 0:
        for name in _OUTPUTS:
            (run / name).unlink(missing_ok=True)
    else:
        kept = [m for m in rundir.read_metrics(run) if m.get("epoch", 0) <= start]
        with atomic_write(run / "metrics.jsonl", force=True) as f:
            f.write("".join(json.dumps(m) + "\n" for m in kept).encode("utf-8"))

    seed_everything(cfg.seed)
    model = build(cfg.model, cfg.tau, cfg.hidden, cfg.layers).to(device)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    train_part = series.values[:n_train]
    mean, std = (float(train_part.mean()), float(train_part.std()) or 1.0) if cfg.standardize else (0.0, 1.0)
    if start:
        _load_model(model, rundir.load_tensors(run / "model.safetensors"), run / "model.safetensors")
        _load_optimizer(opt, params, rundir.load_tensors(run / "optimizer.safetensors"))

    x = torch.tensor((series.values - mean) / std, dtype=torch.float32, device=device)
    X, y = windows(x, cfg.tau)
    X, y = X[:n_train - cfg.tau], y[:n_train - cfg.tau]  # targets inside the training part only
    desc = f"train {cfg.model}"
    losses = [m["loss"] for m in rundir.read_metrics(run) if "loss" in m]
    notify = on_progress or nothing
    notify(Tick(desc, start, cfg.epochs, unit="epoch", metrics={"loss": losses[-1]} if losses else {}))
    done = start
    try:
        with rundir.MetricsLog(run) as log:
            for epoch in range(start + 1, cfg.epochs + 1):
                losses.append(_epoch(model, opt, X, y, cfg.batch_size,
                                     torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)))
                if not math.isfinite(losses[-1]):
                    kept = f"model.safetensors keeps epoch {done}" if done else "no weights were saved"
                    raise TrainingDiverged(f"loss became {losses[-1]} in epoch {epoch}; {kept}; try a lower lr "
                                           "or standardize=true")
                log.log(epoch=epoch, loss=losses[-1])
                _checkpoint(run, model, opt, mean, std, epoch)
                done = epoch
                notify(Tick(desc, epoch, cfg.epochs, unit="epoch", metrics={"loss": losses[-1]}))
    except KeyboardInterrupt:
        saved = f"epoch {done} saved in {run} (continue with --resume)" if done else "nothing saved"
        raise Interrupted(f"interrupted during epoch {done + 1}; {saved}") from None

    preds = forecast(model, series.values, cfg.tau, cfg.horizons, mean, std, device)
    T = len(series.values)
    report = {
        "format": FORMAT, "version": VERSION, "model": cfg.model, "tau": cfg.tau, "data": cfg.data,
        "column": series.column, "points": T, "n_train": n_train, "horizons": cfg.horizons,
        "epochs": cfg.epochs, "loss": losses[-1] if losses else None,
        "train": scores(series.values, preds, 0, n_train),
        "test": scores(series.values, preds, n_train, T),
    }
    title = f"{cfg.model}, tau={cfg.tau}: {series.source} [{series.column}]"
    with AtomicGroup(force=True) as group:
        with group.open(run / "predictions.csv") as f:
            f.write(predictions_csv(series, preds))
        with group.open(run / "forecast.png") as f:
            f.write(forecast_png(series, preds, n_train, title))
        with group.open(run / "forecast.json") as f:
            f.write((json.dumps(report, indent=2) + "\n").encode("utf-8"))
    written = [str(run / name) for name in ("config.yaml", "meta.json") + _OUTPUTS]
    return {"run": str(run), "device": str(device), "resumed_from_epoch": start, **report, "written": written}


# --------------------------------------------------------------------------
# Predicting with a trained run


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[TimeSeriesConfig, nn.Module, float, float]:
    """The config, the trained model (eval mode) and its (mean, std) normalisation."""
    run = Path(run_dir)
    meta = rundir.read_meta(run)
    if meta.get("stage") != "timeseries":
        raise InputError(f"{run}: not a forecasting run (stage is {meta.get('stage')!r})")
    cfg = _read_run_config(run)
    model = build(cfg.model, cfg.tau, cfg.hidden if cfg.hidden is not None else DEFAULT_HIDDEN[cfg.model],
                  cfg.layers)
    path = run / "model.safetensors"
    mean, std = _load_model(model, rundir.load_tensors(path), path)
    return cfg, model.to(device).eval(), mean, std


def predict(run_dir: str | Path, csv_path: str | Path | None = None, horizons: list[int] | None = None,
            output: str | Path | None = None, force: bool = False, column: str | None = None,
            device: str = "auto") -> dict[str, Any]:
    """Forecast a CSV (default: the training data) with a trained run.

    Scores cover every point ("all"); on the training data also the "train"
    and "test" parts of the run. Writes predictions CSV only when `output`
    is given. "future" continues the series max(horizons) steps past its end.
    """
    dev = resolve_device(device)
    cfg, model, mean, std = load_run(run_dir, str(dev))
    ks = sorted(set(horizons or cfg.horizons))
    if any(k < 1 for k in ks):
        raise ConfigError("horizons: must be at least 1")
    same = csv_path is None or Path(csv_path).resolve() == Path(cfg.data).resolve()
    series = read_series(csv_path if csv_path is not None else cfg.data, column or cfg.column)
    T = len(series.values)
    if T < cfg.tau + ks[-1] + 1:
        raise InputError(f"{series.source}: column '{series.column}' has {T} values, too short for "
                         f"tau={cfg.tau} and horizon {ks[-1]} (needs at least {cfg.tau + ks[-1] + 1})")
    preds = forecast(model, series.values, cfg.tau, ks, mean, std, dev)
    result: dict[str, Any] = {"run": str(run_dir), "data": series.source, "column": series.column,
                              "model": cfg.model, "tau": cfg.tau, "points": T, "horizons": ks,
                              "all": scores(series.values, preds, 0, T)}
    if same:
        n_train = split_point(dataclasses.replace(cfg, horizons=ks), series)
        result.update(n_train=n_train, train=scores(series.values, preds, 0, n_train),
                      test=scores(series.values, preds, n_train, T))
    result["future"] = [float(v) for v in preds["future"]]
    result["written"] = []
    if output is not None:
        with atomic_write(output, force=force) as f:
            f.write(predictions_csv(series, preds))
        result["written"] = [str(output)]
    return result
