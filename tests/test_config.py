from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dlcli.core.config import build_config, diff, from_dict, parse_sets, to_dict, to_yaml
from dlcli.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-3
    name: str = "adamw"


@dataclass
class Cfg:
    steps: int = 10
    tags: list[str] = field(default_factory=list)
    seed: int | None = None
    amp: bool = False
    optim: Optim = field(default_factory=Optim)


def test_precedence_defaults_yaml_set_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("steps: 20\noptim:\n  lr: 0.01\n  name: sgd\n")
    cfg = build_config(Cfg, y, ["optim.lr=0.5", "steps=30"], {"steps": 40, "seed": None})
    assert cfg.steps == 40  # flag beats --set beats YAML
    assert cfg.optim.lr == 0.5  # --set beats YAML
    assert cfg.optim.name == "sgd"  # YAML beats default
    assert cfg.seed is None and cfg.amp is False


def test_unknown_key_names_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        build_config(Cfg, None, ["optim.lrr=1"])
    y = tmp_path / "c.yaml"
    y.write_text("stepz: 1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'stepz' \(did you mean 'steps'\?\)"):
        build_config(Cfg, y)


def test_types_are_checked():
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        build_config(Cfg, None, ["steps=ten"])
    with pytest.raises(ConfigError, match="amp: expected true or false"):
        build_config(Cfg, None, ["amp=maybe"])
    assert build_config(Cfg, None, ["tags=a,b"]).tags == ["a", "b"]
    assert build_config(Cfg, None, ["tags=[x, y]"]).tags == ["x", "y"]
    assert build_config(Cfg, None, ["seed=7"]).seed == 7


def test_malformed_yaml_names_file_and_line(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("steps: 1\noptim: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d+"):
        build_config(Cfg, y)
    y.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        build_config(Cfg, y)


def test_round_trip_and_diff():
    cfg = build_config(Cfg, None, ["optim.lr=0.1", "tags=a"])
    again = from_dict(Cfg, to_dict(cfg))
    assert again == cfg
    assert "optim:\n  lr: 0.1" in to_yaml(cfg)
    assert diff(Cfg(), cfg) == ["optim.lr: 0.001 -> 0.1", "tags: [] -> ['a']"]


def test_parse_sets_requires_equals():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_sets(["steps"])
    assert parse_sets(["a.b=1", "c=x=y"]) == {"a.b": 1, "c": "x=y"}
