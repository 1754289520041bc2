"""`dlcli runs [DIR]`: a row per run directory (old fixtures and a fresh run); `dlcli runs compare`: the
loss curves of several runs on one plot; errors are one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from dlcli.runs import table

OLD = Path(__file__).resolve().parent / "fixtures" / "old_runs"
RUNS = ("embed", "forecast", "gan", "gpt", "mlm", "nerf", "rlhf-base", "rlhf-dpo", "rlhf-ppo", "rlhf-reward",
        "rlhf-sft", "rnn", "translate")


@pytest.fixture
def old(tmp_path) -> Path:
    """A copy of the old runs (never the fixtures themselves), without their input files."""
    d = tmp_path / "old"
    for name in RUNS:
        shutil.copytree(OLD / name, d / name)
    return d


def _error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_row_per_old_run(old):
    rows = {Path(r.run).name: r for r in table.rows(old)}
    assert sorted(rows) == sorted(RUNS)
    rnn = rows["rnn"]
    assert (rnn.stage, rnn.steps, rnn.metric, rnn.best_step, rnn.precision, rnn.device) == \
        ("train-rnn", 6, "val_ppl", 6, "fp32", "cpu")
    assert rnn.best == pytest.approx(52.978754668089294)
    assert rnn.seconds == pytest.approx(0.050167200999567285)
    assert (rows["nerf"].metric, rows["nerf"].precision) == ("val_psnr", "bf16")
    assert rows["nerf"].best == pytest.approx(9.7224479275889)  # the best of the run, not the last
    assert rows["translate"].metric == "bleu_greedy"
    assert (rows["rlhf-ppo"].metric, rows["rlhf-dpo"].metric, rows["rlhf-sft"].metric) == \
        ("val_reward", "val_accuracy", "val_loss")
    assert rows["rlhf-dpo"].best_step == 2  # accuracy was highest at step 2
    assert rows["gan"].metric == "reverse_kl"
    assert (rows["forecast"].stage, rows["forecast"].steps, rows["forecast"].unit, rows["forecast"].metric) == \
        ("timeseries", 2, "epochs", "test_mse_1step")
    assert (rows["embed"].metric, rows["embed"].precision, rows["embed"].device) == (None, None, None)


def test_the_table_and_json(cli, old):
    r = cli("runs", old)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()  # piped: plain text, a line a run, columns two or more spaces apart
    assert lines[0] == f"13 runs under {old}" and len(lines) == 15
    assert re.split(" {2,}", lines[1]) == ["run", "stage", "steps", "time", "best held-out", "precision", "device"]
    assert re.split(" {2,}", next(x for x in lines if f"{old}/rnn " in x)) == \
        [f"{old}/rnn", "train-rnn", "6", "0.1 s", "val_ppl 52.98 @6", "fp32", "cpu"]
    line = next(x for x in r.stdout.splitlines() if f"{old}/forecast " in x)
    assert "2 epochs" in line and "test_mse_1step 0.04525" in line, line
    r = cli("runs", "list", old, "--json")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 13 and rows[0]["run"] == str(old / "embed") and rows[0]["stage"] == "embed"
    assert sorted(p.name for p in (OLD / "rnn").iterdir()) == sorted(p.name for p in (old / "rnn").iterdir())


def test_default_folder_hidden_and_broken_runs(cli, old, tmp_path):
    r = cli("runs")
    assert r.exit_code == 1 and _error_line(r) == \
        "error: runs: no such directory (dlcli runs DIR lists the run directories under DIR)"
    shutil.copytree(old / "gpt", tmp_path / "runs" / "lm" / "gpt")
    shutil.copytree(old / "rnn", tmp_path / "runs" / "lm" / "gpt" / ".dlcli-replaced")  # a run --force replaced
    (tmp_path / "runs" / "bad").mkdir()
    (tmp_path / "runs" / "bad" / "meta.json").write_text("{not json")
    r = cli("runs", "--json")
    assert r.exit_code == 0
    assert [json.loads(x)["run"] for x in r.stdout.splitlines()] == ["runs/lm/gpt"]
    assert r.stderr.startswith("warning: runs/bad/meta.json: malformed JSON") and "(left out)" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("runs", "empty")
    assert r.exit_code == 0 and r.stdout == "" and "no run directories under empty" in r.stderr


def test_compare_plots_the_loss_curves(cli, old, tmp_path):
    r = cli("runs", "compare", old / "rnn", old / "gpt", old / "rlhf-sft", old / "forecast", "-o", "curves.png")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "curves.png" and "plotted loss of 4 runs (6 points)" in r.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("runs", "compare", old / "rnn", "-o", "curves.png")
    assert r.exit_code == 1 and _error_line(r) == "error: curves.png: already exists (use --force to overwrite)"
    r = cli("runs", "compare", old / "gan", "-o", "gan.png")
    assert r.exit_code == 1 and _error_line(r).startswith(f"error: {old}/gan/metrics.jsonl: no 'loss' (it logs d_fake")
    assert "choose one with --metric" in r.stderr and not (tmp_path / "gan.png").exists()
    r = cli("runs", "compare", old / "gan", "--metric", "loss_g", "-o", "gan.png")
    assert r.exit_code == 0 and (tmp_path / "gan.png").is_file()
    r = cli("runs", "compare", tmp_path / "nope", "-o", "x.png", "--force")
    assert r.exit_code == 1 and _error_line(r).startswith("error: ") and "meta.json" in r.stderr


def test_fresh_runs(cli, tmp_path, monkeypatch):
    tiny = ["--hidden", "16", "--layers", "1", "--z-dim", "2", "-b", "32", "--device", "cpu", "-q"]
    for name, steps in (("a", 4), ("b", 6)):
        r = cli("gan", "train", "ring8", "-o", f"runs/{name}", "--max-steps", str(steps), "--set", "log_interval=2", *tiny)
        assert r.exit_code == 0, r.stderr
    rows = table.rows("runs")
    assert [(Path(x.run).name, x.stage, x.steps, x.metric, x.device) for x in rows] == \
        [("a", "gan", 4, "reverse_kl", "cpu"), ("b", "gan", 6, "reverse_kl", "cpu")]
    assert all(x.seconds and x.seconds > 0 for x in rows)
    r = cli("runs", "compare", "runs/a", "runs/b", "--metric", "loss_d", "-o", "d.png")
    assert r.exit_code == 0 and "plotted loss_d of 2 runs (5 points)" in r.stderr


def test_compare_against_training_time(cli, tmp_path):
    """--x time puts each record at its `elapsed`; a validation record (no clock of its own) at the step
    before it, so runs of different speeds line up by wall clock."""
    from dlcli.runs.compare import curve

    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "meta.json").write_text('{"stage": "train-rnn"}')
    recs = ['{"step": 10, "loss": 3.0, "elapsed": 2.0}', '{"step": 20, "loss": 2.0, "elapsed": 4.5}',
            '{"step": 20, "val_loss": 2.2}', '{"step": 30, "loss": 1.5, "elapsed": 7.0}']
    (run / "metrics.jsonl").write_text("\n".join(recs) + "\n")
    assert curve(run, "loss", "time") == [(2.0, 3.0), (4.5, 2.0), (7.0, 1.5)]
    assert curve(run, "val_loss", "time") == [(4.5, 2.2)]
    assert curve(run, "val_loss") == [(20.0, 2.2)]
    r = cli("runs", "compare", "runs/a", "--x", "time", "-o", "t.png")
    assert r.exit_code == 0 and "plotted loss of 1 runs (3 points)" in r.stderr
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli("runs", "compare", "runs/a", "--x", "tokens", "-o", "u.png")
    assert r.exit_code == 2 and _error_line(r) == "error: --x 'tokens': choose one of step, time"
    (run / "metrics.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')  # an old forecaster: no clock
    r = cli("runs", "compare", "runs/a", "--x", "time", "-o", "u.png")
    assert r.exit_code == 1 and _error_line(r) == \
        "error: runs/a/metrics.jsonl: no training time ('elapsed') beside 'loss'; use --x step"
    assert not (tmp_path / "u.png").exists()
