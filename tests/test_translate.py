"""Translation: TSV checks, a tiny end-to-end run, `translate` and BLEU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from dlcli.translation.bleu import bleu, detokenize
from dlcli.translation.data import bucket_batches

REPO = Path(__file__).resolve().parent.parent


def test_bleu_is_sacrebleu_13a_cased_with_case_insensitive_beside_it():
    b = bleu(["Je ne sais pas ce que tu veux dire."], ["je ne sais pas ce que tu veux dire."])
    assert b.lowercase == pytest.approx(100.0) and b.cased < 90.0  # only the case of the first word differs
    assert "tok:13a" in b.signature and "case:mixed" in b.signature and "case:lc" in b.signature_lowercase
    same = bleu(["Je ne sais pas ce que tu veux dire\u202f!"], ["Je ne sais pas ce que tu veux dire !"])
    assert same.cased == pytest.approx(100.0)  # 13a splits on any space, non-breaking ones too


def test_detokenize_undoes_only_what_the_normaliser_did():
    assert detokenize("va ! qui ? oui , non .", ["nmt", "lower"]) == "va! qui? oui, non."
    raw = "Cours\u202f! Qui ? Oui, non."  # the data's own spacing: kept as it is
    assert detokenize(raw, []) == raw


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
    r = cli("evaluate", "run", "--beam", "2")
    assert "BLEU greedy: 50 sentences / 50 sentences (100%)" in r.stderr and "BLEU beam 2: 50 sentences" in r.stderr
    ev = json.loads(r.stdout)
    assert ev["held_out"] == 50 and 0 <= ev["bleu_greedy"] <= ev["bleu_greedy_lowercase"] <= 100
    assert 0 <= ev["bleu_beam"] <= ev["bleu_beam_lowercase"] <= 100
    assert list(ev).index("bleu_greedy") < list(ev).index("bleu_greedy_lowercase")  # cased first
    assert "case:mixed" in ev["signature"] and "case:lc" in ev["signature_lowercase"]
    g = cli("generate", "run", "-p", "go")
    assert g.exit_code != 0 and "not a language model" in g.stderr


TINY = ["--layers", "1", "--heads", "2", "--embd", "16", "--block-size", "16", "--max-time", "0", "--device", "cpu",
        "--set", "data.held_out=20", "--set", "data.vocab_size=300", "--set", "optim.warmup_steps=2",
        "--set", "log_interval=2", "--set", "bleu_sample=10", "-q"]


@pytest.fixture
def small_tsv(data) -> Path:
    lines = (data / "fra-eng.txt").read_text(encoding="utf-8").splitlines(True)
    Path("small.tsv").write_text("".join(lines[:600]), encoding="utf-8")
    return Path("small.tsv")


def test_resume_after_interrupt_continues_exactly_and_bleu_is_logged(cli, small_tsv):
    from dlcli.core.config import build_config
    from dlcli.core.rundir import load_tensors
    from dlcli.errors import Interrupted
    from dlcli.translation.config import TrainTranslateConfig
    from dlcli.translation.train import train

    sets = ["data.tsv=small.tsv", "max_steps=8", "max_time=0", "eval_interval=4", "log_interval=2", "bleu_sample=10",
            "data.held_out=20", "data.vocab_size=300", "optim.warmup_steps=2", "model.n_layer=1", "model.n_head=2",
            "model.n_embd=16", "model.max_len=16", "device=cpu"]

    def cfg(out: str) -> TrainTranslateConfig:
        return build_config(TrainTranslateConfig, None, [*sets, f"output={out}"])

    train(cfg("whole"))

    def stop_at_4(tick):
        if tick.done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted at step 4; checkpoint saved"):
        train(cfg("cut"), on_progress=stop_at_4)
    assert not Path("cut/model.safetensors").exists()
    train(cfg("cut"), resume=True)
    a, b = load_tensors("whole/model.safetensors"), load_tensors("cut/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    recs = [json.loads(x) for x in Path("whole/metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in r and r["step"] == 4 for r in recs) and Path("whole/bleu.png").is_file()
    changed = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "cut", "--max-steps", "9",
                  "--resume", *TINY, "--set", "label_smoothing=0.2")
    assert changed.exit_code != 0 and "label_smoothing" in changed.stderr


def test_separate_source_and_target_tokenizers(cli, small_tsv):
    r = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "sep", "--max-steps", "2", *TINY,
            "--set", "data.shared_vocab=false")
    assert r.exit_code != 0 and "model.share_embeddings" in r.stderr
    r = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "sep", "--max-steps", "2", *TINY,
            "--set", "data.shared_vocab=false", "--set", "model.share_embeddings=false")
    assert r.exit_code == 0, r.stderr
    assert Path("sep/src_tokenizer.json").is_file() and Path("sep/tgt_tokenizer.json").is_file()
    assert not Path("sep/tokenizer.json").exists()
    out = cli("translate", "sep", input="I am cold.\n")
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 1, out.stderr


def test_given_tokenizer_needs_bos_and_eos(cli, small_tsv):
    assert cli("vocab", "train", small_tsv, "-m", "bpe", "-v", "300", "-o", "plain.json", "-q").exit_code == 0
    r = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "run", "--max-steps", "2", *TINY,
            "--set", "data.src_tokenizer=plain.json")
    assert r.exit_code != 0 and "plain.json: the tokenizer has no <pad> token" in r.stderr
    assert not Path("run/model.safetensors").exists()


def test_bad_configs_and_wrong_runs(cli, small_tsv, data):
    r = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "run", "--max-steps", "2", *TINY,
            "--heads", "3")
    assert r.exit_code != 0 and "3 heads do not divide model.n_embd 16" in r.stderr
    tok = cli("preprocess", data / "timemachine.txt", "-l", "char", "--whole", "-o", "tm.tok", "-q")
    assert tok.exit_code == 0
    assert cli("vocab", "build", "tm.tok", "-o", "tm.json", "-q").exit_code == 0
    assert cli("vocab", "encode", "tm.tok", "-t", "tm.json", "-o", "tm.ids", "-q").exit_code == 0
    lm = cli("train-rnn", "-d", "tm.ids", "-o", "lm", "--max-steps", "2", "--hidden", "8", "-q")
    assert lm.exit_code == 0, lm.stderr
    r = cli("translate", "lm", input="I am cold.\n")
    assert r.exit_code != 0 and "not a translation model" in r.stderr


def test_no_plot_and_no_legend_warning_without_points(tmp_path, recwarn):
    from dlcli.train.plots import plot_curves

    assert not plot_curves([{"step": 1}], tmp_path / "loss.png", {"loss": "train", "val_loss": "held-out"}, "loss")
    assert not (tmp_path / "loss.png").exists() and not recwarn.list
    assert plot_curves([{"step": 1, "loss": 2.0}], tmp_path / "loss.png", {"loss": "train", "val_loss": "held-out"},
                       "loss")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG" and not recwarn.list


def test_summary_and_progress_of_the_final_evaluation_and_bleu(cli, small_tsv):
    r = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "run", "--max-steps", "3",
            *[a for a in TINY if a != "-q"])
    assert r.exit_code == 0, r.stderr
    assert re.search(r"^3 steps in train \d+ s \+ final evaluation \d+ s; held-out BLEU", r.stderr, re.MULTILINE)
    assert "BLEU greedy: 20 sentences / 20 sentences (100%)" in r.stderr and "train: 3 steps / 3 steps (100%)" in r.stderr
    assert "No artists" not in r.stderr and Path("run/loss.png").is_file()


def test_an_empty_translation_is_explained(cli, small_tsv, monkeypatch):
    from dlcli.translation import run as trun

    r = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "run", "--max-steps", "1", *TINY)
    assert r.exit_code == 0, r.stderr
    monkeypatch.setattr(trun, "translate_lines", lambda *a, **k: (["", "Je vois."], 0))  # as a 1-step model does
    r = cli("translate", "run", "run", input="I am cold.\nI see.\n")
    assert r.exit_code == 0 and r.stdout == "\nJe vois.\n"
    assert "warning: 1 of 2 translations came out empty" in r.stderr and "train it longer" in r.stderr


PAIRS = ["Hi.\tSalut !", "Run!\tCours\u202f!", "Who?\tQui ?", "Wow!\tÇa alors\u202f!", "Help!\tÀ l'aide\u202f!",
         "I see.\tJe comprends.", "Tom ran.\tTom a couru.", "Tom won.\tTom a gagné."]


def test_cased_output_keeps_the_datas_capitals_and_spacing(cli):
    """With data.normalize [] (the recommended config's), a tiny model that learns its training pairs by heart writes them back exactly: capitals, accents,
    the plain and the non-breaking spaces of the data (no BPE spacing artefacts); the summary and
    evaluate give cased BLEU first, case-insensitive beside it."""
    Path("tiny.tsv").write_text("\n".join(PAIRS * 4) + "\n", encoding="utf-8")
    r = cli("train-transformer", "--task", "translate", "-d", "tiny.tsv", "-o", "run", "--layers", "1", "--heads",
            "2", "--embd", "32", "--block-size", "16", "--max-steps", "150", "--max-time", "0", "--device", "cpu",
            "--lr", "0.01", "--set", "data.held_out=2", "--set", "data.vocab_size=300", "--set",
            "optim.warmup_steps=5", "--set", "model.dropout=0", "--set", "label_smoothing=0", "-b", "8",
            "--set", "data.normalize=[]")
    assert r.exit_code == 0, r.stderr
    assert re.search(r"held-out BLEU \(greedy\) [\d.]+ \(cased; [\d.]+ case-insensitive\) on 2 pairs "
                     r"\[nrefs:1\|case:mixed", r.stderr), r.stderr
    out = cli("translate", "run", input="".join(p.split("\t")[0] + "\n" for p in PAIRS))
    assert out.exit_code == 0, out.stderr
    assert out.stdout.splitlines() == [p.split("\t")[1] for p in PAIRS]
    ev = json.loads(cli("evaluate", "run", "--beam", "2").stdout)  # the held-out pairs are repeats of trained ones
    assert ev["bleu_greedy"] == pytest.approx(100.0) and ev["bleu_greedy_lowercase"] == pytest.approx(100.0)
    assert ev["bleu_beam"] <= ev["bleu_beam_lowercase"]


def test_default_normalisation_still_lowercases(cli, small_tsv):
    r = cli("train-transformer", "--task", "translate", "-d", small_tsv, "-o", "low", "--max-steps", "3", *TINY)
    assert r.exit_code == 0, r.stderr
    held = Path("low/heldout.tsv").read_text(encoding="utf-8")
    assert held == held.lower() and "\u202f" not in held and " !" in held
    out = cli("translate", "low", input="Go.\nWho?\n")
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 2, out.stderr
    ev = json.loads(cli("evaluate", "low").stdout)
    assert ev["bleu_greedy"] == pytest.approx(ev["bleu_greedy_lowercase"])  # nothing cased to lose
