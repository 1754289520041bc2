"""Guarding a run directory: the lock only one process holds, and the old run a `--force` run
replaces, kept aside until the new run has saved work (then dropped, all but the user's own files)
or put back if it fails (or, after a crash, by the next `rundir.create`).

    RUN/.dlcli.lock       locked (flock) by the process training in RUN; holds its pid
    RUN/.dlcli-replaced/  what a `--force` run replaces, until that run has saved work
"""

from __future__ import annotations

import fcntl
import fnmatch
import os
import shutil
from pathlib import Path

from dlcli.errors import OutputExistsError

LOCK = ".dlcli.lock"
ASIDE = ".dlcli-replaced"  # the replaced run's files while the new run has saved nothing
MOVING = ".dlcli-replacing"  # the same while they are being moved (a crash then moves them back)
OURS = (LOCK, ASIDE, MOVING)
# A run holding one of these has saved work (a checkpoint or final weights): never removed.
KEEP = ("checkpoint.json", "checkpoint.safetensors", "model.safetensors", "generator.safetensors",
        "embeddings.safetensors")

# ------------------------------------------------------------------ the lock

_held: dict[Path, int] = {}  # locked run directories (resolved) -> the lock file's descriptor


def lock(run: str | os.PathLike[str]) -> Path:
    """Take RUN/.dlcli.lock (flock, exclusive) for this process, or fail at once naming the pid that
    holds it; returns the key `unlock` takes. Held until `unlock` (or the process ends)."""
    run = Path(run)
    key = run.resolve()
    if key in _held:
        return key
    fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.read(fd, 32).decode("ascii", "replace").strip()
        os.close(fd)
        raise OutputExistsError(f"{run} is in use by pid {pid}" if pid.isdigit() else
                                f"{run} is in use by another process") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd
    return key


def unlock(run: str | os.PathLike[str]) -> None:
    fd = _held.pop(Path(run).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


# ------------------------------------------------------------------ --force: the old run moved aside

def move_aside(run: Path) -> None:
    moving = run / MOVING
    moving.mkdir(exist_ok=True)
    for p in list(run.iterdir()):
        if p.name not in OURS:
            os.replace(p, moving / p.name)
    os.replace(moving, run / ASIDE)


def has_saved_work(run: Path) -> bool:
    return any((run / k).exists() for k in KEEP)


def put_back(run: Path, aside: Path) -> None:
    """The replaced run back in place of what the failed new one wrote."""
    for p in list(run.iterdir()):
        if p.name not in OURS:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for p in list(aside.iterdir()):
        os.replace(p, run / p.name)
    aside.rmdir()


def recover(run: Path) -> None:
    """Finish a replacement a crash interrupted (the caller holds the lock): the old run goes back
    unless the new one has saved work, in which case it goes."""
    moving, aside = run / MOVING, run / ASIDE
    if moving.is_dir():  # stopped while moving: nothing new was written yet
        for p in list(moving.iterdir()):
            os.replace(p, run / p.name)
        moving.rmdir()
    if aside.is_dir():
        if has_saved_work(run):
            shutil.rmtree(aside)
        else:
            put_back(run, aside)


# What dlcli writes into a run directory; anything else there is the user's, kept across --force.
WRITTEN = ("config.yaml", "meta.json", "metrics.jsonl", "*.safetensors", "checkpoint.json", "tokenizer.json",
           "*_tokenizer.json", "heldout.tsv", "*.json", "predictions.csv", "vectors.vec", "vectors.bin", "*.png",
           "*.gif", "*.mp4", "snapshots", "val", "tensorboard", "wandb")


def saved(run: str | os.PathLike[str]) -> None:
    """The run now holds saved work (its first checkpoint): the run it replaced can go, all but the
    files dlcli did not write (a user's notes), which come back."""
    run = Path(run)
    aside = run / ASIDE
    if aside.is_dir():
        for p in list(aside.iterdir()):
            if not any(fnmatch.fnmatch(p.name, w) for w in WRITTEN) and not (run / p.name).exists():
                os.replace(p, run / p.name)
        shutil.rmtree(aside, ignore_errors=True)
