"""core/rundir: --force replaces only a run of the same stage, keeps the old one until the new one has
saved work, and a run directory is locked by the process training in it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcli.core import rundir, runguard
from dlcli.errors import InputError, OutputExistsError

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Cfg:
    output: str = "run"
    seed: int = 1


def old_run(path: Path, stage: str = "train-rnn") -> Path:
    """A finished run: config, meta, weights, a user's note."""
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"stage": stage}))
    (path / "config.yaml").write_text("seed: 7\n")
    (path / "model.safetensors").write_bytes(b"old weights")
    (path / "snapshots").mkdir()
    (path / "snapshots" / "a.png").write_bytes(b"png")
    return path


def contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != runguard.LOCK}


@rundir.removed_on_failure
def start(path: Path, stage: str = "train-rnn", force: bool = True, fail: str = "", save: bool = False) -> Path:
    """A stage's training function: make the run, maybe write saved work, maybe fail."""
    run = rundir.create(path, Cfg(), stage, force=force)
    if save:
        (run / "checkpoint.safetensors").write_bytes(b"new checkpoint")
        runguard.saved(run)
    if fail:
        raise InputError(fail)
    (run / "model.safetensors").write_bytes(b"new weights")
    return run


def test_force_refuses_an_ordinary_folder_and_leaves_it_alone(tmp_path):
    user = tmp_path / "userdir"
    user.mkdir()
    (user / "holiday.png").write_bytes(b"\x89PNG holiday")
    with pytest.raises(OutputExistsError, match=r"userdir is not a dlcli train-rnn run directory; refusing to "
                                                r"replace it with --force$"):
        start(user)
    assert contents(user) == {"holiday.png": b"\x89PNG holiday"}
    assert sorted(p.name for p in user.iterdir()) == ["holiday.png"]  # no lock file left in a user's folder


def test_force_refuses_another_stages_run(tmp_path):
    run = old_run(tmp_path / "gan", stage="gan")
    before = contents(run)
    with pytest.raises(OutputExistsError, match="gan is not a dlcli train-rnn run directory"):
        start(run)
    assert contents(run) == before


def test_without_force_a_run_is_not_replaced(tmp_path):
    run = old_run(tmp_path / "r")
    with pytest.raises(OutputExistsError, match="not empty .*--force"):
        start(run, force=False)


def test_a_new_run_that_fails_before_saving_puts_the_old_one_back(tmp_path):
    run = old_run(tmp_path / "r")
    before = contents(run)
    with pytest.raises(InputError, match="bad data"):
        start(run, fail="bad data")
    assert contents(run) == before
    assert not (run / runguard.ASIDE).exists()


def test_the_old_run_goes_once_the_new_one_has_saved_work(tmp_path):
    run = old_run(tmp_path / "r")
    with pytest.raises(InputError):
        start(run, save=True, fail="later failure")  # after the first checkpoint: the new run is kept
    assert (run / "checkpoint.safetensors").read_bytes() == b"new checkpoint"
    assert not (run / "snapshots").exists() and not (run / runguard.ASIDE).exists()
    run2 = old_run(tmp_path / "r2")
    start(run2)
    assert (run2 / "model.safetensors").read_bytes() == b"new weights"
    assert not (run2 / "snapshots").exists() and not (run2 / runguard.ASIDE).exists()
    assert json.loads((run2 / "meta.json").read_text())["stage"] == "train-rnn"


def test_a_users_own_files_in_a_replaced_run_come_back(tmp_path):
    run = old_run(tmp_path / "r")
    (run / "notes.txt").write_text("mine\n")
    start(run)
    assert (run / "notes.txt").read_text() == "mine\n"
    assert (run / "model.safetensors").read_bytes() == b"new weights"
    assert not (run / "snapshots").exists() and not (run / runguard.ASIDE).exists()


def test_a_crash_before_saving_is_undone_by_the_next_create(tmp_path):
    """kill -9 after the old run was moved aside: the next run finds and restores it first."""
    run = old_run(tmp_path / "r")
    before = contents(run)
    runguard.move_aside(run)
    (run / "config.yaml").write_text("the crashed new run's\n")
    with pytest.raises(OutputExistsError, match="not empty"):  # restored, so not empty
        start(run, force=False)
    assert contents(run) == before
    # stopped while moving: the moved files come back too
    (run / runguard.MOVING).mkdir()
    os.replace(run / "model.safetensors", run / runguard.MOVING / "model.safetensors")
    rundir.lock(run)
    try:
        runguard.recover(run)
    finally:
        runguard.unlock(run)
    assert contents(run) == before


