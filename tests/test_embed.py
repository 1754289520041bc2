"""dlcli.embed: corpus, kernels, training, vector files, queries, evaluation, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlcli.core import rundir
from dlcli.embed import corpus, evaluate, kernels, query, vecfile
from dlcli.embed import train as tr
from dlcli.embed.query import Vectors
from dlcli.errors import ConfigError, InputError

PAIRS = 8


def planted_corpus(path: Path, seed: int = 0, sentences_per_pair: int = 120, length: int = 8) -> Path:
    """Sentences drawn from one pair {aK, bK} each: the words of a pair share every context."""
    rng = np.random.default_rng(seed)
    lines = []
    for s in rng.permutation(PAIRS * sentences_per_pair):
        k = s % PAIRS
        lines.append(" ".join(f"{'ab'[j]}{k}" for j in rng.integers(0, 2, size=length)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cfg(data: Path | str, out: Path | str, **kw) -> tr.EmbedConfig:
    base = {"dim": 16, "min_count": 1, "sample": 0.0, "epochs": 3, "workers": 1, "seed": 3}
    return tr.EmbedConfig(data=str(data), output=str(out), **{**base, **kw})


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return planted_corpus(tmp_path_factory.mktemp("planted") / "planted.tok")


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("kernel", ["numba", "torch"])
@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_planted_pairs_are_nearest_neighbours(planted, tmp_path, model, kernel):
    s = tr.train(_cfg(planted, tmp_path / "run", model=model, kernel=kernel,
                      alpha=0.05 if model == "cbow" else 0.025))
    assert s["words"] == 2 * PAIRS and s["corpus_words"] == PAIRS * 120 * 8
    v = Vectors.load(tmp_path / "run")
    for k in range(PAIRS):
        assert query.neighbors(v, f"a{k}", 1)[0][0] == f"b{k}"
        assert query.neighbors(v, f"b{k}", 1)[0][0] == f"a{k}"
    losses = [m["loss"] for m in rundir.read_metrics(tmp_path / "run")]
    assert losses[-1] < losses[0]


def test_mean_cosine_is_one_for_parallel_rows_and_zero_for_orthogonal_ones():
    assert tr.mean_cosine(np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])) == pytest.approx(1.0)
    assert tr.mean_cosine(np.eye(4)) == pytest.approx(0.0)
    assert tr.mean_cosine(np.array([[1.0, 0.0], [0.0, 0.0]])) == 0.0  # zero rows are left out


def test_a_corpus_too_small_for_the_settings_warns_and_says_what_helps(data, tmp_path):
    """The Time Machine (33k words): 5 epochs leave every vector pointing one way; 50 spread them out."""
    import warnings

    from dlcli.errors import DlcliWarning
    from dlcli.text import preprocess

    tok = tmp_path / "tm.tok"
    preprocess.run(preprocess.PreprocessConfig(inputs=[str(data / "timemachine.txt")], output=str(tok),
                                               normalize=["d2l"], level="word", workers=1))
    with pytest.warns(DlcliWarning) as caught:
        s = tr.train(tr.EmbedConfig(data=str(tok), output=str(tmp_path / "small"), workers=1))
    message = str(caught[0].message)
    assert message.startswith(f"{tok}: 32,775 corpus words are too few for 5 epochs: the vectors point nearly one "
                              "way (mean cosine 1.00)")
    assert message.endswith("more epochs help most (--epochs 50), or a bigger corpus (dlcli data get text8)")
    assert s["mean_cosine"] > 0.99 and (tmp_path / "small" / "vectors.vec").is_file()  # written all the same
    with warnings.catch_warnings():
        warnings.simplefilter("error", DlcliWarning)
        s = tr.train(tr.EmbedConfig(data=str(tok), output=str(tmp_path / "enough"), workers=1, epochs=50))
    assert s["mean_cosine"] < 0.5
    v = Vectors.load(tmp_path / "enough")
    assert query.neighbors(v, "time", 1)[0][1] < 0.9  # neighbours no longer all at cosine ~1


def test_summary_and_meta_report_the_time_of_each_phase(planted, tmp_path):
    s = tr.train(_cfg(planted, tmp_path / "run"))
    t = s["timings"]
    assert set(t) == {"device", "load", "setup", "compile", "kernel", "train", "write", "total"}
    assert rundir.read_meta(tmp_path / "run")["timings"] == t
    assert 0 < t["kernel"] <= t["train"] and all(v >= 0 for v in t.values())
    assert sum(v for k, v in t.items() if k not in ("kernel", "total")) == pytest.approx(t["total"], abs=0.01)


def test_auto_picks_numba_on_the_cpu_without_importing_torch_when_no_gpu_can_be_there(monkeypatch):
    import subprocess
    import sys

    code = ("import sys; from dlcli.core.runtime import gpu_possible; from dlcli.embed import train as tr; "
            "print(gpu_possible(), "
            "tr._pick_kernel(tr.EmbedConfig(data='x')), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    if out[0] == "False":
        assert out[1].strip() == "('numba', 'cpu') False"
    monkeypatch.setattr(tr.runtime, "gpu_possible", lambda: False)
    assert tr._pick_kernel(tr.EmbedConfig(data="x")) == ("numba", "cpu")
    assert tr._pick_kernel(tr.EmbedConfig(data="x", device="cpu", kernel="torch")) == ("torch", "cpu")


def test_one_worker_is_reproducible_and_the_seed_matters(planted, tmp_path):
    tr.train(_cfg(planted, tmp_path / "a"))
    tr.train(_cfg(planted, tmp_path / "b"))
    tr.train(_cfg(planted, tmp_path / "c", seed=4))
    a, b, c = (vecfile.load_vectors(tmp_path / n)[1] for n in "abc")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batched_kernel_update_is_the_negative_sampling_gradient():
    import torch

    from dlcli.embed.batched import BatchedKernel

    rng = np.random.default_rng(0)
    W_in, W_out = rng.normal(size=(2, 3, 4)).astype(np.float32)
    noise = np.array([0.0, 0.0, 1.0])  # every noise draw is word 2
    k = BatchedKernel(W_in.copy(), W_out.copy(), np.zeros(1, np.int32), np.array([0, 1]), np.ones(3), noise,
                      sg=True, window=1, negative=1, device="cpu")
    lr = 0.1
    v = torch.from_numpy(W_in[1:2])
    grad_v, loss = k._negative_sampling(v, torch.tensor([0]), lr, torch.Generator())
    def sig(x):
        return 1 / (1 + np.exp(-x))

    g_pos, g_neg = (1 - sig(W_out[0] @ W_in[1])) * lr, (0 - sig(W_out[2] @ W_in[1])) * lr
    assert np.allclose(grad_v.numpy()[0], g_pos * W_out[0] + g_neg * W_out[2], atol=1e-6)
    assert np.allclose(k.W_out.numpy()[0], W_out[0] + g_pos * W_in[1], atol=1e-6)
    assert np.allclose(k.W_out.numpy()[2], W_out[2] + g_neg * W_in[1], atol=1e-6)
    assert np.array_equal(k.W_out.numpy()[1], W_out[1])
    expected = -np.log(sig(W_out[0] @ W_in[1])) - np.log(sig(-(W_out[2] @ W_in[1])))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_numba_kernel_is_refused_on_a_gpu_and_a_missing_gpu_is_one_error(planted, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        tr.train(_cfg(planted, tmp_path / "g", device="cuda"))
    with pytest.raises(ConfigError, match="kernel"):
        tr.train(_cfg(planted, tmp_path / "g", kernel="cuda"))


def _ctrl_c_after_a_slice(tick) -> None:
    """A real Ctrl-C once a slice is done (its progress tick has a loss); the loop holds it to the step's end."""
    import os
    import signal

    if "loss" in tick.metrics:
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_resume_after_a_time_budget_equals_an_uninterrupted_run(planted, tmp_path, monkeypatch, kernel):
    monkeypatch.setattr(tr, "SLICE_WORDS", 2000)  # several kernel calls per epoch
    full = tr.train(_cfg(planted, tmp_path / "full", kernel=kernel, epochs=2))
    s = tr.train(_cfg(planted, tmp_path / "cut", max_time="0s", kernel=kernel, epochs=2))
    assert s["stopped"] == "max_time" and s["epochs_done"] == 0 and (tmp_path / "cut" / "checkpoint.json").is_file()
    assert (tmp_path / "cut" / "vectors.vec").is_file()  # usable vectors even from a stopped run
    s = tr.train(_cfg(planted, tmp_path / "cut", max_time="1h", kernel=kernel, epochs=2), resume=True)
    assert s["stopped"] is None and not (tmp_path / "cut" / "checkpoint.json").exists()
    assert s["effective_words"] == full["effective_words"]
    assert np.array_equal(vecfile.load_vectors(tmp_path / "cut")[1], vecfile.load_vectors(tmp_path / "full")[1])
    with pytest.raises(ConfigError, match="finished"):
        tr.train(_cfg(planted, tmp_path / "cut", kernel=kernel, epochs=2), resume=True)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(planted, tmp_path, monkeypatch):
    """Ctrl-C after every slice, each time resumed: the vectors of one uninterrupted run (a Ctrl-C in the
    last slice lets the run finish)."""
    from dlcli.errors import Interrupted

    monkeypatch.setattr(tr, "SLICE_WORDS", 2000)
    full = tr.train(_cfg(planted, tmp_path / "full"))
    with pytest.raises(Interrupted, match="interrupted at slice 1; .*continue with --resume"):
        tr.train(_cfg(planted, tmp_path / "cut"), on_progress=_ctrl_c_after_a_slice)
    assert (tmp_path / "cut" / "checkpoint.json").is_file() and not (tmp_path / "cut" / "vectors.vec").exists()
    cuts = 1
    while True:
        try:
            s = tr.train(_cfg(planted, tmp_path / "cut"), resume=True, on_progress=_ctrl_c_after_a_slice)
            break
        except Interrupted:
            cuts += 1
    slices = [(m["epoch"], m["slice"]) for m in rundir.read_metrics(tmp_path / "full")]
    assert cuts == len(slices) - 1 > 4 and s["stopped"] is None
    assert [(m["epoch"], m["slice"]) for m in rundir.read_metrics(tmp_path / "cut")] == slices  # one record each
    assert s["effective_words"] == full["effective_words"]
    assert np.array_equal(vecfile.load_vectors(tmp_path / "cut")[1], vecfile.load_vectors(tmp_path / "full")[1])


