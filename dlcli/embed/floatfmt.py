"""Shortest round-trip decimal text of float32 matrices, compiled with numba (for `.vec` files).

numpy's `astype(str)` (Dragon4) costs about 0.7 us a value: 0.5 s for a
7,000 x 100 matrix, more than a tenth of a small training run. This does
the same job in about 0.15 us a value, with the same text for |x| < 1e6
(beyond, where a short decimal lies exactly on a rounding tie, numpy writes
it and this writes a longer exact form):

* for p = 1, 2, ... 9 significant digits, the p-digit decimal nearest the
  value (and its two neighbours, in case the scaling in doubles rounded the
  wrong way) is accepted when it lies strictly inside the interval of reals
  that round to this float32, computed exactly in doubles. Strictly inside
  means every reader gets the float32 back bit for bit: one that parses to
  float32 directly and one that parses to a double first (numpy, gensim);
* the digits are laid out as numpy prints a float32: positional for
  1e-4 <= |x| < 1e6, else `d.ddde+XX`, `-0.0` for negative zero.

Values it does not handle (inf, nan, 0 < |x| < 1e-13 or |x| >= 1e22) make
`format_rows` report failure; callers then use numpy for the whole matrix.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

MAX_CHARS = 20  # the longest text of one value: '-0.000123456789', '-123456.789', '-1.23456789e-05'
_POW10 = np.array([10.0**k for k in range(23)])  # exact in doubles up to 1e22


@njit(inline="always")
def _bounds(a: float) -> tuple[float, float]:
    """The open interval (lo, hi) of reals that round to the positive float32 a (exact in doubles)."""
    mant, ex = math.frexp(a)  # a = mant * 2**ex, 0.5 <= mant < 1
    ulp = math.ldexp(1.0, max(ex - 24, -149))
    below = ulp / 4 if (mant == 0.5 and ex > -125) else ulp / 2  # a power of two: the gap below is half
    return a - below, a + ulp / 2


@njit(inline="always")
def _digits_inside(a: float, lo: float, hi: float, e10: int, p: int) -> tuple[np.int64, np.int64]:
    """(digits, exponent) of a p-significant-digit decimal strictly inside (lo, hi), the one nearest a;
    (0, 0) if there is none. Needs 1e-13 <= a < 1e22 (then 10**s is exact in doubles)."""
    s = p - 1 - e10  # a * 10**s has p digits before the point
    t = a * _POW10[s] if s >= 0 else a / _POW10[-s]
    d = np.int64(np.rint(t))
    first = d - 1 if t < d else d + 1  # the nearer neighbour first, in case t was rounded the wrong way
    for c in (d, first, 2 * d - first):
        if c > 0:
            y = c / _POW10[s] if s >= 0 else c * _POW10[-s]
            if lo < y < hi:
                return np.int64(c), np.int64(-s)
    return np.int64(0), np.int64(0)


@njit(inline="always")
def _shortest(a: float) -> tuple[np.int64, np.int64]:
    """(digits, exponent): the shortest decimal digits * 10**exponent inside a's float32 interval.

    A p-digit decimal inside is also a (p+1)-digit one, so the shortest p is found by bisection over
    1..9 (9 digits always suffice for a float32). Needs 1e-13 <= a < 1e22; returns (0, 0) if the
    9-digit check fails all the same (it should not).
    """
    lo, hi = _bounds(a)
    e10 = math.floor(math.log10(a))
    if a < 10.0**e10:  # log10 rounded across a power of ten
        e10 -= 1
    elif a >= 10.0 ** (e10 + 1):
        e10 += 1
    best_d, best_e = _digits_inside(a, lo, hi, e10, 9)
    if best_d == 0:
        return best_d, best_e
    first, last = 1, 9  # the shortest length is in first..last
    while first < last:
        mid = (first + last) // 2
        d, e = _digits_inside(a, lo, hi, e10, mid)
        if d > 0:
            best_d, best_e, last = d, e, mid
        else:
            first = mid + 1
    return best_d, best_e


@njit(inline="always")
def _put_int(buf: np.ndarray, pos: int, v: np.int64, width: int) -> int:
    """Write v's decimal digits, zero padded to `width`, at buf[pos]; returns the new position."""
    n = 1
    x = v
    while x >= 10:
        x //= 10
        n += 1
    n = max(n, width)
    for k in range(n - 1, -1, -1):
        buf[pos + k] = 48 + v % 10
        v //= 10
    return pos + n


