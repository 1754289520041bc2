"""Image quality: PSNR and SSIM on images in [0, 1].

SSIM follows Wang, Bovik, Sheikh and Simoncelli (IEEE TIP 2004): local means, variances and covariance under
an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, averaged over the valid region
(no padding) and the RGB channels. Implemented here with a separable convolution (dlcli.nerf.metrics.ssim).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_IMPLEMENTATION = ("dlcli.nerf.metrics.ssim: Wang et al. 2004, 11x11 Gaussian window (sigma 1.5), K1 0.01, "
                       "K2 0.03, data range 1, valid region, mean over RGB")
PSNR_IMPLEMENTATION = "dlcli.nerf.metrics.psnr: -10 log10(MSE), data range 1"


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    mse = float(F.mse_loss(pred.float(), target.float()))
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf


def mse_to_psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean SSIM of two (H, W, C) images in [0, 1]. Images smaller than the window use a window of their size."""
    x = pred.double().permute(2, 0, 1)[:, None]  # (C, 1, H, W): each channel on its own
    y = target.double().permute(2, 0, 1)[:, None]
    size = min(window, x.shape[-1], x.shape[-2])
    g = _gaussian(size, sigma).to(x.device)
    gh, gv = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, gh), gv)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = k1**2, k2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean())
