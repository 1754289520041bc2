"""A 2-D picture of chosen word vectors: PCA (always), t-SNE (with scikit-learn)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core.io import atomic_write
from dlcli.embed.query import UnknownWord, Vectors
from dlcli.errors import ConfigError, InputError

METHODS = ("pca", "tsne")


def pca_2d(X: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components (centre, then SVD)."""
    Xc = X - X.mean(axis=0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ Vt[:2].T


def tsne_2d(X: np.ndarray, seed: int = 0) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ConfigError("method tsne needs scikit-learn (pip install scikit-learn); or use --method pca") from None
    perplexity = float(min(30, max(2, (len(X) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)


def plot(v: Vectors, words: list[str], output: str | Path, method: str = "pca", top: int = 0, seed: int = 0,
         force: bool = False, title: str = "") -> dict[str, Any]:
    """Project `words` (and/or the `top` most frequent) to 2-D and save a labelled scatter plot as PNG."""
    if method not in METHODS:
        raise ConfigError(f"method: '{method}' is not one of {', '.join(METHODS)}")
    chosen: list[int] = []
    unknown: list[str] = []
    for w in words:
        try:
            chosen.append(v.id(w))
        except UnknownWord:
            unknown.append(w)
    chosen += [i for i in range(min(top, len(v.words))) if i not in chosen]
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) < 3:
        raise InputError(f"need at least 3 known words to plot, got {len(chosen)}"
                         + (f" ({', '.join(unknown)} not in the vocabulary)" if unknown else "")
                         + "; name more words or use --top N")
    X = v.W[chosen].astype(np.float64)
    xy = pca_2d(X) if method == "pca" else tsne_2d(X, seed)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter(xy[:, 0], xy[:, 1], s=12)
    for (x, y), i in zip(xy, chosen):
        ax.annotate(v.words[i], (x, y), textcoords="offset points", xytext=(3, 3), fontsize=9)
    ax.set_title(title or f"{method.upper()} of {len(chosen)} word vectors")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_write(output, force) as f:
        f.write(buf.getvalue())
    return {"output": str(output), "method": method, "words": [v.words[i] for i in chosen], "unknown": unknown}
