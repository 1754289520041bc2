"""Input encodings: the NeRF positional encoding and Instant-NGP's multiresolution hash encoding."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Instant-NGP's spatial hash: XOR of the integer coordinates times large primes (Teschner et al. 2003).
PRIMES = (1, 2654435761, 805459861)


class PositionalEncoding(nn.Module):
    """gamma(p) = (p, sin(2^0 pi p), cos(2^0 pi p), ..., sin(2^(L-1) pi p), cos(2^(L-1) pi p)) per coordinate."""

    def __init__(self, n_freqs: int, include_input: bool = True, in_dim: int = 3) -> None:
        super().__init__()
        self.n_freqs = n_freqs
        self.include_input = include_input
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs)) * math.pi, persistent=False)
        self.out_dim = in_dim * (2 * n_freqs + int(include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = (x[..., None] * self.freqs).flatten(-2)  # (..., D*L)
        parts = [torch.sin(scaled), torch.cos(scaled)]
        if self.include_input:
            parts.insert(0, x)
        return torch.cat(parts, dim=-1)


def level_resolutions(levels: int, base_res: int, max_res: int) -> list[int]:
    """N_l = floor(N_min * b^l), with b chosen so that the last level reaches N_max (Instant-NGP eq. 2-3)."""
    b = math.exp((math.log(max_res) - math.log(base_res)) / max(levels - 1, 1))
    return [int(math.floor(base_res * b**lvl + 1e-6)) for lvl in range(levels)]


class _Gather(torch.autograd.Function):
    """rows = table[index], whose backward sums the incoming gradients per row with bincount: on CPU several
    times faster than the scatter in embedding's backward."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return F.embedding(index, table)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        flat, g = index.reshape(-1), grad.reshape(-1, grad.shape[-1])
        cols = [torch.bincount(flat, weights=g[:, f], minlength=ctx.rows) for f in range(g.shape[1])]
        return torch.stack(cols, dim=1).to(grad.dtype), None


class _CompiledHash(torch.autograd.Function):
    """The hash encoding through the fused numba kernels (dlcli.nerf.kernels): CPU, float32."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, table: torch.Tensor, enc: HashEncoding) -> torch.Tensor:
        from dlcli.nerf import kernels

        xs = x.detach().contiguous().numpy()
        ctx.save_for_backward(x)
        ctx.enc = enc
        rows = table.detach().reshape(-1, enc.features).contiguous().numpy()
        out = kernels.hash_forward(xs, enc.res.numpy(), enc.mult.numpy(), rows, enc.table_size)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        from dlcli.nerf import kernels

        (x,) = ctx.saved_tensors
        enc = ctx.enc
        g = kernels.hash_backward(x.contiguous().numpy(), enc.res.numpy(), enc.mult.numpy(),
                                  grad.float().contiguous().numpy(), enc.table_size, enc.features)
        return None, torch.from_numpy(g).view(enc.levels, enc.table_size, enc.features), None


class HashEncoding(nn.Module):
    """Multiresolution hash encoding (Müller et al., SIGGRAPH 2022), in plain PyTorch.

    Level l is a grid of resolution N_l over the unit cube. A point's 8 surrounding vertices index a table of
    2^log2_table feature vectors (one table per level): directly where the grid fits in the table (coarse
    levels), through the spatial hash (x * 1) XOR (y * 2654435761) XOR (z * 805459861) mod T otherwise. The
    features are trilinearly interpolated and the levels concatenated: (B, 3) in [0, 1] -> (B, levels * features).

    Direct indexing uses x + y * S + z * S^2 with S the power of two at or above N_l + 1, so that it too is an
    XOR of per-axis terms (their bits do not overlap); levels with S^3 <= T are indexed directly. Every
    per-axis term is computed for the two vertex coordinates of the cell and combined by broadcasting.

    `forward_reference` is that computation in PyTorch; on the CPU `forward` runs the same steps fused in
    compiled kernels (dlcli.nerf.kernels, several times faster), elsewhere (CUDA) the reference.
    """

    def __init__(self, levels: int = 16, features: int = 2, log2_table: int = 19, base_res: int = 16,
                 max_res: int = 2048) -> None:
        super().__init__()
        self.levels, self.features, self.table_size = levels, features, 2**log2_table
        res = level_resolutions(levels, base_res, max_res)
        self.register_buffer("res", torch.tensor(res, dtype=torch.int64), persistent=False)
        side = [1 << (r + 1 - 1).bit_length() for r in res]  # S: power of two >= N_l + 1
        dense = [sd**3 <= self.table_size for sd in side]
        mult = [(1, sd, sd * sd) if d else PRIMES for sd, d in zip(side, dense, strict=True)]
        self.dense = dense
        self.register_buffer("mult", torch.tensor(mult, dtype=torch.int64), persistent=False)  # (L, 3)
        offsets = torch.arange(levels, dtype=torch.int64) * self.table_size  # level l's rows start at l * T
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Parameter(torch.empty(levels, self.table_size, features).uniform_(-1e-4, 1e-4))
        self.out_dim = levels * features
        self.compiled = True  # False = always the PyTorch reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3) in [0, 1] -> (B, levels * features)."""
        if self.compiled and x.device.type == "cpu" and self.table.dtype == torch.float32 and not x.requires_grad:
            return _CompiledHash.apply(x.float(), self.table, self)
        return self.forward_reference(x)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        pos = x.clamp(0.0, 1.0)[:, None, :] * self.res[:, None]  # (B, L, 3) in grid units
        cell = pos.floor().to(torch.int64).clamp(max=self.res[:, None] - 1)
        frac = pos - cell  # position inside the cell, in [0, 1]^3
        # Per axis, the two vertex coordinates (cell, cell + 1) times the axis multiplier, mod T: (B, L, 3, 2).
        term = (torch.stack([cell, cell + 1], dim=-1) * self.mult[:, :, None]) & (self.table_size - 1)
        term[:, :, 0] += self.offsets[:, None]  # above bit log2(T), so XOR keeps it: an offset into the flat table
        term = term.to(torch.int32) if self.levels * self.table_size < 2**31 else term  # half the memory traffic
        wt = torch.stack([1.0 - frac, frac], dim=-1)  # the linear-interpolation weights of those coordinates
        # The 8 corners by broadcasting the axes against each other: (B, L, 2, 2, 2) -> (B, L, 8).
        index = torch.bitwise_xor(torch.bitwise_xor(term[:, :, 0, :, None, None], term[:, :, 1, None, :, None]),
                                  term[:, :, 2, None, None, :]).flatten(2)
        w = (wt[:, :, 0, :, None, None] * wt[:, :, 1, None, :, None] * wt[:, :, 2, None, None, :]).flatten(2)
        feats = _Gather.apply(self.table.view(-1, self.features), index)  # (B, L, 8, F)
        return torch.einsum("blc,blcf->blf", w, feats).flatten(1)
