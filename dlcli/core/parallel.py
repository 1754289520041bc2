"""Order-preserving parallel map over a stream, with bounded memory."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

A = TypeVar("A")
R = TypeVar("R")


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
    pool = mp.get_context(method).Pool(n, initializer, initargs)
    try:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * n:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()
