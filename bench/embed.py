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

--whole times the whole commands instead, as a user meets them: `dlcli embed
train` in a fresh process (start-up, imports, reading and counting the
corpus, the numba cache load, the kernel, writing the run directory and
vectors.vec, exit) against a fresh Python process doing the same job with
gensim (import, read the token file, build_vocab, train, save_word2vec_format),
wall clock, alternating, after one untimed run of each (so numba's cache is
warm). It prints the ratio and where each spends its time (dlcli's phases
come from meta.json's `timings`; start-up and exit is the rest of the wall
time), and the quality of the vectors each wrote.

--avx2 compiles dlcli's kernels for an AVX2-only CPU (NUMBA_CPU_NAME=haswell
with NUMBA_CPU_FEATURES=+avx2: the CPU name alone keeps the host's AVX512
features) and makes gensim's BLAS (scipy's OpenBLAS) use its Haswell kernels
(OPENBLAS_CORETYPE=Haswell): an AVX512 machine then approximates an AVX2-only
one. The kernel's code is checked for AVX512 (zmm) registers and reported.

Needs gensim: .venv/bin/pip install -e '.[bench]'   (or: pip install gensim)

Usage: python bench/embed.py [--model skipgram|cbow] [--repeats 3] [--workers 2] [--torch-cpu] [--workdir DIR]
       python bench/embed.py --whole [--avx2] [--model skipgram|cbow] [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_kind

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

HYPER = {"dim": 100, "window": 5, "negative": 5, "sample": 1e-3, "min_count": 5, "epochs": 5, "alpha": 0.025,
         "min_alpha": 0.0001}


AVX2_ENV = {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2", "OPENBLAS_CORETYPE": "Haswell",
            "ATEN_CPU_CAPABILITY": "avx2"}

# The whole gensim job in a fresh process; prints its phases as JSON.
GENSIM_JOB = r"""
import json, sys, time
t0 = time.perf_counter()
from gensim.models import Word2Vec
t1 = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as f:
    sentences = [line.split() for line in f]
t2 = time.perf_counter()
h = json.loads(sys.argv[3])
m = Word2Vec(vector_size=h["dim"], window=h["window"], negative=h["negative"], sample=h["sample"],
             min_count=h["min_count"], alpha=h["alpha"], min_alpha=h["min_alpha"], sg=h["sg"], hs=0,
             workers=h["workers"], seed=h["seed"])
m.build_vocab(sentences)
t3 = time.perf_counter()
m.train(sentences, total_examples=m.corpus_count, epochs=h["epochs"])
t4 = time.perf_counter()
m.wv.save_word2vec_format(sys.argv[2])
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "read": t2 - t1, "vocab": t3 - t2, "train": t4 - t3, "save": t5 - t4,
                  "total": t5 - t0}))
"""

# Asks numba which CPU it compiles for and whether the kernel uses AVX512 registers (run with an empty
# NUMBA_CACHE_DIR: numba cannot show the code of a kernel loaded from its cache).
NUMBA_TARGET = r"""
import re, llvmlite.binding as ll, numba
from dlcli.embed import kernels
kernels.warm_up()
asm = "".join(kernels.train_slice.inspect_asm().values())
print(f"numba compiles for {numba.config.CPU_NAME or ll.get_host_cpu_name()}"
      f"{' (features ' + numba.config.CPU_FEATURES + ')' if numba.config.CPU_FEATURES else ''}; "
      f"the kernel uses {len(re.findall('zmm', asm))} zmm (AVX512) and {len(re.findall('ymm', asm))} ymm (AVX2) "
      "register operands")
"""




def build_corpus(workdir: Path) -> Path:
    """The four texts (fra-eng: English column only), normalised to a word-level token stream."""
    from dlcli.text.preprocess import PreprocessConfig, run

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


def dlcli_command() -> list[str]:
    """The installed `dlcli` script beside this Python (what a user runs), else `python -m dlcli`."""
    script = Path(sys.executable).parent / "dlcli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dlcli"]


