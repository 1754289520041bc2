"""`dlcli embed ...` from the command line: train, queries, eval, plot, import, errors, a real pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_embed import PAIRS, planted_corpus

from dlcli.embed import vecfile

REPO = Path(__file__).resolve().parent.parent
TRAIN = ("--dim", "16", "--min-count", "1", "--sample", "0", "--epochs", "3", "-j", "1", "-q")


@pytest.fixture
def run(cli, tmp_path) -> Path:
    planted_corpus(tmp_path / "p.tok")
    r = cli("embed", "train", tmp_path / "p.tok", "-o", tmp_path / "run", *TRAIN)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "run")
    return tmp_path / "run"


def test_train_writes_the_run_directory(run):
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "tokenizer.json", "embeddings.safetensors",
                 "vectors.vec"):
        assert (run / name).is_file(), name
    assert not (run / "vectors.bin").exists() and not (run / "checkpoint.json").exists()
    assert vecfile.read(run / "vectors.vec")[1].shape == (2 * PAIRS, 16)


def test_vectors_vec_has_numpy_shortest_text_and_meta_has_timings(run):
    words, W = vecfile.load_vectors(run)
    lines = (run / "vectors.vec").read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{len(words)} 16"
    assert [line.split(" ", 1)[1] for line in lines[1:]] == [" ".join(r) for r in W.astype(str).tolist()]
    timings = json.loads((run / "meta.json").read_text(encoding="utf-8"))["timings"]
    assert timings["total"] > 0 and timings["kernel"] > 0


def test_neighbors_from_arguments_and_stdin_with_an_unknown_word(cli, run):
    r = cli("embed", "neighbors", run, "a0", "-k", "2")
    assert r.exit_code == 0
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == 2 and rows[0][:2] == ["a0", "b0"] and -1 <= float(rows[0][2]) <= 1
    r = cli("embed", "neighbors", run, "-k", "1", input="a1\nnope\n\nb2\n")
    assert r.exit_code == 0
    assert [line.split("\t")[:2] for line in r.stdout.splitlines()] == [["a1", "b1"], ["b2", "a2"]]
    assert r.stderr.strip() == f"error: {run}: 'nope' is not in the vocabulary (16 words)"
    r = cli("embed", "neighbors", run, "nope")
    assert r.exit_code == 1 and "not in the vocabulary" in r.stderr


def test_analogy_lines_from_stdin(cli, run):
    r = cli("embed", "analogy", run, input="a0 b0 a1\na0 b0\na0 nope a1\n")
    assert r.exit_code == 0
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert [x[3] for x in lines] == ["3CosAdd", "3CosMul"] and all(x[:3] == ["a0", "b0", "a1"] for x in lines)
    assert "has 2 words, expected 3" in r.stderr and "'nope' is not in the vocabulary" in r.stderr
    assert cli("embed", "analogy", run, "a0", "b0", "a1", "--method", "div").exit_code == 2


def test_eval_json_on_stdout_and_table_on_stderr(cli, run, tmp_path):
    (tmp_path / "sim.tsv").write_text("a0\tb0\t9\na0\tb5\t1\na1\tb1\t8\nzz\ta1\t3\n", encoding="utf-8")
    (tmp_path / "q.txt").write_text(": pairs\na0 b0 a1 b1\na2 b2 a3 b3\n: gram-x\na0 b0 zz b1\n", encoding="utf-8")
    r = cli("embed", "eval", run, "--similarity", tmp_path / "sim.tsv", "--analogies", tmp_path / "q.txt")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["similarity"][0]["used"] == 3 and out["similarity"][0]["skipped_oov"] == 1
    assert out["analogies"]["total"]["answered"] == 2 and out["analogies"]["syntactic"]["skipped"] == 1
    assert "Spearman rho" in r.stderr and "semantic" in r.stderr


def test_similarity_file_with_missing_columns_is_one_line(cli, run, tmp_path):
    (tmp_path / "bad.tsv").write_text("a0\tb0\t9\na1 b1\n", encoding="utf-8")
    r = cli("embed", "eval", run, "--similarity", tmp_path / "bad.tsv")
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'bad.tsv'}: line 2 has 2 columns, expected word1, word2 and a " \
                               "score (tab-separated)"
    assert r.stdout == ""


def test_plot_and_import_and_binary(cli, run, tmp_path):
    r = cli("embed", "plot", run, "a0", "b0", "a1", "b1", "-o", tmp_path / "p.png", "-q")
    assert r.exit_code == 0 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert cli("embed", "plot", run, "a0", "-o", tmp_path / "p.png", "-q").exit_code == 1  # exists, too few words
    r = cli("embed", "import", run / "vectors.vec", "-o", tmp_path / "imp", "--binary", "-q")
    assert r.exit_code == 0 and (tmp_path / "imp" / "vectors.bin").is_file()
    a, b = vecfile.load_vectors(run), vecfile.load_vectors(tmp_path / "imp" / "vectors.bin")
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    r = cli("embed", "neighbors", tmp_path / "imp" / "vectors.bin", "a3", "-k", "1")
    assert r.stdout.split("\t")[1] == "b3"


@pytest.mark.parametrize("text,message", [
    ("2 3\na 1 2 3\nb 1 2\n", "line 3 has 2 values, expected 3 (ragged row)"),
    ("a 1 2 3\n", "wrong header"),
])
def test_malformed_vec_is_one_line(cli, tmp_path, text, message):
    (tmp_path / "bad.vec").write_text(text, encoding="utf-8")
    r = cli("embed", "neighbors", tmp_path / "bad.vec", "a")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and message in r.stderr


def test_training_input_errors(cli, tmp_path):
    (tmp_path / "few.tok").write_text("a b c\n", encoding="utf-8")
    r = cli("embed", "train", tmp_path / "few.tok", "-o", tmp_path / "run", "-q")
    assert r.exit_code == 1 and "every word is below min-count 5" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()
    (tmp_path / "one.tok").write_text("a\na\n", encoding="utf-8")
    r = cli("embed", "train", tmp_path / "one.tok", "-o", tmp_path / "run", "--min-count", "1", "-q")
    assert r.exit_code == 1 and "smaller than a window" in r.stderr
    r = cli("embed", "train", tmp_path / "missing.tok", "-q")
    assert r.exit_code == 1 and "no such file" in r.stderr
    r = cli("embed", "train", tmp_path / "one.tok", "--set", "windw=3")
    assert r.exit_code == 2 and "did you mean 'window'" in r.stderr


def test_a_missing_gpu_is_one_line_and_nothing_is_written(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    planted_corpus(tmp_path / "p.tok")
    r = cli("embed", "train", tmp_path / "p.tok", "-o", tmp_path / "run", "--device", "cuda", "-q")
    assert r.exit_code != 0 and "CUDA is not available" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_print_config(cli):
    r = cli("embed", "train", "x.tok", "--dim", "50", "--print-config")
    assert r.exit_code == 0 and "dim: 50" in r.stdout and "model: skipgram" in r.stdout


def test_help_explains_threads_and_reproducibility(cli):
    r = cli("embed", "train", "--help")
    assert "Hogwild" in " ".join(r.stdout.split())


def test_pipeline_preprocess_vocab_encode_embed_neighbors(tmp_path):
    """Separate processes: preprocess -> vocab build -> encode -> embed train on the id file -> neighbors via a pipe."""
    planted_corpus(tmp_path / "p.txt")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dl = f"{sys.executable} -m dlcli"
    sh = (f"{dl} preprocess p.txt -l word -o p.tok -q && {dl} vocab build p.tok -o tok.json -q "
          f"&& {dl} vocab encode p.tok -t tok.json -o p.ids -q "
          f"&& {dl} embed train p.ids -o run {' '.join(TRAIN)} && echo a4 | {dl} embed neighbors run -k 1")
    r = subprocess.run(sh, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].split("\t")[:2] == ["a4", "b4"]
