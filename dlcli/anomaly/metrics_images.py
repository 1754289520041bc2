"""The MVTec AD metrics of image anomaly detection, in numpy: image and pixel AUROC, PRO up to a false
positive rate, and F1-max.

- AUROC from ranks (the Mann-Whitney U statistic; ties get their mean rank), so it equals the area under
  the ROC curve with every distinct score a threshold.
- PRO (Bergmann et al., MVTec AD, IJCV 2021): at each threshold, the mean over all defect regions (8-connected
  components of every mask) of the share of the region above it, against the false positive rate over
  normal pixels; the area under that curve up to `max_fpr`, divided by `max_fpr` (1 = perfect). Computed
  exactly: pixels sorted by score, each anomalous pixel adds 1 / (regions x its region's size).
- F1-max: the best F1 over every threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties getting their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    edges = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])  # starts of runs of equal values, then the end
    mean_rank = (edges[:-1] + edges[1:] + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, np.diff(edges))
    return ranks


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when one class is missing."""
    y = np.asarray(labels, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = _ranks(s)[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    """The best F1 over every threshold `score >= t`; NaN without positives."""
    y = np.asarray(labels, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[ss[1:] != ss[:-1], True]  # the last pixel of each run of equal scores: a threshold
    tp = np.cumsum(ys)[last]
    predicted = (np.arange(1, len(ys) + 1))[last]
    f1 = 2 * tp / (predicted + y.sum())
    return float(f1.max())


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask: (labels 1..n, 0 outside; n). scipy's labelling when it is
    installed (not a dependency), else a flood fill."""
    mask = np.asarray(mask, bool)
    try:
        from scipy import ndimage
    except ImportError:
        return _flood_fill(mask)
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), int))
    return lab.astype(np.int32), int(n)


def _flood_fill(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """label_regions without scipy: each unlabelled mask pixel starts a region grown over its 8 neighbours."""
    out = np.zeros(mask.shape, np.int32)
    h, w = mask.shape
    n = 0
    for start in zip(*np.nonzero(mask)):
        if out[start]:
            continue
        n += 1
        out[start] = n
        stack = [start]
        while stack:
            i, j = stack.pop()
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if 0 <= a < h and 0 <= b < w and mask[a, b] and not out[a, b]:
                        out[a, b] = n
                        stack.append((a, b))
    return out, n


def pro_curve(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, per-region overlap) at every distinct threshold, both rising from 0 to 1."""
    weights, scores = [], []
    n_regions = 0
    for m, a in zip(masks, maps):
        lab, n = label_regions(m)
        sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
        w = np.where(lab > 0, 1.0 / sizes[lab], -1.0)  # -1 marks a normal pixel
        weights.append(w.ravel())
        scores.append(np.asarray(a, np.float64).ravel())
        n_regions += n
    w, s = np.concatenate(weights), np.concatenate(scores)
    normal = w < 0
    if n_regions == 0 or not normal.any():
        return np.array([0.0, 1.0]), np.array([np.nan, np.nan])
    order = np.argsort(-s, kind="mergesort")
    w, s, normal = w[order], s[order], normal[order]
    last = np.r_[s[1:] != s[:-1], True]
    fpr = np.cumsum(normal)[last] / normal.sum()
    pro = np.cumsum(np.where(normal, 0.0, w))[last] / n_regions
    return np.r_[0.0, fpr], np.r_[0.0, pro]


def pro_auc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, max_fpr], over max_fpr; NaN without defect regions."""
    fpr, pro = pro_curve(masks, maps)
    if np.isnan(pro).any():
        return float("nan")
    end = np.searchsorted(fpr, max_fpr, side="right")  # points with fpr <= max_fpr
    x, y = fpr[:end], pro[:end]
    if x[-1] < max_fpr and end < len(fpr):  # close the area at max_fpr, interpolating the next segment
        x0, x1, y0, y1 = fpr[end - 1], fpr[end], pro[end - 1], pro[end]
        x = np.r_[x, max_fpr]
        y = np.r_[y, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / max_fpr)


def report(kinds: Sequence[str], image_scores: np.ndarray, masks: Sequence[np.ndarray],
           maps: Sequence[np.ndarray], max_fpr: float = 0.3) -> dict:
    """The metrics overall and per defect kind (that kind's images with the good ones); `kinds[i]` is
    image i's folder under test/ ("good" = normal), `masks[i]` its boolean mask (all False when good).
    A metric that is undefined (one class missing) is None."""
    kinds = list(kinds)
    scores = np.asarray(image_scores, np.float64)

    def block(idx: list[int]) -> dict:
        y = np.array([kinds[i] != "good" for i in idx])
        s = scores[idx]
        px_y = np.concatenate([masks[i].ravel() for i in idx])
        px_s = np.concatenate([np.asarray(maps[i], np.float64).ravel() for i in idx])
        found = {"image_auroc": auroc(y, s), "image_f1_max": f1_max(y, s),
                 "pixel_auroc": auroc(px_y, px_s), "pixel_f1_max": f1_max(px_y, px_s),
                 "pro": pro_auc([masks[i] for i in idx], [maps[i] for i in idx], max_fpr)}
        # None where undefined (no anomalous or no normal image or pixel): JSON has no NaN
        return {"images": len(idx), "anomalous": int(y.sum())} | {k: None if np.isnan(v) else v
                                                                   for k, v in found.items()}

    out = {"max_fpr": max_fpr, "overall": block(list(range(len(kinds))))}
    good = [i for i, k in enumerate(kinds) if k == "good"]
    out["per_defect"] = {k: block(good + [i for i, kk in enumerate(kinds) if kk == k])
                         for k in sorted(set(kinds) - {"good"})}
    return out