def test_resume_refuses_a_changed_config(planted, tmp_path):
    tr.train(_cfg(planted, tmp_path / "r", max_time="0s"))
    with pytest.raises(ConfigError, match="dim"):
        tr.train(_cfg(planted, tmp_path / "r", dim=8), resume=True)


def test_existing_run_is_not_clobbered(planted, tmp_path):
    tr.train(_cfg(planted, tmp_path / "r"))
    from dlcli.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        tr.train(_cfg(planted, tmp_path / "r"))


def test_id_file_input_with_min_count_trims_the_tokenizer(tmp_path):
    from dlcli.text import vocab
    from dlcli.text.vocabulary import load

    text = "the cat sat on the mat\nthe dog sat on the log\nthe cat ran\n" * 30 + "rare words here\n"
    (tmp_path / "c.tok").write_text(text, encoding="utf-8")
    vocab.build(vocab.BuildConfig(inputs=[str(tmp_path / "c.tok")], output=str(tmp_path / "tok.json"),
                                  specials=["<pad>", "<unk>"]))
    vocab.encode(vocab.EncodeConfig(inputs=[str(tmp_path / "c.tok")], output=str(tmp_path / "c.ids"),
                                    tokenizer=str(tmp_path / "tok.json")))
    from dlcli.errors import DlcliWarning

    with pytest.warns(DlcliWarning, match="too few"):  # 453 words: the small-corpus warning is expected here
        tr.train(_cfg(tmp_path / "c.ids", tmp_path / "run", min_count=2))
    tok = load(tmp_path / "run" / "tokenizer.json")
    assert tok.get_vocab()["<pad>"] == 0 and tok.get_vocab()["<unk>"] == 1
    assert "rare" not in tok.get_vocab() and tok.token_to_id("the") == 2
    words, W = vecfile.read(tmp_path / "run" / "vectors.vec")
    assert words[0] == "the" and set(words) == {"the", "cat", "sat", "on", "mat", "dog", "log", "ran"}
    emb = vecfile.load_tensors(tmp_path / "run" / "embeddings.safetensors")["embeddings"]
    assert np.array_equal(emb[tok.token_to_id("cat")], W[words.index("cat")])
    assert not emb[0].any() and not emb[1].any()  # specials stay zero


