"""Benchmark: `dlcli embed train` against gensim's Word2Vec on the same corpus.

The corpus joins Tiny Shakespeare, The Time Machine, the Lee background
corpus and the English side of fra-eng (from ../shared/data), normalised by
`dlcli preprocess -n d2l -l word` (letters only, lower case), one sentence a
line. Both trainers read the same sentences with the same hyperparameters:
skip-gram (or --model cbow), dim 100, window 5, negative 5, sample 1e-3,
min_count 5, 5 epochs, 2 workers, alpha 0.025 -> 0.0001.

Speed is counted as gensim counts it: *effective* words per second of
training, i.e. words left after min_count and subsampling, divided by the
time of the training call (gensim's `train()`; dlcli's kernel loop, without
numba's one-off compile/cache load, which is printed on its own). Raw words/s
(after min_count, before subsampling) are printed too. Quality is the
analogy accuracy on questions-words.txt (3CosAdd), scored by the same
evaluator for both models over the whole vocabulary (gensim's default
restrict_vocab of 300,000 covers it), and Spearman's rho on WordSim-353 and
SimLex-999 (the copies gensim ships in its test data; pairs with a word
outside the vocabulary are skipped and counted); gensim's own evaluators are
printed as a cross-check. With --repeats N the trainers alternate N times
and the median of each figure is reported.

dlcli's batched torch kernel (the one it uses on a GPU) is trained too: on
CUDA when there is a GPU (its speed-up over gensim and over dlcli's CPU
kernel is printed), else on the CPU with --torch-cpu (slow there; it shows
that the batched kernel learns as well as the sequential one).

Needs gensim: .venv/bin/pip install -e '.[bench]'   (or: pip install gensim)

Usage: python bench/embed.py [--model skipgram|cbow] [--repeats 3] [--workers 2] [--torch-cpu] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

HYPER = {"dim": 100, "window": 5, "negative": 5, "sample": 1e-3, "min_count": 5, "epochs": 5, "alpha": 0.025,
         "min_alpha": 0.0001}


def build_corpus(workdir: Path) -> Path:
    """The four texts (fra-eng: English column only), normalised to a word-level token stream."""
    from dlcli.preprocess import PreprocessConfig, run

    raw = workdir / "raw.txt"
    with open(raw, "w", encoding="utf-8") as out:
        for name in ("tinyshakespeare.txt", "timemachine.txt", "lee_background.cor"):
            out.write((DATA / name).read_text(encoding="utf-8"))
        for line in (DATA / "fra-eng.txt").read_text(encoding="utf-8").splitlines():
            out.write(line.split("\t", 1)[0] + "\n")
    tok = workdir / "corpus.tok"
    run(PreprocessConfig(inputs=[str(raw)], output=str(tok), normalize=["d2l"], level="word"), force=True)
    return tok


def run_gensim(sentences: list[list[str]], sg: bool, workers: int, seed: int) -> dict:
    from gensim.models import Word2Vec

    m = Word2Vec(vector_size=HYPER["dim"], window=HYPER["window"], negative=HYPER["negative"],
                 sample=HYPER["sample"], min_count=HYPER["min_count"], alpha=HYPER["alpha"],
                 min_alpha=HYPER["min_alpha"], sg=int(sg), hs=0, workers=workers, seed=seed)
    m.build_vocab(sentences)
    t = time.perf_counter()
    effective, raw = m.train(sentences, total_examples=m.corpus_count, epochs=HYPER["epochs"])
    dt = time.perf_counter() - t
    trained = sum(m.wv.get_vecattr(w, "count") for w in m.wv.index_to_key) * HYPER["epochs"]
    return {"model": m, "seconds": dt, "effective": effective, "raw_per_s": trained / dt, "eff_per_s": effective / dt,
            "words": list(m.wv.index_to_key), "W": m.wv.vectors}


def run_dlcli(corpus: Path, out: Path, sg: bool, workers: int, seed: int, device: str = "cpu",
              kernel: str = "numba") -> dict:
    from dlcli.embed.train import EmbedConfig, train
    from dlcli.embed.vecfile import load_vectors

    cfg = EmbedConfig(data=str(corpus), output=str(out), model="skipgram" if sg else "cbow", workers=workers,
                      seed=seed, device=device, kernel=kernel, **HYPER)
    s = train(cfg, force=True)
    words, W = load_vectors(out)
    return {"seconds": s["train_seconds"], "effective": s["effective_words"], "compile": s["compile_seconds"],
            "raw_per_s": s["words_per_s"], "eff_per_s": s["effective_words_per_s"], "words": words, "W": W}


def cold_compile_seconds(workdir: Path) -> float:
    """Compile time of the kernels with an empty numba cache (a fresh install), in a fresh process."""
    import os
    import subprocess

    env = {**os.environ, "NUMBA_CACHE_DIR": str(workdir / "numba-cache"), "PYTHONPATH": str(REPO)}
    code = "from dlcli.embed import kernels; print(kernels.warm_up())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def similarity_files() -> dict[str, Path]:
    """WordSim-353 and SimLex-999 as gensim's test data ships them."""
    from gensim.test.utils import datapath

    return {"ws353": Path(datapath("wordsim353.tsv")), "simlex": Path(datapath("simlex999.txt"))}


