"""Experiment trackers beside metrics.jsonl: TensorBoard and Weights & Biases (`--log NAME`).

Which trackers a run logs to is a choice of the process, not a config key: the CLI sets it with
`use(names)` around a training command (every training stage runs `train.loop.fit`, so no stage or
config knows of it), and `fit` wraps its metrics log with `logged`, which hands every record it writes
to metrics.jsonl to the trackers as well. A resumed run logs into the same event files / wandb run.

    use(["tensorboard"])  ->  fit: logged(MetricsLog(run), run, step)  ->  Tracker.open / log / close

The trackers' packages are optional (`pip install 'dlcli[tensorboard]'`, `pip install wandb`) and
imported only when asked for; a missing one is one error line before any work starts.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from dlcli.core import rundir
from dlcli.core.config import load_yaml
from dlcli.errors import ConfigError, DlcliError, DlcliWarning


class Tracker(Protocol):
    """One experiment tracker: opened once per `fit`, handed each metrics record, closed at the end."""

    def open(self, run: Path, config: dict[str, Any], step: int = 0) -> None:
        """Start logging for `run` (its config.yaml as a dict); `step` > 0: a resume from that step."""

    def log(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record: its `step` and the numbers beside it."""

    def close(self) -> None: ...


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a record, less its step (strings, lists and NaN are not plotted)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoard:
    """Event files in RUN/tensorboard (`tensorboard --logdir runs/`)."""

    name = "tensorboard"

    @staticmethod
    def require() -> None:
        try:
            import tensorboard  # noqa: F401 - torch.utils.tensorboard needs it
        except ImportError:
            raise DlcliError("--log tensorboard needs the tensorboard package: "
                             "pip install 'dlcli[tensorboard]'") from None

    def open(self, run: Path, config: dict[str, Any], step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: on resume, TensorBoard hides what the killed run logged after its checkpoint
        self._w = SummaryWriter(log_dir=str(run / "tensorboard"), purge_step=step or None)
        if not step and config:
            import yaml

            self._w.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)

    def log(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        for k, v in scalars(record).items():
            self._w.add_scalar(k, v, step)

    def close(self) -> None:
        self._w.close()


class Wandb:
    """A Weights & Biases run named after the run directory, its files in RUN/wandb. WANDB_MODE=offline
    (or `wandb offline`) keeps it on disk; WANDB_PROJECT names the project (default dlcli)."""

    name = "wandb"
    ID = "dlcli-run-id"  # in RUN/wandb: the wandb run a resumed run continues

    @staticmethod
    def require() -> None:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise DlcliError("--log wandb needs the wandb package: pip install wandb") from None

    def open(self, run: Path, config: dict[str, Any], step: int = 0) -> None:
        import wandb

        folder = run / "wandb"
        folder.mkdir(exist_ok=True)
        idfile = folder / self.ID
        rid = idfile.read_text(encoding="utf-8").strip() if step and idfile.is_file() else ""
        if not rid:
            rid = uuid.uuid4().hex[:12]
            idfile.write_text(rid + "\n", encoding="utf-8")
        try:
            self._run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "dlcli", name=run.name,
                                   dir=str(run), config=config, id=rid, resume="allow")
        except Exception as e:  # noqa: BLE001 - wandb raises its own errors (no API key, no network)
            line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DlcliError(f"--log wandb: {line} (WANDB_MODE=offline logs without an account)") from None

    def log(self, record: dict[str, Any]) -> None:
        self._run.log(scalars(record), step=int(record.get("step", 0)))

    def close(self) -> None:
        self._run.finish()


# --log NAME -> the tracker
TRACKERS: dict[str, type[TensorBoard | Wandb]] = {"tensorboard": TensorBoard, "wandb": Wandb}

_chosen: tuple[str, ...] = ()


def parse(names: Iterable[str]) -> tuple[str, ...]:
    """`--log` values (repeatable or comma-separated; `none` for none) as tracker names, checked."""
    out: list[str] = []
    for part in (p.strip().lower() for n in names for p in n.split(",")):
        if part in ("", "none") or part in out:
            continue
        if part not in TRACKERS:
            raise ConfigError(f"--log: unknown tracker {part!r} (choose from {', '.join(TRACKERS)})")
        out.append(part)
    return tuple(out)


@contextlib.contextmanager
def use(names: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """Log the runs trained inside the block to these trackers too; their packages are checked first."""
    global _chosen
    chosen = parse(names)
    for n in chosen:
        TRACKERS[n].require()
    old, _chosen = _chosen, chosen
    try:
        yield chosen
    finally:
        _chosen = old


def chosen() -> tuple[str, ...]:
    return _chosen


class Tee:
    """A metrics log that hands each record to the trackers too. A tracker that fails while logging
    (a network error) is dropped with a warning; the run and metrics.jsonl go on."""

    def __init__(self, log: rundir.MetricsLog, trackers: list[Tracker]) -> None:
        self.path = log.path
        self._log = log
        self._trackers = trackers

    def log(self, **record: Any) -> None:
        self._log.log(**record)
        for t in list(self._trackers):
            try:
                t.log(record)
            except Exception as e:  # noqa: BLE001 - a tracker's failure must not stop training
                self._trackers.remove(t)
                warnings.warn(DlcliWarning(f"--log {getattr(t, 'name', t)}: {e}; no longer logging to it"),
                              stacklevel=2)

    def close(self) -> None:
        try:
            for t in self._trackers:
                with contextlib.suppress(Exception):
                    t.close()
        finally:
            self._log.close()


def logged(log: rundir.MetricsLog, run: Path, step: int = 0,
           trackers: list[Tracker] | None = None) -> rundir.MetricsLog | Tee:
    """`log` as it is when no tracker is chosen, else a `Tee` to the chosen trackers, opened for `run`
    (resumed at `step` when > 0); `trackers` replaces the chosen ones (tests)."""
    if trackers is None:
        trackers = [TRACKERS[n]() for n in _chosen]
    if not trackers:
        return log
    config = load_yaml(run / "config.yaml") if (run / "config.yaml").is_file() else {}
    opened: list[Tracker] = []
    try:
        for t in trackers:
            t.open(run, config, step)
            opened.append(t)
    except BaseException:
        for t in opened:
            with contextlib.suppress(Exception):
                t.close()
        log.close()
        raise
    return Tee(log, opened)
