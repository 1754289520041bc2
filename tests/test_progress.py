"""Progress of the long-running commands: plain lines off a terminal (DLCLI_PROGRESS=lines), a rich bar
(DLCLI_PROGRESS=bar), nothing with --quiet; always on stderr, stdout the same whichever is shown."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlcli.core import progress

REPO = Path(__file__).resolve().parent.parent
OLD = REPO / "tests/fixtures/old_runs"
LINE = re.compile(r"^(?P<desc>[a-z ]+): (?P<done>[\d.,]+ \w+)(?: / (?P<total>[\d.,]+ \w+) \((?P<pct>\d+)%\))?, ")
TEXT = "".join(f"The Time Traveller, line {i}, spoke to us of {i % 7} dimensions.\n" for i in range(6000))  # ~370 KB


@pytest.fixture
def lines_mode(monkeypatch):
    """Plain lines on every tick, and 64 KB chunks, so a small input takes several."""
    from dlcli.core import io

    monkeypatch.setenv("DLCLI_PROGRESS", "lines")
    monkeypatch.setenv("DLCLI_PROGRESS_EVERY", "0")
    monkeypatch.setattr(io, "CHUNK_BYTES", 64 << 10)


def progress_lines(stderr: str, desc: str) -> list[re.Match]:
    found = [LINE.match(ln) for ln in stderr.splitlines()]
    return [m for m in found if m and m["desc"] == desc]


def assert_ends_complete(stderr: str, desc: str, at_least: int = 2) -> list[int]:
    """The task's lines show a percentage that rises to 100 and never past it; returns the percentages."""
    ms = progress_lines(stderr, desc)
    assert len(ms) >= at_least, stderr
    pct = [int(m["pct"]) for m in ms if m["pct"] is not None]
    assert pct and pct == sorted(pct) and pct[-1] == 100 and max(pct) <= 100, stderr
    return pct


def test_mode_follows_the_terminal_unless_quiet_or_the_environment_says(monkeypatch):
    monkeypatch.delenv("DLCLI_PROGRESS", raising=False)
    assert (progress.mode(True), progress.mode(False), progress.mode(True, quiet=True)) == ("bar", "lines", "off")
    monkeypatch.setenv("DLCLI_PROGRESS", "Lines")
    assert progress.mode(True) == "lines" and progress.mode(False, quiet=True) == "off"
    monkeypatch.setenv("DLCLI_PROGRESS", "bar")
    assert progress.mode(False) == "bar"
    monkeypatch.setenv("DLCLI_PROGRESS", "sparkles")  # unknown: as if unset
    assert progress.mode(False) == "lines"
    monkeypatch.setenv("DLCLI_PROGRESS_EVERY", "0.5")
    assert progress.every() == 0.5
    for bad in ("soon", "-1"):
        monkeypatch.setenv("DLCLI_PROGRESS_EVERY", bad)
        assert progress.every() == progress.EVERY


def test_preprocess_reports_bytes_up_to_100_percent(cli, lines_mode):
    Path("in.txt").write_text(TEXT)
    r = cli("preprocess", "in.txt", "-n", "d2l", "-o", "out.tok")
    assert r.exit_code == 0, r.stderr
    pct = assert_ends_complete(r.stderr, "preprocess", at_least=4)
    assert pct[0] < 100
    last = progress_lines(r.stderr, "preprocess")[-1]
    assert last["done"] == last["total"] == f"{len(TEXT) / 1000:.1f} KB", r.stderr
    assert r.stdout == "out.tok\n"


