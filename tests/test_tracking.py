"""--log tensorboard|wandb: the loop hands every metrics.jsonl record to the chosen trackers; a missing
package or an unknown name is one error line before any work; a failing tracker does not stop a run."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dlcli.core import rundir, runguard
from dlcli.errors import ConfigError, DlcliError, DlcliWarning
from dlcli.train import checkpoint, tracking
from dlcli.train.loop import Budget, Every, Saved, Stage, Update, fit

TINY = ["--hidden", "16", "--layers", "1", "--z-dim", "2", "-b", "32", "--device", "cpu", "-q"]


def toy(fail_at: int = 0) -> Stage:
    def step(done: int) -> Update:
        if done + 1 == fail_at:
            raise SystemExit("killed")
        return Update(float(done), info={"lr": 0.1, "note": "text is not logged"})

    return Stage("toy", step, Saved, evaluate=lambda step: {"val_loss": 1.0 / (step + 1)})


class Fake:
    """A tracker that remembers what it was given."""

    name = "fake"
    opened: ClassVar[list[tuple[Path, dict[str, Any], int]]] = []
    records: ClassVar[list[dict[str, Any]]] = []
    closed = 0

    @staticmethod
    def require() -> None:
        pass

    def open(self, run: Path, config: dict[str, Any], step: int = 0) -> None:
        Fake.opened.append((run, config, step))

    def log(self, record: dict[str, Any]) -> None:
        Fake.records.append(record)

    def close(self) -> None:
        Fake.closed += 1


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(tracking, "TRACKERS", {**tracking.TRACKERS, "fake": Fake})
    Fake.opened, Fake.records, Fake.closed = [], [], 0
    return Fake


def test_names_are_checked_and_may_be_repeated_or_comma_separated():
    assert tracking.parse(["tensorboard,wandb", "tensorboard", "none"]) == ("tensorboard", "wandb")
    assert tracking.parse([]) == ()
    with pytest.raises(ConfigError, match=r"^--log: unknown tracker 'mlflow' \(choose from tensorboard, wandb\)$"):
        tracking.parse(["mlflow"])


def test_no_tracker_leaves_the_metrics_log_as_it_is(tmp_path):
    log = rundir.MetricsLog(tmp_path)
    assert tracking.logged(log, tmp_path) is log
    log.close()


def test_the_loop_hands_every_record_to_the_tracker(tmp_path, fake):
    (tmp_path / "config.yaml").write_text("max_steps: 6\nseed: 3\n")
    with tracking.use(["fake"]):
        fit(toy(), tmp_path, Budget(6), Every(log=2, eval=3))
    assert tracking.chosen() == ()  # only inside the block
    assert fake.opened == [(tmp_path, {"max_steps": 6, "seed": 3}, 0)]
    assert fake.records == rundir.read_metrics(tmp_path)  # the same records as metrics.jsonl
    assert [r["step"] for r in fake.records if "val_loss" in r] == [3, 6]
    assert fake.closed == 1
    assert tracking.scalars(fake.records[0]) == {"lr": 0.1, "loss": 0.5, "elapsed": fake.records[0]["elapsed"]}


def test_a_resumed_run_opens_the_tracker_at_its_checkpoint(tmp_path, fake):
    with tracking.use(["fake"]), pytest.raises(SystemExit):
        fit(toy(fail_at=8), tmp_path, Budget(20), Every(log=1, checkpoint=5))
    assert fake.closed == 1  # closed although the run died
    resumed = checkpoint.read(tmp_path)["state"]
    with tracking.use(["fake"]):
        fit(toy(), tmp_path, Budget(9), Every(log=1, checkpoint=5), resumed=resumed)
    assert [o[2] for o in fake.opened] == [0, 5]
    assert [r["step"] for r in fake.records if "loss" in r][-4:] == [6, 7, 8, 9]


def test_a_failing_tracker_is_dropped_with_a_warning_and_the_run_goes_on(tmp_path, fake, monkeypatch):
    def broken(self, record):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(Fake, "log", broken)
    with tracking.use(["fake"]), pytest.warns(DlcliWarning, match=r"^--log fake: network is unreachable; no longer"):
        result = fit(toy(), tmp_path, Budget(4), Every(log=1))
    assert result.steps == 4 and len([r for r in rundir.read_metrics(tmp_path) if "loss" in r]) == 4


def test_tensorboard_event_files_hold_the_records(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "config.yaml").write_text("max_steps: 6\n")
    with tracking.use(["tensorboard"]):
        fit(toy(), tmp_path, Budget(6), Every(log=2, eval=3))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"loss", "lr", "val_loss", "elapsed"} <= set(events.Tags()["scalars"])
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(2, 0.5), (4, 2.5), (6, 4.5)]
    assert [e.step for e in events.Scalars("val_loss")] == [3, 6]


@pytest.mark.parametrize(("name", "package", "hint"), [("tensorboard", "tensorboard", "pip install 'dlcli[tensorboard]'"),
                                                        ("wandb", "wandb", "pip install wandb")])
def test_a_missing_package_is_one_line(name, package, hint, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(DlcliError) as e, tracking.use([name]):
        pass
    assert str(e.value) == f"--log {name} needs the {package} package: {hint}"


def fake_wandb(monkeypatch) -> types.SimpleNamespace:
    seen = types.SimpleNamespace(init=[], logged=[], finished=0)

    class Run:
        def log(self, data, step):
            seen.logged.append((step, data))

        def finish(self):
            seen.finished += 1

    def init(**kw):
        seen.init.append(kw)
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return seen


def test_wandb_logs_into_the_run_and_resumes_the_same_wandb_run(tmp_path, monkeypatch):
    seen = fake_wandb(monkeypatch)
    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "config.yaml").write_text("max_steps: 4\n")
    with tracking.use(["wandb"]), pytest.raises(SystemExit):
        fit(toy(fail_at=4), tmp_path, Budget(20), Every(log=1, checkpoint=2))
    kw = seen.init[0]
    assert kw["dir"] == str(tmp_path) and kw["name"] == tmp_path.name and kw["config"] == {"max_steps": 4}
    assert kw["resume"] == "allow" and "mode" not in kw  # WANDB_MODE is wandb's own to read
    assert [s for s, _ in seen.logged] == [1, 2, 3] and seen.logged[0][1]["loss"] == 0.0
    with tracking.use(["wandb"]):
        fit(toy(), tmp_path, Budget(5), Every(log=1), resumed=checkpoint.read(tmp_path)["state"])
    assert seen.init[1]["id"] == kw["id"]  # the same wandb run continues
    assert seen.finished == 2


def test_wandb_failing_to_start_is_one_line(tmp_path, monkeypatch):
    def init(**kw):
        raise RuntimeError("api_key not configured (no-tty)\ncall wandb.login")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    with tracking.use(["wandb"]), pytest.raises(DlcliError, match=r"^--log wandb: api_key not configured \(no-tty\) "
                                                r"\(WANDB_MODE=offline logs without an account\)$"):
        fit(toy(), tmp_path, Budget(2), Every(log=1))


def test_force_does_not_keep_the_old_runs_tracker_files(tmp_path):
    aside = tmp_path / runguard.ASIDE
    (aside / "tensorboard").mkdir(parents=True)
    (aside / "wandb").mkdir()
    (aside / "notes.txt").write_text("mine")
    runguard.saved(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- from the command line

def _error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_cli_log_tensorboard(cli, tmp_path):
    pytest.importorskip("tensorboard")
    r = cli("gan", "train", "ring8", "-o", "run", "--max-steps", "4", "--log", "tensorboard", *TINY)
    assert r.exit_code == 0, r.stderr
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run" / "tensorboard").iterdir())


def test_cli_log_errors_are_one_line_and_leave_no_run(cli, tmp_path, monkeypatch):
    r = cli("gan", "train", "ring8", "-o", "run", "--max-steps", "4", "--log", "mlflow", *TINY)
    assert r.exit_code == 2 and _error_line(r) == "error: --log: unknown tracker 'mlflow' (choose from tensorboard, wandb)"
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    r = cli("train-rnn", "-d", "x.ids", "-o", "run", "--max-steps", "4", "--log", "tensorboard")
    assert r.exit_code == 1
    assert _error_line(r) == "error: --log tensorboard needs the tensorboard package: pip install 'dlcli[tensorboard]'"
    assert not (tmp_path / "run").exists()


def test_every_training_command_has_log(cli):
    for args in (["train-rnn"], ["train-transformer"], ["forecast", "train"], ["translate", "train"], ["embed", "train"],
                 ["gan", "train"], ["nerf", "train"], ["rlhf", "sft"], ["rlhf", "reward"], ["rlhf", "ppo"],
                 ["rlhf", "dpo"]):
        r = cli(*args, "--help")
        assert r.exit_code == 0 and "--log" in r.stdout, args
        assert "'dlcli[tensorboard]'" in r.stdout, args  # not eaten as rich markup
    assert "--log" not in cli("gan", "sample", "--help").stdout
