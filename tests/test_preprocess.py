"""`dlcli preprocess` through the CLI, on real corpora and on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dlcli.text.tokenstream import parse_line


def stream(path: str | Path) -> list[list[str]]:
    return [parse_line(ln) for ln in Path(path).read_text(encoding="utf-8").split("\n")[:-1]]


def test_time_machine_line_by_line(cli, data):
    r = cli("preprocess", data / "timemachine.txt", "-n", "d2l", "-l", "char", "-o", "tm.tok")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "tm.tok"
    lines = stream("tm.tok")
    assert len(lines) == 3221
    assert sum(map(len, lines)) == 170_580
    side = json.loads(Path("tm.tok.json").read_text())
    assert side["normalize"] == ["d2l"] and side["level"] == "char" and side["lines"] == 3221


def test_time_machine_as_one_string(cli, data):
    r = cli("preprocess", data / "timemachine.txt", "-n", "d2l", "-l", "char", "--whole", "-o", "tm.tok")
    assert r.exit_code == 0, r.stderr
    (tokens,) = stream("tm.tok")
    assert len(tokens) == 173_428
    assert len(set(tokens)) == 27
    text = (data / "timemachine.txt").read_text()
    assert "".join(tokens) == re.sub("[^A-Za-z]+", " ", text).lower()


def test_whole_mode_is_exact_across_chunk_boundaries(cli, data, monkeypatch):
    import dlcli.core.io as io

    monkeypatch.setattr(io, "CHUNK_BYTES", 997)  # many chunks, boundaries everywhere
    r = cli("preprocess", data / "timemachine.txt", "-n", "d2l", "-l", "char", "--whole", "-j", "1", "-o", "a.tok")
    assert r.exit_code == 0, r.stderr
    (tokens,) = stream("a.tok")
    text = (data / "timemachine.txt").read_text()
    assert "".join(tokens) == re.sub("[^A-Za-z]+", " ", text).lower()


def test_tiny_shakespeare_has_65_characters(cli, data):
    r = cli("preprocess", data / "tinyshakespeare.txt", "-l", "char", "--whole", "-o", "ts.tok")
    assert r.exit_code == 0, r.stderr
    (tokens,) = stream("ts.tok")
    assert len(tokens) == 1_115_394
    assert len(set(tokens)) == 65


def test_parallel_output_equals_serial(cli, data):
    src = data / "tinyshakespeare.txt"
    assert cli("preprocess", src, "-n", "lower", "-l", "char", "-j", "1", "-o", "one.tok").exit_code == 0
    assert cli("preprocess", src, "-n", "lower", "-l", "char", "-j", "2", "-o", "two.tok").exit_code == 0
    assert Path("one.tok").read_bytes() == Path("two.tok").read_bytes()


def test_stdin_to_stdout(cli):
    r = cli("preprocess", "-n", "d2l", input="Hello, World!\n\nIt's 1898.\n")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "hello world\n\nit s\n"


def test_several_inputs_in_order(cli, tmp_path):
    Path("a.txt").write_text("one two\n")
    Path("b.txt").write_text("three\n")
    r = cli("preprocess", "a.txt", "b.txt", "-l", "char", "-o", "-")
    assert r.stdout == "o n e \\s t w o\nt h r e e\n"


def test_translation_recipe(cli, data):
    pairs = (data / "fra-eng.txt").read_text(encoding="utf-8").splitlines()[:2000]
    Path("fra.txt").write_text("\n".join(p.split("\t")[1] for p in pairs) + "\n", encoding="utf-8")
    r = cli("preprocess", "fra.txt", "-n", "nmt", "-n", "lower", "-o", "-")
    assert r.exit_code == 0, r.stderr
    out = r.stdout.split("\n")
    assert len(out) == 2001
    assert "\u202f" not in r.stdout and "\xa0" not in r.stdout
    assert out[0] == "va !"


def test_config_file_and_print_config(cli):
    Path("pp.yaml").write_text("normalize: [d2l]\nlevel: char\n")
    r = cli("preprocess", "--config", "pp.yaml", "--set", "whole=true", "--print-config")
    assert r.exit_code == 0
    assert r.stdout == (
        "inputs:\n- '-'\noutput: '-'\nnormalize:\n- d2l\nlevel: char\ntokenizer: null\nwhole: true\nworkers: 0\n"
    )


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["missing.txt"], "missing.txt: no such file"),
        (lambda: Path("d").mkdir(), ["d"], "d: is a directory"),
        (lambda: Path("e.txt").write_bytes(b""), ["e.txt"], "e.txt: text file is empty"),
        (lambda: Path("b.bin").write_bytes(b"\x7fELF\x00\x01\x02" * 10), ["b.bin"], "b.bin: looks like a binary"),
        (lambda: Path("u.txt").write_bytes(b"ok\nfine\nbad \xff here\n"), ["u.txt"],
         "u.txt: invalid UTF-8 at byte 12 (line 3)"),
        (lambda: Path("c.yaml").write_text("level: [\n"), ["--config", "c.yaml"], "c.yaml: malformed YAML"),
        (None, ["--set", "levl=char"], "unknown config key 'levl' (did you mean 'level'?)"),
        (None, ["-n", "d2k"], "unknown normaliser 'd2k'"),
    ],
)
def test_bad_input_is_one_clear_line(cli, setup, args, message):
    if setup:
        setup()
    r = cli("preprocess", *args, "-o", "out.tok")
    assert r.exit_code != 0
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert not Path("out.tok").exists()
    assert not list(Path(".").glob(".*dlcli-tmp"))


def test_existing_output_is_not_clobbered(cli):
    Path("in.txt").write_text("new text\n")
    Path("out.tok").write_text("precious\n")
    r = cli("preprocess", "in.txt", "-o", "out.tok")
    assert r.exit_code != 0 and "already exists (use --force" in r.stderr
    assert Path("out.tok").read_text() == "precious\n"
    assert cli("preprocess", "in.txt", "-o", "out.tok", "--force").exit_code == 0
    assert Path("out.tok").read_text() == "new text\n"


def test_failure_midway_keeps_old_output(cli):
    Path("in.txt").write_bytes(b"good line\n" * 200_000 + b"\xff\n")  # bad byte after ~2 MB
    Path("out.tok").write_text("precious\n")
    r = cli("preprocess", "in.txt", "-o", "out.tok", "--force", "-j", "1")
    assert r.exit_code != 0 and "invalid UTF-8 at byte 2000000" in r.stderr
    assert Path("out.tok").read_text() == "precious\n"
    assert not list(Path(".").glob(".*dlcli-tmp"))


def test_table_seed_example_gives_199_features(cli):
    countries = [f"Country{i:03d}" for i in range(197)]
    Path("countries.txt").write_text("\n".join(countries) + "\n")
    Path("people.csv").write_text("age,gender,nationality\n30,female,Country010\n41,male,Country196\n")
    r = cli("preprocess", "people.csv", "--table", "--categories", "nationality=countries.txt", "-o", "X.npy",
            "--csv", "X.csv")
    assert r.exit_code == 0, r.stderr
    import numpy as np

    x = np.load("X.npy")
    assert x.shape == (2, 199) and x.dtype == np.float32
    assert x[0, 0] == 30 and x[0, 1] == 0 and x[1, 1] == 1
    assert x[0, 2 + 10] == 1 and x[1, 2 + 196] == 1 and x[:, 2:].sum() == 2
    assert Path("X.csv").read_text().splitlines()[0].startswith("age,gender=male,nationality=Country000")
    # re-apply the saved encoding to new rows; an unseen country is an error unless --unknown zeros
    Path("new.csv").write_text("age,gender,nationality\n50,male,Atlantis\n")
    r = cli("preprocess", "new.csv", "--table", "--encoding", "X.npy.encoding.json", "-o", "Y.npy")
    assert r.exit_code != 0 and "Atlantis" in r.stderr and not Path("Y.npy").exists()
    r = cli("preprocess", "new.csv", "--table", "--encoding", "X.npy.encoding.json", "--unknown", "zeros",
            "-o", "Y.npy")
    assert r.exit_code == 0, r.stderr
    assert np.load("Y.npy")[0, 2:].sum() == 0


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n3,4,5\n", "t.csv: row 3 has 3 fields, header has 2"),
        ("a,b\n1,x\n2,y\n3,z\n", None),
        ("a,b\n1,2\nx,3\n", None),
    ],
)
def test_table_bad_rows(cli, content, message):
    Path("t.csv").write_text(content)
    args = ["preprocess", "t.csv", "--table", "-o", "X.npy"]
    if message is None and "x,3" in content:
        args += ["--numeric", "a"]
        message = "t.csv: row 3, column 'a': 'x' is not a number"
    r = cli(*args)
    if message is None:
        assert r.exit_code == 0, r.stderr  # b is inferred categorical
        return
    assert r.exit_code != 0
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not Path("X.npy").exists()
