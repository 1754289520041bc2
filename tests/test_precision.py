"""`precision: auto|fp32|bf16` on whichever CPU runs the suite, and the AVX2 behaviour reproduced in a
subprocess (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2) so both paths are tested on every machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from dlcli.core import precision
from dlcli.core.rundir import load_tensors, read_metrics
from dlcli.errors import ConfigError, DlcliWarning, TrainingDiverged

CPU = torch.device("cpu")
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
X86 = platform.machine().lower() in ("x86_64", "amd64") and torch.backends.cpu.get_cpu_capability() in (
    "AVX2", "AVX512")
TINY_RNN = ["--layers", "1", "--hidden", "128", "--batch-size", "8", "--seq-len", "16", "--device", "cpu",
            "--set", "log_interval=5", "--set", "eval_interval=0", "--set", "checkpoint_interval=0"]


def fake_cpu(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (native, "CPU X: native bf16" if native else
                                                        "CPU AVX2: no native bf16"))


@pytest.mark.parametrize("native", [True, False])
def test_auto_uses_bf16_only_where_native_and_wide_enough(monkeypatch, native):
    fake_cpu(monkeypatch, native)
    wide = precision.resolve("auto", CPU, width=256)
    assert wide.used == ("bf16" if native else "fp32")
    why = "CPU X: native bf16" if native else "CPU AVX2: no native bf16"
    assert wide.describe() == f"precision auto -> {wide.used} ({why})"
    narrow = precision.resolve("auto", CPU, width=32)
    assert narrow.used == "fp32"
    assert ("32 < 256" in narrow.reason) if native else ("AVX2" in narrow.reason)
    assert precision.resolve("auto", CPU, width=128, family="rnn").used == wide.used  # LSTMs gain from 128 on
    assert precision.resolve("auto", CPU, pays=False, why_not="tiny").reason == ("tiny" if native else
                                                                                 "CPU AVX2: no native bf16")
    assert precision.resolve("fp32", CPU, width=1024).used == "fp32"


def test_explicit_bf16_where_emulated_warns_with_the_measured_slowdown(monkeypatch):
    fake_cpu(monkeypatch, False)
    monkeypatch.setattr(precision, "emulation_slowdown", lambda: 4.2)
    with pytest.warns(DlcliWarning, match=r"emulated .*AVX2.*4\.2x slower than fp32.*auto picks fp32"):
        p = precision.resolve("bf16", CPU, width=32)
    assert p.used == "bf16" and p.record() == {"requested": "bf16", "used": "bf16",
                                               "reason": "as asked; CPU AVX2: no native bf16"}
    fake_cpu(monkeypatch, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native: no warning
        assert precision.resolve("bf16", CPU).bf16


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision: 'fp16' is not one of auto, fp32, bf16"):
        precision.resolve("fp16", CPU)


def test_check_runs_turns_a_missing_kernel_into_one_line():
    p = precision.Precision("bf16", "bf16", "as asked", "cpu")

    def broken() -> None:
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive. "
                           "Run workload with ONEDNN_VERBOSE=all\nmore")

    with pytest.raises(ConfigError) as e:
        precision.check_runs(p, broken, "the LSTM")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("precision bf16: the LSTM cannot run in bfloat16 here")
    assert "LSTM forward propagation primitive" in msg and msg.endswith("use --precision auto or fp32")
    precision.check_runs(precision.Precision("fp32", "fp32", "as asked"), broken, "x")  # fp32: never probed


def _dlcli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlcli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


def test_auto_on_this_cpu_is_recorded_and_bf16_trains_where_native(cli, tm_ids, tmp_path):
    native, what = precision.cpu_bf16()
    r = cli("train-rnn", "-d", tm_ids, "-o", tmp_path / "auto", "--max-steps", "20", "--lr", "0.01", *TINY_RNN)
    assert r.exit_code == 0, r.output
    used = "bf16" if native else "fp32"
    meta = json.loads((tmp_path / "auto" / "meta.json").read_text())
    assert meta["precision"] == {"requested": "auto", "used": used, "reason": what}
    assert f"precision auto -> {used} ({what})" in r.stderr
    losses = [m["loss"] for m in read_metrics(tmp_path / "auto") if "loss" in m]
    assert all(m["precision"] == used for m in read_metrics(tmp_path / "auto") if "loss" in m)
    assert losses[-1] < losses[0] < 3.5  # it learns in either precision
    weights = load_tensors(tmp_path / "auto" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values())  # fp32 master weights either way


@pytest.mark.skipif(not X86, reason="the AVX2 limits are x86 settings")
def test_avx2_cpu_auto_picks_fp32_and_an_explicit_bf16_lstm_is_one_clear_line(tm_ids, tmp_path):
    auto = _dlcli(["train-rnn", "-d", tm_ids, "-o", tmp_path / "auto", "--max-steps", "5", *TINY_RNN],
                  AVX2_ENV, tmp_path)
    assert auto.returncode == 0, auto.stderr
    meta = json.loads((tmp_path / "auto" / "meta.json").read_text())
    assert meta["precision"] == {"requested": "auto", "used": "fp32", "reason": "CPU AVX2: no native bf16"}
    assert "precision auto -> fp32 (CPU AVX2: no native bf16)" in auto.stderr

    bf16 = _dlcli(["train-rnn", "-d", tm_ids, "-o", tmp_path / "bf16", "--max-steps", "5", "--precision", "bf16",
                   *TINY_RNN], AVX2_ENV, tmp_path)
    assert bf16.returncode == 2
    lines = bf16.stderr.strip().splitlines()
    assert lines[0].startswith("warning: precision bf16 is emulated on this device (CPU AVX2: no native bf16): "
                               "a bf16 matmul ran ") and "x slower than fp32 here" in lines[0]
    assert lines[1:] == [lines[-1]] and lines[-1].startswith("error: precision bf16: the LSTM cannot run in "
                                                             "bfloat16 here (CPU AVX2: no native bf16; ")
    assert lines[-1].endswith("use --precision auto or fp32") and "Traceback" not in bf16.stderr
    assert not (tmp_path / "bf16").exists()  # nothing left behind: the same command can simply be rerun


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(cli, tm_ids, tmp_path):
    from dlcli.core.config import build_config
    from dlcli.lm.config import TrainRNNConfig
    from dlcli.lm.train import train_rnn

    def diverging(out: Path) -> TrainRNNConfig:
        return build_config(TrainRNNConfig, None, ["model.n_hidden=16", "model.n_layer=1", "batch_size=4",
                                                   "seq_len=8", "log_interval=2", "checkpoint_interval=0",
                                                   "eval_interval=0", "device=cpu", "optim.lr=1e38",
                                                   "optim.name=sgd", "optim.grad_clip=0", "max_steps=20"],
                            {"data.train": str(tm_ids), "output": str(out)})

    with pytest.raises(TrainingDiverged):
        train_rnn(diverging(tmp_path / "new" / "run"))
    assert not (tmp_path / "new" / "run").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingDiverged):
        train_rnn(diverging(tmp_path / "empty"))
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())
    # the CLI: a bad value after the directory was made, then the same command works
    r = cli("train-rnn", "-d", tm_ids, "-o", tmp_path / "cli", "--max-steps", "20", "--lr", "1e38", "--set",
            "optim.grad_clip=0", "--set", "optim.name=sgd", *TINY_RNN)
    assert r.exit_code != 0 and "loss became" in r.stderr and not (tmp_path / "cli").exists()
    r = cli("train-rnn", "-d", tm_ids, "-o", tmp_path / "cli", "--max-steps", "5", *TINY_RNN)
    assert r.exit_code == 0, r.output


def test_a_run_directory_that_held_something_is_left_as_it_was(tm_ids, tmp_path):
    from dlcli.core.config import build_config
    from dlcli.errors import OutputExistsError
    from dlcli.lm.config import TrainRNNConfig
    from dlcli.lm.train import train_rnn

    cfg = build_config(TrainRNNConfig, None, ["model.n_hidden=16", "model.n_layer=1", "batch_size=4", "seq_len=8",
                                              "checkpoint_interval=0", "eval_interval=0", "device=cpu",
                                              "max_steps=4"], {"data.train": str(tm_ids), "output": str(tmp_path)})
    train_rnn(cfg)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(OutputExistsError):
        train_rnn(cfg)
    cfg.model.n_hidden = 32
    with pytest.raises(ConfigError):
        train_rnn(cfg, resume=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
