"""Autoregressive forecasters: predict x_t from the window x_{t-tau..t-1}.

Every model maps a batch of windows (B, tau) to next values (B,), so the
training loop and the multi-step forecast treat them alike:

* `LinearAR`: linear regression on the tau lags (the curriculum's baseline).
* `MLPAR`: tau -> hidden, ReLU -> 1 (the curriculum's MLP).
* `RNNForecaster`: a GRU or LSTM reads the window as tau scalar inputs and a
  linear layer maps its last hidden state to the next value.
"""

from __future__ import annotations

import torch
from torch import nn

from dlcli.models.config import FORECASTERS


class LinearAR(nn.Module):
    """x_t = w . (x_{t-tau}, ..., x_{t-1}) + b."""

    def __init__(self, tau: int) -> None:
        super().__init__()
        self.tau = tau
        self.linear = nn.Linear(tau, 1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, tau) -> (B,)."""
        return self.linear(windows).squeeze(-1)


class MLPAR(nn.Module):
    """tau -> hidden (ReLU) -> 1, Xavier-initialised as in the curriculum."""

    def __init__(self, tau: int, hidden: int = 10) -> None:
        super().__init__()
        self.tau = tau
        self.net = nn.Sequential(nn.Linear(tau, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, tau) -> (B,)."""
        return self.net(windows).squeeze(-1)


class RNNForecaster(nn.Module):
    """A GRU or LSTM over the window's tau scalars; the last state predicts x_t."""

    def __init__(self, tau: int, hidden: int = 32, layers: int = 1, cell: str = "gru") -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be gru or lstm, not {cell!r}")
        self.tau = tau
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn_cls(1, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, tau) -> (B,)."""
        out, _ = self.rnn(windows.unsqueeze(-1))  # (B, tau, hidden)
        return self.head(out[:, -1]).squeeze(-1)


def build(model: str, tau: int, hidden: int = 10, layers: int = 1) -> nn.Module:
    """The forecaster named `model` (one of FORECASTERS)."""
    if model == "linear":
        return LinearAR(tau)
    if model == "mlp":
        return MLPAR(tau, hidden)
    if model in ("gru", "lstm"):
        return RNNForecaster(tau, hidden, layers, cell=model)
    raise ValueError(f"model must be one of {', '.join(FORECASTERS)}, not {model!r}")
