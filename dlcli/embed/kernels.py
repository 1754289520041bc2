"""The word2vec training kernels: skip-gram and CBOW with negative sampling.

Compiled with numba (`cache=True`: the first run in a fresh environment
compiles for some seconds, later runs load the cached machine code). One call
trains on a slice of the corpus: the slice is cut into `workers` contiguous
parts at sentence boundaries and each part runs on its own thread (`prange`).
Threads update the shared matrices without locks ("Hogwild!", Recht et al.
2011): updates of different threads may overwrite each other now and then,
which barely matters for sparse SGD but makes runs with several threads not
bit-for-bit reproducible. With one worker a run is deterministic.

The steps follow Mikolov et al. (2013) and the original word2vec.c:

* subsampling: a word w of frequency f(w) is kept with probability
  (sqrt(f / (s T)) + 1) (s T) / f, s = `sample`, T = corpus words;
* dynamic window: each centre word draws a reach b in 1..window;
* skip-gram: each context word's input vector predicts the centre word;
  CBOW: the mean of the context input vectors predicts it;
* negative sampling: the true word is a positive example, `negative` words
  drawn from the unigram distribution raised to 0.75 are negatives; the loss
  is -log sigma(u_o . v) - sum_k log sigma(-u_k . v);
* the learning rate falls linearly over the whole run.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

MAX_EXP = 6.0  # sigma(x) is taken as 0 or 1 beyond |x| > MAX_EXP, as in word2vec.c
TABLE_SIZE = 1000


def sigmoid_tables() -> tuple[np.ndarray, np.ndarray]:
    """sigma(x) and log sigma(x) on TABLE_SIZE points of [-MAX_EXP, MAX_EXP] (lookups beat exp in the loop)."""
    x = (np.arange(TABLE_SIZE, dtype=np.float64) / TABLE_SIZE * 2 - 1) * MAX_EXP
    sig = 1.0 / (1.0 + np.exp(-x))
    return sig.astype(np.float32), np.log(sig).astype(np.float32)


@njit(inline="always")
def _rand(state: np.uint64) -> np.uint64:
    # the linear congruential generator of word2vec.c
    return state * np.uint64(25214903917) + np.uint64(11)


@njit(inline="always")
def _below(r: np.uint64, n: int) -> np.int64:
    """A uniform integer in [0, n) from the top 32 bits of a draw (multiply-shift: no division)."""
    return np.int64(((r >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(inline="always")
def _noise_word(prob: np.ndarray, alias: np.ndarray, r: np.uint64) -> int:
    """A word drawn from the noise distribution in O(1) by Walker's alias method.

    The top 32 bits of the draw pick a bucket, the next 16 bits decide between
    the bucket's own word and its alias.
    """
    i = _below(r, prob.shape[0])
    u = np.uint32((r >> np.uint64(16)) & np.uint64(0xFFFF))
    return i if u < prob[i] else np.int64(alias[i])


@njit(cache=True)
def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table for sampling index i with probability weights[i] / sum (probabilities scaled to 2**16)."""
    n = weights.shape[0]
    p = weights / weights.sum() * n
    prob = np.full(n, 1 << 16, dtype=np.uint32)
    alias = np.arange(n).astype(np.int32)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    ns = nl = 0
    for i in range(n):
        if p[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        nl -= 1
        g = large[nl]
        prob[s] = np.uint32(p[s] * (1 << 16))
        alias[s] = g
        p[g] = p[g] + p[s] - 1.0
        if p[g] < 1.0:
            small[ns] = g
            ns += 1
        else:
            large[nl] = g
            nl += 1
    return prob, alias


@njit(inline="always")
def _neg_sampling(W_out: np.ndarray, v: np.ndarray, grad: np.ndarray, target: int,
                  prob: np.ndarray, alias: np.ndarray, negative: int, lr: float, state: np.uint64, sig: np.ndarray,
                  logsig: np.ndarray) -> tuple[float, np.uint64]:
    """One positive and `negative` noise words against the input vector v.

    Updates the output vectors W_out in place, accumulates dLoss/dv * -lr into
    `grad`, returns the loss of this example and the advanced RNG state.
    """
    dim = v.shape[0]
    loss = 0.0
    scale = TABLE_SIZE / MAX_EXP / 2
    for k in range(negative + 1):
        if k == 0:
            word, label = np.int64(target), 1.0
        else:
            state = _rand(state)
            word = _noise_word(prob, alias, state)
            if word == target:
                continue
            label = 0.0
        u = W_out[word]
        f = 0.0
        for j in range(dim):
            f += v[j] * u[j]
        # g = (label - sigma(f)) * lr; loss = -log sigma(f) for the positive, -log sigma(-f) for a negative
        if f >= MAX_EXP:
            g = (label - 1.0) * lr
            loss += 0.0 if label == 1.0 else f
        elif f <= -MAX_EXP:
            g = label * lr
            loss += -f if label == 1.0 else 0.0
        else:
            i = int((f + MAX_EXP) * scale)
            g = (label - sig[i]) * lr
            loss -= logsig[i] if label == 1.0 else logsig[TABLE_SIZE - 1 - i]
        for j in range(dim):
            grad[j] += g * u[j]
        for j in range(dim):
            u[j] += g * v[j]
    return loss, state


@njit(parallel=True, cache=True, fastmath=True, nogil=True)
def train_slice(W_in: np.ndarray, W_out: np.ndarray, ids: np.ndarray, sent_starts: np.ndarray,
                part_bounds: np.ndarray, keep: np.ndarray, prob: np.ndarray, alias: np.ndarray, sg: bool, window: int,
                negative: int, lr_start: float, lr_end: float, seeds: np.ndarray, sig: np.ndarray,
                logsig: np.ndarray) -> np.ndarray:
    """Train on sentences part_bounds[p]..part_bounds[p+1] of `sent_starts`, one thread per part p.

    ids: word ids of the corpus (int32); sentence i is ids[sent_starts[i]:sent_starts[i+1]].
    keep: per word, the subsampling keep probability scaled to 2**32 (uint64).
    prob, alias: the alias table of the noise distribution (see `alias_table`).
    Returns per part: [words seen, words kept after subsampling, examples, loss sum].
    """
    parts = part_bounds.shape[0] - 1
    out = np.zeros((parts, 4), dtype=np.float64)
    dim = W_in.shape[1]
    for p in prange(parts):
        state = np.uint64(seeds[p])
        first, last = part_bounds[p], part_bounds[p + 1]
        total = max(1, sent_starts[last] - sent_starts[first])
        grad = np.zeros(dim, dtype=np.float32)
        h = np.zeros(dim, dtype=np.float32)
        sent = np.empty(0, dtype=np.int32)
        seen = 0
        kept = 0
        examples = 0
        loss = 0.0
        for s in range(first, last):
            a, b = sent_starts[s], sent_starts[s + 1]
            # subsampling: drop frequent words before windows are formed
            if sent.shape[0] < b - a:
                sent = np.empty(b - a, dtype=np.int32)
            n = 0
            for t in range(a, b):
                w = ids[t]
                state = _rand(state)
                if keep[w] > (state >> np.uint64(32)):
                    sent[n] = w
                    n += 1
            lr = lr_start + (lr_end - lr_start) * (seen / total)
            seen += b - a
            kept += n
            for i in range(n):
                state = _rand(state)
                reach = window - _below(state, window)  # dynamic window: 1..window
                lo, hi = max(0, i - reach), min(n, i + reach + 1)
                if sg:
                    for c in range(lo, hi):
                        if c == i:
                            continue
                        v = W_in[sent[c]]
                        grad[:] = 0.0
                        ex_loss, state = _neg_sampling(W_out, v, grad, sent[i], prob, alias, negative, lr, state, sig,
                                                       logsig)
                        loss += ex_loss
                        examples += 1
                        for j in range(dim):
                            v[j] += grad[j]
                else:
                    count = hi - lo - 1
                    if count == 0:
                        continue
                    h[:] = 0.0
                    for c in range(lo, hi):
                        if c != i:
                            v = W_in[sent[c]]
                            for j in range(dim):
                                h[j] += v[j]
                    inv = 1.0 / count
                    for j in range(dim):
                        h[j] *= inv
                    grad[:] = 0.0
                    ex_loss, state = _neg_sampling(W_out, h, grad, sent[i], prob, alias, negative, lr, state, sig,
                                                   logsig)
                    loss += ex_loss
                    examples += 1
                    for c in range(lo, hi):  # as word2vec.c: each context vector gets the whole gradient
                        if c != i:
                            v = W_in[sent[c]]
                            for j in range(dim):
                                v[j] += grad[j]
        out[p, 0] = seen
        out[p, 1] = kept
        out[p, 2] = examples
        out[p, 3] = loss
    return out


def set_threads(workers: int) -> None:
    """Threads for `prange` (at most numba's pool size, the number of cores)."""
    import numba

    numba.set_num_threads(max(1, min(workers, numba.config.NUMBA_NUM_THREADS)))


_frozen = False


def warm_up() -> float:
    """Compile (or load from numba's cache) both kernels on a toy corpus; returns the seconds it took.

    The first call also moves every object alive by then (mostly numba's type system and compiler state,
    a few hundred thousand objects) to the collector's permanent generation (`gc.freeze`): they live until
    the process ends anyway, and each full collection would traverse them again: Python's shutdown alone
    ran ~0.3 s of collections over them.
    """
    import gc
    import time

    global _frozen
    t = time.monotonic()
    sig, logsig = sigmoid_tables()
    ids = np.array([0, 1, 2, 1, 0], dtype=np.int32)
    W_in = np.zeros((3, 4), dtype=np.float32)
    W_out = np.zeros((3, 4), dtype=np.float32)
    for sg in (True, False):
        train_slice(W_in, W_out, ids, np.array([0, 5], dtype=np.int64), np.array([0, 1], dtype=np.int64),
                    np.full(3, 2**32, dtype=np.uint64), *alias_table(np.ones(3)), sg, 2, 1, 0.01, 0.01,
                    np.array([1], dtype=np.uint64), sig, logsig)
    if not _frozen:
        gc.freeze()  # (no gc.collect() first: it costs 50 ms, the little garbage frozen with them is harmless)
        _frozen = True
    return time.monotonic() - t
