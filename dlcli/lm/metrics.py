"""Held-out figures of a language model: mean cross-entropy over a token stream, and masked-token loss and
accuracy for a masked-LM encoder. Training (each evaluation) and `dlcli evaluate` both use them."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcli.core.precision import Precision
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.lm.data import eval_streams
from dlcli.lm.mlm import IGNORE, mask_tokens
from dlcli.models.gpt import GPT
from dlcli.models.rnn import RNNLM


def evaluate_ids(model: RNNLM | GPT, ids: np.ndarray, batch_size: int, seq_len: int, device: torch.device,
                 precision: Precision | None = None, on_progress: OnProgress = nothing) -> tuple[float, int]:
    """Mean cross-entropy (nats/token) over `ids`, an RNN's state carried across batches; a Tick
    ("evaluate", tokens) after each batch."""
    was_training = model.training
    model.eval()
    total, count, h = 0.0, 0, None
    with torch.no_grad():
        batches = eval_streams(ids, batch_size, seq_len)
        size = sum(y.size for _, y in batches)
        on_progress(Tick("evaluate", 0, size, unit="token"))
        for x, y in batches:
            state = h if isinstance(model, RNNLM) else None
            with precision.autocast() if precision else contextlib.nullcontext():
                logits, _, h = model(torch.from_numpy(x).to(device), state)
            logits = logits.float()
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), torch.from_numpy(y).to(device).reshape(-1),
                                   reduction="sum")
            total += float(loss)
            count += y.size
            on_progress(Tick("evaluate", count, size, unit="token"))
    model.train(was_training)
    return total / max(1, count), count


def evaluate_mlm(model: GPT, ids: np.ndarray, batch_size: int, seq_len: int, device: torch.device, mask_id: int,
                 special_ids: tuple[int, ...] = (), seed: int = 0, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Masked-token loss and accuracy on `ids` with a fixed masking, beside the
    accuracy of always guessing the most frequent masked token; a Tick ("evaluate", tokens) per batch."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    total, correct, count, done = 0.0, 0, 0, 0
    seen: list[torch.Tensor] = []
    with torch.no_grad():
        batches = eval_streams(ids, batch_size, seq_len)
        size = sum(x.size for x, _ in batches)
        on_progress(Tick("evaluate", 0, size, unit="token"))
        for x, _ in batches:
            xb, yb = mask_tokens(torch.from_numpy(x), mask_id, model.cfg.vocab_size, g, special_ids=special_ids)
            logits, _, _ = model(xb.to(device))
            m = yb != IGNORE
            if m.any():
                picked, target = logits.float().cpu()[m], yb[m]
                total += float(F.cross_entropy(picked, target, reduction="sum"))
                correct += int((picked.argmax(-1) == target).sum())
                count += int(m.sum())
                seen.append(target)
            done += x.size
            on_progress(Tick("evaluate", done, size, unit="token"))
    model.train(was_training)
    targets = torch.cat(seen) if seen else torch.zeros(0, dtype=torch.long)
    majority = int(torch.bincount(targets).max()) if count else 0
    return {"loss": total / max(1, count), "accuracy": correct / max(1, count),
            "majority_accuracy": majority / max(1, count), "masked": count}
