"""`dlcli embed train`: word2vec skip-gram / CBOW with negative sampling.

A run directory holds config.yaml, meta.json, metrics.jsonl, tokenizer.json,
embeddings.safetensors (`embeddings`: the input vectors, one row per
tokenizer id, zero for specials and trimmed words; `context`: the output
vectors; `counts`; `trained`: 1 where a row was trained) and vectors.vec
(word2vec text format; vectors.bin too with `binary`). While a run is
unfinished (stopped by --max-time or Ctrl-C) checkpoint.safetensors (`W_in`,
`W_out`, and where the run stands in its metadata, as train/checkpoint.py's;
checkpoint.json is a readable copy) lets `--resume` continue it exactly.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core import rundir, runguard, runtime
from dlcli.core.io import atomic_write, write_text_atomic
from dlcli.core.parallel import default_workers
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import parse_duration
from dlcli.embed import corpus as corpus_mod
from dlcli.embed import vecfile
from dlcli.errors import ConfigError, DlcliWarning, InputError, Interrupted
from dlcli.train import checkpoint
from dlcli.train.loop import Budget, Every, Saved, Stage, Update, fit

MODELS = ("skipgram", "cbow")
KERNELS = ("auto", "numba", "torch")
# Mean cosine between the most frequent words' vectors above which they count as collapsed: trained on too
# little text, word2vec's vectors all point one way and every neighbour comes out at cosine ~1 (The Time
# Machine, 33k words, 5 epochs: 0.999; 50 epochs: 0.26; the 680k-word bench corpus, 5 epochs: 0.45).
COLLAPSED = 0.75
SPREAD_WORDS = 1000
ENOUGH_WORDS = 1_500_000  # corpus words x epochs from which The Time Machine's vectors spread out
SLICE_WORDS = 500_000  # words per kernel call: progress, --max-time and Ctrl-C are checked between calls
# Keys that may change when a run is resumed (the rest must be the run's own).
RESUMABLE = ("output", "device", "kernel", "max_time", "binary")
_OUTPUTS = ("metrics.jsonl", "tokenizer.json", "embeddings.safetensors", "vectors.vec", "vectors.bin",
            "checkpoint.safetensors", "checkpoint.json")


@dataclass
class EmbedConfig:
    """Options of `dlcli embed train`."""

    data: str = ""  # token stream (dlcli preprocess) or id file (dlcli vocab encode)
    tokenizer: str = ""  # for an id file: its tokenizer.json (default: the one its sidecar names)
    output: str = "runs/embed"  # the run directory
    model: str = "skipgram"  # skipgram | cbow
    dim: int = 100
    window: int = 5  # largest reach of the dynamic window
    negative: int = 5  # noise words per example
    sample: float = 1e-3  # subsampling threshold (0: off)
    min_count: int = 5  # drop words seen fewer times
    epochs: int = 5
    alpha: float = 0.025  # learning rate at the start, falling linearly to min_alpha
    min_alpha: float = 0.0001
    workers: int = 0  # threads (0: one per core); 1 is bit-for-bit reproducible
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (auto: cuda, then mps, then cpu)
    kernel: str = "auto"  # auto (numba on the CPU, the batched torch kernel on a GPU) | numba | torch
    seed: int = 1
    max_time: str = ""  # wall-clock budget such as 10m ("" = none); stops cleanly, --resume continues
    binary: bool = False  # also write vectors.bin (word2vec binary format)

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: no input given (a token stream or an id file)")
        if self.model not in MODELS:
            raise ConfigError(f"model: '{self.model}' is not one of {', '.join(MODELS)}")
        for key in ("dim", "window", "min_count", "epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be at least 1, not {getattr(self, key)}")
        if self.negative < 1:
            raise ConfigError(f"negative: must be at least 1, not {self.negative}")
        if not (0 <= self.sample < 1):
            raise ConfigError(f"sample: must be in [0, 1), not {self.sample}")
        if not (math.isfinite(self.alpha) and self.alpha > 0) or not (0 <= self.min_alpha <= self.alpha):
            raise ConfigError(f"alpha and min_alpha: need 0 <= min_alpha <= alpha and alpha > 0, not "
                              f"{self.alpha} and {self.min_alpha}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel: '{self.kernel}' is not one of {', '.join(KERNELS)}")
        if self.workers < 0:
            raise ConfigError(f"workers: must be 0 (one per core) or more, not {self.workers}")
        if self.max_time:
            parse_duration(self.max_time)


def _seed(*parts: int) -> np.uint64:
    """A 64-bit seed from integers (splitmix64 of a running mix): each thread and slice gets its own stream."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return np.uint64(x | 1)


