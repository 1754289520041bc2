"""One series' detection as a PNG: the values with the flagged rows and the labelled windows above, the
anomaly score with its threshold below; the probationary period shaded grey."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.anomaly.series import Series


def plot_series(path: str | Path, series: Series, scores: np.ndarray, flags: np.ndarray, probation: int,
                threshold: float, windows: np.ndarray | None = None, title: str = "") -> None:
    """Write the plot atomically (`windows`: (k, 2) first and last rows, or None)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlcli.core.io import atomic_write

    t = series.timestamps.astype("datetime64[s]").astype(object) if len(series.timestamps) else []
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), dpi=90, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    top.plot(t, series.values, lw=0.6, color="tab:blue", label="value")
    hit = np.flatnonzero(flags)
    if len(hit):
        top.scatter([t[i] for i in hit], series.values[hit], s=14, color="tab:red", zorder=3,
                    label=f"flagged ({len(hit)})")
    for k, (a, b) in enumerate(np.asarray(windows if windows is not None else []).reshape(-1, 2)):
        for ax in (top, bottom):
            ax.axvspan(t[a], t[b], color="tab:orange", alpha=0.2, lw=0, label="labelled window" if k == 0
                       and ax is top else None)
    if probation:
        for ax in (top, bottom):
            ax.axvspan(t[0], t[probation - 1], color="0.85", lw=0, label="probation" if ax is top else None)
    bottom.plot(t, scores, lw=0.6, color="tab:purple")
    bottom.axhline(threshold, color="tab:red", lw=0.8, ls="--")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("anomaly score")
    top.set_ylabel("value")
    top.legend(loc="upper left", fontsize=8, ncols=4)
    if title:
        top.set_title(title, fontsize=10)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
