"""`dlcli vocab`: vocabularies, subword tokenizers, id files."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dlcli.cli import common as c

app = typer.Typer(help="Build vocabularies, train subword tokenizers, encode text to ids and decode ids to text.",
                  no_args_is_help=True, rich_markup_mode="rich")

InputsArg = Annotated[Optional[list[str]], typer.Argument(help="Input files, or - for stdin (default).",
                                                          show_default=False)]
SpecialsOpt = Annotated[Optional[list[str]], typer.Option(
    "--special", "-s", help="Reserved token, repeatable, in id order (default: <unk>).", show_default=False)]
NormOpt = Annotated[Optional[list[str]], typer.Option(
    "--normalize", "-n", help="Normalisers the tokenizer applies to raw text: lower, nfkc, d2l, nmt.",
    show_default=False)]


@app.command()
def build(
    inputs: InputsArg = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="tokenizer.json to write.",
                                                  show_default=False)] = None,
    min_freq: Annotated[Optional[int], typer.Option("--min-freq", help="Drop tokens seen fewer times (default 1).",
                                                    show_default=False)] = None,
    max_size: Annotated[Optional[int], typer.Option("--max-size", help="Keep at most this many entries, specials "
                                                    "included (default: no limit).", show_default=False)] = None,
    specials: SpecialsOpt = None,
    unk: Annotated[Optional[str], typer.Option("--unk", help="The unknown token (default <unk>; '' for none).",
                                               show_default=False)] = None,
    level: Annotated[Optional[str], typer.Option("--level", "-l", help="char or word (default: from the stream's "
                                                 "sidecar, else guessed).", show_default=False)] = None,
    normalize: NormOpt = None,
    top: Annotated[Optional[int], typer.Option("--top", "-k", help="Show the k most frequent tokens (default 10).",
                                               show_default=False)] = None,
    workers: c.WorkersOpt = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Build a word or char vocabulary from a token stream and save it as a
    Hugging Face tokenizer.json (specials first, then by count).

    Example: dlcli vocab build tm.tok -o tm.tokenizer.json --special "<pad>" --special "<unk>"
    """
    with c.errors(debug):
        from dlcli.text import vocab

        flags = {"inputs": inputs, "output": output, "min_freq": min_freq, "max_size": max_size,
                 "specials": specials, "unk": unk, "level": level, "normalize": normalize, "top": top,
                 "workers": workers}
        cfg = c.resolve(vocab.BuildConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = vocab.build(cfg, force, on_progress)
        if not quiet:
            c.table(f"{s['level']} vocabulary: {s['size']:,} entries from {s['tokens']:,} tokens "
                    f"({s['distinct']:,} distinct)", ["index", "token", "count"],
                    [(i, repr(t) if t.strip() != t or not t else t, f"{n:,}") for i, t, n in s["top"]])
        c.result(s["output"])


@app.command()
def train(
    inputs: InputsArg = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="tokenizer.json to write.",
                                                  show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="bpe, wordpiece or unigram (default bpe).",
                                                 show_default=False)] = None,
    vocab_size: Annotated[Optional[int], typer.Option("--vocab-size", "-v", help="Target size (default 8000).",
                                                      show_default=False)] = None,
    min_freq: Annotated[Optional[int], typer.Option("--min-freq", help="Minimum pair/word frequency (default 2).",
                                                    show_default=False)] = None,
    specials: SpecialsOpt = None,
    normalize: NormOpt = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Train a subword tokenizer (BPE, WordPiece, Unigram) on raw text.

    Example: dlcli vocab train shakespeare.txt -m bpe -v 2000 -o bpe.json
    """
    with c.errors(debug):
        from dlcli.text import vocab

        flags = {"inputs": inputs, "output": output, "model": model, "vocab_size": vocab_size,
                 "min_freq": min_freq, "specials": specials, "normalize": normalize}
        cfg = c.resolve(vocab.TrainConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = vocab.train(cfg, force, on_progress)
        c.info(f"trained {s['model']} tokenizer with {s['size']:,} entries", quiet)
        c.result(s["output"])


@app.command()
def encode(
    inputs: InputsArg = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Id file to write (plus .json and "
                                                  ".offsets.npy beside it).", show_default=False)] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="tokenizer.json (or a run "
                                                     "directory holding one).", show_default=False)] = None,
    raw: Annotated[Optional[bool], typer.Option("--raw/--tokens", help="Input is raw text (encoded by the "
                                                "tokenizer) or a token stream (default).", show_default=False)
                   ] = None,
    workers: c.WorkersOpt = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Encode a token stream (or raw text) into a memory-mappable id file.

    Example: dlcli vocab encode tm.tok -t tm.tokenizer.json -o tm.ids
    """
    with c.errors(debug):
        from dlcli.text import vocab

        flags = {"inputs": inputs, "output": output, "tokenizer": tokenizer, "raw": raw, "workers": workers}
        cfg = c.resolve(vocab.EncodeConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = vocab.encode(cfg, force, on_progress)
        msg = f"wrote {s['count']:,} ids ({s['dtype']}) in {s['lines']:,} lines to {s['output']}"
        if s["unknown"]:
            msg += f"; {s['unknown']:,} unknown tokens"
        c.info(msg, quiet)
        c.result(s["output"])


@app.command()
def decode(
    input: Annotated[Optional[str], typer.Argument(help="Id file written by 'dlcli vocab encode'.",
                                                   show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Text output (default - for stdout).",
                                                  show_default=False)] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="tokenizer.json the ids were "
                                                     "made with.", show_default=False)] = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Decode an id file back to text, one line per encoded line.

    Example: dlcli vocab decode tm.ids -t tm.tokenizer.json | head
    """
    with c.errors(debug):
        from dlcli.text import vocab

        flags = {"input": input, "output": output, "tokenizer": tokenizer}
        cfg = c.resolve(vocab.DecodeConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = vocab.decode(cfg, force, on_progress)
        if cfg.output != "-":
            c.info(f"wrote {s['lines']:,} lines to {s['output']}", quiet)
            c.result(s["output"])