def whole_dlcli(corpus: Path, out: Path, model: str, workers: int, seed: int) -> dict:
    """Wall time of a whole `dlcli embed train` process and its phases (meta.json's timings)."""
    h = HYPER
    cmd = [*dlcli_command(), "embed", "train", str(corpus), "-o", str(out), "--model", model, "--dim", str(h["dim"]),
           "--window", str(h["window"]), "--negative", str(h["negative"]), "--sample", str(h["sample"]),
           "--min-count", str(h["min_count"]), "--epochs", str(h["epochs"]), "--alpha", str(h["alpha"]),
           "--min-alpha", str(h["min_alpha"]), "--workers", str(workers), "--seed", str(seed), "--force", "-q"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t
    p = json.loads((out / "meta.json").read_text(encoding="utf-8"))["timings"]
    phases = {"start-up+exit": wall - p["total"], "load+count": p["load"], "numba load": p["compile"],
              "kernel": p["kernel"], "loop other": p["train"] - p["kernel"], "write": p["write"],
              "other": p["device"] + p["setup"]}
    return {"wall": wall, "phases": phases}


def whole_gensim(corpus: Path, out: Path, sg: bool, workers: int, seed: int) -> dict:
    """Wall time of a fresh Python process doing the same job with gensim, and its phases."""
    h = {**HYPER, "sg": int(sg), "workers": workers, "seed": seed}
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", GENSIM_JOB, str(corpus), str(out), json.dumps(h)], check=True,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    p = json.loads(r.stdout.strip().splitlines()[-1])
    phases = {"start-up+exit": wall - p["total"], "import": p["import"], "read": p["read"], "vocab": p["vocab"],
              "train": p["train"], "save": p["save"]}
    return {"wall": wall, "phases": phases}


def main_whole(args: argparse.Namespace, questions: Path) -> None:
    """--whole: the whole commands, wall clock, alternating, warm numba cache."""
    from dlcli.embed.vecfile import load_vectors

    sg = args.model == "skipgram"
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        corpus = build_corpus(work)
        print(f"whole commands, {args.model}, {', '.join(f'{k} {v}' for k, v in HYPER.items())}, workers "
              f"{args.workers}; corpus {corpus.stat().st_size:,} bytes")
        out_d, out_g = work / "run", work / "gensim.vec"
        whole_dlcli(corpus, out_d, args.model, args.workers, args.seed)  # fills / loads numba's cache
        whole_gensim(corpus, out_g, sg, args.workers, args.seed)
        env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": str(work / "inspect-cache")}  # compiles
        print(subprocess.run([sys.executable, "-c", NUMBA_TARGET], env=env, capture_output=True, text=True,
                             check=True).stdout.strip())
        runs: dict[str, list[dict]] = {"dlcli": [], "gensim": []}
        for r in range(args.repeats):
            runs["dlcli"].append(whole_dlcli(corpus, out_d, args.model, args.workers, args.seed + r))
            runs["dlcli"][-1]["q"] = quality(*load_vectors(out_d), questions)
            runs["gensim"].append(whole_gensim(corpus, out_g, sg, args.workers, args.seed + r))
            runs["gensim"][-1]["q"] = quality(*load_vectors(out_g), questions)
            d, g = runs["dlcli"][-1]["wall"], runs["gensim"][-1]["wall"]
            print(f"  repeat {r + 1}: dlcli {d:.2f} s, gensim {g:.2f} s: dlcli takes {d / g:.2f}x gensim's time")
    print()
    for name, rs in runs.items():
        wall = statistics.median(x["wall"] for x in rs)
        parts = ", ".join(f"{k} {statistics.median(x['phases'][k] for x in rs):.2f}" for k in rs[0]["phases"])
        q = {k: statistics.median(x["q"][k] for x in rs) for k in ("acc", "ws353", "simlex")}
        print(f"{name:7} wall {wall:.2f} s (median of {len(rs)}): {parts}; analogy {100 * q['acc']:.2f}%, "
              f"WordSim-353 {q['ws353']:.3f}, SimLex-999 {q['simlex']:.3f}")
    d = statistics.median(x["wall"] for x in runs["dlcli"])
    g = statistics.median(x["wall"] for x in runs["gensim"])
    paired = [y["wall"] / x["wall"] for x, y in zip(runs["dlcli"], runs["gensim"], strict=True)]
    print(f"\ndlcli takes {d / g:.2f}x gensim's time: speed ratio {g / d:.2f}x (>= 1.0: at least as fast); per "
          f"repeat (back to back): {', '.join(f'{x:.2f}x' for x in paired)}, median {statistics.median(paired):.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["skipgram", "cbow"], default="skipgram")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--torch-cpu", action="store_true", help="also train the batched torch kernel on the CPU")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--whole", action="store_true", help="time the whole commands (processes), not the kernels")
    ap.add_argument("--avx2", action="store_true", help="numba code and gensim's BLAS for an AVX2-only CPU")
    args = ap.parse_args()
    if args.avx2:  # before numba and scipy's OpenBLAS are loaded here; every subprocess inherits it too
        os.environ.update(AVX2_ENV)
    try:
        import gensim
    except ImportError:
        sys.exit("gensim is needed: .venv/bin/pip install -e '.[bench]'  (or pip install gensim)")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    questions = DATA / "questions-words.txt"
    print(f"CPU: {cpu_kind()}, {os.cpu_count()} cores")
    if args.avx2:
        print("AVX2 emulation: " + " ".join(f"{k}={v}" for k, v in AVX2_ENV.items()))
    if args.whole:
        main_whole(args, questions)
        return
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
