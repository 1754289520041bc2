"""`dlcli embed`: word2vec-style word embeddings: train, query, evaluate, plot, import."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Word embeddings (word2vec skip-gram and CBOW): train them, query neighbours and analogies, evaluate, "
          "plot, import .vec files.")

SourceArg = Annotated[str, typer.Argument(help="An embed run directory, or a .vec / .bin word2vec file.",
                                          show_default=False)]
Binary = Annotated[bool | None, o.opt("--binary/--no-binary", help="Also write vectors.bin (word2vec binary "
                                      "format).", panel=o.OUTPUT)]


def _config() -> type:
    from dlcli.embed.train import EmbedConfig

    return EmbedConfig


def _import_config() -> type:
    from dlcli.embed.vecfile import ImportConfig

    return ImportConfig


def _model(*names: str, help: str) -> Any:
    return o.opt(*names, help=help, panel=o.MODEL)


def _train(*names: str, help: str) -> Any:
    return o.opt(*names, help=help, panel=o.TRAIN)


@app.command()
@command(_config, options={"seed": o.Seed, "max_time": o.MaxTime}, resume=True)
def train(
    data: Annotated[str | None, o.arg("Token stream (dlcli preprocess -l word) or id file (dlcli vocab "
                                      "encode).")] = None,
    tokenizer: Annotated[str | None, o.opt("--tokenizer", "-t", help="For an id file: its tokenizer.json (default: "
                                           "the one its sidecar names).")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Run directory.")] = None,
    model: Annotated[str | None, _model("--model", "-m", help="skipgram or cbow.")] = None,
    dim: Annotated[int | None, _model("--dim", help="Vector size.")] = None,
    window: Annotated[int | None, _model("--window", help="Largest context reach; each word draws its own reach "
                                         "1..window.")] = None,
    negative: Annotated[int | None, _model("--negative", help="Noise words per example, drawn from "
                                           "unigram^0.75.")] = None,
    sample: Annotated[float | None, _model("--sample", help="Subsampling threshold for frequent words; 0 = "
                                           "off.")] = None,
    min_count: Annotated[int | None, _model("--min-count", help="Drop words seen fewer times.")] = None,
    epochs: Annotated[int | None, _train("--epochs", "-e", help="Passes over the corpus.")] = None,
    alpha: Annotated[float | None, _train("--alpha", help="Learning rate at the start; falls linearly to "
                                          "--min-alpha.")] = None,
    min_alpha: Annotated[float | None, _train("--min-alpha", help="Learning rate at the end.")] = None,
    workers: Annotated[int | None, _train("--workers", "-j", help="Threads (0 = one per core). Threads update the "
                                          "vectors without locks (Hogwild), so results vary slightly from run to "
                                          "run; --workers 1 with --seed is bit-for-bit reproducible.")] = None,
    device: Annotated[str | None, _train("--device", help="auto, cpu, cuda or mps (auto: a GPU if there is one). "
                                         "On a GPU the batched torch kernel trains many examples at once; its float "
                                         "additions make runs vary slightly.")] = None,
    kernel: Annotated[str | None, _train("--kernel", help="auto (numba on the CPU, torch on a GPU), numba or torch "
                                         "(the batched kernel also runs on the CPU: reproducible with --seed, "
                                         "usually slower than numba).")] = None,
    binary: Binary = None,
    *, job: Job,
) -> None:
    """Train word2vec vectors (skip-gram or CBOW, negative sampling) on all CPU cores or a GPU.

    Writes a run directory: tokenizer.json, embeddings.safetensors (rows =
    tokenizer ids), vectors.vec (word2vec text format, readable by gensim and
    fastText), metrics.jsonl, config.yaml. Progress shows words/s, loss and ETA.

    Example: dlcli embed train corpus.tok -o runs/vec --dim 100 --window 5 --min-count 5 --epochs 5
    """
    from dlcli.embed.train import train

    job.run(train, _train_line)


def _train_line(s: dict[str, Any]) -> str:
    how = {"max_time": "stopped by --max-time (continue with --resume); "}.get(s["stopped"] or "", "")
    return (f"{how}{s['words']:,} words x {s['dim']} from {s['trained_words']:,} corpus words; "
            f"{s['effective_words_per_s']:,.0f} effective words/s ({s['words_per_s']:,.0f} words/s) on "
            f"{s['where']}, loss {s['loss']:.3f}; compile/load {s['compile_seconds']:.1f}s")


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
@command()
def neighbors(
    source: SourceArg,
    words: Annotated[list[str] | None, typer.Argument(help="Query words (default: one a line from stdin).",
                                                         show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Neighbours per word.")] = 10,
    *, job: Job,
) -> None:
    """Nearest neighbours by cosine similarity: one `word<TAB>neighbour<TAB>cosine` line each.

    Unknown words are reported on stderr and the other queries still answered.

    Example: dlcli embed neighbors runs/vec king queen -k 5
    """
    from dlcli.embed.query import Vectors, check_top
    from dlcli.embed.query import neighbors as nearest

    check_top(k)
    v = Vectors.load(source)

    def answer(q: list[str]) -> None:
        for w, s in nearest(v, q[0], k):
            print(f"{q[0]}\t{w}\t{s:.4f}")

    _answer_all(_queries(words, 1), 1, answer)


@app.command()
@command()
def analogy(
    source: SourceArg,
    words: Annotated[list[str] | None, typer.Argument(help="a b c for a : b :: c : ? (default: one 'a b c' a "
                                                         "line from stdin).", show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--top", help="Answers per query and method.")] = 1,
    method: Annotated[str, typer.Option("--method", help="add (3CosAdd), mul (3CosMul) or both.")] = "both",
    *, job: Job,
) -> None:
    """Solve a : b :: c : ? (d close to b - a + c): `a b c method d score` lines, tab-separated.

    Example: dlcli embed analogy runs/vec man king woman
    """
    from dlcli.embed.query import METHODS, Vectors, check_top
    from dlcli.embed.query import analogy as solve

    check_top(k)
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
@command(options={"quiet": o.Quiet}, aliases={"-s": "similarity"})
def eval_(
    source: SourceArg,
    similarity: Annotated[list[str] | None, typer.Option("--similarity", help="Word-pair file (word1 TAB "
                                                            "word2 TAB score, e.g. WordSim-353, SimLex-999); "
                                                            "repeatable.", show_default=False)] = None,
    analogies: Annotated[str | None, typer.Option("--analogies", "-a", help="questions-words.txt format file.",
                                                     show_default=False)] = None,
    restrict: Annotated[int, typer.Option("--restrict", help="Analogies: only the N most frequent words take part, "
                                          "as in word2vec's compute-accuracy (0 = all).")] = 30_000,
    method: Annotated[str, typer.Option("--method", help="Analogies: add (3CosAdd) or mul (3CosMul).")] = "add",
    *, job: Job,
) -> None:
    """Evaluate vectors: Spearman rho on word-pair similarities (with the count of pairs skipped for unknown
    words) and analogy accuracy per section, semantic, syntactic and total. JSON on stdout, a table on stderr.

    Example: dlcli embed eval runs/vec --analogies questions-words.txt --similarity wordsim353.tsv
    """
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
    if not job.quiet:
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
@command(options=o.WRITES)
def plot(
    source: SourceArg,
    words: Annotated[list[str] | None, typer.Argument(help="Words to show.", show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", help="Also show the N most frequent words.")] = 0,
    method: Annotated[str, typer.Option("--method", help="pca, or tsne (needs scikit-learn).")] = "pca",
    output: Annotated[str, typer.Option("--output", "-o", help="PNG to write.")] = "embeddings.png",
    seed: Annotated[int, typer.Option("--seed", help="t-SNE seed.")] = 0,
    *, job: Job,
) -> None:
    """Plot chosen word vectors in 2-D (PCA, or t-SNE) as a labelled PNG.

    Example: dlcli embed plot runs/vec king queen man woman paris france --top 30 -o words.png
    """
    from dlcli.embed.plot import plot as draw
    from dlcli.embed.query import Vectors

    s = draw(Vectors.load(source), words or [], output, method, top, seed, job.force)
    if s["unknown"]:
        job.info(f"not in the vocabulary: {', '.join(s['unknown'])}")
    job.info(f"{len(s['words'])} words, {method.upper()}")
    c.result(s["output"])


@app.command("import")
@command(_import_config)
def import_(
    input: Annotated[str, typer.Argument(help="A .vec (word2vec text) or .bin (word2vec binary) file.",
                                         show_default=False)],
    output: Annotated[str | None, o.opt("--output", "-o", help="Run directory.")] = None,
    binary: Binary = None,
    *, job: Job,
) -> None:
    """Import vectors trained elsewhere (word2vec, gensim, fastText .vec) as an embed run directory
    (tokenizer.json + embeddings.safetensors), for queries and --init-embeddings.

    Example: dlcli embed import wiki.en.vec -o runs/wiki
    """
    from dlcli.embed.vecfile import import_vectors

    job.run(import_vectors, lambda s: f"imported {s['words']:,} words x {s['dim']}" + (
        f"; {s['duplicates']:,} repeated words skipped (the first vector kept)" if s["duplicates"] else ""))
