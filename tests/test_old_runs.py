"""Run directories written before the package refactor still work with the current code.

tests/fixtures/old_runs/ holds tiny runs of every training stage, made by tests/fixtures/make_old_runs.sh
with the code of an older commit (its README names it). Each test copies the runs it needs (and inputs/)
into its own tmp_path under the same relative path, tests/fixtures/old_runs/..., and works there: the
runs record their data and outputs relative to the repository root, and the fixtures are never written.
Only the command line is used (its commands and flags are the stable interface), plus the documented
files a run writes (metrics.jsonl, JSON on stdout, .npy samples).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
REL = Path("tests/fixtures/old_runs")
FIXTURES = REPO / REL
CPU = ("--device", "cpu", "-q")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


DIGEST_BEFORE = _digest(FIXTURES) if FIXTURES.is_dir() else ""


@functools.cache
def _command():
    """The click command tree, built once (typer's CliRunner would rebuild it for every call)."""
    import typer.main

    from dlcli.cli.app import app

    return typer.main.get_command(app)


def dlcli(*args, input: str | None = None):
    """`dlcli ARGS...` in this process; returns click's Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    return CliRunner().invoke(_command(), [str(a) for a in args], input=input, catch_exceptions=False)


def ok(*args, input: str | None = None):
    r = dlcli(*args, input=input)
    assert r.exit_code == 0, f"dlcli {' '.join(map(str, args))}: exit {r.exit_code}\n{r.stderr}"
    return r




@pytest.fixture
def old(tmp_path: Path, monkeypatch):
    """old(*runs): copy inputs/ and the named runs to tmp_path/tests/fixtures/old_runs/, work in tmp_path."""
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} not found (make it with tests/fixtures/make_old_runs.sh)")
    monkeypatch.chdir(tmp_path)

    def stage(*runs: str) -> Path:
        for name in ("inputs", *runs):
            shutil.copytree(FIXTURES / name, tmp_path / REL / name)
        return REL

    return stage


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]


def last_step(run: Path) -> int:
    return max(m["step"] for m in metrics(run) if "step" in m)


def resumed(run: Path, budget: int, *train_args: str, key: str = "step") -> None:
    """`dlcli TRAIN_ARGS --resume` grew the run from its old budget to `budget` and finished it."""
    old_records = metrics(run)
    before = max(m[key] for m in old_records if key in m)
    model = [p for p in run.glob("*.safetensors") if not p.name.startswith("checkpoint")]
    weights = {p.name: p.read_bytes() for p in model}
    assert before < budget and model
    ok(*train_args, "--resume")
    records = metrics(run)
    # continued, not restarted: the old records are kept and the new ones start after them
    assert records[:len(old_records)] == old_records, f"{run}: --resume rewrote the old metrics"
    new = [m[key] for m in records[len(old_records):] if key in m]
    assert new and min(new) > before, f"{run}: after --resume from {key} {before}, the metrics have {new}"
    assert max(new) == budget, f"{run}: resumed to {key} {max(new)}, expected {budget}"
    assert any(p.read_bytes() != weights[p.name] for p in model), f"{run}: no weights changed on --resume"


def check_lm(run: Path, prompt: str, ids: Path) -> None:
    """generate and evaluate on a language-model run."""
    r = ok("generate", run, "--prompt", prompt, "-n", "12", "--seed", "1", "--temperature", "0.8")
    assert r.stdout.startswith(prompt) and len(r.stdout.rstrip("\n")) > len(prompt), r.stdout
    g = ok("generate", run, "--prompt", prompt, "-n", "12", "--temperature", "0")
    assert g.stdout == ok("generate", run, "--prompt", prompt, "-n", "12", "--temperature", "0").stdout
    ev = json.loads(ok("evaluate", run, "--ids", ids).stdout)
    assert ev["tokens"] > 0 and math.isfinite(ev["loss"]) and ev["loss"] > 0, ev
    assert ev["perplexity"] == pytest.approx(math.exp(ev["loss"]), rel=1e-3), ev


# --------------------------------------------------------------------------- language models


RNN = ("train-rnn", "-d", REL / "inputs/ts.ids", "-o", REL / "rnn", "--cell", "lstm", "--layers", "1", "--hidden",
       "16", "--seq-len", "16", "-b", "4", "--lr", "0.01", "--seed", "1", *CPU)
GPT = ("train-transformer", "-d", REL / "inputs/ts.ids", "-o", REL / "gpt", "--layers", "1", "--heads", "2",
       "--embd", "16", "--block-size", "16", "-b", "4", "--lr", "0.01", "--seed", "1", *CPU)
MLM = ("train-transformer", "-d", REL / "inputs/tsw.ids", "-o", REL / "mlm", "--objective", "mlm", "--layers", "1",
       "--heads", "2", "--embd", "16", "--block-size", "16", "-b", "4", "--lr", "0.01", "--seed", "1", *CPU)


def test_rnn_run(old) -> None:
    root = old("rnn")
    check_lm(root / "rnn", "ROMEO:", root / "inputs/ts.ids")
    ev = json.loads(ok("evaluate", root / "rnn", "--text", root / "inputs/ts.txt").stdout)
    assert ev["tokens"] > 7000 and "bits_per_char" in json.dumps(ev), ev
    r = dlcli(*RNN, "--hidden", "24", "--max-steps", "10", "--resume")  # another width: refused, run kept
    assert r.exit_code != 0 and "hidden" in r.stderr and "24" in r.stderr and "Traceback" not in r.stderr, r.stderr
    resumed(root / "rnn", 10, *RNN, "--max-steps", "10")
    check_lm(root / "rnn", "ROMEO:", root / "inputs/ts.ids")


def test_gpt_run(old) -> None:
    root = old("gpt")
    check_lm(root / "gpt", "ROMEO:", root / "inputs/ts.ids")
    r = ok("generate", root / "gpt", "--prompt", "First", "-n", "30", "--top-k", "5", "--num-samples", "2", "--seed", "2")
    assert r.stdout.count("First") >= 2, r.stdout
    r = dlcli(*GPT, "--lr", "0.02", "--max-steps", "10", "--resume")  # another learning rate: refused
    assert r.exit_code != 0 and "lr" in r.stderr and "0.02" in r.stderr and "Traceback" not in r.stderr, r.stderr
    resumed(root / "gpt", 10, *GPT, "--max-steps", "10")
    check_lm(root / "gpt", "ROMEO:", root / "inputs/ts.ids")


def test_masked_lm_run(old) -> None:
    root = old("mlm")
    ev = json.loads(ok("evaluate", root / "mlm", "--ids", root / "inputs/tsw.ids").stdout)
    assert ev["masked_tokens"] > 0 and math.isfinite(ev["loss"]), ev
    assert 0 <= ev["masked_accuracy"] <= 1 and 0 < ev["majority_accuracy"] <= 1, ev
    r = dlcli("generate", root / "mlm", "--prompt", "the", "-n", "5")
    assert r.exit_code != 0 and "masked" in r.stderr and "Traceback" not in r.stderr, r.stderr  # refused
    resumed(root / "mlm", 9, *MLM, "--max-steps", "9")


# --------------------------------------------------------------------------- translation, forecasting


TRANSLATE = ("train-transformer", "--task", "translate", "-d", REL / "inputs/fra-eng.tsv", "-o", REL / "translate",
             "--layers", "1", "--heads", "2", "--embd", "16", "--block-size", "24", "-b", "8", "--lr", "0.01",
             "--max-time", "0", "--seed", "1", *CPU, "--set", "data.held_out=8", "--set", "data.vocab_size=300",
             "--set", "optim.warmup_steps=2", "--set", "eval_interval=3", "--set", "log_interval=2",
             "--set", "bleu_sample=4")


def test_translate_run(old) -> None:
    root = old("translate")
    run = root / "translate"
    r = ok("translate", run, input="Go.\nI am cold.\nWho is it?\n")
    assert len(r.stdout.splitlines()) == 3, r.stdout
    r = ok("translate", run, "--beam", "2", input="I am cold.\n")
    assert len(r.stdout.splitlines()) == 1
    (Path("in.txt")).write_text("We are friends.\nGo.\n", encoding="utf-8")
    ok("translate", run, "in.txt", "-o", "out.txt", "--beam", "2")
    assert len(Path("out.txt").read_text(encoding="utf-8").splitlines()) == 2
    ev = json.loads(ok("evaluate", run, "--beam", "2").stdout)  # BLEU on the run's heldout.tsv
    assert ev["held_out"] == 8 and ev["beam"] == 2 and "tok:13a" in ev["signature"], ev
    assert 0 <= ev["bleu_greedy"] <= 100 and 0 <= ev["bleu_beam"] <= 100, ev
    # a lowercased run: cased and case-insensitive BLEU are both reported, and equal
    assert ev["bleu_greedy_lowercase"] == ev["bleu_greedy"] and ev["bleu_beam_lowercase"] == ev["bleu_beam"], ev
    resumed(run, 9, *TRANSLATE, "--max-steps", "9")
    assert len(ok("translate", run, input="Go.\n").stdout.splitlines()) == 1


FORECAST = ("train-rnn", "--task", "forecast", "-d", REL / "inputs/sine.csv", "-o", REL / "forecast", "--cell", "gru",
            "--hidden", "8", "--horizons", "1,4,16", "--seed", "1", "--device", "cpu", "-q")


def test_forecast_run(old) -> None:
    root = old("forecast")
    run = root / "forecast"
    out = json.loads(ok("forecast", run, "--horizons", "1,4", "-o", "pred.csv", "--device", "cpu", "--json").stdout)
    assert out["model"] == "gru" and out["tau"] == 4 and out["points"] == 1000 and out["n_train"] == 600, out
    assert out["all"]["points"] == {"1": 996, "4": 993}, out
    rows = Path("pred.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].split(",")[:3] == ["t", "truth", "pred_1step"] and len(rows) == 1001, rows[:2]
    test_mse = out["test"]["mse"]
    assert set(test_mse) >= {"1", "4"} and all(math.isfinite(v) for v in test_mse.values()), out
    resumed(run, 3, *FORECAST, "--epochs", "3", key="epoch")
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3]
    table = ok("forecast", run, "--device", "cpu").stdout.splitlines()  # the default: the table
    assert table[1].split()[0] == "horizon" and [r.split()[0] for r in table[2:]] == ["1", "4", "16"], table


# --------------------------------------------------------------------------- GAN, embeddings, NeRF


GAN = ("gan", "train", "ring8", "-o", REL / "gan", "--hidden", "16", "--layers", "1", "--z-dim", "2", "-b", "32",
       "--snapshot-interval", "3", "--seed", "1", *CPU, "--set", "log_interval=2", "--set", "eval_interval=3",
       "--set", "eval_samples=200")


def test_gan_run(old) -> None:
    root = old("gan")
    run = root / "gan"
    ok("gan", "sample", run, "-n", "7", "-o", "s.npy", "--device", "cpu")
    s = np.load("s.npy")
    assert s.shape == (7, 2) and s.dtype == np.float32 and np.isfinite(s).all()
    ev = json.loads(ok("gan", "eval", run, "-n", "200", "--device", "cpu").stdout)
    assert ev["samples"] == 200 and ev["n_modes"] == 8 and 0 <= ev["modes"] <= 8, ev
    resumed(run, 10, *GAN, "--max-steps", "10")
    ok("gan", "sample", run, "-n", "3", "-o", "s.csv", "--device", "cpu")
    assert len(Path("s.csv").read_text().strip().splitlines()) >= 3


EMBED = ("embed", "train", REL / "inputs/story.tok", "-o", REL / "embed", "--dim", "8", "--min-count", "2",
         "--sample", "0", "--epochs", "3", "--workers", "1", "--seed", "1", "-q")


def test_embed_run(old) -> None:
    root = old("embed")
    run = root / "embed"
    r = ok("embed", "neighbors", run, "the", "keeper", "-k", "3")
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(lines) == 6 and {w[0] for w in lines} == {"the", "keeper"}, r.stdout
    assert all(len(w) == 3 and -1.0001 <= float(w[2]) <= 1.0001 for w in lines), r.stdout
    # the fixture stopped after epoch 1 of 3 (--max-time 0s) with its checkpoint; the torch kernel skips
    # numba's compile here (the kernel may change on --resume)
    resumed(run, 3, *EMBED, "--max-time", "1h", "--device", "cpu", "--kernel", "torch", key="epoch")
    assert not (run / "checkpoint.json").exists()  # finished
    assert len(ok("embed", "neighbors", run, "the", "-k", "2").stdout.splitlines()) == 2


NERF = ("nerf", "train", REL / "inputs/scene", "-o", REL / "nerf", "--val-interval", "3", "-b", "64", "--seed", "1",
        *CPU, "--set", "log2_table=8", "--set", "levels=4", "--set", "max_res=32", "--set", "hidden=16",
        "--set", "n_samples=16", "--set", "grid_resolution=8", "--set", "grid_warmup=4", "--set", "grid_interval=4",
        "--set", "log_interval=2", "--set", "checkpoint_interval=4")


def test_nerf_run(old) -> None:
    root = old("nerf")
    run = root / "nerf"
    ev = json.loads(ok("nerf", "eval", run, "--device", "cpu", "-q").stdout)
    res = ev["results"]
    assert res["num_views"] == 2 and len(ev["per_view"]) == 2, ev  # the scene's 2 test views
    assert 0 < res["psnr"] < 100 and -1 <= res["ssim"] <= 1, ev
    ok("nerf", "render", run, "-o", "frames", "-n", "2", "--device", "cpu", "-q")
    rgb, depth = sorted(Path("frames").glob("rgb_*.png")), sorted(Path("frames").glob("depth_*.png"))
    assert len(rgb) == 2 and len(depth) == 2, sorted(Path("frames").iterdir())
    from PIL import Image

    assert Image.open(rgb[0]).size == (8, 8)  # the training size
    resumed(run, 8, *NERF, "--max-steps", "8")


# --------------------------------------------------------------------------- RLHF


RL = ("-b", "8", *CPU, "--set", "log_interval=2", "--set", "eval_interval=2")


def test_rlhf_sft_run(old) -> None:
    root = old("rlhf-base", "rlhf-sft")
    run = root / "rlhf-sft"
    check_lm(run, "about cats:", root / "inputs/rlhf/corpus.ids")
    resumed(run, 6, "rlhf", "sft", root / "rlhf-base", root / "inputs/rlhf/sft.jsonl", "-o", run, "--max-steps", "6",
            *RL)
    check_lm(run, "about tea:", root / "inputs/rlhf/corpus.ids")


def test_rlhf_reward_run(old) -> None:
    root = old("rlhf-base", "rlhf-reward")
    run = root / "rlhf-reward"
    r = ok("rlhf", "score", run, root / "inputs/rlhf/prefs.jsonl", "--device", "cpu", "-q")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 60 and all(math.isfinite(x["reward_chosen"]) and math.isfinite(x["reward_rejected"])
                                   for x in rows)
    r = ok("rlhf", "score", run, root / "inputs/rlhf/sft.jsonl", "-o", "scored.jsonl", "--device", "cpu", "-q")
    rows = [json.loads(line) for line in Path("scored.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(math.isfinite(x["reward"]) for x in rows)
    resumed(run, 6, "rlhf", "reward", root / "rlhf-base", root / "inputs/rlhf/prefs.jsonl", "-o", run,
            "--max-steps", "6", *RL)


def test_rlhf_dpo_run(old) -> None:
    root = old("rlhf-base", "rlhf-sft", "rlhf-dpo")
    run = root / "rlhf-dpo"
    check_lm(run, "about cats:", root / "inputs/rlhf/corpus.ids")
    resumed(run, 6, "rlhf", "dpo", root / "rlhf-sft", root / "inputs/rlhf/prefs.jsonl", "-o", run, "--max-steps", "6",
            *RL, "--set", "kl_samples=4")


def test_rlhf_ppo_run(old) -> None:
    root = old("rlhf-base", "rlhf-sft", "rlhf-reward", "rlhf-ppo")
    run = root / "rlhf-ppo"
    check_lm(run, "about cats:", root / "inputs/rlhf/corpus.ids")
    resumed(run, 3, "rlhf", "ppo", root / "rlhf-sft", root / "rlhf-reward", "--prompts",
            root / "inputs/rlhf/prompts.jsonl", "-o", run, "--max-steps", "3", "--max-new-tokens", "8", *RL,
            "--set", "mini_batch_size=4", "--set", "sample_interval=1", "--set", "num_samples=2")
    check_lm(run, "about tea:", root / "inputs/rlhf/corpus.ids")


def test_the_fixtures_were_not_changed() -> None:
    if not FIXTURES.is_dir():
        pytest.skip("no fixtures")
    assert _digest(FIXTURES) == DIGEST_BEFORE