def _slices(c: corpus_mod.Corpus) -> np.ndarray:
    """Sentence indices where kernel calls start and stop, about SLICE_WORDS words apart."""
    n_slices = max(1, round(c.words_total / SLICE_WORDS))
    targets = np.linspace(0, c.words_total, n_slices + 1)
    return np.unique(np.searchsorted(c.sent_starts, targets))


def _parts(c: corpus_mod.Corpus, first: int, last: int, workers: int) -> np.ndarray:
    """Cut sentences first..last into `workers` runs of about equal word counts (one per thread)."""
    a, b = c.sent_starts[first], c.sent_starts[last]
    cuts = np.searchsorted(c.sent_starts, np.linspace(a, b, workers + 1))
    cuts[0], cuts[-1] = first, last
    return np.maximum.accumulate(np.clip(cuts, first, last)).astype(np.int64)


def init_vectors(words: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Input vectors uniform in [-0.5/dim, 0.5/dim] (as word2vec.c); output vectors zero."""
    rng = np.random.default_rng(seed)
    W_in = ((rng.random((words, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
    return W_in, np.zeros((words, dim), dtype=np.float32)


_STATE = ("epoch", "slice", "elapsed", "words", "effective")  # what a checkpoint's state must hold


def _resume_state(run: Path, cfg: EmbedConfig) -> dict[str, Any] | None:
    """The checkpoint of an unfinished run to continue, if any."""
    tensors_p, state_p = run / checkpoint.TENSORS, run / checkpoint.STATE
    if not tensors_p.is_file():
        if (run / "embeddings.safetensors").is_file():
            raise ConfigError(f"{run}: this run is finished; use --force to train it again")
        return None
    rundir.check_resume(run, cfg, RESUMABLE)
    meta = rundir.read_metadata(tensors_p)
    if checkpoint.KEY in meta:
        return checkpoint.parse(meta[checkpoint.KEY], tensors_p, _STATE)["state"]
    # a run from before the state went into the tensors file: checkpoint.json is the state itself
    if not state_p.is_file():
        raise InputError(f"{tensors_p}: incomplete checkpoint (no bookkeeping in it and no {checkpoint.STATE})")
    try:
        text = state_p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{state_p}: damaged checkpoint (not UTF-8 text)") from None
    return checkpoint.parse(json.dumps({"state": _json_object(text, state_p)}), state_p, _STATE)["state"]


def _json_object(text: str, where: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise InputError(f"{where}: damaged checkpoint (not valid JSON)") from None


def _save_checkpoint(run: Path, W_in: np.ndarray, W_out: np.ndarray, state: dict[str, Any]) -> None:
    """One file, its state in the metadata (one rename); then the readable copy."""
    tensors = {"W_in": W_in, "W_out": W_out}
    meta = checkpoint.metadata({"state": state}, list(tensors))
    with atomic_write(run / checkpoint.TENSORS, force=True) as f:
        f.write(vecfile.tensors_bytes(tensors, meta))
    write_text_atomic(run / checkpoint.STATE, json.dumps(json.loads(meta[checkpoint.KEY]), indent=2) + "\n",
                      force=True)
    runguard.saved(run)


class _Stepper:
    """One kernel call per slice of the corpus: the numba kernel on CPU threads, or the batched torch kernel."""

    def __init__(self, cfg: EmbedConfig, c: corpus_mod.Corpus, W_in: np.ndarray, W_out: np.ndarray,
                 bounds: np.ndarray, workers: int, kernel: str, device: str) -> None:
        self.cfg, self.c, self.W_in, self.W_out, self.bounds = cfg, c, W_in, W_out, bounds
        self.batched: Any = None
        if kernel == "torch":
            from dlcli.embed.batched import BatchedKernel

            t = time.monotonic()
            keep = corpus_mod.keep_fractions(c.counts, cfg.sample)
            self.batched = BatchedKernel(W_in, W_out, c.ids, c.sent_starts, keep, corpus_mod.noise_weights(c.counts),
                                         cfg.model == "skipgram", cfg.window, cfg.negative, device)
            self.compile_s = time.monotonic() - t  # moving the matrices to the device
            self.workers = 1
            self.where = f"batched torch kernel on {device}"
        else:
            from dlcli.embed import kernels

            self.kernels = kernels
            self.workers = workers
            kernels.set_threads(workers)
            self.compile_s = kernels.warm_up()  # compile or load the numba kernels
            self.keep = corpus_mod.keep_probabilities(c.counts, cfg.sample)
            self.prob, self.alias = kernels.alias_table(corpus_mod.noise_weights(c.counts))
            self.sig, self.logsig = kernels.sigmoid_tables()
            self.where = f"{workers} CPU thread{'s' if workers != 1 else ''}"

    def step(self, epoch: int, k: int, lr_a: float, lr_b: float) -> np.ndarray:
        """Train slice k of the given epoch, the learning rate falling from lr_a to lr_b over it."""
        first, last = int(self.bounds[k]), int(self.bounds[k + 1])
        if self.batched is not None:
            return self.batched.train_slice(first, last, lr_a, lr_b, int(_seed(self.cfg.seed, epoch, k)) >> 1)
        cfg, c = self.cfg, self.c
        parts = _parts(c, first, last, self.workers)
        seeds = np.array([_seed(cfg.seed, epoch, k, p) for p in range(self.workers)], dtype=np.uint64)
        return self.kernels.train_slice(self.W_in, self.W_out, c.ids, c.sent_starts, parts, self.keep, self.prob,
                                        self.alias, cfg.model == "skipgram", cfg.window, cfg.negative, lr_a, lr_b,
                                        seeds, self.sig, self.logsig)

    def sync(self) -> None:
        """Bring the matrices back to the host arrays (the batched kernel keeps them on its device)."""
        if self.batched is not None:
            self.batched.to_numpy(self.W_in, self.W_out)


class _Clock:
    """Wall-clock seconds per phase of a run (for the summary and meta.json's `timings`)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        """Charge the time since the previous lap to `phase`."""
        now = time.perf_counter()
        self.add(phase, now - self.last)
        self.last = now

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def summary(self) -> dict[str, float]:
        """Phases in seconds (`kernel` is the part of `train` spent in kernel calls) and their `total`."""
        return {**{k: round(v, 4) for k, v in self.phases.items()}, "total": round(self.last - self.start, 4)}


def _pick_kernel(cfg: EmbedConfig) -> tuple[str, str]:
    """(kernel, device name); `auto` looks for a GPU only when the torch kernel could use one, and picks
    numba on the CPU, torch elsewhere. Torch is not imported when no GPU can be there (start-up time)."""
    device = "cpu"
    auto_cpu = cfg.device == "auto" and (cfg.kernel == "numba"
                                         or (cfg.kernel == "auto" and not runtime.gpu_possible()))
    if not (cfg.device == "cpu" or auto_cpu):
        from dlcli.core.runtime import resolve_device

        device = str(resolve_device(cfg.device))
    if cfg.kernel == "numba" and device != "cpu":
        raise ConfigError(f"kernel: numba runs on the CPU only, not on {device} (use --kernel torch or --device cpu)")
    kernel = cfg.kernel if cfg.kernel != "auto" else ("numba" if device == "cpu" else "torch")
    return kernel, device


@rundir.removed_on_failure
def train(cfg: EmbedConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Train word vectors and write the run directory; returns a summary."""
    notify = on_progress or nothing
    clock = _Clock()
    cfg.validate()
    kernel, device = _pick_kernel(cfg)
    clock.lap("device")
    run = Path(cfg.output)
    state = _resume_state(run, cfg) if resume and run.is_dir() else None
    c = corpus_mod.load(cfg.data, cfg.tokenizer, cfg.min_count, on_progress=notify)
    clock.lap("load")
    longest = int(np.diff(c.sent_starts).max()) if c.sent_starts.size > 1 else 0
    if longest <= 1:
        raise InputError(f"{cfg.data}: no sentence has two words after min-count {cfg.min_count}: nothing to "
                         "learn from (the corpus is smaller than a window)")
    rundir.create(run, cfg, "embed", inputs=[cfg.data], force=force, resume=resume)
    if state is None:
        for name in _OUTPUTS:
            (run / name).unlink(missing_ok=True)

    workers = cfg.workers or default_workers()
    bounds = _slices(c)
    n_slices = bounds.size - 1
    # where the run stands (the loop counts steps and seconds; the summary and progress count words)
    progress: dict[str, Any] = {"step": 0, "elapsed": 0.0, "words": 0, "effective": 0, "loss": None}
    if state is None:
        W_in, W_out = init_vectors(len(c.words), cfg.dim, cfg.seed)
    else:
        t = vecfile.load_tensors(run / checkpoint.TENSORS)
        if set(t) != {"W_in", "W_out"}:
            raise InputError(f"{run / checkpoint.TENSORS}: damaged checkpoint (not W_in and W_out)")
        W_in, W_out = t["W_in"].copy(), t["W_out"].copy()
        if W_in.shape != (len(c.words), cfg.dim):
            raise InputError(f"{run}: the checkpoint does not fit this corpus (was the data changed?)")
        progress.update(step=state["epoch"] * n_slices + state["slice"], elapsed=state["elapsed"],
                        words=state["words"], effective=state["effective"])
    total = cfg.epochs * c.words_total
    clock.lap("setup")
    stepper = _Stepper(cfg, c, W_in, W_out, bounds, workers, kernel, device)
    clock.lap("compile")
    stage = _stage(cfg, run, stepper, n_slices, progress, clock)
    notify(Tick(stage.name, progress["words"], total, unit="word"))
    seconds = parse_duration(cfg.max_time) if cfg.max_time else 0.0
    budget = Budget(cfg.epochs * n_slices, seconds or (1e-9 if cfg.max_time else 0.0))  # 0s: spent (0: no limit)
    resumed = {"step": progress["step"], "elapsed": progress["elapsed"],
               **({"metrics_bytes": state["metrics_bytes"]} if "metrics_bytes" in state else {})} if state else None
    try:
        result = fit(stage, run, budget, Every(log=1, checkpoint=n_slices), None,
                     lambda tick: notify(Tick(stage.name, progress["words"], total, unit="word", metrics=tick.metrics)),
                     resumed)
        done, train_s = result.steps, result.elapsed
    except Interrupted:
        if progress["step"] < budget.steps:
            raise
        done, train_s = progress["step"], progress["elapsed"]  # Ctrl-C in the last slice: the run is complete
    stopped = "max_time" if done < budget.steps else None
    clock.lap("train")
    cosine = mean_cosine(W_in[:SPREAD_WORDS])
    if cosine > COLLAPSED and not stopped:
        warnings.warn(DlcliWarning(too_small(cfg, c, cosine)), stacklevel=1)
    written = vecfile.write_run(run, c.tokenizer, c.words, c.rows, W_in, W_out, c.counts, cfg.binary)
    if not stopped:
        for name in ("checkpoint.safetensors", "checkpoint.json"):
            (run / name).unlink(missing_ok=True)
    clock.lap("write")
    timings = clock.summary()
    rundir.update_meta(run, timings=timings)
    return {
        "run": str(run), "model": cfg.model, "words": len(c.words), "dim": cfg.dim, "workers": stepper.workers,
        "where": stepper.where,
        "corpus_words": c.raw_words, "trained_words": c.words_total, "sentences": int(c.sent_starts.size - 1),
        "epochs_done": done / n_slices, "loss": progress.get("loss"),
        "effective_words": progress["effective"], "train_seconds": train_s, "compile_seconds": stepper.compile_s,
        "effective_words_per_s": progress["effective"] / train_s if train_s > 0 else 0.0,
        "words_per_s": progress["words"] / train_s if train_s > 0 else 0.0,
        "stopped": stopped, "written": written, "timings": timings, "mean_cosine": cosine,
    }


def mean_cosine(W: np.ndarray) -> float:
    """The mean cosine between distinct rows of W (zero rows left out): near 0 for vectors that spread out,
    near 1 when they all point one way."""
    v = W.astype(np.float64)
    norms = np.linalg.norm(v, axis=1)
    v = v[norms > 0] / norms[norms > 0, None]
    k = len(v)
    if k < 2:
        return 0.0
    total = v.sum(axis=0)
    return float((total @ total - k) / (k * (k - 1)))  # the sum of all pairs' cosines, less the diagonal


def too_small(cfg: EmbedConfig, c: corpus_mod.Corpus, cosine: float) -> str:
    """The warning for collapsed vectors: what was trained, and what helps (measured on The Time Machine:
    more epochs most; a smaller --dim or --min-count little)."""
    epochs = max(min(100, 10 * math.ceil(ENOUGH_WORDS / max(1, c.raw_words) / 10)), 2 * cfg.epochs)
    return (f"{cfg.data}: {c.raw_words:,} corpus words are too few for {cfg.epochs} epochs: the vectors point "
            f"nearly one way (mean cosine {cosine:.2f}), so every neighbour looks alike; more epochs help most "
            f"(--epochs {epochs}), or a bigger corpus (dlcli data get text8)")


def _stage(cfg: EmbedConfig, run: Path, stepper: _Stepper, n_slices: int, progress: dict[str, Any],
           clock: _Clock) -> Stage:
    """The loop's view of the training: one step is one kernel call on a slice of the corpus, the learning
    rate falling linearly over the whole run; a checkpoint at the end of every epoch (numpy arrays, in the
    format of checkpoint.safetensors/.json above)."""
    steps_total = cfg.epochs * n_slices

    def lr(i: int) -> float:
        return cfg.alpha - (cfg.alpha - cfg.min_alpha) * i / steps_total

    def step(done: int) -> Update:
        epoch, k = divmod(done, n_slices)
        t = time.monotonic()
        out = stepper.step(epoch, k, lr(done), lr(done + 1))
        dt = time.monotonic() - t
        clock.add("kernel", dt)
        seen, kept, examples, loss = out.sum(axis=0)
        progress["loss"] = float(loss / max(examples, 1))
        progress["words"] += int(seen)
        progress["effective"] += int(kept)
        progress["step"] = done + 1
        rates = {"effective_words_per_s": round(kept / dt) if dt > 0 else 0,
                 "words_per_s": round(seen / dt) if dt > 0 else 0}
        return Update(progress["loss"], info={"epoch": epoch + 1, "slice": k + 1, "words": progress["words"],
                                              "lr": lr(done + 1), **rates})

    def record(rec: dict[str, Any], seconds: float) -> dict[str, Any]:
        keys = ("epoch", "slice", "words", "lr", "loss", "effective_words_per_s", "words_per_s")
        return {**{k: rec[k] for k in keys}, "elapsed": round(rec["elapsed"], 3)}

    def show(rec: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, Any]:
        return {**{k: rec[k] for k in ("epoch", "loss", "lr")}, "eff words/s": rec["effective_words_per_s"]}

    def save(counters: dict[str, Any]) -> None:
        stepper.sync()
        progress["elapsed"] = counters["elapsed"]
        if counters["step"] < steps_total:  # a finished run writes its vectors instead
            epoch, k = divmod(counters["step"], n_slices)
            state = {"epoch": epoch, "slice": k, "elapsed": counters["elapsed"], "words": progress["words"],
                     "effective": progress["effective"], "metrics_bytes": counters["metrics_bytes"]}
            _save_checkpoint(run, stepper.W_in, stepper.W_out, state)

    return Stage(f"train {cfg.model}", step, Saved, record=record, show=show, hint="try a lower --alpha",
                 unit="slice", save=save)
