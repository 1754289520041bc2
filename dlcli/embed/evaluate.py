"""Intrinsic evaluation of word vectors.

* Word similarity (WordSim-353, SimLex-999 style): Spearman's rank
  correlation between human scores and cosine similarities; pairs with a word
  outside the vocabulary are skipped and counted.
* Analogies (`questions-words.txt`: `: section` headers, then `a b c d`
  lines): the share of questions whose 3CosAdd (or 3CosMul) answer is d,
  per section, for the semantic and the syntactic (`gram*`) sections and in
  total. As in word2vec's compute-accuracy, only the `restrict` most
  frequent words take part: a question with a word outside them is skipped,
  and answers are searched among them. Matching ignores case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core.io import check_text_file
from dlcli.embed.query import MUL_EPS, Vectors
from dlcli.errors import InputError

DEFAULT_RESTRICT = 30_000  # word2vec's compute-accuracy threshold


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # first index of each run of equal values, and the run each element belongs to
    starts = np.flatnonzero(np.concatenate(([True], sorted_x[1:] != sorted_x[:-1])))
    run = np.cumsum(np.concatenate(([True], sorted_x[1:] != sorted_x[:-1]))) - 1
    ends = np.append(starts[1:], x.size)
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    out = np.empty(x.size)
    out[order] = mean_rank[run]
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the ranks."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def read_pairs(path: str | Path) -> list[tuple[str, str, float, int]]:
    """(word1, word2, score, line) from a tab-separated file; a header line and `#` comments are skipped."""
    p = check_text_file(path, "similarity")
    out = []
    first = True
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        header, first = first, False
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 3:
            raise InputError(f"{p}: line {n} has {len(fields)} column{'s' if len(fields) != 1 else ''}, "
                             "expected word1, word2 and a score (tab-separated)")
        try:
            score = float(fields[2])
        except ValueError:
            if header:
                continue  # a header such as "Word 1<TAB>Word 2<TAB>Human (mean)"
            raise InputError(f"{p}: line {n}: score {fields[2]!r} is not a number") from None
        out.append((fields[0].strip(), fields[1].strip(), score, n))
    if not out:
        raise InputError(f"{p}: no word pairs found")
    return out


def similarity(v: Vectors, path: str | Path) -> dict[str, Any]:
    """Spearman's rho between the file's scores and cosine similarities."""
    pairs = read_pairs(path)
    lookup = _case_insensitive(v, len(v.words))
    used = [(lookup[a.lower()], lookup[b.lower()], s) for a, b, s, _ in pairs
            if a.lower() in lookup and b.lower() in lookup]
    result: dict[str, Any] = {"file": str(path), "pairs": len(pairs), "used": len(used),
                              "skipped_oov": len(pairs) - len(used), "spearman": None}
    if len(used) >= 2:
        ia, ib, human = (np.array(col) for col in zip(*used))
        cos = (v.unit[ia] * v.unit[ib]).sum(axis=1)
        rho = spearman(human, cos)
        result["spearman"] = None if np.isnan(rho) else rho
    return result


def _case_insensitive(v: Vectors, restrict: int) -> dict[str, int]:
    """lower-cased word -> row among the `restrict` most frequent; the most frequent spelling wins."""
    out: dict[str, int] = {}
    for i, w in enumerate(v.words[:restrict]):
        out.setdefault(w.lower(), i)
    return out


def read_questions(path: str | Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of a questions-words file: [(name, [(a, b, c, d), ...]), ...]."""
    p = check_text_file(path, "analogy")
    sections: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        words = line.split()
        if len(words) != 4:
            raise InputError(f"{p}: line {n} has {len(words)} words, expected 4 (a b c d) or ': section'")
        if not sections:
            raise InputError(f"{p}: line {n}: a question before the first ': section' line")
        sections[-1][1].append((words[0], words[1], words[2], words[3]))
    if not any(q for _, q in sections):
        raise InputError(f"{p}: no analogy questions found")
    return sections


def _answers(v: Vectors, restrict: int, q: np.ndarray, method: str, batch: int) -> np.ndarray:
    """Predicted row for each question row (ia, ib, ic) among the first `restrict` words."""
    U = v.unit[:restrict]
    out = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), batch):
        ia, ib, ic = q[s:s + batch, 0], q[s:s + batch, 1], q[s:s + batch, 2]
        if method == "add":
            scores = (U[ib] - U[ia] + U[ic]) @ U.T
        else:
            sa, sb, sc = ((U[i] @ U.T + 1) / 2 for i in (ia, ib, ic))
            scores = sb * sc / (sa + MUL_EPS)
        rows = np.arange(len(ia))
        for i in (ia, ib, ic):
            scores[rows, i] = -np.inf
        out[s:s + batch] = scores.argmax(axis=1)
    return out


def _acc(correct: int, total: int) -> float | None:
    return correct / total if total else None


def analogies(v: Vectors, path: str | Path, restrict: int = DEFAULT_RESTRICT, method: str = "add"
              ) -> dict[str, Any]:
    """Accuracy per section, semantic, syntactic and total."""
    restrict = min(restrict, len(v.words)) if restrict > 0 else len(v.words)
    lookup = _case_insensitive(v, restrict)
    sections = read_questions(path)
    batch = max(1, (1 << 25) // max(1, restrict))
    report: list[dict[str, Any]] = []
    groups = {"semantic": [0, 0, 0], "syntactic": [0, 0, 0], "total": [0, 0, 0]}  # correct, answered, skipped
    for name, questions in sections:
        rows = [[lookup.get(w.lower(), -1) for w in qu] for qu in questions]
        q = np.array([r for r in rows if min(r) >= 0], dtype=np.int64).reshape(-1, 4)
        correct = int((_answers(v, restrict, q, method, batch) == q[:, 3]).sum()) if len(q) else 0
        skipped = len(questions) - len(q)
        report.append({"section": name, "correct": correct, "answered": len(q), "skipped": skipped,
                       "accuracy": _acc(correct, len(q))})
        for g in ("syntactic" if name.startswith("gram") else "semantic", "total"):
            groups[g][0] += correct
            groups[g][1] += len(q)
            groups[g][2] += skipped
    out: dict[str, Any] = {"file": str(path), "method": method, "restrict": restrict, "sections": report}
    for g, (correct, answered, skipped) in groups.items():
        out[g] = {"correct": correct, "answered": answered, "skipped": skipped, "accuracy": _acc(correct, answered)}
    return out