def test_corpus_errors(tmp_path):
    (tmp_path / "few.tok").write_text("a b c\nd e f\n", encoding="utf-8")
    with pytest.raises(InputError, match="every word is below min-count 5"):
        corpus.load(str(tmp_path / "few.tok"), min_count=5)
    (tmp_path / "single.tok").write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(InputError, match="smaller than a window"):
        tr.train(_cfg(tmp_path / "single.tok", tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="model"):
        _cfg("x", "y", model="glove").validate()


def test_long_lines_are_cut_into_sentences(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_SENTENCE", 4)
    (tmp_path / "long.tok").write_text("a b a b a b a b a b\n\na b\n", encoding="utf-8")
    c = corpus.load(str(tmp_path / "long.tok"), min_count=1)
    assert np.diff(c.sent_starts).tolist() == [4, 4, 2, 2]


def test_subsampling_and_noise_distributions():
    counts = np.array([1000, 100, 10, 1])
    p = corpus.keep_probabilities(counts, 1e-2) / 2.0**32
    t = 1e-2 * counts.sum()
    assert p[0] == pytest.approx((np.sqrt(1000 / t) + 1) * t / 1000, rel=1e-9)
    assert p[-1] == 1.0  # rare words are always kept
    w = corpus.noise_weights(counts)
    prob, alias = kernels.alias_table(w)
    # probability mass each word gets from the alias table
    mass = prob / 2.0**16
    got = mass.copy()
    np.add.at(got, alias, 1 - mass)
    assert np.allclose(got / got.sum(), w / w.sum(), atol=1e-4)


# ---------------------------------------------------------------- vector files


def test_vec_text_and_binary_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((50, 7)) * 10.0 ** rng.integers(-9, 3, size=(50, 7))).astype(np.float32)
    W[0, 0], W[1, 1] = np.float32(0.1), np.float32(-0.0)
    words = [f"w{i}" for i in range(48)] + ["café", "naïve"]
    for name, write in (("v.vec", vecfile.write_text), ("v.bin", vecfile.write_binary)):
        with open(tmp_path / name, "wb") as f:
            write(f, words, W)
        got_words, got = vecfile.read(tmp_path / name)
        assert got_words == words
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), W.view(np.uint32))
    assert (tmp_path / "v.vec").read_text().splitlines()[1].split()[1] == "0.1"  # shortest form


