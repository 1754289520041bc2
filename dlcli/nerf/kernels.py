"""The multiresolution hash encoding as compiled CPU kernels (numba), forward and backward.

The same computation as `HashEncoding.forward_reference` (the readable PyTorch version, which the tests
compare against), fused: per point and level, the cell, its 8 corners' table rows and the trilinear weights
are computed in registers and the features accumulated directly, instead of materialising (B, L, 8) index and
weight tensors. The backward pass runs one thread per level (`prange` over levels): levels own disjoint table
rows, so threads never write the same row and no atomics are needed; the result is deterministic.
Compiled with `cache=True` (the first call in a fresh environment compiles for some seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always")
def _cell(x: float, res: int) -> tuple[int, float]:
    """Grid cell and position inside it of a coordinate in [0, 1] on a grid of `res` cells."""
    p = np.float32(min(max(x, np.float32(0.0)), np.float32(1.0))) * np.float32(res)  # float32, as in PyTorch
    c = min(int(np.floor(p)), res - 1)
    return c, p - np.float32(c)


@njit(inline="always")
def _corner(cx: int, cy: int, cz: int, fx: float, fy: float, fz: float, corner: int, m0: int, m1: int, m2: int,
            mask: int) -> tuple[int, float]:
    """Table row (within its level) and trilinear weight of one of a cell's 8 corners."""
    bx, by, bz = corner >> 2 & 1, corner >> 1 & 1, corner & 1
    row = ((((cx + bx) * m0) & mask) ^ (((cy + by) * m1) & mask) ^ (((cz + bz) * m2) & mask))
    one = np.float32(1.0)
    return row, (fx if bx else one - fx) * (fy if by else one - fy) * (fz if bz else one - fz)


@njit(parallel=True, cache=True, fastmath=False)
def hash_forward(x: np.ndarray, res: np.ndarray, mult: np.ndarray, table: np.ndarray, table_size: int
                 ) -> np.ndarray:
    """Points x (B, 3) in [0, 1] -> features (B, L * F); table (L * T, F)."""
    n, levels, nf = x.shape[0], res.shape[0], table.shape[1]
    mask = table_size - 1
    out = np.zeros((n, levels * nf), dtype=table.dtype)
    for i in prange(n):
        for lvl in range(levels):
            r = res[lvl]
            cx, fx = _cell(x[i, 0], r)
            cy, fy = _cell(x[i, 1], r)
            cz, fz = _cell(x[i, 2], r)
            base = lvl * table_size
            for corner in range(8):
                row, w = _corner(cx, cy, cz, fx, fy, fz, corner, mult[lvl, 0], mult[lvl, 1], mult[lvl, 2], mask)
                for f in range(nf):
                    out[i, lvl * nf + f] += w * table[base + row, f]
    return out


@njit(parallel=True, cache=True, fastmath=False)
def hash_backward(x: np.ndarray, res: np.ndarray, mult: np.ndarray, grad: np.ndarray, table_size: int, nf: int
                  ) -> np.ndarray:
    """d loss / d table (L * T, F) from d loss / d features (B, L * F): each corner row gets w * grad."""
    n, levels = x.shape[0], res.shape[0]
    mask = table_size - 1
    out = np.zeros((levels * table_size, nf), dtype=grad.dtype)
    for lvl in prange(levels):
        r = res[lvl]
        base = lvl * table_size
        for i in range(n):
            cx, fx = _cell(x[i, 0], r)
            cy, fy = _cell(x[i, 1], r)
            cz, fz = _cell(x[i, 2], r)
            for corner in range(8):
                row, w = _corner(cx, cy, cz, fx, fy, fz, corner, mult[lvl, 0], mult[lvl, 1], mult[lvl, 2], mask)
                for f in range(nf):
                    out[base + row, f] += w * grad[i, lvl * nf + f]
    return out
