"""The one training loop every stage runs.

    while the budget lasts:
        one update (the stage's `step`)
        every log_every steps:        check the loss is finite, log the window's means, report progress
        every eval_every steps:       held-out figures (the stage's `evaluate`), plots
        every checkpoint_every steps: a checkpoint (the loop's counters + the stage's `checkpoint`)
    a final evaluation and checkpoint

The loop owns what every stage used to re-create: the budget (steps, epochs, wall-clock time), the
elapsed time across resumes, the last good step, the finiteness check, Ctrl-C, SIGTERM and SIGHUP held
to the end of a step and turned into a checkpoint, the metrics log (cut back on resume to what it held
when the checkpoint was written), and agreement between processes under torchrun (they all stop after
the same step). A stage hands it callables; it knows no model, optimizer or data.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.core import rundir
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import Interrupted, TrainingDiverged
from dlcli.train import tracking

if TYPE_CHECKING:  # torch is imported where a stage's tensors need it: the embedding stage runs without it
    import torch

    from dlcli.train.distributed import Dist


@dataclass
class Budget:
    """Whichever comes first; 0 means no limit."""

    steps: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, max_steps: int = 0, epochs: float = 0.0, steps_per_epoch: float = 0.0, max_time: str = "") -> Budget:
        from dlcli.core.runtime import parse_duration

        limits = [s for s in (max_steps, math.ceil(epochs * steps_per_epoch) if epochs else 0) if s]
        return cls(min(limits) if limits else 0, parse_duration(max_time) if max_time else 0.0)

    def fraction(self, step: int, elapsed: float, start: int = 0) -> float | None:
        """How far through the budget (for learning-rate schedules); None without a limit. A step budget
        may be measured from step `start` (a decay that begins after the warm-up)."""
        if self.steps:
            return (step - start) / max(1, self.steps - start)
        return elapsed / self.seconds if self.seconds else None

    def total(self, step: int, elapsed: float) -> int | None:
        """The step count the budget allows (estimated from the rate so far for a time budget, never
        fewer than the steps done: the last step of a time budget ends past it)."""
        if self.steps:
            return max(self.steps, step)
        return max(step, int(step * self.seconds / max(elapsed, 1e-9))) if self.seconds and step else None


@dataclass
class Update:
    """What one step of a stage returns. `loss` may stay a tensor (no device sync per step)."""

    loss: torch.Tensor | float
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)  # averaged over the log window
    info: dict[str, Any] = field(default_factory=dict)  # last value logged as is (lr, epoch)
    weight: float = 1.0  # this process's share under torchrun (examples), for averaging `stats`


@dataclass
class Saved:
    """What a checkpoint holds besides the loop's counters (written by `train.checkpoint`)."""

    model: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    state: dict[str, Any] = field(default_factory=dict)  # JSON: data position, schedules
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # RNG streams, carried state
    trainable_only: bool = False  # the model's trainable parameters alone (LoRA: the frozen rest is the base run's)


@dataclass
class Stage:
    """A training stage as the loop sees it."""

    name: str  # the progress label
    step: Callable[[int], Update]  # one update; gets the number of steps done
    checkpoint: Callable[[], Saved]  # called on every process (collectives allowed); written by the main one
    evaluate: Callable[[int], dict[str, float]] = lambda step: {}  # held-out figures (main process only)
    plots: Callable[[list[dict[str, Any]]], None] = lambda history: None  # after each evaluation
    record: Callable[[dict[str, Any], float], dict[str, Any]] = lambda rec, seconds: rec  # add to a log record
    show: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None  # (record, last eval) -> bar
    hint: str = "try a lower optim.lr"  # what to do when the loss is not finite
    unit: str = "step"  # what a step is called in progress and messages ("epoch" for a stage whose step is one)
    # a stage with its own checkpoint format (the embedding kernels): (loop counters) -> None, every process
    save: Callable[[dict[str, Any]], None] | None = None
    evaluate_first: bool = False  # a fresh run is evaluated before its first step too (a step-0 record)


@dataclass
class Every:
    log: int = 10
    eval: int = 0  # 0: only at the end
    checkpoint: int = 0  # 0: only at the end and on Ctrl-C


@dataclass
class Result:
    steps: int
    elapsed: float  # training seconds, across resumes, the final evaluation and checkpoint included
    last_eval: dict[str, Any]
    history: list[dict[str, Any]]  # every record of metrics.jsonl
    final_seconds: float = 0.0  # of `elapsed`, the final evaluation and checkpoint (a budget bounds the rest)


@dataclass(frozen=True)
class _Alone:
    """A plain run's world: train.distributed's `Dist()` without importing torch."""

    rank: int = 0
    world: int = 1
    main: bool = True
    enabled: bool = False


