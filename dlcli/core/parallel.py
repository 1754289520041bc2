"""Parallel work over inputs, in worker processes, with bounded memory.

- `run_jobs` over `file_ranges`: each worker reads its own line-aligned byte
  range of a file (no data passes between processes); used for files.
- `imap_ordered`: chunks read here and mapped in order by workers; used for
  stdin, where the input can only be read once and in order.

Workers die with this process, even by kill -9 (Linux: PR_SET_PDEATHSIG; elsewhere they check
their parent between chunks), and `parts_dir` removes the part files a killed run left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import re
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from dlcli.core.io import line_ranges, owner_tag, remove_stale

A = TypeVar("A")
R = TypeVar("R")

PARTS_PREFIX = ".dlcli-parts-"
_PARTS_NAME = re.compile(re.escape(PARTS_PREFIX) + r"(\d+)-([0-9a-f]{8})-")  # the pid and host of owner_tag
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def imap_ordered(fn: Callable[[A], R], items: Iterable[A], workers: int = 0,
                 initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> Iterator[R]:
    """`map(fn, items)` across `workers` processes (0 = one per core).

    At most 2 x workers items are in flight, so a large input is never read
    ahead into memory. `fn` must be a picklable top-level function;
    `initializer(*initargs)` sets up per-process state (it also runs here when
    there is a single worker).
    """
    n = workers or default_workers()
    if n <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    pool = mp.get_context(method).Pool(n, _pool_init, (None, initializer, initargs, os.getpid()))
    try:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(_call, (fn, item)))
            if len(pending) >= 2 * n:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()


_PROGRESS: Any = None  # a shared byte counter, set in each worker
_PARENT: int | None = None  # in a worker: the process that started it


def parts_dir(near: str | os.PathLike[str] | None = None) -> str:
    """A new folder for part files in `near` (None: the system temp folder), named for this process; the
    ones of processes that died without cleaning up (kill -9) are removed first. The caller removes it."""
    folder = os.fspath(near) if near is not None else tempfile.gettempdir()
    remove_stale(folder, _PARTS_NAME)
    return tempfile.mkdtemp(prefix=f"{PARTS_PREFIX}{owner_tag()}-", dir=folder)


def _die_with_parent(parent: int) -> None:
    """Have the OS kill this worker when `parent` dies (Linux); elsewhere `_check_parent` between chunks."""
    global _PARENT
    _PARENT = parent
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    _check_parent()  # the parent may have died before prctl took effect


def _check_parent() -> None:
    if _PARENT is not None and os.getppid() != _PARENT:
        os._exit(1)  # orphaned: nobody will read what this worker makes


def _call(fn: Callable[[A], R], item: A) -> R:
    _check_parent()
    return fn(item)


class _LocalCounter:
    """The counter used when jobs run in this process: reports at once."""

    def __init__(self, on_bytes: Callable[[int], None] | None) -> None:
        self.value = 0
        self.on_bytes = on_bytes

    def get_lock(self) -> Any:
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        if self.on_bytes is not None:
            self.on_bytes(self.value)


def _init_worker(counter: Any, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    global _PROGRESS
    _PROGRESS = counter
    if initializer is not None:
        initializer(*initargs)


def _pool_init(counter: Any, initializer: Callable[..., None] | None, initargs: tuple, parent: int) -> None:
    # Ctrl-C reaches the whole process group: the main process handles it
    # (stops the pool, removes partial output); workers stay quiet.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    _init_worker(counter, initializer, initargs)


def report_bytes(n: int) -> None:
    """Called by a job as it gets through its input (for progress); a worker whose parent died stops here."""
    _check_parent()
    if _PROGRESS is not None:
        with _PROGRESS.get_lock():
            _PROGRESS.value += n


@dataclass(frozen=True)
class Range:
    """Bytes [start, stop) of a file, starting on a line boundary; `index`
    orders the ranges of all inputs."""

    path: str
    start: int
    stop: int
    index: int


def file_ranges(paths: list[str], workers: int = 0, min_split: int = 4 << 20) -> list[Range]:
    """Split files into line-aligned ranges, about one per worker for big files."""
    n = workers or default_workers()
    out: list[Range] = []
    for p in paths:
        size = os.path.getsize(p)
        parts = line_ranges(p, n) if size >= min_split and n > 1 else [(0, size)]
        out += [Range(p, a, b, len(out) + k) for k, (a, b) in enumerate(parts)]
    return out


def run_jobs(fn: Callable[[A], R], jobs: list[A], workers: int = 0,
             on_bytes: Callable[[int], None] | None = None, initializer: Callable[..., None] | None = None,
             initargs: tuple = ()) -> list[R]:
    """Run `fn(job)` for each job in worker processes; results in job order.

    Jobs call `report_bytes` as they go; `on_bytes(total)` is called in this
    process a few times a second with the running total, and once at the end.
    """
    global _PROGRESS
    n = min(workers or default_workers(), len(jobs))
    if n <= 1:
        _init_worker(_LocalCounter(on_bytes), initializer, initargs)
        try:
            return [fn(job) for job in jobs]
        finally:
            _PROGRESS = None
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    counter = ctx.Value("q", 0)
    pool = ctx.Pool(n, _pool_init, (counter, initializer, initargs, os.getpid()))
    try:
        pending = [pool.apply_async(_call, (fn, job)) for job in jobs]
        for p in pending:
            while not p.ready():
                p.wait(0.2)
                if on_bytes:
                    on_bytes(counter.value)
        results = [p.get() for p in pending]
        if on_bytes:
            on_bytes(counter.value)  # the final count: the last poll may have come before the last report
        pool.close()
        return results
    finally:
        pool.terminate()
        pool.join()
