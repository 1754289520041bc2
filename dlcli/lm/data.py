"""The data of a language model: the id files its config's `data` section names, and
minibatches over a flat array of token ids.

Two ways to cut a corpus into (X, Y) minibatches of shape (B, T), as in d2l:

- sequential partitioning: the corpus (from a random offset) is laid out as
  B parallel streams; batch i holds columns [iT, (i+1)T) of every stream, so
  batch i+1 continues where batch i stopped and the hidden state can be
  carried across batches (detached: truncated BPTT).
- random sampling: subsequences of length T from a random offset, in random
  order; neighbouring batches are unrelated, so the state starts fresh.

Y is X shifted by one token. Batches are addressed by (epoch, index), so a
run can resume at any batch; the random offsets and orders come from a
generator seeded by (seed, epoch). With several processes (DDP), each rank
takes its slice of the B rows, so the union is the single-process batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from dlcli.core.idfile import IdFile
from dlcli.errors import ConfigError, InputError
from dlcli.lm.config import SAMPLING, DataConfig
from dlcli.text import vocabulary


@dataclass
class Corpus:
    tokenizer: Tokenizer  # checked against the ids
    tokenizer_path: str
    train: np.ndarray
    val: np.ndarray


def load_data(data: DataConfig, seq_len: int) -> Corpus:
    """The tokenizer and the training and validation ids `data` names, checked against each other."""
    train = IdFile.open(data.train)
    tok_path = data.tokenizer or train.meta.get("tokenizer")
    if not tok_path:
        raise ConfigError(f"{data.train}: no tokenizer recorded; give data.tokenizer")
    if data.tokenizer is None and not Path(tok_path).is_absolute():
        # the sidecar names it as given to `vocab encode`: relative to where that ran, or beside the ids
        beside = train.path.parent / Path(tok_path).name
        tok_path = str(beside) if not Path(tok_path).exists() and beside.exists() else tok_path
    if Path(tok_path).is_dir():  # a run directory given to `vocab encode -t`
        tok_path = str(Path(tok_path) / "tokenizer.json")
    tok = vocabulary.load(tok_path)
    vhash, size = vocabulary.vocab_hash(tok), tok.get_vocab_size(with_added_tokens=True)
    train.check_vocab(vhash, str(tok_path), size)
    ids = train.ids
    if data.val:
        val_file = IdFile.open(data.val)
        val_file.check_vocab(vhash, str(tok_path), size)
        train_ids, val_ids = ids, val_file.ids
    else:
        n = int(len(ids) * (1 - data.val_fraction))
        train_ids, val_ids = ids[:n], ids[n:]
    if len(train_ids) < seq_len + 2:
        raise InputError(f"{data.train}: {len(train_ids)} training tokens is shorter than one sequence "
                         f"(seq_len {seq_len} + 1)")
    if len(val_ids) < 2:
        raise InputError(f"{data.val or data.train}: too few validation tokens ({len(val_ids)})")
    return Corpus(tok, str(tok_path), train_ids, val_ids)


@dataclass
class LMBatches:
    ids: np.ndarray  # 1-D token ids (a memmap is fine: nothing is copied but the batch)
    batch_size: int  # global B
    seq_len: int  # T
    sampling: str = "sequential"
    seed: int = 0
    rank: int = 0
    world: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        assert self.sampling in SAMPLING
        assert self.batch_size % self.world == 0, "batch size must divide by the number of processes"
        if len(self.ids) < self.seq_len + 2:
            raise ValueError(f"{len(self.ids)} tokens is shorter than one sequence of {self.seq_len} + 1")

    @property
    def rows(self) -> slice:
        b = self.batch_size // self.world
        return slice(self.rank * b, (self.rank + 1) * b)

    def _epoch(self, epoch: int) -> tuple[int, np.ndarray | None]:
        """The random offset of an epoch and, for random sampling, its order."""
        if epoch not in self._cache:
            rng = np.random.default_rng([self.seed, epoch])
            offset = int(rng.integers(0, self.seq_len))
            order = None
            if self.sampling == "random":
                n_sub = (len(self.ids) - offset - 1) // self.seq_len
                order = rng.permutation(n_sub)
            self._cache = {epoch: (offset, order)}
        return self._cache[epoch]

    def num_batches(self, epoch: int = 0) -> int:
        offset, order = self._epoch(epoch)
        if self.sampling == "random":
            assert order is not None
            return len(order) // self.batch_size
        stream = (len(self.ids) - offset - 1) // self.batch_size
        return stream // self.seq_len

    def batch(self, epoch: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) for this rank, int64 arrays of shape (B / world, T)."""
        offset, order = self._epoch(epoch)
        t = self.seq_len
        if self.sampling == "sequential":
            stream = (len(self.ids) - offset - 1) // self.batch_size
            n = stream * self.batch_size
            xs = self.ids[offset : offset + n].reshape(self.batch_size, stream)
            ys = self.ids[offset + 1 : offset + 1 + n].reshape(self.batch_size, stream)
            x = xs[self.rows, i * t : (i + 1) * t]
            y = ys[self.rows, i * t : (i + 1) * t]
        else:
            assert order is not None
            starts = offset + order[i * self.batch_size : (i + 1) * self.batch_size][self.rows] * t
            idx = starts[:, None] + np.arange(t)
            x, y = self.ids[idx], self.ids[idx + 1]
        return x.astype(np.int64), y.astype(np.int64)


def eval_streams(ids: np.ndarray, batch_size: int, seq_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sequential (X, Y) batches over all of `ids` from offset 0, for evaluation.

    Uses min(batch_size, what fits) streams so short validation sets still
    give at least one batch; the last batch may be shorter than seq_len.
    """
    b = max(1, min(batch_size, (len(ids) - 1) // max(1, seq_len)))
    stream = (len(ids) - 1) // b
    n = stream * b
    xs = ids[:n].reshape(b, stream)
    ys = ids[1 : n + 1].reshape(b, stream)
    return [(xs[:, i : i + seq_len].astype(np.int64), ys[:, i : i + seq_len].astype(np.int64))
            for i in range(0, stream, seq_len)]
