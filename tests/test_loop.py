"""train/loop: SIGTERM and SIGHUP checkpoint like Ctrl-C; a resume forgets the records written after
its checkpoint; a moved or copied run directory resumes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcli.core import rundir
from dlcli.errors import Interrupted
from dlcli.train import checkpoint
from dlcli.train.loop import Budget, Every, Saved, Stage, Update, fit, held_interrupts

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_held_signals_wait_for_the_end_of_the_step_and_are_restored(sig):
    default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    outer = signal.signal(sig, default)  # as in a foreground shell, whatever ran the suite (nohup: SIGHUP ignored)
    try:
        with pytest.raises(KeyboardInterrupt), held_interrupts() as stop:
            os.kill(os.getpid(), sig)
            assert stop.pending and stop.signum == sig
            os.kill(os.getpid(), sig)  # the second one stops at once
        assert signal.getsignal(sig) is default
    finally:
        signal.signal(sig, outer)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_an_ignored_signal_stays_ignored(sig):
    """Under nohup (SIGHUP) or in a background job (SIGINT) the user chose to ignore it: no stop."""
    outer = signal.signal(sig, signal.SIG_IGN)
    try:
        with held_interrupts() as stop:
            assert signal.getsignal(sig) is signal.SIG_IGN
            os.kill(os.getpid(), sig)
            time.sleep(0.01)
            assert not stop.pending
        assert signal.getsignal(sig) is signal.SIG_IGN
    finally:
        signal.signal(sig, outer)


def toy(run: Path, signal_at: int = 0, fail_at: int = 0) -> Stage:
    """A stage whose step sends itself `signal_at`'s SIGTERM, or dies (as kill -9 would) in step `fail_at`."""

    def step(done: int) -> Update:
        if done + 1 == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if done + 1 == fail_at:
            raise SystemExit("killed")
        return Update(float(done))

    return Stage("toy", step, Saved)


def test_sigterm_checkpoints_at_the_end_of_the_step_and_exits_143(tmp_path):
    with pytest.raises(Interrupted, match=r"^interrupted by SIGTERM at step 7; checkpoint saved in .*--resume") as e:
        fit(toy(tmp_path, signal_at=7), tmp_path, Budget(20), Every(log=1))
    assert e.value.exit_code == 143
    assert checkpoint.read(tmp_path)["state"]["step"] == 7
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def steps(run: Path) -> list[int]:
    return [r["step"] for r in rundir.read_metrics(run) if "loss" in r]


def test_resume_drops_the_records_written_after_the_checkpoint(tmp_path):
    with pytest.raises(SystemExit):
        fit(toy(tmp_path, fail_at=8), tmp_path, Budget(20), Every(log=1, checkpoint=5))
    assert steps(tmp_path) == list(range(1, 8))  # 6 and 7 were logged after the checkpoint of step 5
    resumed = checkpoint.read(tmp_path)["state"]
    assert resumed["step"] == 5
    result = fit(toy(tmp_path), tmp_path, Budget(12), Every(log=1, checkpoint=5), resumed=resumed)
    assert steps(tmp_path) == list(range(1, 13))
    assert [r["step"] for r in result.history if "loss" in r] == list(range(1, 13))


def test_a_checkpoint_without_the_length_keeps_records_up_to_its_step(tmp_path):
    """Checkpoints from before metrics_bytes: the records past their step go."""
    with pytest.raises(SystemExit):
        fit(toy(tmp_path, fail_at=8), tmp_path, Budget(20), Every(log=1, checkpoint=5))
    resumed = checkpoint.read(tmp_path)["state"]
    del resumed["metrics_bytes"]
    fit(toy(tmp_path), tmp_path, Budget(9), Every(log=1, checkpoint=5), resumed=resumed)
    assert steps(tmp_path) == list(range(1, 10))


# ---------------------------------------------------------------- a real `dlcli train-rnn`

TINY = ("--hidden", "16", "--layers", "1", "--device", "cpu", "-q")


