"""Run-time set-up shared by training commands: seeds, devices, durations."""

from __future__ import annotations

import os
import random
import re
import sys
from typing import Any

from dlcli.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed % (1 << 32))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    import torch

    torch.manual_seed(seed)


# Device nodes of the GPU drivers torch can use: NVIDIA (CUDA), AMD (ROCm), WSL2's GPU bridge.
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def gpu_possible() -> bool:
    """Whether torch could find a GPU here, without importing torch (which costs 1-2 s of start-up).

    False only on Linux with none of the GPU drivers' device nodes and torch not yet imported: there
    `torch.cuda.is_available()` is False for certain. macOS (MPS) and Windows are left to torch.
    """
    if "torch" in sys.modules or not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in _GPU_NODES)


def resolve_device(name: str) -> Any:
    """`auto` picks cuda, then mps, then cpu; an unavailable device is an error."""
    import torch

    if name not in DEVICES and not name.startswith("cuda:"):
        raise ConfigError(f"device: '{name}' is not one of {', '.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name} was asked for but CUDA is not available (try --device cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device: mps was asked for but is not available (try --device cpu)")
    return torch.device(name)


def parse_duration(text: str) -> float:
    """'90' or '90s' -> 90.0; '10m' -> 600.0; '1h30m' -> 5400.0 (seconds)."""
    m = _DURATION.match(str(text))
    if not text or not str(text).strip() or m is None or not any(m.groups()):
        raise ConfigError(f"'{text}' is not a duration (examples: 90s, 10m, 1h30m)")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + s
