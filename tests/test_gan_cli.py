"""`dlcli gan train|sample|eval` from the command line: outputs and one-line errors."""

from __future__ import annotations

import json

import numpy as np

TINY = ["--hidden", "16", "--layers", "1", "--z-dim", "2", "-b", "32", "--device", "cpu", "-q"]


def _error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_train_sample_eval(cli, tmp_path):
    r = cli("gan", "train", "ring8", "-o", "run", "--max-steps", "6", "--snapshot-interval", "3", *TINY)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "run"
    assert (tmp_path / "run" / "training.gif").is_file() and (tmp_path / "run" / "samples.png").is_file()
    r = cli("gan", "sample", "run", "-n", "7", "-o", "s.npy")
    assert r.exit_code == 0 and r.stdout.strip() == "s.npy"
    assert np.load(tmp_path / "s.npy").shape == (7, 2)
    r = cli("gan", "eval", "run", "-n", "300", "--threshold", "2")
    assert r.exit_code == 0
    ev = json.loads(r.stdout)
    assert ev["samples"] == 300 and ev["n_modes"] == 8 and ev["threshold"] == 2
    # an existing run is never clobbered
    r = cli("gan", "train", "ring8", "-o", "run", "--max-steps", "6", *TINY)
    assert r.exit_code != 0 and "--resume" in _error_line(r)
    r = cli("gan", "sample", "run", "-n", "3", "-o", "s.npy")
    assert r.exit_code != 0 and "already exists" in _error_line(r)


def test_print_config_and_config_errors(cli):
    r = cli("gan", "train", "grid25", "--loss", "hinge", "--r1", "0.5", "--print-config")
    assert r.exit_code == 0 and "data: grid25" in r.stdout and "loss: hinge" in r.stdout
    assert "r1_weight: 0.5" in r.stdout
    r = cli("gan", "train", "ring8", "--r1", "-1")
    assert r.exit_code == 2 and "r1_weight: must be >= 0" in _error_line(r)
    r = cli("gan", "train", "ring8", "--loss", "wasserstein")
    assert r.exit_code == 2 and "loss: 'wasserstein' is not one of" in _error_line(r)
    r = cli("gan", "train", "ring8", "--set", "n_critc=5")
    assert r.exit_code == 2 and "did you mean 'n_critic'" in _error_line(r)


def test_bad_data_is_one_line(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    r = cli("gan", "train", "empty", "-o", "r1", *TINY)
    assert r.exit_code == 1 and "empty: no PNG or JPEG images found" in _error_line(r)
    assert not (tmp_path / "r1" / "checkpoint.json").exists()
    np.save(tmp_path / "flat.npy", np.arange(10.0))
    r = cli("gan", "train", "flat.npy", "-o", "r2", *TINY)
    assert r.exit_code == 1 and "flat.npy: array has shape (10,)" in _error_line(r)
    r = cli("gan", "train", "nosuch", "-o", "r3", *TINY)
    assert r.exit_code == 1 and "nosuch: no such file or directory (built-in data: ring8" in _error_line(r)
    r = cli("gan", "sample", "nosuch", "-o", "x.npy")
    assert r.exit_code == 1 and "nosuch: no such run directory" in _error_line(r)