def start_training(tm_ids: Path, cwd: Path, checkpoint_every: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "dlcli", "train-rnn", "-d", str(tm_ids), "-o", "run", *TINY,
                             "--max-steps", "1000000", "--set", "log_interval=1",
                             "--set", f"checkpoint_interval={checkpoint_every}"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(cond, p: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert p.poll() is None, p.communicate()[1]
        assert time.time() < deadline, "the run did not get there in time"
        time.sleep(0.02)


def test_sigterm_saves_a_checkpoint_and_resume_continues_to_the_end(cli, tm_ids, tmp_path):
    p = start_training(tm_ids, tmp_path, checkpoint_every=0)
    wait_for(lambda: len(steps(tmp_path / "run")) >= 5 if (tmp_path / "run" / "metrics.jsonl").is_file() else 0, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    saved = checkpoint.read(tmp_path / "run")["state"]["step"]
    assert err.strip() == (f"error: interrupted by SIGTERM at step {saved}; checkpoint saved in run "
                           "(continue with --resume)")
    assert steps(tmp_path / "run") == list(range(1, saved + 1))
    r = cli("train-rnn", "-d", tm_ids, "-o", "run", *TINY, "--max-steps", str(saved + 10), "--set",
            "log_interval=1", "--resume")
    assert r.exit_code == 0, r.stderr
    assert steps(tmp_path / "run") == list(range(1, saved + 11))
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_kill_9_after_a_log_line_then_resume_has_no_duplicate_steps(cli, tm_ids, tmp_path):
    p = start_training(tm_ids, tmp_path, checkpoint_every=25)
    run = tmp_path / "run"

    def past_a_checkpoint() -> bool:
        if not checkpoint.exists(run) or not (run / "metrics.jsonl").is_file():
            return False
        logged = steps(run)
        return bool(logged) and logged[-1] % 25 > 3

    wait_for(past_a_checkpoint, p)
    p.kill()
    p.communicate(timeout=60)
    saved = checkpoint.read(run)["state"]["step"]
    r = cli("train-rnn", "-d", tm_ids, "-o", "run", *TINY, "--max-steps", str(saved + 10), "--set",
            "log_interval=1", "--resume")
    assert r.exit_code == 0, r.stderr
    assert steps(run) == list(range(1, saved + 11))


def test_a_moved_or_copied_run_directory_resumes(cli, tm_ids, tmp_path):
    r = cli("train-rnn", "-d", tm_ids, "-o", "runs/base", *TINY, "--max-steps", "4")
    assert r.exit_code == 0, r.stderr
    shutil.copytree("runs/base", "copy")
    os.rename("runs/base", "moved")
    for where in ("copy", "moved"):
        r = cli("train-rnn", "-d", tm_ids, "-o", where, *TINY, "--max-steps", "8", "--resume")
        assert r.exit_code == 0, r.stderr
        assert checkpoint.read(where)["state"]["step"] == 8


def test_a_second_signal_inside_a_step_saves_nothing_of_that_step(tmp_path):
    def step(done: int) -> Update:
        if done + 1 == 8:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # stops at once, half-way through step 8
        return Update(1.0)

    with pytest.raises(Interrupted, match=r"^stopped by SIGTERM during step 8; the checkpoint of step 5 is kept$"):
        fit(Stage("toy", step, Saved), tmp_path, Budget(20), Every(log=1, checkpoint=5))
    assert checkpoint.read(tmp_path)["state"]["step"] == 5


def test_a_time_budget_never_shows_more_steps_than_its_total():
    b = Budget(seconds=9.0)
    assert b.total(10, 10.0) == 10  # the last step ended past the budget: 10 of 10, not 10 of 9
    assert b.total(5, 2.5) == 18 and Budget(9).total(10, 1.0) == 10 and Budget().total(3, 1.0) is None


def test_a_time_budget_shorter_than_the_log_interval_logs_its_steps_and_ends_the_bar(tmp_path):
    ticks = []

    def step(done: int) -> Update:
        time.sleep(0.02)
        return Update(1.0)

    result = fit(Stage("toy", step, Saved), tmp_path, Budget(seconds=0.1), Every(log=1000), on_progress=ticks.append)
    assert 0 < result.steps < 1000
    records = rundir.read_metrics(tmp_path)
    assert records[-1]["step"] == result.steps and records[-1]["loss"] == 1.0
    assert (ticks[-1].done, ticks[-1].total) == (result.steps, result.steps)


def test_the_final_evaluation_is_timed_apart_from_the_budget(tmp_path):
    def evaluate(step: int) -> dict[str, float]:
        time.sleep(0.3)
        return {"val": 1.0}

    result = fit(Stage("toy", lambda done: Update(1.0), Saved, evaluate=evaluate), tmp_path, Budget(3), Every(log=1))
    assert result.final_seconds >= 0.3 and result.elapsed - result.final_seconds < 0.3
