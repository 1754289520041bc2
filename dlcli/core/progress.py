"""Progress events: how a library stage reports progress without printing.

A stage calls `on_progress(Tick(...))` now and then (per chunk or batch, never per
token); the CLI turns ticks into a rich progress bar (terminal), plain periodic
lines (pipe, log file) or nothing (`--quiet`), on stderr only.

`DLCLI_PROGRESS=bar|lines|off` overrides the choice made from the terminal, and
`DLCLI_PROGRESS_EVERY=SECONDS` the interval between plain lines (default 5).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODES = ("bar", "lines", "off")
EVERY = 5.0  # seconds between plain lines


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


def mode(tty: bool, quiet: bool = False) -> str:
    """How progress is shown: `off` with --quiet, else $DLCLI_PROGRESS if set, else a bar on a terminal
    and plain lines elsewhere. An unknown $DLCLI_PROGRESS counts as unset."""
    if quiet:
        return "off"
    env = os.environ.get("DLCLI_PROGRESS", "").strip().lower()
    if env in MODES:
        return env
    return "bar" if tty else "lines"


def every() -> float:
    """Seconds between plain progress lines: $DLCLI_PROGRESS_EVERY (>= 0), else 5."""
    try:
        s = float(os.environ.get("DLCLI_PROGRESS_EVERY", EVERY))
    except ValueError:
        return EVERY
    return s if s >= 0 else EVERY
