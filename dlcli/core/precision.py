"""Numeric precision of a training run: `auto`, `fp32` or `bf16` (autocast).

`auto` uses bfloat16 autocast only where the device runs it natively and it
pays: CUDA devices with bf16 units (compute capability 8.0 or newer) and CPUs
with AVX512-BF16 or AMX, for models wide enough that their matmuls gain from
it. Everywhere else it uses fp32. On other CPUs bf16 is emulated (several
times slower) and some oneDNN kernels, the LSTM's among them, do not exist,
so an explicit `bf16` there is warned about or refused with one clear line.

The choice and its reason travel with the run (`Precision.record()` goes into
meta.json, the summary line says `Precision.describe()`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlcli.errors import ConfigError, DlcliWarning

PRECISIONS = ("auto", "fp32", "bf16")
# The narrowest model for which bf16 autocast pays on a native CPU (measured: docs/precision.md): below it the
# casts cost more than the bf16 matmuls save.
MIN_WIDTH = {"rnn": 128, "transformer": 256}


@dataclass(frozen=True)
class Precision:
    requested: str  # what the config asked for: auto, fp32 or bf16
    used: str  # what the run uses: fp32 or bf16
    reason: str  # why, in a few words
    device_type: str = "cpu"

    @property
    def bf16(self) -> bool:
        return self.used == "bf16"

    def autocast(self) -> Any:
        """The autocast context for forward passes (a no-op in fp32)."""
        import torch

        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16)

    def describe(self) -> str:
        """`precision auto -> fp32 (CPU AVX2: no native bf16)`"""
        return f"precision {self.requested} -> {self.used} ({self.reason})"

    def record(self) -> dict[str, str]:
        return {"requested": self.requested, "used": self.used, "reason": self.reason}


def check_name(value: str, key: str = "precision") -> None:
    if value not in PRECISIONS:
        raise ConfigError(f"{key}: '{value}' is not one of {', '.join(PRECISIONS)}")


def cpu_bf16() -> tuple[bool, str]:
    """(native bf16 on this CPU?, a short description such as 'CPU AVX2: no native bf16').

    Honours ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA, which limit what torch may use."""
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    unit = "AMX" if _has("_is_amx_tile_supported") else "AVX512-BF16" if _has("_is_avx512_bf16_supported") else ""
    if cap != "AVX512" or not unit:
        return False, f"CPU {cap}: no native bf16"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and not any(s in isa for s in ("BF16", "AMX", "FP16", "AVX10", "ALL")):
        return False, f"CPU {cap} limited to {isa} by ONEDNN_MAX_CPU_ISA: no native bf16"
    return True, f"CPU {cap} with {unit}: native bf16"


def _has(name: str) -> bool:
    import torch

    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a private probe that changed: assume the unit is absent
        return False


def device_bf16(device: Any) -> tuple[bool, str]:
    """(native bf16 on `device`?, why) for a torch.device."""
    import torch

    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
        if major >= 8:
            return True, f"CUDA {name} (sm_{major}{minor}): native bf16"
        return False, f"CUDA {name} (sm_{major}{minor}): no native bf16"
    if device.type == "mps":
        return False, "MPS: auto keeps fp32"
    return cpu_bf16()


def resolve(requested: str, device: Any, width: int | None = None, family: str = "transformer", pays: bool = True,
            why_not: str = "") -> Precision:
    """Decide the run's precision. `width` (the model's hidden width, of a `family` in MIN_WIDTH) or
    `pays`/`why_not` say whether bf16 would gain anything for this model; only `auto` listens to them."""
    check_name(requested)
    kind = device.type
    if requested == "fp32":
        return Precision("fp32", "fp32", "as asked", kind)
    native, what = device_bf16(device)
    if width is not None and width < MIN_WIDTH[family]:
        pays, why_not = False, f"model width {width} < {MIN_WIDTH[family]}: bf16 does not pay"
    if requested == "auto":
        if native and pays:
            return Precision("auto", "bf16", what, kind)
        return Precision("auto", "fp32", what if not native else why_not, kind)
    if not native:
        slower = f": a bf16 matmul ran {emulation_slowdown():.1f}x slower than fp32 here" if kind == "cpu" else ""
        warnings.warn(DlcliWarning(f"precision bf16 is emulated on this device ({what}){slower}; "
                                   "--precision auto picks fp32"), stacklevel=2)
    return Precision("bf16", "bf16", f"as asked; {what}", kind)


def emulation_slowdown(n: int = 256, repeats: int = 3) -> float:
    """How many times slower a bf16 matmul is than an fp32 one on this CPU (best of `repeats`)."""
    import torch

    a = torch.randn(n, n)

    def best(x: Any) -> float:
        x @ x  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - t)
        return min(times)

    return best(a.bfloat16()) / max(best(a), 1e-9)


def check_runs(precision: Precision, forward: Callable[[], Any], what: str) -> None:
    """Run `forward()` once under the run's autocast; a kernel that does not exist in bf16 on this
    device becomes one ConfigError naming the operation, instead of a crash in the first step."""
    if not precision.bf16:
        return
    import torch

    try:
        with torch.no_grad(), precision.autocast():
            forward()
    except RuntimeError as e:
        detail = str(e).split(". ")[0].splitlines()[0]
        _, what_device = device_bf16(torch.device(precision.device_type))
        raise ConfigError(f"precision bf16: {what} cannot run in bfloat16 here ({what_device}; {detail}); "
                          "use --precision auto or fp32") from None
