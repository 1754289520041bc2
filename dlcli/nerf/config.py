"""The options of `dlcli nerf train` (NerfConfig) and the pieces of a scene they pick: a split of the data
set and the background colour. `nerf render` and `nerf eval` read a run's config.yaml as a NerfConfig.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlcli.core import precision
from dlcli.errors import ConfigError
from dlcli.train.loop import Budget, Every

if TYPE_CHECKING:
    import torch

MODELS = ("hash", "nerf")
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
DEFAULT_LR = {"hash": 1e-2, "nerf": 5e-4}
# Budgets, intervals and the device may change on --resume; anything else would change the experiment.
RESUMABLE = ("output", "max_steps", "max_time", "val_interval", "checkpoint_interval", "log_interval", "device")


@dataclass
class NerfConfig:
    data: str = ""  # a Blender or Instant-NGP data set folder
    output: str = "runs/nerf"
    model: str = "hash"  # hash (multiresolution hash grid + occupancy grid) | nerf (the original coarse + fine MLPs)
    downscale: int = 1  # divide the image size by this
    background: str = "white"  # what transparent pixels are composited on (Blender layout)
    holdout: int = 8  # Instant-NGP layout: every holdout-th frame is a test view (0 = none)
    bound: float = 0.0  # the scene box is [-bound, bound]^3; 0 = from the data (1.5 Blender, 0.375 aabb_scale NGP)
    max_memory_gb: float = 4.0  # refuse data sets whose images and rays need more
    # nerf
    n_coarse: int = 64
    n_fine: int = 128
    pos_freqs: int = 10
    dir_freqs: int = 4
    width: int = 256
    depth: int = 8
    # hash
    n_samples: int = 96  # stratified samples per ray through the scene box, before empty space is skipped
    levels: int = 16
    features: int = 2
    log2_table: int = 17
    base_res: int = 16
    max_res: int = 512
    hidden: int = 64
    grid_resolution: int = 32  # occupancy grid cells per side
    grid_interval: int = 16  # update the occupancy grid every this many steps ...
    grid_warmup: int = 16  # ... from this step on (before, every cell counts as occupied)
    grid_threshold: float = 0.0  # a cell is empty below min(this density, the grid's mean density); 0 = the
    # density that is 1% opaque over one sample step
    precision: str = "auto"  # hash: auto | fp32 | bf16 (the MLPs' matmuls in bfloat16; auto: where native)
    # training
    batch_rays: int = 2048  # rays per step (the most, with batch_samples)
    batch_samples: int = 0  # hash: network samples per step to aim for; rays per step = batch_samples / samples
    # per ray so far, at most batch_rays (cheap early steps while the grid is still full). 0 = always batch_rays
    lr: float = 0.0  # 0 = 1e-2 for hash, 5e-4 for nerf
    lr_final: float = 0.1  # exponential decay to this fraction of lr over the budget
    max_steps: int = 5000
    max_time: str = ""  # wall-clock budget: 90s, 10m
    val_interval: int = 500  # a validation render (PNG) and PSNR every this many steps (0 = only at the end)
    checkpoint_interval: int = 1000
    log_interval: int = 50
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: no data set given (a folder in the Blender or Instant-NGP layout)")
        if self.model not in MODELS:
            raise ConfigError(f"model: '{self.model}' is not one of {', '.join(MODELS)}")
        if self.background not in BACKGROUNDS:
            raise ConfigError(f"background: '{self.background}' is not one of {', '.join(BACKGROUNDS)}")
        precision.check_name(self.precision)
        if self.precision == "bf16" and self.model != "hash":
            raise ConfigError("precision: bf16 is for the hash model; the original NeRF model runs in fp32")
        if self.batch_samples < 0:
            raise ConfigError("batch_samples: must be 0 (fixed batch_rays) or positive")
        for k in ("batch_rays", "n_samples", "n_coarse", "levels", "features", "hidden", "width", "depth",
                  "grid_resolution", "grid_interval", "base_res", "log_interval", "checkpoint_interval"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k}: must be at least 1")
        if not 1 <= self.log2_table <= 26:
            raise ConfigError(f"log2_table: {self.log2_table} is out of range (1..26)")
        if self.max_res < self.base_res:
            raise ConfigError("max_res: must be at least base_res")
        if self.max_steps < 0 or self.val_interval < 0:
            raise ConfigError("max_steps and val_interval must be >= 0")
        if self.max_steps <= 0 and not self.max_time:
            raise ConfigError("max_steps: give a positive step budget or --max-time")

    def resolve_precision(self, device: torch.device) -> precision.Precision:
        """The precision the hash model's MLPs use on `device` (the original NeRF is always fp32)."""
        return precision.resolve(self.precision, device, pays=self.model == "hash",
                                 why_not="the original NeRF model runs in fp32")

    def model_options(self, used: str = "fp32") -> dict[str, Any]:
        """Constructor options of the model; `used` is the resolved precision (fp32 or bf16)."""
        if self.model == "nerf":
            keys = ("n_coarse", "n_fine", "pos_freqs", "dir_freqs", "width", "depth")
        else:
            keys = ("n_samples", "levels", "features", "log2_table", "base_res", "max_res", "hidden",
                    "grid_resolution", "grid_threshold")
        return {k: getattr(self, k) for k in keys} | ({"precision": used} if self.model == "hash" else {})

    def budget(self) -> Budget:
        return Budget.of(max(self.max_steps, 0), max_time=self.max_time)

    def every(self) -> Every:
        """The loop's intervals: a validation render is its evaluation."""
        return Every(self.log_interval, max(self.val_interval, 0), self.checkpoint_interval)


