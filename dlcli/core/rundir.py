"""Run directories: the self-describing folder every training run writes.

    RUN/config.yaml       the resolved config
    RUN/meta.json         dlcli version, stage, inputs and their sizes, start time
    RUN/metrics.jsonl     one JSON object per logged step
    RUN/*.safetensors     weights (never pickle)
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dlcli import __version__
from dlcli.core.config import diff, from_dict, load_yaml, to_yaml
from dlcli.core.io import write_text_atomic
from dlcli.errors import ConfigError, InputError, OutputExistsError

T = TypeVar("T")


def create(path: str | os.PathLike[str], cfg: Any, stage: str, inputs: list[str] | None = None,
           force: bool = False, resume: bool = False, **extra: Any) -> Path:
    """Make (or, with `resume`, reopen) a run directory and record its config; `extra` goes into
    meta.json (e.g. the device and precision the run uses)."""
    run = Path(path)
    if run.exists() and not run.is_dir():
        raise OutputExistsError(f"{run}: exists and is not a directory")
    if run.is_dir() and any(run.iterdir()) and not (force or resume):
        raise OutputExistsError(f"{run}: run directory is not empty (use --resume to continue it, or --force)")
    if _fresh and not resume and not (run.is_dir() and any(run.iterdir())):
        _fresh[-1].append((run, run.is_dir()))
    run.mkdir(parents=True, exist_ok=True)
    if force and not resume:
        clear(run)
    write_text_atomic(run / "config.yaml", to_yaml(cfg), force=True)
    meta = {
        "dlcli": __version__,
        "stage": stage,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [{"path": p, "bytes": os.path.getsize(p) if os.path.isfile(p) else None} for p in inputs or []],
        **extra,
    }
    write_text_atomic(run / "meta.json", json.dumps(meta, indent=2) + "\n", force=True)
    return run


# Run directories made empty by `create` inside the `removed_on_failure` calls now running, with
# whether the folder was there (empty) before.
_fresh: list[list[tuple[Path, bool]]] = []
# A run holding one of these has saved work (a checkpoint or final weights): never removed.
KEEP = ("checkpoint.json", "checkpoint.safetensors", "model.safetensors", "generator.safetensors",
        "embeddings.safetensors")


def removed_on_failure(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate a stage's training function: if it fails before its first checkpoint, the run
    directory it created is removed again (emptied, if the folder was there and empty), so the same
    command can simply be run again. A directory that already held something is never touched."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        _fresh.append([])
        try:
            return fn(*args, **kwargs)
        except BaseException:
            for run, existed in _fresh[-1]:
                if run.is_dir() and not any((run / k).exists() for k in KEEP):
                    for p in list(run.iterdir()) if existed else []:
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                    if not existed:
                        shutil.rmtree(run, ignore_errors=True)
            raise
        finally:
            _fresh.pop()

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
    if needs and not (run / needs).is_file():
        raise InputError(f"{run}: nothing to resume (no {needs})")
    saved = read_config(run, type(cfg))
    for k in resumable:
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


RUN_FILES = ("config.yaml", "meta.json", "metrics.jsonl", "tokenizer.json", "*_tokenizer.json", "*.safetensors",
             "checkpoint.json", "heldout.tsv", "bleu.json", "*.png", "*.gif", "forecast.json", "predictions.csv")


def clear(run: Path) -> None:
    """Remove what an earlier run wrote here (--force), leaving other files alone."""
    for pattern in RUN_FILES:
        for p in run.glob(pattern):
            if p.is_file():
                p.unlink()


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
    from dlcli.core.io import atomic_write

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


def load_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """Load a safetensors file into `model`; a file that does not fit is one clear error."""
    try:
        model.load_state_dict(load_tensors(path))
    except RuntimeError as e:
        raise InputError(f"{path}: does not fit the model: {str(e).splitlines()[0]}") from None