@pytest.mark.parametrize("odd", [np.nan, np.inf, 1e-30, 3e30])
def test_vec_text_round_trips_odd_values(tmp_path, odd):
    W = np.full((3, 4), 0.25, dtype=np.float32)
    W[1, 2] = odd
    with open(tmp_path / "v.vec", "wb") as f:
        vecfile.write_text(f, ["a", "b", "c"], W)
    _, got = vecfile.read(tmp_path / "v.vec")
    assert np.array_equal(got, W, equal_nan=True)


def test_gensim_reads_our_files(tmp_path):
    gensim_models = pytest.importorskip("gensim.models")
    W = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    words = ["a", "b", "c", "d", "é"]
    for name, write, binary in (("v.vec", vecfile.write_text, False), ("v.bin", vecfile.write_binary, True)):
        with open(tmp_path / name, "wb") as f:
            write(f, words, W)
        kv = gensim_models.KeyedVectors.load_word2vec_format(str(tmp_path / name), binary=binary)
        assert kv.index_to_key == words and np.array_equal(kv.vectors, W)


@pytest.mark.parametrize("text,message", [
    ("3\na 1 2\n", "wrong header"),
    ("x y\na 1 2\n", "wrong header"),
    ("2 2\na 1 2\nb 1\n", "line 3 has 1 values, expected 2 .ragged row"),
    ("3 2\na 1 2\nb 1 2\n", "header says 3 words but the file has 2"),
    ("1 2\na 1 x\n", "line 2 has a value that is not a number"),
])
def test_malformed_vec_files(tmp_path, text, message):
    (tmp_path / "bad.vec").write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        vecfile.read(tmp_path / "bad.vec")