@njit(inline="always")
def _put_value(buf: np.ndarray, pos: int, x: np.float32, digits: np.ndarray) -> int:
    """Write one float32 as numpy prints it; returns the new position, or -1 if it cannot.

    digits: scratch space for 9 digit characters.
    """
    a = abs(float(x))
    if math.isnan(a) or a >= 1e22 or 0.0 < a < 1e-13:  # nan, inf, or 10**s would not be exact in doubles
        return -1
    if x < 0 or (a == 0.0 and math.copysign(1.0, float(x)) < 0):
        buf[pos] = 45  # '-'
        pos += 1
    if a == 0.0:
        buf[pos], buf[pos + 1], buf[pos + 2] = 48, 46, 48  # '0.0'
        return pos + 3
    d, e = _shortest(a)
    if d == 0:
        return -1
    while d % 10 == 0:
        d //= 10
        e += 1
    n = 1  # digits of d
    x10 = d
    while x10 >= 10:
        x10 //= 10
        n += 1
    top = e + n - 1  # the exponent of the first digit
    for k in range(n - 1, -1, -1):
        digits[k] = 48 + d % 10
        d //= 10
    if 1e-4 <= a < 1e6:
        if top >= 0:
            for k in range(top + 1):
                buf[pos] = digits[k] if k < n else 48
                pos += 1
            buf[pos] = 46  # '.'
            pos += 1
            if n <= top + 1:
                buf[pos] = 48
                pos += 1
            for k in range(top + 1, n):
                buf[pos] = digits[k]
                pos += 1
        else:
            buf[pos], buf[pos + 1] = 48, 46  # '0.'
            pos += 2
            for _ in range(-top - 1):
                buf[pos] = 48
                pos += 1
            for k in range(n):
                buf[pos] = digits[k]
                pos += 1
        return pos
    buf[pos] = digits[0]
    pos += 1
    if n > 1:
        buf[pos] = 46
        pos += 1
        for k in range(1, n):
            buf[pos] = digits[k]
            pos += 1
    buf[pos] = 101  # 'e'
    buf[pos + 1] = 45 if top < 0 else 43
    return _put_int(buf, pos + 2, abs(top), 2)


@njit(cache=True)
def format_rows(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The text of each row of a float32 matrix: values separated by spaces, each row ending in a newline.

    Returns (buf, ends, ok): row i is buf[ends[i-1]:ends[i]] (ends[-1] = 0); ok is False when some value
    cannot be written here (see the module's docstring).
    """
    rows, dim = W.shape
    buf = np.empty(rows * dim * (MAX_CHARS + 1) + rows, dtype=np.uint8)
    ends = np.zeros(rows, dtype=np.int64)
    digits = np.empty(9, dtype=np.uint8)
    pos = 0
    for i in range(rows):
        for j in range(dim):
            pos = _put_value(buf, pos, W[i, j], digits)
            if pos < 0:
                return buf[:0], ends, False
            buf[pos] = 32 if j + 1 < dim else 10
            pos += 1
        ends[i] = pos
    return buf[:pos], ends, True


def row_texts(W: np.ndarray) -> list[bytes] | None:
    """Each row of W as shortest round-trip text ending in a newline, or None if some value needs numpy."""
    W = np.ascontiguousarray(W, dtype=np.float32)
    if W.size == 0:
        return None
    buf, ends, ok = format_rows(W)
    if not ok:
        return None
    data = buf.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [data[a:b] for a, b in zip(starts, ends.tolist())]
