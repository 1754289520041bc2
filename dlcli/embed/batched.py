"""The word2vec kernel in PyTorch, for GPUs: many examples at once instead of one at a time.

The numba kernel (`kernels.py`) walks the corpus one example after another,
which suits a CPU core. A GPU needs wide batches, so here one slice of the
corpus is turned into tensors and trained batch by batch:

1. subsampling: each word is kept with its probability (one draw per word);
2. dynamic window: each kept centre word draws a reach b in 1..window; its
   contexts are the kept words at offsets 1..b on either side in the same
   sentence (a `(words, 2 window)` table, -1 where there is none);
3. the centres are shuffled and cut into batches; per batch, for skip-gram
   each (centre, context) pair is an example whose input is the context's
   vector, for CBOW the mean of the contexts' vectors is the input;
4. negative sampling: the centre word is the positive, `negative` words drawn
   from the noise distribution are negatives; g = (label - sigma(u . v)) * lr;
5. the updates of the batch are added into the matrices (`index_add_`).

Step 5 is where a batch differs from one-at-a-time SGD: a word that occurs n
times in a batch gets n updates computed from the same old vector, where the
sequential kernel would recompute between them. Summing them is the batched
form of word2vec's lock-free updates ("Hogwild!", where threads also update
from stale vectors); at BATCH_CENTRES it trains as well as the sequential
kernel (measured in docs/commands/embed.md).
"""

from __future__ import annotations

import numpy as np
import torch

BATCH_CENTRES = 4096  # centre words per batch at most (skip-gram: about `window` pairs each)
MIN_BATCHES = 64  # batches per slice at least, so that a small corpus still gets many small steps


class BatchedKernel:
    """Trains slices of a corpus on a torch device; the matrices stay on the device between slices."""

    def __init__(self, W_in: np.ndarray, W_out: np.ndarray, ids: np.ndarray, sent_starts: np.ndarray,
                 keep: np.ndarray, noise: np.ndarray, sg: bool, window: int, negative: int, device: str) -> None:
        self.device = torch.device(device)
        self.W_in = torch.from_numpy(W_in).to(self.device)
        self.W_out = torch.from_numpy(W_out).to(self.device)
        self.ids, self.sent_starts = ids, sent_starts
        self.keep = torch.from_numpy(keep.astype(np.float32)).to(self.device)
        self.noise = torch.from_numpy(noise.astype(np.float64) / noise.sum()).float().to(self.device)
        self.sg, self.window, self.negative = sg, window, negative

    def to_numpy(self, W_in: np.ndarray, W_out: np.ndarray) -> None:
        """Copy the device's matrices into the host arrays (for checkpoints and the final files)."""
        if self.device.type == "cpu":  # torch.from_numpy shares the host arrays' memory: nothing to copy
            return
        W_in[...] = self.W_in.cpu().numpy()
        W_out[...] = self.W_out.cpu().numpy()

    def _contexts(self, first: int, last: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Steps 1-2 on sentences first..last: kept centre ids and their context table, and words seen."""
        a, b = int(self.sent_starts[first]), int(self.sent_starts[last])
        dev = self.device
        words = torch.from_numpy(self.ids[a:b].astype(np.int64)).to(dev)
        lengths = torch.from_numpy(np.diff(self.sent_starts[first:last + 1])).to(dev)
        sentence = torch.repeat_interleave(torch.arange(lengths.numel(), device=dev), lengths)
        kept = torch.rand(words.numel(), generator=gen, device=dev) < self.keep[words]
        words, sentence = words[kept], sentence[kept]
        n = words.numel()
        reach = torch.randint(1, self.window + 1, (n,), generator=gen, device=dev)
        pos = torch.arange(n, device=dev)
        offsets = torch.cat([torch.arange(-self.window, 0, device=dev), torch.arange(1, self.window + 1, device=dev)])
        j = pos[:, None] + offsets[None, :]
        inside = (j >= 0) & (j < n) & (offsets.abs()[None, :] <= reach[:, None])
        j = j.clamp(0, max(n - 1, 0))
        inside &= sentence[j] == sentence[:, None]
        contexts = torch.where(inside, words[j], torch.full_like(j, -1))
        return words, contexts, b - a

    def _negative_sampling(self, v: torch.Tensor, target: torch.Tensor, lr: float, gen: torch.Generator
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 4 for inputs v (E, d) and true words target (E,): updates W_out, returns (dL/dv * -lr, loss)."""
        noise = torch.multinomial(self.noise, target.numel() * self.negative, replacement=True, generator=gen)
        words = torch.cat([target[:, None], noise.view(-1, self.negative)], dim=1)  # (E, 1 + negative)
        label = torch.zeros(words.shape, device=self.device)
        label[:, 0] = 1.0
        u = self.W_out[words]  # (E, 1 + negative, d)
        score = torch.einsum("ed,ekd->ek", v, u)
        sign = 2 * label - 1
        loss = -torch.nn.functional.logsigmoid(sign * score)
        g = (label - torch.sigmoid(score)) * lr
        g[:, 1:] *= (words[:, 1:] != target[:, None])  # a noise draw of the true word is skipped, as word2vec.c
        grad_v = torch.einsum("ek,ekd->ed", g, u)
        self.W_out.index_add_(0, words.reshape(-1), (g[:, :, None] * v[:, None, :]).reshape(-1, v.shape[1]))
        return grad_v, (loss[:, 0] + (loss[:, 1:] * (g[:, 1:] != 0)).sum(1)).sum()

    def train_slice(self, first: int, last: int, lr_start: float, lr_end: float, seed: int) -> np.ndarray:
        """Train on sentences first..last; returns [[words seen, kept, examples, loss sum]] as the numba kernel does."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        words, contexts, seen = self._contexts(first, last, gen)
        order = torch.randperm(words.numel(), generator=gen, device=self.device)
        size = max(1, min(BATCH_CENTRES, words.numel() // MIN_BATCHES))
        batches = max(1, -(-words.numel() // size))
        examples, loss = 0, torch.zeros((), device=self.device)
        for k in range(batches):
            lr = lr_start + (lr_end - lr_start) * k / batches
            idx = order[k * size:(k + 1) * size]
            centre, ctx = words[idx], contexts[idx]
            has = ctx >= 0
            if self.sg:  # each (centre, context) pair: the context's input vector predicts the centre
                b, j = has.nonzero(as_tuple=True)  # one nonzero (a device sync) for both gathers
                rows, target = ctx[b, j], centre[b]
                grad, batch_loss = self._negative_sampling(self.W_in[rows], target, lr, gen)
                self.W_in.index_add_(0, rows, grad)
                examples += rows.numel()
            else:  # CBOW: the mean of the context vectors predicts the centre
                count = has.sum(1)
                some = (count > 0).nonzero().squeeze(1)
                ctx, has, count, centre = ctx[some], has[some], count[some], centre[some]
                vecs = self.W_in[ctx.clamp(min=0)] * has[:, :, None]
                h = vecs.sum(1) / count[:, None]
                grad, batch_loss = self._negative_sampling(h, centre, lr, gen)
                # as word2vec.c: every context vector gets the whole gradient of h
                b, j = has.nonzero(as_tuple=True)
                self.W_in.index_add_(0, ctx[b, j], grad[b])
                examples += centre.numel()
            loss += batch_loss
        return np.array([[seen, words.numel(), examples, float(loss)]], dtype=np.float64)
