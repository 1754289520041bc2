"""`dlcli embed`: word2vec-style word embeddings: train, query, evaluate, plot, import."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import typer

from dlcli.cli import common as c

app = typer.Typer(help="Word embeddings (word2vec skip-gram and CBOW): train them, query neighbours and analogies, "
                  "evaluate, plot, import .vec files.", no_args_is_help=True, rich_markup_mode="rich")

MODEL = c.MODEL
TRAIN = c.TRAIN
SourceArg = Annotated[str, typer.Argument(help="An embed run directory, or a .vec / .bin word2vec file.",
                                          show_default=False)]


@app.command()
def train(
    data: Annotated[Optional[str], typer.Argument(help="Token stream (dlcli preprocess -l word) or id file "
                                                  "(dlcli vocab encode).", show_default=False)] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="For an id file: its tokenizer.json "
                                                     "(default: the one its sidecar names).",
                                                     show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Run directory (default runs/embed).",
                                                  show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="skipgram or cbow (default skipgram).",
                                                 rich_help_panel=MODEL, show_default=False)] = None,
    dim: Annotated[Optional[int], typer.Option("--dim", help="Vector size (default 100).", rich_help_panel=MODEL,
                                               show_default=False)] = None,
    window: Annotated[Optional[int], typer.Option("--window", help="Largest context reach; each word draws its "
                                                  "own reach 1..window (default 5).", rich_help_panel=MODEL,
                                                  show_default=False)] = None,
    negative: Annotated[Optional[int], typer.Option("--negative", help="Noise words per example, drawn from "
                                                    "unigram^0.75 (default 5).", rich_help_panel=MODEL,
                                                    show_default=False)] = None,
    sample: Annotated[Optional[float], typer.Option("--sample", help="Subsampling threshold for frequent words; 0 "
                                                    "= off (default 1e-3).", rich_help_panel=MODEL,
                                                    show_default=False)] = None,
    min_count: Annotated[Optional[int], typer.Option("--min-count", help="Drop words seen fewer times (default 5).",
                                                     rich_help_panel=MODEL, show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", "-e", help="Passes over the corpus (default 5).",
                                                  rich_help_panel=TRAIN, show_default=False)] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="Learning rate at the start; falls linearly to "
                                                   "--min-alpha (default 0.025).", rich_help_panel=TRAIN,
                                                   show_default=False)] = None,
    min_alpha: Annotated[Optional[float], typer.Option("--min-alpha", help="Learning rate at the end (default "
                                                       "1e-4).", rich_help_panel=TRAIN, show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", help="Threads (0 = one per core, the "
                                                   "default). Threads update the vectors without locks (Hogwild), "
                                                   "so results vary slightly from run to run; --workers 1 with "
                                                   "--seed is bit-for-bit reproducible.", rich_help_panel=TRAIN,
                                                   show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 1).", rich_help_panel=TRAIN,
                                                show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps (default auto: a GPU if "
                                                  "there is one). On a GPU the batched torch kernel trains many "
                                                  "examples at once; its float additions make runs vary slightly.",
                                                  rich_help_panel=TRAIN, show_default=False)] = None,
    kernel: Annotated[Optional[str], typer.Option("--kernel", help="auto (numba on the CPU, torch on a GPU), numba "
                                                  "or torch (the batched kernel also runs on the CPU: reproducible "
                                                  "with --seed, usually slower than numba).", rich_help_panel=TRAIN,
                                                  show_default=False)] = None,
    max_time: c.MaxTimeOpt = None,
    binary: Annotated[Optional[bool], typer.Option("--binary/--no-binary", help="Also write vectors.bin (word2vec "
                                                   "binary format).", show_default=False,
                                                   rich_help_panel=c.OUTPUT)] = None,
    resume: c.ResumeOpt = False,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Train word2vec vectors (skip-gram or CBOW, negative sampling) on all CPU cores or a GPU.

    Writes a run directory: tokenizer.json, embeddings.safetensors (rows =
    tokenizer ids), vectors.vec (word2vec text format, readable by gensim and
    fastText), metrics.jsonl, config.yaml. Progress shows words/s, loss and ETA.

    Example: dlcli embed train corpus.tok -o runs/vec --dim 100 --window 5 --min-count 5 --epochs 5
    """
    with c.errors(debug):
        from dlcli.embed.train import EmbedConfig
        from dlcli.embed.train import train as run_train

        flags = {"data": data, "tokenizer": tokenizer, "output": output, "model": model, "dim": dim,
                 "window": window, "negative": negative, "sample": sample, "min_count": min_count, "epochs": epochs,
                 "alpha": alpha, "min_alpha": min_alpha, "workers": workers, "seed": seed, "device": device,
                 "kernel": kernel, "max_time": max_time,
                 "binary": binary}
        cfg = c.resolve(EmbedConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = run_train(cfg, force=force, resume=resume, on_progress=on_progress)
        how = {"max_time": "stopped by --max-time (continue with --resume); "}.get(s["stopped"] or "", "")
        c.info(f"{how}{s['words']:,} words x {s['dim']} from {s['trained_words']:,} corpus words; "
               f"{s['effective_words_per_s']:,.0f} effective words/s ({s['words_per_s']:,.0f} words/s) on "
               f"{s['where']}, loss {s['loss']:.3f}; compile/load "
               f"{s['compile_seconds']:.1f}s", quiet)
        c.result(s["run"])


def _queries(args: list[str] | None, per_line: int) -> Iterator[list[str]]:
    """Queries from the arguments (`per_line` words each), else one a line from stdin."""
    if args:
        for i in range(0, len(args), per_line):
            yield args[i:i + per_line]
        return
    for line in sys.stdin:
        words = line.split()
        if words:
            yield words


def _answer_all(queries: Iterator[list[str]], per_line: int, answer: Any) -> None:
    """Run `answer(words)` for each query; a bad query is one stderr line, the rest are still answered."""
    from dlcli.errors import InputError

    done = failed = 0
    for words in queries:
        if len(words) != per_line:
            c.err.print(f"error: query {' '.join(words)!r} has {len(words)} word{'s' if len(words) != 1 else ''}, "
                        f"expected {per_line}", markup=False, highlight=False)
            failed += 1
            continue
        try:
            answer(words)
            done += 1
        except InputError as e:
            c.err.print(f"error: {e}", markup=False, highlight=False)
            failed += 1
        sys.stdout.flush()
    if not done:
        raise typer.Exit(1 if failed else 0)


@app.command()
def neighbors(
    source: SourceArg,
    words: Annotated[Optional[list[str]], typer.Argument(help="Query words (default: one a line from stdin).",
                                                         show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Neighbours per word.")] = 10,
    debug: c.DebugOpt = False,
) -> None:
    """Nearest neighbours by cosine similarity: one `word<TAB>neighbour<TAB>cosine` line each.

    Unknown words are reported on stderr and the other queries still answered.

    Example: dlcli embed neighbors runs/vec king queen -k 5
    """
    with c.errors(debug):
        from dlcli.embed.query import Vectors
        from dlcli.embed.query import neighbors as nearest

        v = Vectors.load(source)

        def answer(q: list[str]) -> None:
            for w, s in nearest(v, q[0], k):
                print(f"{q[0]}\t{w}\t{s:.4f}")

        _answer_all(_queries(words, 1), 1, answer)


@app.command()
def analogy(
    source: SourceArg,
    words: Annotated[Optional[list[str]], typer.Argument(help="a b c for a : b :: c : ? (default: one 'a b c' a "
                                                         "line from stdin).", show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Answers per query and method.")] = 1,
    method: Annotated[str, typer.Option("--method", help="add (3CosAdd), mul (3CosMul) or both.")] = "both",
    debug: c.DebugOpt = False,
) -> None:
    """Solve a : b :: c : ? (d close to b - a + c): `a b c method d score` lines, tab-separated.

    Example: dlcli embed analogy runs/vec man king woman
    """
    with c.errors(debug):
        from dlcli.embed.query import METHODS, Vectors
        from dlcli.embed.query import analogy as solve

        methods = list(METHODS) if method == "both" else [method]
        if any(m not in METHODS for m in methods):
            raise c.fail(f"--method: '{method}' is not one of add, mul, both", 2)
        v = Vectors.load(source)

        def answer(q: list[str]) -> None:
            results = [(m, solve(v, q[0], q[1], q[2], k, m)) for m in methods]  # all or nothing per query
            for m, found in results:
                for w, s in found:
                    print(f"{q[0]}\t{q[1]}\t{q[2]}\t3Cos{m.capitalize()}\t{w}\t{s:.4f}")

        _answer_all(_queries(words, 3), 3, answer)


@app.command("eval")
def eval_(
    source: SourceArg,
    similarity: Annotated[Optional[list[str]], typer.Option("--similarity", "-s", help="Word-pair file (word1 TAB "
                                                            "word2 TAB score, e.g. WordSim-353, SimLex-999); "
                                                            "repeatable.", show_default=False)] = None,
    analogies: Annotated[Optional[str], typer.Option("--analogies", "-a", help="questions-words.txt format file.",
                                                     show_default=False)] = None,
    restrict: Annotated[int, typer.Option("--restrict", help="Analogies: only the N most frequent words take part, "
                                          "as in word2vec's compute-accuracy (0 = all).")] = 30_000,
    method: Annotated[str, typer.Option("--method", help="Analogies: add (3CosAdd) or mul (3CosMul).")] = "add",
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Evaluate vectors: Spearman rho on word-pair similarities (with the count of pairs skipped for unknown
    words) and analogy accuracy per section, semantic, syntactic and total. JSON on stdout, a table on stderr.

    Example: dlcli embed eval runs/vec --analogies questions-words.txt --similarity wordsim353.tsv
    """
    with c.errors(debug):
        from dlcli.embed import evaluate
        from dlcli.embed.query import METHODS, Vectors

        if not similarity and not analogies:
            raise c.fail("give --similarity FILE and/or --analogies FILE", 2)
        if method not in METHODS:
            raise c.fail(f"--method: '{method}' is not one of {', '.join(METHODS)}", 2)
        v = Vectors.load(source)
        out: dict[str, Any] = {"source": source, "words": len(v.words)}
        if similarity:
            out["similarity"] = [evaluate.similarity(v, f) for f in similarity]
        if analogies:
            out["analogies"] = evaluate.analogies(v, analogies, restrict, method)
        if not quiet:
            _eval_tables(out)
        print(json.dumps(out, indent=2))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _eval_tables(out: dict[str, Any]) -> None:
    for s in out.get("similarity", []):
        rho = "-" if s["spearman"] is None else f"{s['spearman']:.4f}"
        c.info(f"{s['file']}: Spearman rho {rho} on {s['used']} of {s['pairs']} pairs "
               f"({s['skipped_oov']} skipped: word not in the vocabulary)", False)
    a = out.get("analogies")
    if a:
        rows = [(s["section"], s["correct"], s["answered"], s["skipped"], _pct(s["accuracy"])) for s in a["sections"]]
        rows += [(g, a[g]["correct"], a[g]["answered"], a[g]["skipped"], _pct(a[g]["accuracy"]))
                 for g in ("semantic", "syntactic", "total")]
        c.table(f"analogies, 3Cos{a['method'].capitalize()}, {a['restrict']:,} most frequent words",
                ["section", "correct", "answered", "skipped", "accuracy"], rows)


@app.command()
def plot(
    source: SourceArg,
    words: Annotated[Optional[list[str]], typer.Argument(help="Words to show.", show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", help="Also show the N most frequent words.")] = 0,
    method: Annotated[str, typer.Option("--method", help="pca, or tsne (needs scikit-learn).")] = "pca",
    output: Annotated[str, typer.Option("--output", "-o", help="PNG to write.")] = "embeddings.png",
    seed: Annotated[int, typer.Option("--seed", help="t-SNE seed.")] = 0,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Plot chosen word vectors in 2-D (PCA, or t-SNE) as a labelled PNG.

    Example: dlcli embed plot runs/vec king queen man woman paris france --top 30 -o words.png
    """
    with c.errors(debug):
        from dlcli.embed.plot import plot as draw
        from dlcli.embed.query import Vectors

        s = draw(Vectors.load(source), words or [], output, method, top, seed, force)
        if s["unknown"]:
            c.info(f"not in the vocabulary: {', '.join(s['unknown'])}", quiet)
        c.info(f"{len(s['words'])} words, {method.upper()}", quiet)
        c.result(s["output"])


@app.command("import")
def import_(
    input: Annotated[str, typer.Argument(help="A .vec (word2vec text) or .bin (word2vec binary) file.",
                                         show_default=False)],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Run directory (default runs/vectors).",
                                                  show_default=False)] = None,
    binary: Annotated[Optional[bool], typer.Option("--binary/--no-binary", help="Also write vectors.bin.",
                                                   show_default=False)] = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Import vectors trained elsewhere (word2vec, gensim, fastText .vec) as an embed run directory
    (tokenizer.json + embeddings.safetensors), for queries and --init-embeddings.

    Example: dlcli embed import wiki.en.vec -o runs/wiki
    """
    with c.errors(debug):
        from dlcli.embed.vecfile import ImportConfig, import_vectors

        cfg = c.resolve(ImportConfig, config, set_, {"input": input, "output": output, "binary": binary},
                        print_config)
        s = import_vectors(cfg, force)
        msg = f"imported {s['words']:,} words x {s['dim']}"
        if s["duplicates"]:
            msg += f"; {s['duplicates']:,} repeated words skipped (the first vector kept)"
        c.info(msg, quiet)
        c.result(s["run"])
