"""The options of `dlcli gan train` (GanConfig) and the names they may take (build.py makes what they
name: the data, G and D, the noise z).

`gan train`, `gan sample` and `gan eval` all start from here; a run's config.yaml is a GanConfig. Torch-free:
`--help` reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlcli.core import precision
from dlcli.core.runtime import parse_duration
from dlcli.errors import ConfigError
from dlcli.train.loop import Budget, Every

STAGE = "gan"
NOISES = ("gaussian", "uniform")
SCHEDULES = ("constant", "linear")
# Keys that may change when resuming (budgets, intervals, where it runs, where the run directory is).
RESUMABLE = ("max_steps", "max_time", "log_interval", "eval_interval", "snapshot_interval", "checkpoint_interval",
             "eval_samples", "mode_threshold", "device", "output")
GENERATOR = "generator.safetensors"
SNAPSHOTS = "snapshots"
LOSSES = ("minimax", "ns", "wgan-gp", "hinge")  # losses.py
ACTIVATIONS = ("relu", "leaky_relu")  # models.py
ARCHS = ("auto", "mlp", "dcgan")
IMAGE_SIZES = (8, 16, 32, 64)  # what the DCGAN networks build (data.py)
COLORS = ("auto", "gray", "rgb")
SAMPLES = 2500  # generated samples scored for coverage (metrics.py)


@dataclass
class GanConfig:
    """Options of `dlcli gan train`."""

    data: str = "ring8"  # ring8 | grid25 | spiral | moons | digits | an array file | an image folder
    output: str = "runs/gan"
    image_size: int = 0  # images: resize to this square size (8, 16, 32, 64); 0 = as they are
    color: str = "auto"  # images: auto | gray | rgb
    standardize: bool = True  # vectors: train on (x - mean) / std per coordinate
    arch: str = "auto"  # mlp | dcgan | auto (dcgan for images, mlp for vectors)
    z_dim: int = 64  # noise dimension
    noise: str = "gaussian"  # gaussian N(0, I) | uniform U(-1, 1)
    hidden: int = 256  # MLP width
    layers: int = 4  # MLP hidden layers (G and D alike)
    width: int = 64  # DCGAN channels at the finest resolution
    activation: str = "relu"  # G's MLP activation: relu | leaky_relu (D uses LeakyReLU(0.2))
    spectral_norm: bool = False  # spectral normalisation on every layer of D
    loss: str = "ns"  # minimax | ns (non-saturating) | wgan-gp | hinge
    gp_weight: float = 10.0  # lambda of WGAN-GP
    r1_weight: float = 0.0  # gamma of the R1 penalty on real examples (Mescheder et al. 2018); 0 = off
    r1_interval: int = 1  # apply R1 every so many steps, scaled by it (lazy regularisation, StyleGAN2)
    lr_g: float = 2e-4  # Adam learning rates, separate for G and D (TTUR)
    lr_d: float = 2e-4
    lr_schedule: str = "constant"  # constant | linear (decay to 0 over the step or time budget)
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 1  # D updates per G update
    pack: int = 1  # PacGAN: D judges `pack` samples at once (concatenated), all real or all generated
    batch_size: int = 256
    ema: float = 0.999  # decay of the moving average of G's weights; 0 = off
    max_steps: int = 5000  # G updates; 0 = no limit (then max_time)
    max_time: str = ""  # wall-clock budget: 90s, 10m
    log_interval: int = 50
    eval_interval: int = 1000  # coverage metrics on eval_samples samples; 0 = only at the end
    snapshot_interval: int = 500  # a picture every so many steps (the GIF's frames); 0 = only at the end
    checkpoint_interval: int = 1000
    eval_samples: int = SAMPLES
    mode_threshold: int = 1  # high-quality samples (digits: samples) that make a mode (class) captured
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto: bf16 only for image GANs where native)

    def validate(self) -> None:
        precision.check_name(self.precision)
        if not self.data:
            raise ConfigError("data: give a built-in distribution, an array file or an image folder")
        for key, value, allowed in (("arch", self.arch, ARCHS), ("noise", self.noise, NOISES),
                                    ("activation", self.activation, ACTIVATIONS), ("loss", self.loss, LOSSES),
                                    ("color", self.color, COLORS), ("lr_schedule", self.lr_schedule,
                                                                          SCHEDULES)):
            if value not in allowed:
                raise ConfigError(f"{key}: '{value}' is not one of {', '.join(allowed)}")
        if self.image_size and self.image_size not in IMAGE_SIZES:
            raise ConfigError(f"image_size: {self.image_size} is not one of 8, 16, 32, 64 (or 0: as they are)")
        if self.batch_size % self.pack:
            raise ConfigError(f"batch_size: {self.batch_size} is not a multiple of pack={self.pack}")
        for key in ("z_dim", "hidden", "layers", "width", "n_critic", "pack", "batch_size", "eval_samples",
                    "mode_threshold", "log_interval", "r1_interval"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be at least 1, not {getattr(self, key)}")
        for key in ("lr_g", "lr_d"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{key}: must be a positive number, not {v}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError("beta1 and beta2: must be in [0, 1)")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema: must be in [0, 1), not {self.ema}")
        for key in ("gp_weight", "r1_weight"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{key}: must be >= 0, not {v}")
        if min(self.max_steps, self.eval_interval, self.snapshot_interval, self.checkpoint_interval) < 0:
            raise ConfigError("max_steps and the intervals must be >= 0")
        if self.max_time:
            parse_duration(self.max_time)
        if not (self.max_steps or self.max_time):
            raise ConfigError("no budget: set max_steps or max_time")

    def budget(self) -> Budget:
        return Budget.of(self.max_steps, max_time=self.max_time)

    def every(self) -> Every:
        return Every(self.log_interval, self.eval_interval, self.checkpoint_interval)
