from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dlcli.core import rundir
from dlcli.core.runtime import parse_duration, resolve_device, seed_everything
from dlcli.errors import ConfigError, InputError, OutputExistsError


def test_parse_duration():
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5h") == 5400
    for bad in ("", "ten minutes", "5x"):
        with pytest.raises(ConfigError, match="is not a duration"):
            parse_duration(bad)


def test_seed_makes_torch_reproducible():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="not one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


@dataclass
class Cfg:
    lr: float = 0.1


def test_run_directory(tmp_path):
    run = rundir.create(tmp_path / "run", Cfg(), "test", inputs=[])
    assert (run / "config.yaml").read_text() == "lr: 0.1\n"
    assert rundir.read_meta(run)["stage"] == "test"
    with pytest.raises(OutputExistsError, match="use --resume"):
        rundir.create(run, Cfg(), "test")
    rundir.create(run, Cfg(), "test", resume=True)
    with rundir.MetricsLog(run) as log:
        log.log(step=1, loss=2.5)
        log.log(step=2, loss=float("nan"))
    assert rundir.read_metrics(run) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": None}]
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) == {"step": 1, "loss": 2.5}


def test_tensors_round_trip_and_damage(tmp_path):
    t = {"w": torch.randn(3, 4), "b": torch.arange(3)}
    rundir.save_tensors(t, tmp_path / "m.safetensors")
    back = rundir.load_tensors(tmp_path / "m.safetensors")
    assert torch.equal(back["w"], t["w"]) and torch.equal(back["b"], t["b"])
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="bad.safetensors: damaged or not a safetensors file"):
        rundir.load_tensors(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="no such weights file"):
        rundir.load_tensors(tmp_path / "none.safetensors")
    assert not list(Path(tmp_path).glob(".*dlcli-tmp"))


def test_force_starts_the_run_afresh_but_keeps_other_files(tmp_path):
    run = rundir.create(tmp_path / "run", Cfg(), "test")
    with rundir.MetricsLog(run) as log:
        log.log(step=1)
    (run / "notes.txt").write_text("mine\n")
    rundir.create(run, Cfg(lr=0.2), "test", force=True)
    assert rundir.read_metrics(run) == []
    assert (run / "notes.txt").read_text() == "mine\n"
    assert (run / "config.yaml").read_text() == "lr: 0.2\n"
