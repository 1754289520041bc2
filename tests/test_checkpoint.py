"""train/checkpoint: one file with its bookkeeping in the metadata; old two-file checkpoints still load;
a torn, damaged or malformed checkpoint is one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dlcli.core import rundir
from dlcli.errors import InputError
from dlcli.train import checkpoint


def model_and_opt(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    return m, opt


def test_state_lives_in_the_tensors_file_and_the_json_is_only_a_copy(tmp_path):
    m, opt = model_and_opt()
    checkpoint.save(tmp_path, m, opt, {"step": 30, "epoch": 1})
    early = (tmp_path / checkpoint.STATE).read_text()
    m.weight.data += 1
    checkpoint.save(tmp_path, m, opt, {"step": 60, "epoch": 2})
    meta = rundir.read_metadata(tmp_path / checkpoint.TENSORS)
    assert json.loads(meta[checkpoint.KEY])["state"]["step"] == 60
    assert json.loads((tmp_path / checkpoint.STATE).read_text())["state"]["step"] == 60
    # the kill of issue 17: the new tensors, the old JSON; resume must take the step of the weights
    (tmp_path / checkpoint.STATE).write_text(early)
    m2, opt2 = model_and_opt(1)
    state, _ = checkpoint.load(tmp_path, m2, opt2, torch.device("cpu"))
    assert state["step"] == 60 and torch.equal(m2.weight, m.weight)
    (tmp_path / checkpoint.STATE).unlink()  # the copy is not needed at all
    assert checkpoint.load(tmp_path, m2, opt2, torch.device("cpu"))[0]["step"] == 60


def rewrite_metadata(run: Path, text: str) -> None:
    save_file(load_file(str(run / checkpoint.TENSORS)), str(run / checkpoint.TENSORS), metadata={checkpoint.KEY: text})


@pytest.mark.parametrize(("change", "message"), [
    (lambda doc: doc["state"].pop("step"), r"checkpoint.safetensors: damaged checkpoint \(no 'step' in its state\)"),
    (lambda doc: doc["state"].update(step="x"), r"its step is 'x', not a count"),
    (lambda doc: doc.pop("state"), r"no \"state\" in its bookkeeping"),
    (lambda doc: doc["tensors"].append("model.extra"), r"its tensors do not match its bookkeeping: model.extra"),
    (lambda doc: doc.update(param_groups={}), r"'param_groups' is not a list"),
])
def test_a_malformed_checkpoint_is_one_clear_line(tmp_path, change, message):
    m, opt = model_and_opt()
    checkpoint.save(tmp_path, m, opt, {"step": 5})
    doc = checkpoint.read(tmp_path)
    change(doc)
    rewrite_metadata(tmp_path, json.dumps(doc))
    with pytest.raises(InputError, match=message):
        checkpoint.load(tmp_path, m, opt, torch.device("cpu"))


def test_garbled_bookkeeping_and_damaged_files(tmp_path):
    m, opt = model_and_opt()
    checkpoint.save(tmp_path, m, opt, {"step": 5})
    rewrite_metadata(tmp_path, "{not json")
    with pytest.raises(InputError, match=r"checkpoint.safetensors: damaged checkpoint \(its bookkeeping is not valid"):
        checkpoint.load(tmp_path, m, opt, torch.device("cpu"))
    (tmp_path / checkpoint.TENSORS).write_bytes(b"\x00" * 7)
    with pytest.raises(InputError, match="checkpoint.safetensors: damaged or not a safetensors file"):
        checkpoint.load(tmp_path, m, opt, torch.device("cpu"))
    (tmp_path / checkpoint.TENSORS).unlink()
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        checkpoint.load(tmp_path, m, opt, torch.device("cpu"))


def old_format(run: Path, doc: dict | None) -> None:
    """A checkpoint as runs before this one wrote it: tensors without metadata, then checkpoint.json."""
    m, opt = model_and_opt()
    checkpoint.save(run, m, opt, {"step": 5})
    save_file(load_file(str(run / checkpoint.TENSORS)), str(run / checkpoint.TENSORS))
    (run / checkpoint.STATE).unlink()
    if doc is not None:
        (run / checkpoint.STATE).write_text(json.dumps(doc))


def test_old_two_file_checkpoints_still_load_and_are_checked(tmp_path):
    m, opt = model_and_opt()
    good = {"state": {"step": 5}, "param_groups": opt.state_dict()["param_groups"], "tied": {}}
    good["param_groups"][0]["betas"] = list(good["param_groups"][0]["betas"])
    old_format(tmp_path, good)
    assert checkpoint.load(tmp_path, m, opt, torch.device("cpu"))[0]["step"] == 5
    old_format(tmp_path, {"state": {"epoch": 1}, "param_groups": [], "tied": {}})  # issue 17 item 8: no step
    with pytest.raises(InputError, match=r"checkpoint.json: damaged checkpoint \(no 'step' in its state\)"):
        checkpoint.load(tmp_path, m, opt, torch.device("cpu"))
    old_format(tmp_path, None)  # stopped between its two writes
    with pytest.raises(InputError, match="checkpoint.safetensors: incomplete checkpoint"):
        checkpoint.load(tmp_path, m, opt, torch.device("cpu"))


def test_the_old_runs_checkpoints_read(tmp_path):
    fixtures = Path(__file__).resolve().parent / "fixtures" / "old_runs"
    for name in ("rnn", "gpt", "gan", "nerf", "translate", "rlhf-ppo"):
        shutil.copytree(fixtures / name, tmp_path / name)
        assert checkpoint.read(tmp_path / name)["state"]["step"] > 0, name


def test_cli_resume_of_a_damaged_checkpoint_is_one_line(cli, tm_ids):
    args = ["train-rnn", "-d", tm_ids, "-o", "run", "--hidden", "16", "--layers", "1", "--device", "cpu", "-q"]
    assert cli(*args, "--max-steps", "3").exit_code == 0
    doc = checkpoint.read("run")
    del doc["state"]["step"]
    rewrite_metadata(Path("run"), json.dumps(doc))
    r = cli(*args, "--max-steps", "6", "--resume")
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: run/checkpoint.safetensors: damaged checkpoint (no 'step' in its state)"
