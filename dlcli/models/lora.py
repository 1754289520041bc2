"""LoRA: low-rank adapters for fine-tuning (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").

A frozen linear layer W (out x in) learns only a low-rank change B A, with A (r x in) and B (out x r):

    h = W x + b + (alpha / r) * B (A x)

A starts random and B at zero, so before the first step the layer is exactly the base layer. Only A and B
(r * (in + out) numbers instead of in * out) get gradients and optimizer state. `merge` folds the change
into the weight, W <- W + (alpha / r) B A, which gives a plain nn.Linear as fast as the base one.

`inject` puts adapters into the linear layers of a model whose names match `targets` (a target is one or
more dotted name parts: "attn" matches every linear layer inside a module called attn, "mlp.proj" only
the MLP's output projection) and freezes every other weight. `adapter_state` is what a run saves: the
trainable parameters only (the adapters, and anything left trainable on purpose, such as a reward head).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update. Its base weight and bias keep nn.Linear's
    names (`weight`, `bias`), so a model's state_dict keeps its keys and gains `lora_A` and `lora_B`."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        assert rank >= 1
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # the same tensors as the base layer: no copy
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        dev, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=dev, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=dev, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.dropout = nn.Dropout(dropout)
        self.enabled = True  # False: the base layer alone (see `disabled`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.weight, self.bias)  # W x + b
        if not self.enabled:
            return h
        return h + self.scale * F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)  # (alpha/r) B A x

    def delta(self) -> torch.Tensor:
        """(alpha / r) B A: what the adapter adds to W (out x in)."""
        return self.scale * (self.lora_B @ self.lora_A)

    def merged(self) -> nn.Linear:
        """A plain nn.Linear with W + (alpha / r) B A as its weight (and the same bias)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight + self.delta().to(self.weight.dtype))
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha:g}"


def matches(name: str, targets: list[str]) -> bool:
    """Whether the module path `name` ("blocks.0.attn.qkv") contains one of `targets` as whole dotted parts."""
    return any(f".{t.strip('.')}." in f".{name}." for t in targets)


def linear_names(model: nn.Module) -> list[str]:
    """The names of a model's linear layers (for messages that list what a target could be)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def inject(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float = 0.0) -> list[str]:
    """Freeze every parameter of `model`, then replace each nn.Linear whose name matches `targets` by a
    LoRALinear around it (in place). Returns the names replaced (empty: nothing matched)."""
    model.requires_grad_(False)
    chosen = [n for n in linear_names(model) if matches(n, targets)]
    for name in chosen:
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, LoRALinear(getattr(owner, leaf), rank, alpha, dropout))
    return chosen


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (in place): each LoRALinear becomes the plain nn.Linear
    W + (alpha / r) B A. The model then has its original module types and state_dict keys."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoRALinear):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, m.merged())
    return model


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[None]:
    """Inside the block the model is its base: every adapter is off."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    for m in layers:
        m.enabled = False
    try:
        yield
    finally:
        for m in layers:
            m.enabled = True


def without_adapters(model: nn.Module) -> Callable[..., Any]:
    """`model` called with its adapters off: the frozen base (DPO's reference) with no copy of its weights."""

    def base(*args: Any, **kwargs: Any) -> Any:
        with disabled(model):
            return model(*args, **kwargs)

    return base


def adapter_names(model: nn.Module) -> list[str]:
    """The names of the trainable parameters: the adapters (and whatever else was left trainable)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name: what `adapter.safetensors` holds."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def load_adapter_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved adapter tensors into `model` (which has had `inject` with the same settings). Raises
    ValueError naming the first missing, unexpected or misshapen tensor."""
    params = dict(model.named_parameters())
    wanted = set(adapter_names(model))
    missing, extra = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
    if missing or extra:
        raise ValueError(f"missing {missing[0]}" if missing else f"unexpected {extra[0]}")
    with torch.no_grad():
        for n, t in tensors.items():
            if params[n].shape != t.shape:
                raise ValueError(f"{n} has shape {tuple(t.shape)}, the model's {tuple(params[n].shape)}")
            params[n].copy_(t)


def count(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters), tied weights counted once."""
    params = list(model.parameters())  # named_parameters/parameters already skip shared tensors
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
