"""RNN language models: the latent autoregressive model with a learned state.

The model keeps a summary h_t of the past, updates it with
h_t = g(h_{t-1}, x_{t-1}) (an RNN, GRU or LSTM cell), and predicts
P(x_t | h_t) with a linear layer and a softmax. Inputs are token ids mapped to
vectors either by a learned embedding (a d x v matrix) or as one-hot vectors,
the curriculum's view. Training uses the fused `nn.RNN/GRU/LSTM` kernels
(cuDNN on GPU, oneDNN on CPU): there is no Python loop over time steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcli.models.config import CELLS, RNNConfig

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RNNLM(nn.Module):
    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        assert cfg.cell in CELLS and cfg.vocab_size > 0
        self.cfg = cfg
        v = cfg.vocab_size
        n_in = cfg.n_embd or v
        self.embed = nn.Embedding(v, cfg.n_embd) if cfg.n_embd else None
        rnn_cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cfg.cell]
        self.rnn = rnn_cls(n_in, cfg.n_hidden, num_layers=cfg.n_layer, batch_first=True,
                           dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.n_hidden, v)
        if cfg.tie_weights:
            assert self.embed is not None and cfg.n_embd == cfg.n_hidden
            self.head.weight = self.embed.weight

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> input vectors (B, T, d): embedding rows or one-hot."""
        if self.embed is not None:
            return self.drop(self.embed(idx))
        return F.one_hot(idx, self.cfg.vocab_size).to(self.head.weight.dtype)

    @property
    def input_embedding(self) -> nn.Embedding | None:
        return self.embed

    def forward(self, idx: torch.Tensor, h: Hidden | None = None, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, Hidden]:
        """idx (B, T) -> logits (B, T, v), mean cross-entropy (if targets), new state."""
        x = self.inputs(idx)  # (B, T, d)
        out, h = self.rnn(x, h)  # (B, T, n_hidden): h_t for every t
        logits = self.head(self.drop(out))  # (B, T, v)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss, h

    def begin_state(self, batch_size: int, device: torch.device | str = "cpu") -> Hidden:
        shape = (self.cfg.n_layer, batch_size, self.cfg.n_hidden)
        zeros = torch.zeros(shape, device=device)
        return (zeros, zeros.clone()) if self.cfg.cell == "lstm" else zeros


def detach(h: Hidden) -> Hidden:
    """Cut the graph at a batch boundary (truncated BPTT), keeping the values."""
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()  # type: ignore[return-value]


def state_tensors(h: Hidden) -> dict[str, torch.Tensor]:
    return {"h": h[0], "c": h[1]} if isinstance(h, tuple) else {"h": h}


def state_from_tensors(t: dict[str, torch.Tensor]) -> Hidden:
    return (t["h"], t["c"]) if "c" in t else t["h"]
