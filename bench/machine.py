"""The machine a bench ran on, for its printed header: every figure names the CPU kind it was measured on."""

from __future__ import annotations

import os
import platform


def cpu_kind() -> str:
    """E.g. 'AMD EPYC (AVX512 with AVX512-BF16), 2 threads'. The kind is torch's CPU capability, so it
    honours ATEN_CPU_CAPABILITY (an emulated AVX2 run says AVX2)."""
    import torch

    name, flags = platform.processor(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and not flags:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability()
    if isa == "AVX512" and "avx512_bf16" in flags:
        isa += " with AVX512-BF16"
    if os.environ.get("ATEN_CPU_CAPABILITY"):  # a stand-in: say so, since the name is the real CPU's
        isa += f", limited by ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']}"
    n = torch.get_num_threads()
    return f"{name or 'unknown CPU'} ({isa}), {n} thread{'s' if n != 1 else ''}"
