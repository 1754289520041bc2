"""The vectorised counter and lookup must agree exactly with plain Python."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

from dlcli.text import tokenkeys


def _random_stream(seed: int) -> bytes:
    rng = random.Random(seed)
    words = ["a", "the", "é", "\\s", "x" * 15, "y" * 16, "z" * 40, "tab", "ünïcödé", "\x01\x02"]
    words += ["".join(rng.choice("abcdef") for _ in range(rng.randint(1, 20))) for _ in range(300)]
    lines = []
    for _ in range(rng.randint(0, 400)):
        toks = [rng.choice(words) for _ in range(rng.randint(0, 12))]
        seps = [rng.choice([" ", " ", " ", "  ", "\t", "\r"]) for _ in toks]
        lines.append("".join(s + t for s, t in zip(seps, toks)).encode())
    tail = b"" if rng.random() < 0.5 else b"\n"
    return b"\n".join(lines) + tail


def test_count_equals_counter_of_split():
    for seed in range(40):
        chunk = _random_stream(seed)
        assert tokenkeys.count(chunk) == Counter(chunk.split()), seed


def test_count_survives_bucket_collisions():
    # 3,000 distinct tokens in a chunk of 3,000 tokens: 1,024 buckets collide a lot
    chunk = b" ".join(b"t%d" % i for i in range(3000))
    assert tokenkeys.count(chunk) == Counter(chunk.split())


def test_lookup_equals_dict_lookup_and_line_lengths():
    for seed in range(20):
        chunk = _random_stream(seed)
        vocab = sorted(set(chunk.split()))
        table = {t: i for i, t in enumerate(vocab[::2], 1)}  # half the tokens are unknown
        kt = tokenkeys.KeyTable(table, unk=0)
        ids, lengths, unknown = kt.lookup(chunk)
        assert ids.tolist() == [table.get(t, 0) for t in chunk.split()]
        lines = chunk.split(b"\n")
        if chunk.endswith(b"\n"):
            lines.pop()
        assert lengths.tolist() == [len(ln.split()) for ln in lines]
        assert all(t not in table for t in unknown)


def test_empty_chunk():
    assert tokenkeys.count(b"") == Counter()
    ids, lengths, _ = tokenkeys.KeyTable({b"a": 1}, 0).lookup(b"")
    assert ids.size == 0 and lengths.size == 0
    ids, lengths, _ = tokenkeys.KeyTable({b"a": 1}, 0).lookup(b"\n\n a\n")
    assert ids.tolist() == [1] and lengths.tolist() == [0, 0, 1]
    assert np.issubdtype(ids.dtype, np.integer)
