"""Training curves as PNG (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def plot_curves(records: list[dict[str, Any]], path: str | Path, series: dict[str, str], ylabel: str,
                title: str = "", log_y: bool = False, xlabel: str = "step") -> bool:
    """Plot `records[key]` against `records['step']` for each key in `series`
    (key -> legend label) and save a PNG atomically. Without a point to draw nothing is written (an empty
    plot says nothing); returns whether the file was written."""
    lines = {}
    for key, label in series.items():
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None and math.isfinite(r[key])]
        if pts:
            lines[label] = pts
    if not lines:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlcli.core.io import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, pts in lines.items():
        xs, ys = zip(*pts)
        ax.plot(xs, ys, label=label, marker="o" if len(pts) < 30 else None, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, force=True) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return True