def test_truncated_binary(tmp_path):
    with open(tmp_path / "v.bin", "wb") as f:
        vecfile.write_binary(f, ["a", "b"], np.ones((2, 4), np.float32))
    (tmp_path / "cut.bin").write_bytes((tmp_path / "v.bin").read_bytes()[:-10])
    with pytest.raises(InputError, match="end early at word 2 of 2"):
        vecfile.read(tmp_path / "cut.bin")


def test_import_makes_a_run_directory(tmp_path):
    W = np.eye(4, dtype=np.float32)
    with open(tmp_path / "v.vec", "wb") as f:
        vecfile.write_text(f, ["a", "b", "c", "a"], W)
    s = vecfile.import_vectors(vecfile.ImportConfig(input=str(tmp_path / "v.vec"), output=str(tmp_path / "run")))
    assert s["words"] == 3 and s["duplicates"] == 1
    words, got = vecfile.load_vectors(tmp_path / "run")
    assert words == ["a", "b", "c"] and np.array_equal(got, W[:3])
    from dlcli.text.vocabulary import load

    assert load(tmp_path / "run").token_to_id("b") == 2  # <unk> first


def test_init_embedding_from_an_embed_run(planted, tmp_path):
    import torch

    from dlcli.lm.embeddings import init_embedding
    from dlcli.text.vocabulary import word_level

    tr.train(_cfg(planted, tmp_path / "run"))
    tok = word_level(["<unk>", "a0", "zzz", "b3"], "<unk>", "word", [])
    emb = torch.nn.Embedding(4, 16)
    cover = init_embedding(emb, tok, vecfile.vectors_mapping(tmp_path / "run"))
    assert cover["covered"] == 2
    words, W = vecfile.load_vectors(tmp_path / "run")
    assert torch.equal(emb.weight[1], torch.from_numpy(W[words.index("a0")]))


# ---------------------------------------------------------------- queries and evaluation


def _toy() -> Vectors:
    # king - man + woman = queen exactly; "apple" far away
    return Vectors(["man", "woman", "king", "queen", "apple"],
                   np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [0, -1, -1]], dtype=np.float32))


def test_neighbors_and_analogies():
    v = _toy()
    assert query.neighbors(v, "king", 1)[0][0] in ("man", "queen")
    assert [w for w, _ in query.neighbors(v, "man", 4)][-1] == "apple"
    assert query.analogy(v, "man", "king", "woman", 1, "add")[0][0] == "queen"
    assert query.analogy(v, "man", "king", "woman", 1, "mul")[0][0] == "queen"
    assert query.neighbors(v, "KING", 1)  # falls back to lower case
    with pytest.raises(query.UnknownWord, match="'prince' is not in the vocabulary"):
        query.analogy(v, "man", "prince", "woman")


def test_ranks_average_ties():
    assert evaluate.ranks(np.array([10, 20, 20, 30, 5])).tolist() == [2, 3.5, 3.5, 5, 1]