def quality(words: list[str], W, questions: Path) -> dict:
    """Analogy accuracy (all sections, semantic, syntactic) and Spearman rho on the similarity sets."""
    from dlcli.embed.evaluate import analogies, similarity
    from dlcli.embed.query import Vectors

    v = Vectors(words, W)
    acc = analogies(v, questions, restrict=300_000)
    out = {"acc": acc["total"]["accuracy"], "sem": acc["semantic"]["accuracy"], "syn": acc["syntactic"]["accuracy"],
           "answered": acc["total"]["answered"]}
    for name, path in similarity_files().items():
        r = similarity(v, path)
        out[name], out[name + "_used"] = r["spearman"], f"{r['used']}/{r['pairs']}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["skipgram", "cbow"], default="skipgram")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--torch-cpu", action="store_true", help="also train the batched torch kernel on the CPU")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    try:
        import gensim
    except ImportError:
        sys.exit("gensim is needed: .venv/bin/pip install -e '.[bench]'  (or pip install gensim)")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    questions = DATA / "questions-words.txt"
    sg = args.model == "skipgram"
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        corpus = build_corpus(work)
        sentences = [line.split() for line in corpus.read_text(encoding="utf-8").splitlines()]
        n_words = sum(map(len, sentences))
        print(f"corpus: {n_words:,} words in {len(sentences):,} sentences (d2l-normalised: Tiny Shakespeare, "
              f"The Time Machine, Lee background, fra-eng English side)")
        print(f"{args.model}, {', '.join(f'{k} {v}' for k, v in HYPER.items())}, workers {args.workers}; "
              f"gensim {gensim.__version__}")
        import torch

        gpu = "cuda" if torch.cuda.is_available() else ""
        trainers = {"gensim": lambda r: run_gensim(sentences, sg, args.workers, args.seed + r),
                    "dlcli": lambda r: run_dlcli(corpus, work / "run", sg, args.workers, args.seed + r)}
        if gpu or args.torch_cpu:
            name = "dlcli-" + (gpu or "torch-cpu")
            trainers[name] = lambda r: run_dlcli(corpus, work / "run", sg, args.workers, args.seed + r, gpu or "cpu",
                                                     "torch")
        runs: dict[str, list[dict]] = {name: [] for name in trainers}
        for r in range(args.repeats):
            for name, fn in trainers.items():
                runs[name].append(fn(r))
            print(f"  repeat {r + 1}: " + "  ".join(f"{n} {rs[-1]['eff_per_s']:,.0f}" for n, rs in runs.items())
                  + f" effective words/s (dlcli compile/cache load {runs['dlcli'][-1]['compile']:.2f} s)")
        summary = {}
        for name, rs in runs.items():
            qs = [quality(x["words"], x["W"], questions) for x in rs]
            summary[name] = {
                "eff": statistics.median(x["eff_per_s"] for x in rs),
                "raw": statistics.median(x["raw_per_s"] for x in rs),
                "sec": statistics.median(x["seconds"] for x in rs),
                "vocab": len(rs[0]["words"]),
                **{k: statistics.median(q[k] for q in qs) for k in ("acc", "sem", "syn", "ws353", "simlex")},
                "answered": qs[0]["answered"], "ws353_used": qs[0]["ws353_used"], "simlex_used": qs[0]["simlex_used"],
            }
        wv = runs["gensim"][-1]["model"].wv
        own = wv.evaluate_word_analogies(str(questions))[0]
        own_sim = {k: wv.evaluate_word_pairs(str(p))[1][0] for k, p in similarity_files().items()}
        print()
        print(f"{'':16} {'vocab':>7} {'train s':>8} {'effective words/s':>18} {'raw words/s':>12} "
              f"{'analogy total':>14} {'semantic':>9} {'syntactic':>9} {'WS-353 rho':>10} {'SimLex rho':>10}")
        for name, s in summary.items():
            print(f"{name:16} {s['vocab']:>7,} {s['sec']:>8.2f} {s['eff']:>18,.0f} {s['raw']:>12,.0f} "
                  f"{100 * s['acc']:>13.2f}% {100 * s['sem']:>8.2f}% {100 * s['syn']:>8.2f}% "
                  f"{s['ws353']:>10.3f} {s['simlex']:>10.3f}")
        g, d = summary["gensim"], summary["dlcli"]
        paired = [x["eff_per_s"] / y["eff_per_s"] for x, y in zip(runs["dlcli"], runs["gensim"], strict=True)]
        print(f"\nspeed ratio dlcli / gensim (effective words/s, median of {args.repeats}): "
              f"{d['eff'] / g['eff']:.2f}x; "
              f"per repeat (back-to-back runs, so less exposed to the machine's load changing): "
              f"{', '.join(f'{x:.2f}x' for x in paired)}, median {statistics.median(paired):.2f}x")
        print(f"analogy accuracy difference dlcli - gensim: {100 * (d['acc'] - g['acc']):+.2f} points "
              f"({g['answered']:,} questions answerable in the vocabulary); gensim's own evaluator on its last "
              f"model: {100 * own:.2f}%")
        print(f"similarity difference dlcli - gensim: WordSim-353 {d['ws353'] - g['ws353']:+.3f}, SimLex-999 "
              f"{d['simlex'] - g['simlex']:+.3f} (pairs used: {g['ws353_used']}, {g['simlex_used']}); gensim's own "
              f"evaluate_word_pairs on its last model: {own_sim['ws353']:.3f}, {own_sim['simlex']:.3f}")
        for name in summary:
            if name.startswith("dlcli-"):
                t = summary[name]
                print(f"{name}: {t['eff'] / g['eff']:.2f}x gensim, {t['eff'] / d['eff']:.2f}x dlcli's CPU kernel; "
                      f"analogy {100 * (t['acc'] - g['acc']):+.2f} points, WordSim-353 {t['ws353'] - g['ws353']:+.3f}, "
                      f"SimLex-999 {t['simlex'] - g['simlex']:+.3f} vs gensim")
        print("dlcli numba compile/cache load (not in the throughput): "
              + ", ".join(f"{x['compile']:.2f}s" for x in runs["dlcli"])
              + f"; with an empty cache (first run after install): {cold_compile_seconds(work):.1f}s")


if __name__ == "__main__":
    main()