def test_preprocess_in_worker_processes_ends_at_the_full_size(cli, lines_mode):
    """Two files: two byte ranges in two processes (core/parallel.run_jobs), counted through shared memory."""
    Path("a.txt").write_text(TEXT)
    Path("b.txt").write_text(TEXT[: len(TEXT) // 2])
    r = cli("preprocess", "a.txt", "b.txt", "-o", "out.tok", "--workers", "2")
    assert r.exit_code == 0, r.stderr
    assert_ends_complete(r.stderr, "preprocess", at_least=1)
    last = progress_lines(r.stderr, "preprocess")[-1]
    assert last["total"] == f"{(len(TEXT) + len(TEXT) // 2) / 1000:.1f} KB", r.stderr


def test_preprocess_from_stdin_has_no_total_until_its_end(cli, lines_mode):
    r = cli("preprocess", "-", "-n", "d2l", input=TEXT)
    assert r.exit_code == 0, r.stderr
    ms = progress_lines(r.stderr, "preprocess")
    assert len(ms) >= 3 and all(m["total"] is None for m in ms[:-1]), r.stderr
    assert ms[-1]["pct"] == "100" and ms[-1]["done"] == ms[-1]["total"], r.stderr


@pytest.mark.parametrize("args", [("in.txt", "-n", "d2l"), ("-", "-n", "d2l")])
def test_stdout_is_the_same_with_lines_a_bar_or_quiet(cli, lines_mode, monkeypatch, args):
    Path("in.txt").write_text(TEXT)
    outs = {}
    for mode in ("lines", "bar", "quiet"):
        monkeypatch.setenv("DLCLI_PROGRESS", "lines" if mode == "quiet" else mode)
        r = cli("preprocess", *args, *(["-q"] if mode == "quiet" else []), input=TEXT)
        assert r.exit_code == 0, r.stderr
        outs[mode] = (r.stdout_bytes, r.stderr)
    assert outs["lines"][0] == outs["bar"][0] == outs["quiet"][0]
    assert len(outs["lines"][0]) > len(TEXT) // 2  # the token stream itself
    assert "preprocess: " in outs["lines"][1] and "preprocess" in outs["bar"][1]
    assert outs["quiet"][1] == ""


def test_vocab_build_train_encode_decode_report_their_step(cli, lines_mode):
    Path("in.txt").write_text(TEXT)
    assert cli("preprocess", "in.txt", "-n", "d2l", "-o", "in.tok", "-q").exit_code == 0
    r = cli("vocab", "build", "in.tok", "-o", "tok.json")
    assert r.exit_code == 0, r.stderr
    assert_ends_complete(r.stderr, "count", at_least=1)
    r = cli("vocab", "encode", "-", "-t", "tok.json", "-o", "in.ids", input=Path("in.tok").read_text())
    assert r.exit_code == 0, r.stderr
    ms = progress_lines(r.stderr, "encode")
    assert len(ms) >= 3 and ms[-1]["pct"] == "100", r.stderr
    r = cli("vocab", "train", "in.txt", "-o", "bpe.json", "--vocab-size", "100")
    assert r.exit_code == 0, r.stderr
    assert_ends_complete(r.stderr, "train", at_least=3)
    r = cli("vocab", "decode", "in.ids", "-t", "tok.json")
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 6000 and "decode" not in r.stdout
    ms = progress_lines(r.stderr, "decode")
    assert ms and ms[-1]["done"] == ms[-1]["total"] == "6,000 lines" and ms[-1]["pct"] == "100", r.stderr
    assert cli("vocab", "decode", "in.ids", "-t", "tok.json", "-q").stderr == ""


def test_quiet_prints_nothing_on_stderr(cli, lines_mode):
    Path("in.txt").write_text(TEXT)
    for args in (("preprocess", "in.txt", "-o", "in.tok"), ("vocab", "build", "in.tok", "-o", "tok.json"),
                 ("vocab", "encode", "in.tok", "-t", "tok.json", "-o", "in.ids")):
        r = cli(*args, "-q")
        assert r.exit_code == 0 and r.stderr == "", (args, r.stderr)


@pytest.fixture
def old_runs(tmp_path):
    """The old fixture runs (read-only) copied where their recorded relative paths point."""
    if not OLD.is_dir():
        pytest.skip("tests/fixtures/old_runs not found")

    def copy(*names: str) -> Path:
        rel = Path("tests/fixtures/old_runs")
        for name in ("inputs", *names):
            shutil.copytree(OLD / name, tmp_path / rel / name)
        return rel

    return copy


@pytest.mark.usefixtures("one_thread")
def test_evaluate_reports_tokens_and_keeps_json_on_stdout(cli, lines_mode, old_runs):
    root = old_runs("gpt", "mlm")
    for run, ids in (("gpt", "ts.ids"), ("mlm", "tsw.ids")):
        r = cli("evaluate", root / run, "--ids", root / "inputs" / ids, "--device", "cpu", "-b", "2")
        assert r.exit_code == 0, r.stderr
        assert "loss" in json.loads(r.stdout)
        ms = progress_lines(r.stderr, "evaluate")
        assert len(ms) >= 2 and ms[-1]["pct"] == "100" and ms[-1]["done"].endswith("tokens"), r.stderr
        q = cli("evaluate", root / run, "--ids", root / "inputs" / ids, "--device", "cpu", "-b", "2", "-q")
        assert q.stderr == "" and q.stdout == r.stdout


@pytest.mark.usefixtures("one_thread")
def test_nerf_eval_and_render_report_views_and_frames(cli, lines_mode, old_runs):
    root = old_runs("nerf")
    r = cli("nerf", "eval", root / "nerf", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["results"]["num_views"] == 2
    ms = progress_lines(r.stderr, "eval")
    assert [m["done"] for m in ms] == ["1 view", "2 views"] and ms[-1]["pct"] == "100", r.stderr
    r = cli("nerf", "render", root / "nerf", "-o", "frames", "-n", "3", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "frames\n"
    ms = progress_lines(r.stderr, "render")
    assert [m["done"] for m in ms] == ["1 frame", "2 frames", "3 frames"] and ms[-1]["pct"] == "100", r.stderr


@pytest.mark.slow
def test_no_library_warning_leaks(old_runs):
    """Each command in a fresh interpreter: a UserWarning at import is an error (-W), one while the command runs
    is shown as a `warning (...)` line (PYTHONWARNINGS asks for them); neither may come."""
    root = old_runs("gpt", "nerf")
    Path("in.txt").write_text(TEXT)
    env = {**os.environ, "DLCLI_PROGRESS": "lines", "DLCLI_PROGRESS_EVERY": "0", "PYTHONWARNINGS": "default"}
    commands = [
        ("preprocess", "in.txt", "-n", "d2l", "-o", "in.tok"),
        ("vocab", "build", "in.tok", "-o", "tok.json"),
        ("vocab", "encode", "in.tok", "-t", "tok.json", "-o", "in.ids"),
        ("vocab", "decode", "in.ids", "-t", "tok.json", "-o", "back.txt"),
        ("vocab", "train", "in.txt", "-o", "bpe.json", "--vocab-size", "100"),
        ("evaluate", root / "gpt", "--ids", root / "inputs/ts.ids", "--device", "cpu"),
        ("nerf", "eval", root / "nerf", "--device", "cpu"),
        ("nerf", "render", root / "nerf", "-o", "orbit.gif", "-n", "2", "--device", "cpu"),
    ]
    for args in commands:
        p = subprocess.run([sys.executable, "-W", "error::UserWarning", "-m", "dlcli", *map(str, args)],
                           check=False, capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, (args, p.stderr)
        assert "warning" not in p.stderr.lower() and "Traceback" not in p.stderr, (args, p.stderr)
        assert re.search(r"\(100%\)", p.stderr), (args, p.stderr)