def test_spearman_matches_a_hand_computation(tmp_path):
    # unit vectors at angles 0, 10, 30, 20, 50, 40 degrees from "x": cosines fall in that order
    ang = np.radians([0, 10, 30, 20, 50, 40])
    words = ["x", "p1", "p2", "p3", "p4", "p5"]
    v = Vectors(words, np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32))
    (tmp_path / "sim.tsv").write_text("Word 1\tWord 2\tHuman (mean)\n# comment\n"
                                      "x\tp1\t9.0\nx\tp2\t8.0\nx\tp3\t7.0\nx\tp4\t6.0\nx\tp5\t5.0\n"
                                      "x\tnope\t1.0\n", encoding="utf-8")
    r = evaluate.similarity(v, tmp_path / "sim.tsv")
    # human ranks 5 4 3 2 1; cosine ranks: p1 5, p2 3, p3 4, p4 1, p5 2 -> d = 0 1 1 1 1, sum d^2 = 4
    assert r["pairs"] == 6 and r["used"] == 5 and r["skipped_oov"] == 1
    assert r["spearman"] == pytest.approx(1 - 6 * 4 / (5 * (25 - 1)))


def test_similarity_file_with_missing_columns(tmp_path):
    (tmp_path / "bad.tsv").write_text("a\tb\t1\nc\td\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2 has 2 columns"):
        evaluate.read_pairs(tmp_path / "bad.tsv")


def test_analogy_accuracy_by_section_and_restriction(tmp_path):
    v = _toy()
    (tmp_path / "q.txt").write_text(": royals\nman king woman queen\nman woman king queen\nman king woman prince\n"
                                    ": gram-plural\nMAN WOMAN KING QUEEN\nking queen man apple\n", encoding="utf-8")
    r = evaluate.analogies(v, tmp_path / "q.txt", restrict=0)
    sec = {s["section"]: s for s in r["sections"]}
    assert sec["royals"]["answered"] == 2 and sec["royals"]["skipped"] == 1 and sec["royals"]["correct"] == 2
    assert sec["gram-plural"]["correct"] == 1 and sec["gram-plural"]["answered"] == 2
    assert r["semantic"]["accuracy"] == 1.0 and r["syntactic"]["accuracy"] == 0.5
    assert r["total"] == {"correct": 3, "answered": 4, "skipped": 1, "accuracy": 0.75}
    small = evaluate.analogies(v, tmp_path / "q.txt", restrict=3)  # queen and apple fall outside
    assert small["total"]["answered"] == 0 and small["total"]["accuracy"] is None


def test_pca_plot(tmp_path):
    from dlcli.embed import plot

    # centred, orthogonal coordinates along two directions of 4-D space: PCA recovers them up to sign
    t, u = np.array([-2.0, -1, 0, 1, 2]), np.array([1.0, -2, 0, 2, -1])
    d1, d2 = np.array([1.0, 1, 0, 0]) / np.sqrt(2), np.array([0.0, 0, 1, 0])
    X = 10 * np.outer(t, d1) + np.outer(u, d2) + 3.0
    xy = plot.pca_2d(X)
    assert np.allclose(np.abs(xy), np.abs(np.stack([10 * t, u], axis=1)))
    X = np.random.default_rng(0).standard_normal((30, 5))
    v = Vectors([f"w{i}" for i in range(30)], X.astype(np.float32))
    s = plot.plot(v, ["w1", "w2", "nope"], tmp_path / "p.png", top=5)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG" and s["unknown"] == ["nope"]
    assert s["words"] == ["w1", "w2", "w0", "w3", "w4"]


def test_progress_counts_words_after_each_slice_and_the_plain_lines_end_complete(planted, tmp_path, monkeypatch,
                                                                                 capsys):
    from dlcli.cli.common import PlainProgress

    monkeypatch.setattr(tr, "SLICE_WORDS", 2000)
    ticks = []
    s = tr.train(_cfg(planted, tmp_path / "run"), on_progress=ticks.append)
    words = [t.done for t in ticks if t.desc == "train skipgram"]
    slices = len(rundir.read_metrics(tmp_path / "run"))
    assert len(words) == slices + 1 and words[0] == 0 and words == sorted(set(words))  # one tick per slice
    assert words[-1] == ticks[-1].total == s["epochs_done"] * s["trained_words"]
    show = PlainProgress(every=3600)  # a short run: only the completing line (reading the file: none)
    for t in ticks:
        show(t)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train skipgram: {words[-1]:,} words / {words[-1]:,} words (100%)")
