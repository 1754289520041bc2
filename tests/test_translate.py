"""Translation: TSV checks, a tiny end-to-end run, `translate` and BLEU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlcli.translate import bleu, bucket_batches, detokenize

REPO = Path(__file__).resolve().parent.parent


def test_bleu_is_sacrebleu_13a_on_detokenised_text():
    score, sig = bleu(["je suis froid ."], ["je suis froid."])
    assert score == pytest.approx(100.0) and "tok:13a" in sig
    assert detokenize("va ! qui ? oui , non .") == "va! qui? oui, non."


def test_length_buckets_cover_everything_once():
    import random

    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 6, 4]
    batches = bucket_batches(lengths, 3, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 3 for b in batches)


@pytest.mark.parametrize(
    "content, message",
    [
        ("hello\tbonjour\nno tab here\n", "t.tsv: line 2 has no tab"),
        ("hello\tbonjour\n\tvide\n", "t.tsv: line 2 has an empty source"),
        ("hello\t   \n", "t.tsv: line 1 has an empty target"),
    ],
)
def test_bad_tsv(cli, content, message):
    Path("t.tsv").write_text(content)
    r = cli("train-transformer", "--task", "translate", "-d", "t.tsv", "-o", "run", "--max-steps", "1")
    assert r.exit_code != 0 and message in r.stderr and "Traceback" not in r.stderr


def test_train_translate_evaluate(cli):
    data = REPO.parent / "shared" / "data" / "fra-eng.txt"
    if not data.is_file():
        pytest.skip("real data not found")
    Path("small.tsv").write_text("".join(data.read_text(encoding="utf-8").splitlines(True)[:1500]), encoding="utf-8")
    r = cli("train-transformer", "--task", "translate", "-d", "small.tsv", "-o", "run", "--layers", "1", "--heads",
            "2", "--embd", "32", "--block-size", "16", "--max-steps", "60", "--max-time", "0", "--device", "cpu",
            "--set", "data.held_out=50", "--set", "data.vocab_size=600", "--set", "optim.warmup_steps=10", "-q")
    assert r.exit_code == 0, r.stderr
    for name in ("config.yaml", "tokenizer.json", "model.safetensors", "heldout.tsv", "bleu.json", "loss.png"):
        assert Path("run", name).is_file(), name
    assert len(Path("run/heldout.tsv").read_text().splitlines()) == 50
    out = cli("translate", "run", input="Go.\nI am cold.\nThis sentence is far too long for a model whose maximum "
                                        "length is sixteen tokens, so it is cut.\n")
    assert out.exit_code == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3
    assert "truncated" in out.stderr
    strict = cli("translate", "run", "--strict", input="This sentence is far too long for a model whose maximum "
                                                       "length is sixteen tokens, so it is cut.\n")
    assert strict.exit_code != 0 and "more than model.max_len" in strict.stderr
    pic = cli("translate", "run", "--plot-attention", "att", input="Go.\nI am cold.\n")
    assert pic.exit_code == 0, pic.stderr
    assert sorted(p.name for p in Path("att").iterdir()) == ["attention-1.png", "attention-2.png"]
    assert Path("att/attention-1.png").read_bytes()[:4] == b"\x89PNG"
    ev = json.loads(cli("evaluate", "run", "--beam", "2").stdout)
    assert ev["held_out"] == 50 and 0 <= ev["bleu_greedy"] <= 100 and "bleu_beam" in ev
    g = cli("generate", "run", "-p", "go")
    assert g.exit_code != 0 and "not a language model" in g.stderr
