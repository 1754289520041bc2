"""Run directories: the self-describing folder every training run writes.

    RUN/config.yaml       the resolved config
    RUN/meta.json         dlcli version, stage, inputs and their sizes, start time
    RUN/metrics.jsonl     one JSON object per logged step
    RUN/*.safetensors     weights (never pickle)
    RUN/.dlcli.lock       locked (flock) by the process training in RUN; holds its pid
    RUN/.dlcli-replaced/  what a `--force` run replaces, until that run has saved work

A run directory is made by `create`, inside a training function decorated with `removed_on_failure`:
it is locked until that function returns (the OS releases the lock of a crashed process), and with
`--force` the old run is moved aside, deleted once the new run holds a checkpoint or its weights, and
put back if the new run fails before (or, after a crash, by the next `create`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlcli import __version__
from dlcli.core.config import diff, from_dict, load_yaml, to_yaml
from dlcli.core.io import atomic_write, write_text_atomic
from dlcli.core.runguard import OURS, has_saved_work, move_aside, recover, saved, unlock
from dlcli.core.runguard import lock as _take
from dlcli.errors import ConfigError, InputError, OutputExistsError

T = TypeVar("T")



def check_output(path: str | os.PathLike[str], stage: str, force: bool = False, resume: bool = False) -> None:
    """Refuse an output this run may not write: a file; a folder that is not empty, without --force or
    --resume; with --force, anything but a run directory of `stage` (a user's folder, another stage's
    run). Stages may call it early, before slow work; `create` calls it again."""
    run = Path(path)
    if run.exists() and not run.is_dir():
        raise OutputExistsError(f"{run}: exists and is not a directory")
    if resume or not _holds_files(run):
        return
    if not force:
        raise OutputExistsError(f"{run}: run directory is not empty (use --resume to continue it, or --force)")
    if _stage_of(run) != stage:
        raise OutputExistsError(f"{run} is not a dlcli {stage} run directory; refusing to replace it with --force")


def _holds_files(run: Path) -> bool:
    return run.is_dir() and any(p.name not in OURS for p in run.iterdir())


def _stage_of(run: Path) -> str | None:
    try:
        meta = json.loads((run / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta.get("stage") if isinstance(meta, dict) else None


def create(path: str | os.PathLike[str], cfg: Any, stage: str, inputs: list[str] | None = None,
           force: bool = False, resume: bool = False, **extra: Any) -> Path:
    """Make (or, with `resume`, reopen) a run directory, lock it and record its config; `extra` goes
    into meta.json (e.g. the device and precision the run uses). Call it once the inputs are checked:
    with `force` the run directory of the same stage found there is moved aside (see the module's doc)."""
    run = Path(path)
    frame = _frames[-1] if _frames else None
    try:
        if run.is_dir() and any((run / name).exists() for name in OURS):
            lock(run)  # a run directory in use: say so before anything else
            recover(run)  # a replacement a crash interrupted
        check_output(run, stage, force, resume)
        if frame is not None and not resume and not _holds_files(run):
            frame.fresh.append((run, run.is_dir()))
        run.mkdir(parents=True, exist_ok=True)
        lock(run)
        recover(run)
        check_output(run, stage, force, resume)  # as it is now that no other process can change it
        if force and not resume and _holds_files(run):
            move_aside(run)
            if frame is None:  # nobody would see the new run fail; its stage has checked its inputs
                saved(run)
            else:
                frame.replaced.append(run)
        write_text_atomic(run / "config.yaml", to_yaml(cfg), force=True)
        meta = {
            "dlcli": __version__,
            "stage": stage,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "inputs": [{"path": p, "bytes": os.path.getsize(p) if os.path.isfile(p) else None}
                       for p in inputs or []],
            **extra,
        }
        write_text_atomic(run / "meta.json", json.dumps(meta, indent=2) + "\n", force=True)
    finally:
        if frame is None:  # no training function to hold the lock for
            unlock(run)
    return run


def lock(run: str | os.PathLike[str]) -> None:
    """Lock RUN (runguard.lock) until the `removed_on_failure` function running now returns."""
    key = _take(run)
    if _frames:
        _frames[-1].locks.append(key)


def _main_process() -> bool:
    """Not a second process of a torchrun group (they share the main one's run directory)."""
    return os.environ.get("RANK", "0") in ("", "0")



@dataclass
class _Frame:
    """What `create` did inside one `removed_on_failure` call."""

    fresh: list[tuple[Path, bool]] = field(default_factory=list)  # made empty, and whether it existed
    replaced: list[Path] = field(default_factory=list)  # with the old run aside
    locks: list[Path] = field(default_factory=list)


_frames: list[_Frame] = []


def removed_on_failure(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate a stage's training function. The run directories `create` locks are unlocked when it
    returns. If it fails before its first checkpoint (or final weights), a run directory it created is
    removed again (emptied, if the folder was there and empty), so the same command can simply be run
    again, and a run it replaced with --force is put back. A directory that held something and was not
    replaced is never touched."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        frame = _Frame()
        _frames.append(frame)
        try:
            result = fn(*args, **kwargs)
            for run in frame.replaced:
                saved(run)
            return result
        except BaseException:
            for run in frame.replaced:
                with contextlib.suppress(OSError):
                    recover(run)
            for run, existed in frame.fresh:
                if run.is_dir() and not has_saved_work(run):
                    for p in list(run.iterdir()) if existed else []:
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                    if not existed:
                        shutil.rmtree(run, ignore_errors=True)
            raise
        finally:
            _frames.pop()
            for key in frame.locks:
                unlock(key)

    return wrapper


def update_meta(path: str | os.PathLike[str], **fields: Any) -> None:
    """Add or replace top-level fields of RUN/meta.json."""
    meta = read_meta(path)
    meta.update(fields)
    write_text_atomic(Path(path) / "meta.json", json.dumps(meta, indent=2) + "\n", force=True)


def check_resume(run: Path, cfg: Any, resumable: tuple[str, ...], needs: str = "") -> None:
    """Refuse to resume with a config that differs from the run's, except the `resumable` keys;
    `needs` names a file the run must have (e.g. its checkpoint)."""
    if not (run / "config.yaml").is_file():
        raise InputError(f"{run}: nothing to resume (no config.yaml)")
    if _frames and _main_process():
        lock(run)  # before its checkpoint is read: another process may be training in it
        recover(run)
    if needs and not (run / needs).is_file():
        raise InputError(f"{run}: nothing to resume (no {needs})")
    saved = read_config(run, type(cfg))
    for k in resumable:
        if hasattr(cfg, k):
            setattr(saved, k, getattr(cfg, k))
    changes = diff(saved, cfg)
    if changes:
        raise ConfigError(f"{run}: config differs from the run being resumed: {'; '.join(changes)} "
                          "(budgets, intervals and device may change; start a new run for the rest)")


def read_config(run: str | os.PathLike[str], cls: type[T]) -> T:
    """A run's config.yaml as `cls`; a missing or bad file is one input error naming it."""
    p = Path(run) / "config.yaml"
    if not p.is_file():
        raise InputError(f"{run}: not a run directory (no config.yaml)")
    try:
        return from_dict(cls, load_yaml(p))
    except ConfigError as e:
        raise InputError(f"{p}: {e}") from None


def open_run(run: str | os.PathLike[str], stages: str | tuple[str, ...], cls: type[T], what: str,
             needs: tuple[str, ...] = ()) -> tuple[T, dict[str, Any]]:
    """The one place a finished run is read: check it is a run directory of one of `stages` (`what`
    names them in the error: "a NeRF run") holding the files `needs`, and return its config (as `cls`)
    and meta.json."""
    path = Path(run)
    if not path.is_dir():
        raise InputError(f"{path}: no such run directory")
    meta = read_meta(path)
    stages = (stages,) if isinstance(stages, str) else stages
    if meta.get("stage") not in stages:
        raise InputError(f"{path}: not {what} (its stage is {meta.get('stage')!r})")
    for name in needs:
        if not (path / name).is_file():
            raise InputError(f"{path}: missing {name} (was the run finished? a checkpoint alone is not enough)")
    return read_config(path, cls), meta


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path) / "meta.json"
    if not p.is_file():
        raise InputError(f"{path}: not a dlcli run directory (no meta.json)")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: malformed JSON: {e}") from None


class MetricsLog:
    """Appends one JSON line per record to RUN/metrics.jsonl, flushed at once."""

    def __init__(self, run: str | os.PathLike[str]) -> None:
        self.path = Path(run) / "metrics.jsonl"
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def log(self, **record: Any) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._f.write(json.dumps(clean) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def metrics_size(run: str | os.PathLike[str]) -> int:
    """The length in bytes of RUN/metrics.jsonl (0 when there is none): a checkpoint records it."""
    p = Path(run) / "metrics.jsonl"
    return p.stat().st_size if p.is_file() else 0


def truncate_metrics(run: str | os.PathLike[str], size: int) -> bool:
    """Drop the records written after a checkpoint: cut RUN/metrics.jsonl back to the `size` it had then
    (atomically: a copy of the first `size` bytes is renamed over it). False, and the file untouched,
    when `size` does not end a line of it (the file was rewritten since)."""
    p = Path(run) / "metrics.jsonl"
    if not p.is_file() or p.stat().st_size <= size:
        return p.is_file() and p.stat().st_size == size
    with open(p, "rb") as f:
        head = f.read(size)
    if size and not head.endswith(b"\n"):
        return False
    with atomic_write(p, force=True) as out:
        out.write(head)
    return True


def read_metrics(run: str | os.PathLike[str]) -> list[dict[str, Any]]:
    p = Path(run) / "metrics.jsonl"
    if not p.is_file():
        return []
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{p}: line {i} is not valid JSON") from None
    return out


def save_tensors(tensors: dict[str, Any], path: str | os.PathLike[str], metadata: dict[str, str] | None = None
                 ) -> None:
    """Save tensors as safetensors, atomically."""
    from safetensors.torch import save

    seen: set[tuple[int, int]] = set()
    out = {}
    for k, v in tensors.items():
        v = v.detach()
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        out[k] = v.clone().contiguous().cpu() if key in seen else v.contiguous().cpu()  # tied weights: a copy each
        seen.add(key)
    data = save(out, metadata=metadata)
    with atomic_write(path, force=True) as f:
        f.write(data)


def load_tensors(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Any]:
    """Load a safetensors file; a missing or damaged file is one clear error."""
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such weights file")
    try:
        return load_file(str(p), device=device)
    except Exception as e:  # safetensors raises its own error types
        raise InputError(f"{p}: damaged or not a safetensors file ({str(e).splitlines()[0]})") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's header (without torch or reading the tensors); a
    file that is not safetensors is one clear error."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= min(p.stat().st_size - 8, 100 << 20):
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise TypeError("bad metadata")
    except FileNotFoundError:
        raise InputError(f"{p}: no such weights file") from None
    except (ValueError, TypeError, AttributeError):
        raise InputError(f"{p}: damaged or not a safetensors file (unreadable header)") from None
    return meta


def load_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Load a safetensors file into `model`; a file that does not fit is one clear error."""
    try:
        model.load_state_dict(load_tensors(path))
    except RuntimeError as e:
        raise InputError(f"{path}: does not fit the model: {str(e).splitlines()[0]}") from None