_ALONE = _Alone()


# The signals that stop a run with a checkpoint: Ctrl-C; what `kill`, `timeout`, Slurm and Kubernetes
# send; a closed terminal. Each is held to the end of a step; the exit code is 128 + its number.
HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """A stop signal held until the end of a step (`pending`, and `signum` which), so that the
    checkpoint it saves lies between two steps and `--resume` continues exactly; a second signal stops
    at once."""

    def __init__(self) -> None:
        self.pending = False
        self.signum = 0

    def __call__(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True
        self.signum = signum


@contextlib.contextmanager
def held_interrupts() -> Iterator[StopRequest]:
    """SIGINT, SIGTERM and SIGHUP set `pending` instead of stopping the process, where they have their
    default action (not when ignored, as Ctrl-C in a background job or SIGHUP under nohup)."""
    stop = StopRequest()
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in HELD:
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            if signal.getsignal(sig) is default:
                old[sig] = signal.signal(sig, stop)
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _interrupted(message: str, signum: int) -> Interrupted:
    """The Interrupted error of a held signal, `message` with "{by}" naming a signal other than Ctrl-C;
    exit code 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), as a shell reports a process the
    signal killed."""
    signum = signum or signal.SIGINT
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    err = Interrupted(message.replace("{by}", by, 1))
    err.exit_code = 128 + signum
    return err


def fit(stage: Stage, run: Path, budget: Budget, every: Every, dist: Dist | None = None,
        on_progress: OnProgress = nothing, resumed: dict[str, Any] | None = None) -> Result:
    """Train `stage` until `budget`; `resumed` is the state of the checkpoint being continued (its
    `step` and `elapsed` are the loop's; the stage has restored its own part)."""
    d = dist or _ALONE
    st: dict[str, Any] = {"step": 0, "elapsed": 0.0, "sums": {}, "count": 0, "last_eval": {}, "last_saved": 0}
    if resumed:
        st.update({k: resumed[k] for k in st if k in resumed})
        st["last_saved"] = st["step"]
        if d.main:
            _forget_after(run, resumed)
    history = rundir.read_metrics(run) if resumed and d.main else []
    # metrics.jsonl, and the trackers of --log (TensorBoard, wandb) fed the same records
    log = tracking.logged(rundir.MetricsLog(run), run, st["step"]) if d.main else None
    t0 = window_t = time.perf_counter()
    sums: dict[str, Any] = dict(st["sums"])  # loss and stats summed over the log window
    count = st["count"]

    def elapsed() -> float:
        return st["elapsed"] + time.perf_counter() - t0

    def means() -> dict[str, float]:
        """The window's means, over every process."""
        keys = list(sums)
        vals = [float(sums[k]) for k in keys]
        if d.enabled:
            import torch

            v = torch.tensor([*vals, float(count)], dtype=torch.float64)
            torch.distributed.all_reduce(v)
            vals, n = v[:-1].tolist(), float(v[-1])
        else:
            n = float(count)
        return {k: x / max(n, 1e-12) for k, x in zip(keys, vals)}

    def check_finite() -> dict[str, float]:
        m = means() if count else {}
        value = m.get("loss", 0.0)
        if not math.isfinite(value):
            kept = (f"the last good checkpoint (step {st['last_saved']}) is kept" if st["last_saved"] else
                    "no checkpoint had been saved yet")
            raise TrainingDiverged(f"loss became {value} at {stage.unit} {st['step']}; {kept}; {stage.hint}")
        return m

    def do_eval() -> None:
        if d.main:
            st["last_eval"] = {"step": st["step"], **stage.evaluate(st["step"])}
            if len(st["last_eval"]) > 1:
                assert log is not None
                log.log(**st["last_eval"])
                history.append(st["last_eval"])
                stage.plots(history)

    def save() -> None:
        counters = {"step": st["step"], "elapsed": elapsed(), "last_eval": st["last_eval"],
                    "sums": {k: float(v) for k, v in sums.items()}, "count": count,
                    "metrics_bytes": rundir.metrics_size(run) if d.main else 0}
        if stage.save is not None:
            stage.save(counters)
        else:
            saved = stage.checkpoint()
            if d.main:
                from dlcli.train import checkpoint as ckpt

                ckpt.save(run, saved.model, saved.optimizer, {**saved.state, **counters}, saved.tensors,
                          saved.trainable_only)
        st["last_saved"] = st["step"]

    def close() -> None:
        if log is not None:
            log.close()

    def log_window(out: Update, final: bool = False) -> None:
        """Log the window's means (metrics.jsonl, trackers) and report progress; `final` is a window the
        budget cut short, whose step is the last (the bar shows it complete)."""
        nonlocal window_t, count
        m = check_finite()
        now = time.perf_counter()
        step = st["step"]
        rec = stage.record({"step": step, **out.info, **m, "elapsed": elapsed()}, now - window_t)
        window_t = now
        sums.clear()
        count = 0
        if d.main:
            assert log is not None
            log.log(**rec)
            history.append(rec)
            bar = stage.show(rec, st["last_eval"]) if stage.show else {k: m[k] for k in list(m)[:3]}
            total = step if final else budget.total(step, elapsed())
            on_progress(Tick(stage.name, step, total, unit=stage.unit, metrics=bar))

    in_step = False
    t_final = 0.0  # when the budget ended (the final evaluation and checkpoint began)
    unlogged: Update | None = None  # the last step's update while its log window is open
    try:
        with held_interrupts() as ctrl_c:
            try:
                if stage.evaluate_first and not resumed:
                    do_eval()
                if resumed and every.eval and st["step"] and st["step"] % every.eval == 0 \
                        and st["last_eval"].get("step") != st["step"]:
                    do_eval()  # it was interrupted between the step and its evaluation
                while not (budget.steps and st["step"] >= budget.steps):
                    time_up = bool(budget.seconds) and elapsed() >= budget.seconds
                    if d.enabled:
                        time_up = _any(d, time_up)
                    if time_up:
                        break
                    in_step = True
                    out = stage.step(st["step"])
                    st["step"] = step = st["step"] + 1
                    in_step = False
                    w = out.weight
                    for k, v in {"loss": out.loss, **out.stats}.items():
                        v = v.detach() if hasattr(v, "detach") else v  # a tensor stays on its device
                        sums[k] = sums[k] + v * w if k in sums else v * w
                    count += w
                    last = step == budget.steps
                    unlogged = out
                    if step % every.log == 0 or last:
                        log_window(out)
                        unlogged = None
                    if every.eval and step % every.eval == 0 and not last:
                        do_eval()
                    if every.checkpoint and step % every.checkpoint == 0:
                        check_finite()  # never checkpoint diverged weights
                        save()
                    if _any(d, ctrl_c.pending) if d.enabled else ctrl_c.pending:
                        raise KeyboardInterrupt
                if unlogged is not None:  # a time budget ended inside a log window: its steps are logged too
                    log_window(unlogged, final=True)
                t_final = time.perf_counter()
                check_finite()
                if st["last_eval"].get("step") != st["step"] or not st["last_eval"]:
                    do_eval()
                save()
            except KeyboardInterrupt:
                if in_step:  # a second signal stopped a step half-way: its weights are not saved
                    kept = f"the checkpoint of {stage.unit} {st['last_saved']} is kept" if st["last_saved"] else \
                        "nothing saved"
                    raise _interrupted(f"stopped{{by}} during {stage.unit} {st['step'] + 1}; {kept}",
                                       ctrl_c.signum) from None
                if st["step"] > 0:
                    check_finite()  # a diverged window is not saved
                    save()
                    raise _interrupted(f"interrupted{{by}} at {stage.unit} {st['step']}; checkpoint saved in {run} "
                                       "(continue with --resume)", ctrl_c.signum) from None
                raise _interrupted("interrupted{by} before the first step; nothing saved", ctrl_c.signum) from None
    finally:
        close()
    last_eval = st["last_eval"]
    if d.enabled:  # the other processes learn the main one's figures
        import torch

        box = [last_eval]
        torch.distributed.broadcast_object_list(box)
        last_eval = box[0]
    return Result(st["step"], elapsed(), last_eval, history, time.perf_counter() - t_final if t_final else 0.0)


def _forget_after(run: Path, resumed: dict[str, Any]) -> None:
    """Drop the records metrics.jsonl gained after the checkpoint being resumed (a kill between a log
    line and the next checkpoint): cut it back to the length the checkpoint recorded. A checkpoint from
    before that length was recorded, or a file rewritten since, keeps the records up to its step."""
    size = resumed.get("metrics_bytes")
    if isinstance(size, int) and rundir.truncate_metrics(run, size):
        return
    records = rundir.read_metrics(run)
    kept = [r for r in records if not isinstance(r.get("step"), int) or r["step"] <= resumed["step"]]
    if len(kept) < len(records):
        from dlcli.core.io import atomic_write

        with atomic_write(run / "metrics.jsonl", force=True) as f:
            f.write("".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))


def _any(d: Dist, flag: bool) -> bool:
    from dlcli.train.distributed import any_flag

    return any_flag(d, flag)
