"""ImagesConfig: what `dlcli anomaly images` reads (torch- and numpy-free, for `--help`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dlcli.core.precision import check_name
from dlcli.errors import ConfigError


@dataclass
class ImagesConfig:
    """Options of `dlcli anomaly images` (dlcli/anomaly/images.py)."""

    input: str = ""  # a folder of images, or one in the MVTec AD layout (test/<defect>/, ground_truth/<defect>/)
    output: str = ""  # the output folder: scores.csv, overlays/, metrics.json (MVTec layout), summary.json
    clip: str = ""  # a CLIP model folder (Hugging Face CLIP, or OpenCLIP safetensors with its config)
    object: str = ""  # the object's name in the prompts ("": the input folder's name)
    reference: str = ""  # a folder of normal images: few-shot ("": zero-shot; MVTec layout + shots: train/good)
    shots: int = 0  # reference images used (the first, sorted); 0: all of --reference, none without it
    scales: list[int] = field(default_factory=lambda: [2, 3])  # window sides in patches (WinCLIP: 2 and 3)
    smooth: float = 0.25  # Gaussian blur of the map, sigma in patches (0.25: WinCLIP's 4 px at 16 px; 0: none)
    text_weight: float = 0.5  # few-shot: share of the language score in the image score and the map
    threshold: float = 0.5  # flag an image whose score is at least this
    batch_size: int = 256  # windows per forward pass of the image tower (256: ~10 % faster than 64 on 2 cores)
    max_fpr: float = 0.3  # PRO is integrated up to this false positive rate
    overlays: bool = True  # one PNG per image: the map on the image
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto: bf16 where native and the tower wide enough)

    def validate(self) -> None:
        if not self.input:
            raise ConfigError("input: no image folder given")
        if not self.output:
            raise ConfigError("output: no output folder given (-o)")
        if not self.clip:
            raise ConfigError("clip: no CLIP model folder given (--clip)")
        if self.shots < 0:
            raise ConfigError(f"shots: must be >= 0, not {self.shots}")
        if not self.scales or any(s < 1 for s in self.scales):
            raise ConfigError(f"scales: window sides must be >= 1 patch, not {self.scales}")
        for name in ("text_weight", "threshold"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise ConfigError(f"{name}: must be in [0, 1], not {v}")
        if not (math.isfinite(self.smooth) and self.smooth >= 0):
            raise ConfigError(f"smooth: must be >= 0, not {self.smooth}")
        if not (0 < self.max_fpr <= 1):
            raise ConfigError(f"max_fpr: must be in (0, 1], not {self.max_fpr}")
        check_name(self.precision)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, not {self.batch_size}")
