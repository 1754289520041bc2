"""Every shipped config resolves against its command's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcli.core.config import build_config

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = {"rnn-": "dlcli.train_rnn:TrainRNNConfig", "transformer-": "dlcli.train_transformer:TrainTransformerConfig",
           "translate-": "dlcli.translation:TrainTranslateConfig",
           "gan-": "dlcli.gan.train:GanConfig", "nerf-": "dlcli.nerf.train:NerfConfig"}
# gan configs name their built-in data
DATA_KEY = {"translate-": "data.tsv=x.tsv", "gan-": "output=runs/x", "nerf-": "data=x"}


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    prefix = next((p for p in SCHEMAS if path.name.startswith(p)), None)
    assert prefix is not None, f"{path.name}: no schema registered for this config"
    module, cls = SCHEMAS[prefix].split(":")
    import importlib

    schema = getattr(importlib.import_module(module), cls)
    cfg = build_config(schema, path, [DATA_KEY.get(prefix, "data.train=x.ids")])  # data comes from the command line
    assert cfg is not None
