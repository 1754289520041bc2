"""The adversarial losses, each as its formula.

r = D(x) and f = D(G(z)) are raw scores (logits); sigma is the logistic
function, so sigma(r) is D's probability that x is real. softplus(a) =
log(1 + e^a) gives the logs stably: log sigma(a) = -softplus(-a) and
log(1 - sigma(a)) = -softplus(a).

    minimax   (Goodfellow et al. 2014)
              D: max E log sigma(r) + E log(1 - sigma(f))   -> L_D = E softplus(-r) + E softplus(f)
              G: min E log(1 - sigma(f))                     -> L_G = -E softplus(f)
    ns        the non-saturating generator loss of the same paper
              D: as minimax;  G: max E log sigma(f)          -> L_G = E softplus(-f)
    wgan-gp   (Gulrajani et al. 2017), D is a critic
              L_D = E f - E r + lambda E (||grad_x^ D(x^)||_2 - 1)^2, x^ on lines between real and fake
              L_G = -E f
    hinge     (Lim & Ye 2017; Miyato et al. 2018)
              L_D = E max(0, 1 - r) + E max(0, 1 + f);  L_G = -E f

R1 (Mescheder et al. 2018), a regulariser for any of them: gamma/2 E ||grad_x D(x)||^2
on real examples only; D is pushed to be flat on the data, which keeps the
game from circling and lets G's samples settle onto the modes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def d_loss(kind: str, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The discriminator's (critic's) loss from scores on real (r) and generated (f) examples."""
    if kind in ("minimax", "ns"):
        return F.softplus(-r).mean() + F.softplus(f).mean()
    if kind == "wgan-gp":
        return f.mean() - r.mean()  # the gradient penalty is added by the caller
    if kind == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()
    raise ValueError(f"unknown loss {kind!r}")


def g_loss(kind: str, f: torch.Tensor) -> torch.Tensor:
    """The generator's loss from D's scores on its samples."""
    if kind == "minimax":
        return -F.softplus(f).mean()  # E log(1 - sigma(f)), minimised: saturates when D wins
    if kind == "ns":
        return F.softplus(-f).mean()  # -E log sigma(f)
    if kind in ("wgan-gp", "hinge"):
        return -f.mean()
    raise ValueError(f"unknown loss {kind!r}")


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E (||grad D(x^)|| - 1)^2 at x^ = eps x + (1 - eps) G(z), eps ~ U(0, 1) per example."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(r: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over real examples x (which must require grad), from their scores r = D(x)."""
    (grad,) = torch.autograd.grad(r.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def d_prob(kind: str, score: torch.Tensor) -> torch.Tensor:
    """What to show as D(x): a probability sigma(score) for minimax/ns, the raw score otherwise."""
    return torch.sigmoid(score) if kind in ("minimax", "ns") else score
