"""The README's "A taste" runs as written, line by line, after `dlcli data get`, on tiny budgets.

Each `dlcli` command runs in-process (one torch import for the whole taste) with a few flags appended
that shrink its budget (`BUDGETS`); every other command (`python`, `tail`, `cat`) runs in bash. The
data sets come from ../shared/data through `--from`, as a mirror would serve them, except fra-eng,
whose zip is not there: its unpacked file is put in the cache as an earlier download leaves it.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

# Flags appended to a command (matched on its first words) so that the whole taste takes seconds.
BUDGETS: dict[str, list[str]] = {
    "train-rnn": ["--max-steps", "3", "--set", "eval_interval=3"],
    "train-transformer": ["--max-steps", "3"],
    "forecast train": ["--epochs", "1"],
    "translate train": ["--max-steps", "2", "--set", "data.held_out=8", "--set", "data.vocab_size=300"],
    "gan train": ["--max-steps", "20"],
    "gan sample": ["-n", "50"],
    "rlhf sft": ["--max-steps", "2"],
    "rlhf reward": ["--max-steps", "2"],
    "rlhf ppo": ["--max-steps", "1"],
    "rlhf dpo": ["--max-steps", "2"],
    "embed train": ["--epochs", "1"],
    "nerf synth": ["--size", "16", "--train", "4", "--val", "1", "--test", "2"],
    "nerf train": ["--max-steps", "2"],
    "nerf render": ["-n", "2"],
    "generate": ["-n", "10"],
}


def taste_lines() -> list[str]:
    """The commands of the README's "A taste" block, comments and blank lines left out."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## A taste\n.*?```sh\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no '## A taste' sh block"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _budget(args: list[str]) -> list[str]:
    for key in sorted(BUDGETS, key=len, reverse=True):
        if args[: len(key.split())] == key.split():
            return BUDGETS[key]
    return []


def _run_dlcli(cli, args: list[str], stdin: str | None, line: str) -> str:
    r = cli(*args, *_budget(args), input=stdin)
    assert r.exit_code == 0, f"{line!r} -> exit {r.exit_code}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}"
    return r.stdout


def parse(line: str) -> list[tuple[list[list[str]], str | None]]:
    """A line -> its `&&`-chained commands, each as (pipeline stages, the file `>` writes or None)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars="|&>")
    lex.whitespace_split = True
    commands: list[tuple[list[list[str]], str | None]] = []
    stages: list[list[str]] = [[]]
    out: str | None = None
    tokens = list(lex)
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "&&":
            commands.append((stages, out))
            stages, out = [[]], None
        elif t == "|":
            stages.append([])
        elif t == ">":
            i += 1
            out = tokens[i]
        else:
            stages[-1].append(t)
        i += 1
    commands.append((stages, out))
    return commands


def run_line(cli, line: str, mirror: Path) -> None:
    """Run one taste line: `&&`-chained commands, each `echo ... |`, `dlcli ...`, `| head ...` or `> file`."""
    if "dlcli" not in line:
        cmd = line.replace("python ", f"{shlex.quote(sys.executable)} ", 1) if line.startswith("python ") else line
        subprocess.run(["bash", "-c", cmd], check=True)
        return
    for stages, out_file in parse(line):
        stdin = None
        if stages[0][0] == "echo":
            stdin = " ".join(stages.pop(0)[1:]) + "\n"
        args = stages[0]
        assert args[0] == "dlcli", f"unexpected command in the taste: {line!r}"
        args = args[1:]
        if args[:2] == ["data", "get"]:
            args += ["--from", str(mirror)]
        out = _run_dlcli(cli, args, stdin, shlex.join(stages[0]))
        for later in stages[1:]:
            assert later[0] == "head", f"unexpected pipe stage in the taste: {later}"
        if out_file:
            Path(out_file).write_text(out, encoding="utf-8")


def _seed_fra_eng(cache: Path, data: Path, lines: int = 1500) -> None:
    """fra-eng as `dlcli data get` leaves it after unpacking fra-eng.zip (its first `lines` pairs)."""
    home = cache / "data" / "fra-eng"
    (home / "fra-eng").mkdir(parents=True)
    with open(data / "fra-eng.txt", encoding="utf-8") as f:
        head = [next(f) for _ in range(lines)]
    (home / "fra-eng" / "fra.txt").write_text("".join(head), encoding="utf-8")
    (home / ".unpacked").mkdir()
    (home / ".unpacked" / "fra-eng.zip.json").write_text(json.dumps(["fra-eng"]), encoding="utf-8")


def test_taste_lines_are_dlcli_commands_that_exist():
    """Every dlcli command in the taste is a real command (its --help works), and every budget key is used."""
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    used = set()
    for line in taste_lines():
        for stages, _ in parse(line):
            for words in stages:
                if words and words[0] == "dlcli":
                    path = [w for w in words[1:3] if not w.startswith("-")]
                    r = CliRunner().invoke(app, [*path, "--help"])
                    assert r.exit_code == 0, f"{shlex.join(words)}: {r.output}"
                    used.update(k for k in BUDGETS if words[1 : 1 + len(k.split())] == k.split())
    assert used == set(BUDGETS), f"budgets for commands the taste no longer has: {set(BUDGETS) - used}"


@pytest.mark.slow
def test_the_readme_taste_runs_as_written(cli, data, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("DLCLI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DLCLI_DATA_FROM", raising=False)
    for name in ("configs", "sample_data"):
        (tmp_path / name).symlink_to(REPO / name)
    _seed_fra_eng(tmp_path / "cache", data)
    for line in taste_lines():
        run_line(cli, line, data)
    for made in ("tm.ids", "runs/lstm/model.safetensors", "runs/gpt/model.safetensors", "curves.png",
                 "anomalies.csv", "runs/fra/model.safetensors", "ring8.csv", "runs/dpo/model.safetensors",
                 "runs/vec/vectors.vec", "orbit.gif"):
        assert (tmp_path / made).is_file(), f"the taste did not write {made}"
    assert json.loads((tmp_path / "vec-eval.json").read_text())["analogies"]["total"]["answered"] > 0
