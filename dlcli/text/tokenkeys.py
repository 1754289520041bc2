"""Vectorised token counting and lookup for token streams.

Splitting a chunk into Python `bytes` objects costs about 100 ns a token, so
the hot paths here never make one per token. Instead each token is packed
into a 16-byte key with NumPy (its first 15 bytes, zero padded, and its
length), hashed to 64 bits, and counted or looked up with array operations.
Results are exact: every hash match is checked against the full key, and
tokens longer than 15 bytes (rare) or anything ambiguous take the plain
Python path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

KEY_BYTES = 16
_MAX_SHORT = KEY_BYTES - 1
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)


@dataclass
class Spans:
    """Token positions in one chunk: token i is chunk[start[i]:end[i]]."""

    a: np.ndarray  # the chunk as uint8
    start: np.ndarray
    end: np.ndarray

    @property
    def length(self) -> np.ndarray:
        return self.end - self.start


def spans(chunk: bytes) -> Spans:
    a = np.frombuffer(chunk, dtype=np.uint8)
    if a.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Spans(a, empty, empty)
    ws = a == 32
    if a.min() <= 13:
        ws |= (a >= 9) & (a <= 13)
    word = ~ws
    first = word.copy()
    first[1:] &= ws[:-1]
    last = word
    last[:-1] &= ws[1:]
    return Spans(a, np.flatnonzero(first), np.flatnonzero(last) + 1)


# Masks that keep the first n bytes of a little-endian uint64 (n = 0..8).
_KEEP = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_LEN_SHIFT = np.uint64(56)


def keys(s: Spans) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, h): the 16-byte key of each token as two uint64, and a hash.

    lo holds bytes 0-7, hi bytes 8-14 and the length in its top byte. Keys
    are exact for tokens of at most 15 bytes; longer tokens share their first
    15 bytes with others and must be handled separately.
    """
    padded = np.concatenate((s.a, np.zeros(KEY_BYTES, dtype=np.uint8)))
    # Element i of this view is the 8 bytes starting at byte i (unaligned).
    at = np.ndarray(shape=(s.a.size + 8,), dtype="<u8", buffer=padded, strides=(1,))
    length = s.length
    lo = at[s.start] & _KEEP[np.minimum(length, 8)]
    hi = at[s.start + 8] & _KEEP[np.clip(length - 8, 0, 7)]
    hi |= np.minimum(length, 255).astype(np.uint64) << _LEN_SHIFT
    h = (lo * _K1) ^ (hi * _K2)
    h ^= h >> np.uint64(29)
    return lo, hi, h


def _token_bytes(chunk: bytes, s: Spans, idx: np.ndarray) -> list[bytes]:
    return [chunk[a:b] for a, b in zip(s.start[idx].tolist(), s.end[idx].tolist())]


def count(chunk: bytes) -> Counter[bytes]:
    """Exact token counts of a chunk of stream text (tokens still escaped)."""
    s = spans(chunk)
    out: Counter[bytes] = Counter()
    if s.start.size == 0:
        return out
    lo, hi, h = keys(s)
    todo = np.flatnonzero(s.length <= _MAX_SHORT)
    nb = 1 << max(10, (2 * todo.size).bit_length() - 3)  # buckets: about a quarter of the tokens
    for shift in (0, 21, 42):  # a new slice of the hash each round
        if not todo.size:
            break
        bucket = ((h[todo] >> np.uint64(shift)) & np.uint64(nb - 1)).astype(np.intp)
        rep = np.full(nb, -1, dtype=np.intp)
        rep[bucket] = todo  # one representative token per bucket
        r = rep[bucket]
        # Tokens equal to their bucket's representative are counted by array ops.
        same = (lo[todo] == lo[r]) & (hi[todo] == hi[r])
        counts = np.bincount(bucket[same], minlength=nb)
        used = np.flatnonzero(counts)
        out.update(dict(zip(_token_bytes(chunk, s, rep[used]), counts[used].tolist())))
        todo = todo[~same]  # bucket collisions: next round
    rest = np.union1d(todo, np.flatnonzero(s.length > _MAX_SHORT))
    if rest.size:
        out.update(_token_bytes(chunk, s, rest))
    return out


class KeyTable:
    """Maps stream tokens (escaped bytes) to ids with array lookups.

    An open-addressing hash table of the vocabulary's short tokens, at most a
    quarter full; a few rounds of vectorised linear probing resolve nearly
    every token, and the rest go through the plain dict.
    """

    ROUNDS = 16

    def __init__(self, table: dict[bytes, int], unk: int) -> None:
        self.table = table
        self.unk = unk
        # Insert in id order: frequent tokens (low ids) get their home slots.
        short = sorted(((t, i) for t, i in table.items() if 0 < len(t) <= _MAX_SHORT and not _has_ws(t)),
                       key=lambda ti: ti[1])
        size = 1 << max(4, (4 * len(short)).bit_length())
        self.mask = np.uint64(size - 1)
        self.slot_id = np.full(size, -1, dtype=np.int64)
        self.slot_lo = np.zeros(size, dtype=np.uint64)
        self.slot_hi = np.zeros(size, dtype=np.uint64)
        if short:
            lo, hi, h = keys(spans(b" ".join(t for t, _ in short)))
            home = (h & self.mask).astype(np.int64).tolist()
            for k, (slot, (_, i)) in enumerate(zip(home, short)):
                while self.slot_id[slot] >= 0:
                    slot = (slot + 1) & (size - 1)
                self.slot_id[slot], self.slot_lo[slot], self.slot_hi[slot] = i, lo[k], hi[k]

    def lookup(self, chunk: bytes) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """Ids of every token (unknown -> `unk`), tokens per line, and the
        tokens that were unknown (at most a few, for error messages)."""
        s = spans(chunk)
        n = s.start.size
        ids = np.full(n, self.unk, dtype=np.int64)
        todo = np.flatnonzero(s.length <= _MAX_SHORT)
        if n:
            lo, hi, h = keys(s)
            slot = (h[todo] & self.mask).astype(np.int64)
            for _ in range(self.ROUNDS):
                if not todo.size:
                    break
                sid = self.slot_id[slot]
                hit = (self.slot_lo[slot] == lo[todo]) & (self.slot_hi[slot] == hi[todo]) & (sid >= 0)
                ids[todo[hit]] = sid[hit]
                go_on = ~hit & (sid >= 0)  # an empty slot ends the probe: not in the table
                todo, slot = todo[go_on], (slot[go_on] + 1) & int(self.mask)
        resolved = np.zeros(n, dtype=bool)
        if n:
            resolved[s.length <= _MAX_SHORT] = True
            resolved[todo] = False
            resolved &= ids != self.unk
        miss = np.flatnonzero(~resolved)
        unknown: list[bytes] = []
        if miss.size:
            toks = _token_bytes(chunk, s, miss)
            found = [self.table.get(t, -1) for t in toks]
            ids[miss] = [f if f >= 0 else self.unk for f in found]
            unknown = [t for t, f in zip(toks, found) if f < 0][:5]
        return ids, line_lengths(s), unknown


def _has_ws(t: bytes) -> bool:
    return len(t.split()) != 1


def line_lengths(s: Spans) -> np.ndarray:
    """Number of tokens on each line of the chunk."""
    a = s.a
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(a == 10)
    if a[-1] != 10:
        ends = np.append(ends, a.size)
    # tokens starting before each line end, differenced (queries are lines, not tokens: cheaper)
    before = np.searchsorted(s.start, ends)
    return np.diff(before, prepend=0).astype(np.int64)
