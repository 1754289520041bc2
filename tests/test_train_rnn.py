"""`dlcli train-rnn`, `generate` and `evaluate` on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlcli.core.config import build_config
from dlcli.core.rundir import load_tensors, read_metrics
from dlcli.errors import ConfigError, InputError, Interrupted, TrainingDiverged
from dlcli.lm.config import TrainRNNConfig
from dlcli.lm.data import LMBatches
from dlcli.lm.train import train_rnn
from dlcli.models.config import RNNConfig
from dlcli.models.rnn import RNNLM

TINY = ["model.n_hidden=32", "model.n_layer=1", "batch_size=8", "seq_len=16", "log_interval=5",
        "eval_interval=0", "checkpoint_interval=0", "device=cpu"]


def cfg_for(ids: Path, out: Path, *sets: str) -> TrainRNNConfig:
    return build_config(TrainRNNConfig, None, [f"data.train={ids}", f"output={out}", *TINY, *sets])


def test_loss_falls_when_overfitting(tm_ids, tmp_path):
    from dlcli.text import vocab

    small = tmp_path / "small.tok"  # 400 tokens: a model this size can learn them by heart
    small.write_text(" ".join("the time traveller for so it will be convenient to speak of him " * 7)[:800] + "\n")
    vocab.encode(vocab.EncodeConfig(inputs=[str(small)], output=str(tmp_path / "small.ids"),
                                    tokenizer=str(tm_ids.parent / "tokenizer.json")))
    s = train_rnn(cfg_for(tmp_path / "small.ids", tmp_path / "run", "max_steps=150", "optim.lr=0.01",
                      "model.cell=gru", "model.n_hidden=64", "data.val_fraction=0.2"))
    rows = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert rows[0]["loss"] > 2.5  # near ln(28) at the start
    assert rows[-1]["loss"] < 0.5
    assert s["val_loss"] < 1.0
    for name in ("config.yaml", "meta.json", "tokenizer.json", "model.safetensors", "metrics.jsonl",
                 "perplexity.png", "checkpoint.json", "checkpoint.safetensors"):
        assert (tmp_path / "run" / name).is_file(), name
    assert (tmp_path / "run" / "perplexity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_cell_and_one_hot_or_embedding(cell):
    for embd in (0, 8):
        m = RNNLM(RNNConfig(vocab_size=11, cell=cell, n_layer=2, n_hidden=6, n_embd=embd))
        logits, loss, h = m(torch.randint(0, 11, (3, 5)), None, torch.randint(0, 11, (3, 5)))
        assert logits.shape == (3, 5, 11) and loss.ndim == 0
        assert (h[0] if isinstance(h, tuple) else h).shape == (2, 3, 6)


def test_weight_tying_shares_the_matrix():
    m = RNNLM(RNNConfig(vocab_size=11, n_hidden=8, n_embd=8, tie_weights=True))
    assert m.head.weight is m.embed.weight


def test_sequential_batches_continue_and_carried_state_equals_one_long_sequence():
    ids = np.arange(1000) % 97
    b = LMBatches(ids, batch_size=4, seq_len=10, sampling="sequential", seed=0)
    x0, y0 = b.batch(0, 0)
    x1, _ = b.batch(0, 1)
    assert (x1[:, 0] == (x0[:, -1] + 1) % 97).all()  # each row picks up where it stopped
    assert (y0[:, :-1] == x0[:, 1:]).all()
    torch.manual_seed(0)
    m = RNNLM(RNNConfig(vocab_size=97, cell="gru", n_layer=1, n_hidden=16)).eval()
    with torch.no_grad():
        _, _, h = m(torch.from_numpy(x0))
        carried, _, _ = m(torch.from_numpy(x1), h)
        whole, _, _ = m(torch.from_numpy(np.concatenate([x0, x1], axis=1)))
        reset, _, _ = m(torch.from_numpy(x1))
    assert torch.allclose(carried, whole[:, 10:], atol=1e-5)
    assert not torch.allclose(reset, whole[:, 10:], atol=1e-3)


def test_random_batches_are_shuffled_windows():
    ids = np.arange(1000)
    b = LMBatches(ids, batch_size=4, seq_len=10, sampling="random", seed=0)
    x, y = b.batch(0, 0)
    assert (np.diff(x, axis=1) == 1).all() and (y == x + 1).all()
    starts = np.concatenate([b.batch(0, i)[0][:, 0] for i in range(b.num_batches(0))])
    assert len(set((starts - starts[0]) % 10)) == 1  # windows tile the corpus from one offset
    assert not (np.diff(starts) > 0).all()  # in shuffled order


def test_resume_after_interrupt_equals_uninterrupted_run(tm_ids, tmp_path):
    sets = ["max_steps=30", "model.dropout=0.1", "model.n_layer=2", "optim.warmup_steps=5"]
    train_rnn(cfg_for(tm_ids, tmp_path / "full", *sets))

    def stop_at_15(tick):
        if tick.done >= 15:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted at step 15; checkpoint saved"):
        train_rnn(cfg_for(tm_ids, tmp_path / "cut", *sets), on_progress=stop_at_15)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    train_rnn(cfg_for(tm_ids, tmp_path / "cut", *sets), resume=True)
    a = load_tensors(tmp_path / "full" / "model.safetensors")
    b = load_tensors(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_a_changed_config(tm_ids, tmp_path):
    train_rnn(cfg_for(tm_ids, tmp_path / "run", "max_steps=5"))
    with pytest.raises(ConfigError, match=r"model.n_hidden: 32 -> 64"):
        train_rnn(cfg_for(tm_ids, tmp_path / "run", "max_steps=10", "model.n_hidden=64"), resume=True)
    s = train_rnn(cfg_for(tm_ids, tmp_path / "run", "max_steps=10"), resume=True)  # a longer budget is fine
    assert s["steps"] == 10


def test_existing_run_is_not_clobbered(tm_ids, tmp_path):
    from dlcli.errors import OutputExistsError

    train_rnn(cfg_for(tm_ids, tmp_path / "run", "max_steps=5"))
    with pytest.raises(OutputExistsError, match="use --resume"):
        train_rnn(cfg_for(tm_ids, tmp_path / "run", "max_steps=5"))


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tm_ids, tmp_path):
    # a sane rate for 10 steps, then an absurd one: the loss blows up after the step-10 checkpoint
    sets = ["max_steps=40", "checkpoint_interval=5", "log_interval=7", "optim.schedule=step", "optim.step_every=10",
            "optim.gamma=1e30", "optim.grad_clip=0", "model.cell=rnn"]
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at step \d+; the last good checkpoint "
                                               r"\(step \d+\) is kept") as e:
        train_rnn(cfg_for(tm_ids, tmp_path / "run", *sets))
    import re

    bad, good = map(int, re.findall(r"step (\d+)", str(e.value)))
    assert 10 <= good < bad <= 40
    state = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]
    assert state["step"] == good
    weights = load_tensors(tmp_path / "run" / "checkpoint.safetensors")
    assert all(torch.isfinite(v).all() for k, v in weights.items() if k.startswith("model."))


def test_too_short_and_mismatched_data(tm_ids, tmp_path):
    with pytest.raises(InputError, match="shorter than one sequence"):
        train_rnn(cfg_for(tm_ids, tmp_path / "run", "seq_len=1000000"))
    other = tmp_path / "other.json"
    other.write_text((tm_ids.parent / "tokenizer.json").read_text().replace('"z"', '"Z"'))
    with pytest.raises(InputError, match="vocabulary mismatch"):
        train_rnn(cfg_for(tm_ids, tmp_path / "run2", f"data.tokenizer={other}"))


def test_cli_train_generate_evaluate(cli, tm_ids, tmp_path):
    r = cli("train-rnn", "-d", tm_ids, "-o", "run", "--max-steps", "30", "--hidden", "32", "--layers", "1",
            "--seed", "3", "-q")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "run"
    a = cli("generate", "run", "--prompt", "the time", "-n", "30", "--seed", "7")
    b = cli("generate", "run", "--prompt", "the time", "-n", "30", "--seed", "7")
    c = cli("generate", "run", "--prompt", "the time", "-n", "30", "--seed", "8")
    assert a.exit_code == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout != c.stdout
    assert a.stdout.startswith("the time") and len(a.stdout) == len("the time") + 30 + 1
    g = cli("generate", "run", "-n", "10", "--temperature", "0", input="The Time\n")
    assert g.stdout.startswith("the time")  # the tokenizer's d2l normaliser applies to prompts
    r = cli("evaluate", "run", "--ids", tm_ids)
    out = json.loads(r.stdout)
    assert out["tokens"] > 170_000 and abs(out["perplexity"] - np.exp(out["loss"])) < 1e-6
    assert abs(out["bits_per_char"] - out["loss"] / np.log(2)) < 1e-9


def test_generate_errors(cli, tm_ids, tmp_path):
    assert cli("train-rnn", "-d", tm_ids, "-o", "run", "--max-steps", "2", "--hidden", "8", "-q").exit_code == 0
    r = cli("generate", "run", "--prompt", "")
    assert r.exit_code != 0 and "the prompt is empty" in r.stderr
    r = cli("generate", "run", "--prompt", "1234")
    assert r.exit_code != 0 and "has no tokens after the tokenizer's normalisation" in r.stderr
    data = Path("run/model.safetensors").read_bytes()
    Path("run/model.safetensors").write_bytes(data[: len(data) // 2])
    r = cli("generate", "run", "--prompt", "the")
    assert r.exit_code != 0 and "model.safetensors: damaged or not a safetensors file" in r.stderr
    r = cli("generate", "nowhere", "--prompt", "the")
    assert r.exit_code != 0 and "nowhere: no such run directory" in r.stderr


def test_embedding_rows_initialised_by_token():
    from tokenizers import Tokenizer, models

    from dlcli.lm.embeddings import init_embedding

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "the": 1, "time": 2, "machine": 3}, unk_token="<unk>"))
    m = RNNLM(RNNConfig(vocab_size=4, n_hidden=3, n_embd=3))
    vec = {"time": np.array([1.0, 2.0, 3.0]), "machine": np.array([4.0, 5.0, 6.0]), "absent": np.zeros(3)}
    before = m.embed.weight[1].clone()
    cov = init_embedding(m.embed, tok, vec)
    assert cov["covered"] == 2 and cov["total"] == 4 and cov["coverage"] == 0.5
    assert m.embed.weight[2].tolist() == [1.0, 2.0, 3.0] and m.embed.weight[3].tolist() == [4.0, 5.0, 6.0]
    assert torch.equal(m.embed.weight[1], before)  # tokens without a vector keep their initialisation
    with pytest.raises(ConfigError, match="2 dimensions but the model's embedding has 3"):
        init_embedding(m.embed, tok, {"the": np.zeros(2)})


@pytest.mark.parametrize("command", ["train-rnn", "train-transformer"])
def test_init_embeddings_from_a_vec_file(cli, tm_ids, tmp_path, command):
    """Rows are copied by token string; the coverage is reported; a dimension mismatch is one clear line."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tm_ids.parent / "tokenizer.json"))
    vocab = tok.get_vocab()
    letters = [t for t in "abcdefghij" if t in vocab]
    vec = tmp_path / "v.vec"
    vec.write_text(f"{len(letters) + 1} 4\n" + "".join(f"{t} {i} 0.5 -1 2\n" for i, t in enumerate(letters))
                   + "zzz 9 9 9 9\n")
    size = ["--embd", "4"] + (["--hidden", "4"] if command == "train-rnn" else ["--heads", "2", "--layers", "1"])
    r = cli(command, "-d", tm_ids, "-o", tmp_path / "run", "--max-steps", "1", *size, "--init-embeddings", vec,
            "--device", "cpu", "--set", "eval_interval=0")
    assert r.exit_code == 0, r.stderr
    assert f"initialised {len(letters)} of {tok.get_vocab_size()} embedding rows" in r.stderr
    bad = cli(command, "-d", tm_ids, "-o", tmp_path / "bad", "--max-steps", "1", "--embd", "8",
              *size[2:], "--init-embeddings", vec)
    assert bad.exit_code != 0 and "4-dimensional vectors but the model's embedding has 8" in bad.stderr


def test_initialised_rows_hold_the_given_vectors(tm_ids, tmp_path):
    from tokenizers import Tokenizer

    from dlcli.lm.embeddings import load_pretrained

    tok = Tokenizer.from_file(str(tm_ids.parent / "tokenizer.json"))
    vec = tmp_path / "e.vec"
    vec.write_text("2 3\ne 1 2 3\nt -1 -2 -3\n")
    m = RNNLM(RNNConfig(vocab_size=tok.get_vocab_size(), n_hidden=3, n_embd=3))
    cov = load_pretrained(m, tok, str(vec))
    assert cov["covered"] == 2
    assert m.embed.weight[tok.token_to_id("e")].tolist() == [1.0, 2.0, 3.0]
    assert m.embed.weight[tok.token_to_id("t")].tolist() == [-1.0, -2.0, -3.0]
