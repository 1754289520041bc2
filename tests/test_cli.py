"""The `dlcli` entry point: registration, help, version, pipelines, signals."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from dlcli.cli.app import COMMANDS, app

REPO = Path(__file__).resolve().parent.parent
DLCLI = [sys.executable, "-m", "dlcli"]


def _all_commands() -> list[list[str]]:
    out = []
    for name, obj in COMMANDS:
        if isinstance(obj, typer.Typer):
            out += [[name, c.name or c.callback.__name__] for c in obj.registered_commands]
        else:
            out.append([name])
    return out


@pytest.mark.parametrize("cmd", _all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example_and_a_docs_page(cli, cmd):
    r = cli(*cmd, "--help")
    assert r.exit_code == 0
    assert "Example" in r.stdout
    assert (REPO / "docs" / "commands" / f"{cmd[0]}.md").is_file()
    doc = (REPO / "docs" / "commands" / f"{cmd[0]}.md").read_text()
    assert f"dlcli {' '.join(cmd)}" in doc


@pytest.mark.parametrize("cmd", [[], *_all_commands()], ids=lambda c: " ".join(c) or "dlcli")
def test_help_has_one_default_style_and_no_placeholder_after_flags(cli, cmd):
    r = cli(*cmd, "--help")
    assert r.exit_code == 0
    assert "[default:" not in r.stdout
    assert "<bool>" not in r.stdout


def test_help_shows_plain_option_defaults_in_the_config_style(cli):
    out = " ".join(cli("rlhf", "score", "--help").stdout.split())
    assert "(default 64)" in out and "(default auto)" in out
    out = " ".join(cli("embed", "train", "--help").stdout.split())
    assert "--binary --no-binary Also" in out and "(default --no-binary)" in out
    assert "(default 100)" in out  # from the config dataclass


def test_counts_of_one_are_singular(cli, tmp_path):
    Path("one.txt").write_text("ab\n")
    r = cli("preprocess", "one.txt", "-l", "char", "-o", "one.tok", "-j", "1")
    assert r.exit_code == 0 and "wrote 1 line to one.tok" in r.stderr, r.output
    assert cli("vocab", "build", "one.tok", "-o", "tok.json").exit_code == 0
    r = cli("vocab", "encode", "one.tok", "-t", "tok.json", "-o", "one.ids", "-j", "1")
    assert r.exit_code == 0 and "wrote 2 ids (uint16) in 1 line to one.ids" in r.stderr, r.output
    r = cli("vocab", "decode", "one.ids", "-t", "tok.json", "-o", "back.txt")
    assert r.exit_code == 0 and "wrote 1 line to back.txt" in r.stderr, r.output


def test_version(cli):
    from dlcli import __version__

    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"dlcli {__version__}"


def test_help_does_not_import_torch_or_numpy():
    code = "import sys; from dlcli.cli.app import app; print(any(m in sys.modules for m in ('torch', 'numpy', " \
           "'tokenizers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_command_help_imports_torch():
    """Each command's --help reads its config's defaults from a torch-free config module."""
    code = ("import sys; from typer.testing import CliRunner; from dlcli.cli.app import app\n"
            f"for cmd in {_all_commands()!r}:\n"
            "    r = CliRunner().invoke(app, [*cmd, '--help'])\n"
            "    assert r.exit_code == 0, (cmd, r.output)\n"
            "    if 'torch' in sys.modules:\n"
            "        print(' '.join(cmd)); break\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"'dlcli {out.stdout.strip()} --help' imports torch"


def test_stage_modules_do_not_import_typer_or_rich():
    for path in (REPO / "dlcli").rglob("*.py"):
        if "cli" in path.relative_to(REPO / "dlcli").parts:
            continue
        text = path.read_text()
        assert "import typer" not in text and "from rich" not in text and "import rich" not in text, path


def test_python_dash_m_and_shell_pipeline(tmp_path, data):
    """A real shell pipeline of separate processes: preprocess | vocab build, then encode."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sh = (
        f"{' '.join(DLCLI)} preprocess {data / 'timemachine.txt'} -n d2l -l word "
        f"| {' '.join(DLCLI)} vocab build - -l word -n d2l -o tok.json -q "
        f"&& {' '.join(DLCLI)} vocab encode {data / 'timemachine.txt'} --raw -t tok.json -o tm.ids -q"
    )
    r = subprocess.run(sh, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["tok.json", "tm.ids"]
    from dlcli.core.idfile import IdFile

    assert IdFile.open(tmp_path / "tm.ids").meta["count"] == 32_775  # words in the book


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_docs_pipeline_makefile_builds_once_then_only_what_changed(tmp_path, data):
    """docs/pipeline.mk as a user runs it: text -> tokens -> vocabulary -> ids -> LSTM -> sample, each a
    file target; a second make has nothing to do, and a newer text redoes every step after it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "timemachine.txt").write_text(
        (data / "timemachine.txt").read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    make = ["make", "-f", str(REPO / "docs" / "pipeline.mk"), "DATA=data", "OUT=build", f"DLCLI={' '.join(DLCLI)}",
            "STEPS=2"]
    r = subprocess.run(make, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    sample = (tmp_path / "build" / "sample.txt").read_text(encoding="utf-8")
    assert sample.startswith("the time traveller") and len(sample) > 100
    assert (tmp_path / "build" / "lstm" / "config.yaml").is_file()
    assert subprocess.run([*make, "-q"], cwd=tmp_path, env=env, check=False).returncode == 0  # up to date
    future = time.time() + 10
    os.utime(tmp_path / "data" / "timemachine.txt", (future, future))
    r = subprocess.run([*make, "-n"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    steps = [line.split()[3] for line in r.stdout.splitlines() if " -m dlcli " in line]
    assert steps == ["preprocess", "vocab", "vocab", "train-rnn", "generate"], r.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_leaves_no_partial_output(tmp_path, workers):
    """Ctrl-C in a terminal signals the whole process group, workers included."""
    big = tmp_path / "big.txt"
    big.write_bytes(b"the quick brown fox jumps over the lazy dog\n" * 2_000_000)  # 88 MB
    (tmp_path / "out.tok").write_text("precious\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([*DLCLI, "preprocess", str(big), "-l", "char", "-o", "out.tok", "--force", "-j", workers],
                         cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 30
    while time.time() < deadline and not list(tmp_path.glob(".*dlcli-*")):
        time.sleep(0.02)
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip() == "error: interrupted; no partial output was kept"
    assert (tmp_path / "out.tok").read_text() == "precious\n"
    assert not list(tmp_path.glob(".*dlcli-*"))


def test_debug_shows_traceback(cli):
    from dlcli.errors import InputError

    with pytest.raises(InputError):
        cli("preprocess", "missing.txt", "--debug")


def test_unexpected_errors_are_one_line_without_debug(cli, monkeypatch):
    import dlcli.text.preprocess

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(dlcli.text.preprocess, "run", boom)
    r = cli("preprocess", "-")
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: unexpected RuntimeError: kaboom (run with --debug for the traceback)"


def test_app_is_typer():
    assert isinstance(app, typer.Typer)


def test_progress_lines_never_pass_100_percent_or_show_a_negative_eta(capsys):
    from dlcli.cli.common import PlainProgress
    from dlcli.core.progress import Tick

    show = PlainProgress(every=3600)
    show(Tick("train", 0, 9, unit="step"))  # within `every`: nothing
    show(Tick("train", 10, 9, unit="step"))  # completes the task: always shown
    show(Tick("train", 10, 10, unit="step"))  # shown once
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: 10 steps / 10 steps (100%), ")
    assert "ETA" not in lines[0]
    show.every = 0
    show(Tick("embed", 0, 100, unit="word"))
    show(Tick("embed", 40, 100, unit="word"))
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("embed: 40 words / 100 words (40%), ") and ", ETA 0:" in last and "-" not in last
    show(Tick("train gru", 1, 1, unit="epoch"))
    assert capsys.readouterr().err.startswith("train gru: 1 epoch / 1 epoch (100%), ")  # not "1 epochs"


def test_the_summary_tells_training_from_the_final_evaluation(cli, tm_ids):
    from dlcli.cli.common import spent

    assert spent({"elapsed": 83.2, "train_seconds": 40.4, "final_seconds": 42.8}) == \
        "train 40 s + final evaluation 43 s"
    assert spent({"elapsed": 83.2}) == "83 s"
    r = cli("train-rnn", "-d", tm_ids, "-o", "run", "--max-steps", "3", "--hidden", "8", "--layers", "1")
    assert r.exit_code == 0, r.stderr
    assert re.search(r"^3 steps \(.* in train \d+ s \+ final evaluation \d+ s; validation loss", r.stderr, re.MULTILINE)
    assert re.search(r"^evaluate: ([\d,]+) tokens / \1 tokens \(100%\)", r.stderr, re.MULTILINE)  # the final evaluation
    assert re.search(r"^train: 3 steps / 3 steps \(100%\)", r.stderr, re.MULTILINE)


def test_a_table_on_stdout_is_drawn_on_a_terminal_and_plain_text_when_piped(capsys, monkeypatch):
    from dlcli.cli import common

    rows = [("a", 1, "x y"), ("bbb", 22, "z")]
    common.table("2 rows", ["name", "count", "what"], rows, to_stdout=True)
    assert capsys.readouterr().out == "2 rows\nname  count  what\na     1      x y\nbbb   22     z\n"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    common.table("2 rows", ["name", "count", "what"], rows, to_stdout=True, headings=["Name", "N", "What"])
    out = capsys.readouterr().out
    assert out.startswith("2 rows\n┏") and "Name" in out and "│ bbb  │ 22 │ z    │" in out  # count: right-aligned


def _doc_commands() -> list[tuple[str, list[str]]]:
    """(file, words) of every `dlcli` command in the sh code blocks of README.md and docs/ (a line's
    pipeline stages and && chains each; continuation lines joined; redirections left out)."""
    found = []
    for md in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        fenced, shell, text = False, False, []
        for line in md.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                shell = fenced and line.lstrip()[3:].strip() in ("", "sh", "bash", "shell", "console")
            elif shell:
                text.append(line)
        for line in "\n".join(text).replace("\\\n", " ").splitlines():
            stage: list[str] = []
            skip = False
            for w in [*shlex.split(line.strip().removeprefix("$ "), comments=True), "|"]:
                if w in ("|", "&&", "||", ";"):
                    if stage[:1] == ["dlcli"] and not any("$(" in x for x in stage):
                        found.append((md.name, stage))
                    stage = []
                elif re.fullmatch(r"\d?(>>?|<)", w):
                    skip = True  # a redirection; its file follows
                elif skip or re.match(r"\d?(>>?|<)", w):
                    skip = False
                else:
                    stage.append(w)
    return found


def test_every_dlcli_line_in_the_docs_parses():
    """The docs' examples name commands, options and arguments that exist (checked by the CLI's own
    parser, nothing run), so a renamed flag cannot leave a stale example behind."""
    from typer.main import get_command

    root = get_command(app)
    found, bad = _doc_commands(), []
    for name, words in found:
        args = words[1:]
        cmd, path = root, ["dlcli"]
        while hasattr(cmd, "commands"):
            sub = args[0] if args and args[0] in cmd.commands else getattr(cmd, "default", None)
            if sub is None:
                break
            path.append(sub)
            cmd, args = cmd.commands[sub], args[1:] if args and args[0] == sub else args
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                cmd.make_context(" ".join(path), args)
        except typer.Exit:  # --help
            pass
        except Exception as e:  # click's UsageError (typer vendors click); NoArgsIsHelpError is `dlcli` alone
            if type(e).__name__ != "NoArgsIsHelpError":
                bad.append(f"{name}: {shlex.join(words)}: {getattr(e, 'format_message', e.__str__)()}")
    assert len(found) > 150 and not bad, "\n".join(bad)
