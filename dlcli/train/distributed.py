"""DDP under torchrun: process-group set-up from the environment torchrun sets."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1):
    gloo on CPU, nccl on CUDA. A plain run is a world of one.

    On CUDA, gloo still serves collectives on CPU tensors (flags such as
    'time is up', logged means) and nccl those on GPU tensors.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def setup_device(name: str) -> tuple[torch.device, Dist]:
    """The device `name` (auto|cpu|cuda|mps) and the process group; under torchrun on CUDA each process
    gets its own GPU (LOCAL_RANK)."""
    from dlcli.core.runtime import resolve_device

    device = resolve_device(name)
    d = setup(device)
    if d.enabled and device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    return device, d


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_flag(d: Dist, flag: bool) -> bool:
    """True on every rank if it is True on any rank (e.g. 'time is up')."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
