"""Every shipped config resolves against its command's schema, and trains on the machine at hand.

Each config in configs/ runs through its real command (`--config`) for a few steps on tiny data and must
give finite losses that fall. Precision, optimizer, schedule and data options stay as shipped; only budgets
and intervals change, and the model or data shrink only where noted (`SHRINK`), so a config that cannot run
on this CPU (bf16 where it is emulated or missing, a kernel that does not exist) can never ship again.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch

from dlcli.core.config import build_config, load_yaml
from dlcli.core.rundir import read_metrics

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SCHEMAS = {"rnn-": "dlcli.lm.config:TrainRNNConfig", "transformer-": "dlcli.lm.config:TrainTransformerConfig",
           "translate-": "dlcli.translation.config:TrainTranslateConfig",
           "gan-": "dlcli.gan.config:GanConfig", "nerf-": "dlcli.nerf.config:NerfConfig"}
# gan configs name their built-in data
DATA_KEY = {"translate-": "data.tsv=x.tsv", "gan-": "output=runs/x", "nerf-": "data=x"}
COMMAND = {"rnn-": ["train-rnn"], "transformer-": ["train-transformer"],
           "translate-": ["train-transformer", "--task", "translate"], "gan-": ["gan", "train"],
           "nerf-": ["nerf", "train"]}
# Budgets: a few steps; the schedule follows them instead of the shipped wall clock.
# 30 steps, logged as three means of 10: past the warm-up, where a shipped learning rate could blow up.
BUDGET = {"rnn-": ["max_steps=30", "max_time=", "log_interval=10", "eval_interval=0", "checkpoint_interval=0"],
          "transformer-": ["max_steps=30", "max_time=", "log_interval=10", "eval_interval=0",
                           "checkpoint_interval=0"],
          "translate-": ["max_steps=30", "max_time=", "log_interval=10", "eval_interval=0", "checkpoint_interval=0",
                         "bleu_sample=20"],
          "gan-": ["max_steps=150", "max_time=", "log_interval=50", "eval_interval=0", "snapshot_interval=0",
                   "checkpoint_interval=0", "eval_samples=500"],
          "nerf-": ["max_steps=24", "max_time=", "log_interval=4", "val_interval=0", "checkpoint_interval=1000"]}
# Where the shipped size would make the test slow (or needs a GPU), and why.
SHRINK = {
    # a GPU config: no CUDA here, and torch.compile of a 10.7M-parameter model on 2 cores takes minutes
    "transformer-shakespeare-gpu.yaml": ["device=cpu", "compile=false", "model.n_layer=1", "batch_size=4"],
    # 80,000 pairs: a BPE vocabulary of 6,000 trained on all of them takes most of a minute
    "translate-fra-eng-cpu.yaml": ["data.limit=1500", "data.held_out=100"],
    # 1080x1920 JPEGs: 8x downscale keeps loading cheap; fewer rays per step
    "nerf-fox-cpu.yaml": ["batch_rays=1024", "batch_samples=16384"],
    "nerf-synth-cpu.yaml": ["batch_rays=512"],
    "nerf-chair-cpu.yaml": ["batch_rays=1024", "batch_samples=16384"],
}


def _prefix(path: Path) -> str:
    prefix = next((p for p in SCHEMAS if path.name.startswith(p)), None)
    assert prefix is not None, f"{path.name}: no schema registered for this config"
    return prefix


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    prefix = _prefix(path)
    module, cls = SCHEMAS[prefix].split(":")
    schema = getattr(importlib.import_module(module), cls)
    cfg = build_config(schema, path, [DATA_KEY.get(prefix, "data.train=x.ids")])  # data comes from the command line
    assert cfg is not None
    assert getattr(cfg, "precision", "auto") == "auto", f"{path.name}: ship precision: auto (it runs everywhere)"


def _data(path: Path, prefix: str, ts_ids: Path, tmp_path: Path) -> list[str]:
    """The command's data argument for this config."""
    if prefix in ("rnn-", "transformer-"):
        return ["-d", str(ts_ids)]
    if prefix == "translate-":
        return ["-d", str(DATA / "fra-eng.txt")]
    if prefix == "gan-":
        data = load_yaml(path)["data"]
        if data == "digits":
            pytest.importorskip("sklearn", reason="the digits config needs scikit-learn")
        return [data]
    if "fox" in path.name:
        if not (DATA / "nerf" / "fox").is_dir():
            pytest.skip("the fox capture is not in ../shared/data")
        return [str(DATA / "nerf" / "fox")]
    if "chair" in path.name:
        if not (DATA / "nerf" / "chair").is_dir():
            pytest.skip("the chair scene is not in ../shared/data")
        return [str(DATA / "nerf" / "chair")]
    from dlcli.nerf.synth import SynthConfig, synth

    synth(SynthConfig(output=str(tmp_path / "scene"), size=24, n_train=8, n_val=1, n_test=1))
    return [str(tmp_path / "scene")]


def _losses(records: list[dict], prefix: str) -> list[float]:
    key = {"gan-": "loss_d", "nerf-": "psnr"}.get(prefix, "loss")
    return [r[key] for r in records if r.get(key) is not None]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_trains_here(path, cli, ts_ids, tmp_path):
    prefix = _prefix(path)
    if not DATA.is_dir():
        pytest.skip("real data not found")
    args = [*COMMAND[prefix], *_data(path, prefix, ts_ids, tmp_path), "--config", str(path), "-o",
            str(tmp_path / "run")]
    for s in BUDGET[prefix] + SHRINK.get(path.name, []):
        args += ["--set", s]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr, r.stderr  # auto never picks an emulated precision
    records = read_metrics(tmp_path / "run")
    values = _losses(records, prefix)
    assert len(values) >= 2 and all(math.isfinite(v) for v in values), values
    if prefix == "nerf-":
        assert values[-1] > values[0], f"{path.name}: PSNR did not rise: {values}"
    elif prefix == "gan-":
        assert all(math.isfinite(r["loss_g"]) for r in records if "loss_g" in r)
    else:
        assert values[-1] < values[0], f"{path.name}: loss did not fall: {values}"
    used = {r["precision"] for r in records if "precision" in r}
    assert used <= {"fp32", "bf16"}
    assert torch.get_default_dtype() == torch.float32
