"""Progress events: how a library stage reports progress without printing.

A stage calls `on_progress(Tick(...))` now and then; the CLI turns ticks into
a rich progress bar (terminal), plain periodic lines (pipe, log file) or
nothing (`--quiet`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tick:
    desc: str
    done: float
    total: float | None = None
    unit: str = "B"  # "B" for bytes, "step", "token", ...
    metrics: dict[str, Any] = field(default_factory=dict)


OnProgress = Callable[[Tick], None]


def nothing(_: Tick) -> None:
    """The default progress handler: ignore."""
