"""Queries on word vectors: nearest neighbours by cosine, and analogies
a : b :: c : ? by 3CosAdd (Mikolov et al. 2013) and 3CosMul (Levy and
Goldberg 2014)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcli.embed.vecfile import load_vectors
from dlcli.errors import ConfigError, InputError

METHODS = ("add", "mul")
MUL_EPS = 1e-3  # 3CosMul's epsilon against division by zero


class UnknownWord(InputError):
    """A query word that is not in the vocabulary."""


@dataclass
class Vectors:
    """Words and their vectors, with unit-length rows for cosine similarity."""

    words: list[str]
    W: np.ndarray  # float32 (N, D)
    source: str = ""  # the file or run they came from, for error messages
    index: dict[str, int] = field(init=False)
    unit: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.W = np.asarray(self.W, dtype=np.float32)
        self.index = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(w, i)  # the first (most frequent) wins
        norms = np.linalg.norm(self.W, axis=1, keepdims=True)
        self.unit = self.W / np.maximum(norms, 1e-12)

    @classmethod
    def load(cls, path: str | Path) -> Vectors:
        words, W = load_vectors(path)
        if not words:
            raise InputError(f"{path}: holds no vectors")
        return cls(words, W, str(path))

    def id(self, word: str) -> int:
        """The row of `word` (falling back to its lower-case form); unknown words raise UnknownWord."""
        i = self.index.get(word)
        if i is None:
            i = self.index.get(word.lower())
        if i is None:
            where = f"{self.source}: " if self.source else ""
            raise UnknownWord(f"{where}'{word}' is not in the vocabulary ({len(self.words):,} words)")
        return i


def check_top(k: int) -> None:
    """Refuse a number of answers below 1 (it would print nothing and look like success)."""
    if k < 1:
        raise ConfigError(f"-k/--top: must be at least 1, not {k}")


def _top(scores: np.ndarray, k: int, exclude: list[int]) -> list[int]:
    scores = scores.copy()
    scores[exclude] = -np.inf
    k = min(k, scores.size - len(set(exclude)))
    if k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best], kind="stable")].tolist()


def neighbors(v: Vectors, word: str, k: int = 10) -> list[tuple[str, float]]:
    """The k words closest to `word` by cosine similarity (itself excluded)."""
    check_top(k)
    i = v.id(word)
    sims = v.unit @ v.unit[i]
    return [(v.words[j], float(sims[j])) for j in _top(sims, k, [i])]


def analogy(v: Vectors, a: str, b: str, c: str, k: int = 1, method: str = "add") -> list[tuple[str, float]]:
    """d for a : b :: c : d, the query words excluded.

    add (3CosAdd): argmax_d cos(d, b - a + c);
    mul (3CosMul): argmax_d cos'(d, b) cos'(d, c) / (cos'(d, a) + eps), with cos' = (cos + 1) / 2.
    """
    check_top(k)
    if method not in METHODS:
        raise InputError(f"analogy method '{method}' is not one of {', '.join(METHODS)}")
    ia, ib, ic = v.id(a), v.id(b), v.id(c)
    if method == "add":
        target = v.unit[ib] - v.unit[ia] + v.unit[ic]
        scores = v.unit @ (target / max(float(np.linalg.norm(target)), 1e-12))
    else:
        sa, sb, sc = ((v.unit @ v.unit[i] + 1) / 2 for i in (ia, ib, ic))
        scores = sb * sc / (sa + MUL_EPS)
    return [(v.words[j], float(scores[j])) for j in _top(scores, k, [ia, ib, ic])]