def test_lock_is_released_when_the_training_function_returns(tmp_path):
    run = start(tmp_path / "r")
    assert not runguard._held
    start(run)  # a second run in the same process may take it again


HOLDER = """
import sys, time
from dataclasses import dataclass
from dlcli.core import rundir

@dataclass
class Cfg:
    seed: int = 1

@rundir.removed_on_failure
def hold(path):
    rundir.create(path, Cfg(), "train-rnn", force=True)
    print("locked", flush=True)
    time.sleep(60)

hold(sys.argv[1])
"""


def test_a_second_process_is_refused_at_once_naming_the_pid(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", HOLDER, "conc"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"
        t = time.perf_counter()
        with pytest.raises(OutputExistsError, match=rf"^conc is in use by pid {p.pid}$"):
            start(Path("conc"))
        assert time.perf_counter() - t < 2
        with pytest.raises(OutputExistsError, match=f"in use by pid {p.pid}"):  # resume too
            rundir.removed_on_failure(rundir.check_resume)(Path("conc"), Cfg(), ())
        assert (tmp_path / "conc" / "meta.json").is_file()  # the holder's run is untouched
    finally:
        p.send_signal(signal.SIGKILL)  # a crash: the OS releases the lock
        p.wait()
    start(Path("conc"))
    assert (tmp_path / "conc" / "model.safetensors").read_bytes() == b"new weights"


def test_truncate_metrics_keeps_whole_lines_only(tmp_path):
    with rundir.MetricsLog(tmp_path) as log:
        log.log(step=1)
        size = rundir.metrics_size(tmp_path)
        log.log(step=2)
    assert rundir.truncate_metrics(tmp_path, size) and [r["step"] for r in rundir.read_metrics(tmp_path)] == [1]
    assert not rundir.truncate_metrics(tmp_path, 3)  # not the end of a line: left alone
    assert [r["step"] for r in rundir.read_metrics(tmp_path)] == [1]


def test_read_metadata_of_a_damaged_file_is_one_line(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(InputError, match=r"x.safetensors: damaged or not a safetensors file"):
        rundir.read_metadata(tmp_path / "x.safetensors")


CLI_TINY = ("--hidden", "16", "--layers", "1", "--device", "cpu", "-q", "--max-steps", "3")


def test_cli_force_over_a_users_folder_or_with_bad_data_loses_nothing(cli, tm_ids, tmp_path):
    """Issue 17 item 1, as a user met it: the PNG stays, and a good run survives a --force run that fails."""
    user = tmp_path / "userdir"
    user.mkdir()
    (user / "holiday.png").write_bytes(b"\x89PNG holiday")
    r = cli("train-rnn", "-d", tm_ids, "-o", "userdir", "--force", *CLI_TINY)
    assert r.exit_code == 1
    assert r.stderr.strip() == ("error: userdir is not a dlcli train-rnn run directory; refusing to replace it "
                                "with --force")
    assert sorted(p.name for p in user.iterdir()) == ["holiday.png"]
    assert cli("train-rnn", "-d", tm_ids, "-o", "good", *CLI_TINY).exit_code == 0
    before = contents(tmp_path / "good")
    r = cli("train-rnn", "-d", tm_ids, "-o", "good", "--force", *CLI_TINY, "--set", "seq_len=1000000")
    assert r.exit_code != 0 and "shorter than one sequence" in r.stderr
    assert contents(tmp_path / "good") == before
    r = cli("train-transformer", "-d", tm_ids, "-o", "good", "--force", "-q", "--max-steps", "1")
    assert r.exit_code == 1 and "not a dlcli train-transformer run directory" in r.stderr
    assert contents(tmp_path / "good") == before
    r = cli("train-rnn", "-d", tm_ids, "-o", "good", "--force", *CLI_TINY, "--seed", "5")
    assert r.exit_code == 0, r.stderr
    assert contents(tmp_path / "good")["model.safetensors"] != before["model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "good").iterdir() if p.name.startswith(".")) == [runguard.LOCK]
