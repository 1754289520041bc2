"""dlcli.training.distributed: the process group a torchrun run joins."""

from __future__ import annotations

import torch

from dlcli.training import distributed


def test_plain_run_is_a_world_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = distributed.setup(torch.device("cpu"))
    assert (d.rank, d.world, d.main, d.enabled) == (0, 1, True, False)
    assert distributed.any_flag(d, True) and not distributed.any_flag(d, False)


def test_cuda_runs_keep_gloo_for_cpu_tensors(monkeypatch):
    """Flags and logged means are CPU tensors; nccl alone cannot reduce them."""
    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", chosen.append)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed.setup(torch.device("cuda", 0)).rank == 1
    distributed.setup(torch.device("cpu"))
    assert chosen == ["cpu:gloo,cuda:nccl", "gloo"]
