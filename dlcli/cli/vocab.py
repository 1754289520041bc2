"""`dlcli vocab`: vocabularies, subword tokenizers, id files."""

from __future__ import annotations

from types import ModuleType
from typing import Annotated

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Build vocabularies, train subword tokenizers, encode text to ids and decode ids to text.")

InputsArg = Annotated[list[str] | None, o.arg("Input files, or - for stdin (default).")]
Output = Annotated[str | None, o.opt("--output", "-o", help="tokenizer.json to write.")]
Specials = Annotated[list[str] | None, o.opt("--special", "-s", help="Reserved token, repeatable, in id order.")]
Normalize = Annotated[list[str] | None, o.opt("--normalize", help="Normalisers the tokenizer applies to raw text: "
                                              "lower, nfkc, d2l, nmt.")]
Tokenizer = Annotated[str | None, o.opt("--tokenizer", "-t", help="tokenizer.json (or a run directory holding "
                                        "one).")]
# -n was --normalize's short flag; it now means "how many" across dlcli, and still works here.
OLD_N = {"-n": "normalize"}


def _vocab() -> ModuleType:
    """The stage module, imported when a command runs or shows its help."""
    from dlcli.text import vocab

    return vocab


@app.command()
@command(lambda: _vocab().BuildConfig, aliases=OLD_N)
def build(
    inputs: InputsArg = None,
    output: Output = None,
    min_freq: Annotated[int | None, o.opt("--min-freq", help="Drop tokens seen fewer times.")] = None,
    max_size: Annotated[int | None, o.opt("--max-size", help="Keep at most this many entries, specials included "
                                          "(default: no limit).")] = None,
    specials: Specials = None,
    unk: Annotated[str | None, o.opt("--unk", help="The unknown token ('' for none).")] = None,
    level: Annotated[str | None, o.opt("--level", "-l", help="char or word (default: from the stream's sidecar, "
                                       "else guessed).")] = None,
    normalize: Normalize = None,
    top: Annotated[int | None, o.opt("--top", "-k", help="Show the k most frequent tokens.")] = None,
    workers: o.Workers = None,
    *, job: Job,
) -> None:
    """Build a word or char vocabulary from a token stream and save it as a
    Hugging Face tokenizer.json (specials first, then by count).

    Example: dlcli vocab build tm.tok -o tm.tokenizer.json --special "<pad>" --special "<unk>"
    """
    from dlcli.text import vocab

    s = job.run(vocab.build, result=None)
    if not job.quiet:
        c.table(f"{s['level']} vocabulary: {s['size']:,} entries from {s['tokens']:,} tokens "
                f"({s['distinct']:,} distinct)", ["index", "token", "count"],
                [(i, repr(t) if t.strip() != t or not t else t, f"{n:,}") for i, t, n in s["top"]])
    c.result(s["output"])


@app.command()
@command(lambda: _vocab().TrainConfig, aliases=OLD_N)
def train(
    inputs: InputsArg = None,
    output: Output = None,
    model: Annotated[str | None, o.opt("--model", "-m", help="bpe, wordpiece or unigram.")] = None,
    vocab_size: Annotated[int | None, o.opt("--vocab-size", "-v", help="Target size.")] = None,
    min_freq: Annotated[int | None, o.opt("--min-freq", help="Minimum pair/word frequency.")] = None,
    specials: Specials = None,
    normalize: Normalize = None,
    *, job: Job,
) -> None:
    """Train a subword tokenizer (BPE, WordPiece, Unigram) on raw text.

    Example: dlcli vocab train shakespeare.txt -m bpe -v 2000 -o bpe.json
    """
    from dlcli.text import vocab

    job.run(vocab.train, lambda s: f"trained {s['model']} tokenizer with {s['size']:,} entries", result="output")


@app.command()
@command(lambda: _vocab().EncodeConfig)
def encode(
    inputs: InputsArg = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Id file to write (plus .json and .offsets.npy "
                                        "beside it).")] = None,
    tokenizer: Tokenizer = None,
    raw: Annotated[bool | None, o.opt("--raw/--tokens", help="Input is raw text (encoded by the tokenizer) or a "
                                      "token stream (default).")] = None,
    workers: o.Workers = None,
    *, job: Job,
) -> None:
    """Encode a token stream (or raw text) into a memory-mappable id file.

    Example: dlcli vocab encode tm.tok -t tm.tokenizer.json -o tm.ids
    """
    from dlcli.text import vocab

    job.run(vocab.encode, lambda s: f"wrote {c.count(s['count'], 'id')} ({s['dtype']}) in {c.count(s['lines'], 'line')} to "
            f"{s['output']}" + (f"; {s['unknown']:,} unknown tokens" if s["unknown"] else ""), result="output")


@app.command()
@command(lambda: _vocab().DecodeConfig)
def decode(
    input: Annotated[str | None, o.arg("Id file written by 'dlcli vocab encode'.")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Text output (- for stdout).")] = None,
    tokenizer: Annotated[str | None, o.opt("--tokenizer", "-t", help="tokenizer.json the ids were made with.")] = None,
    *, job: Job,
) -> None:
    """Decode an id file back to text, one line per encoded line.

    Example: dlcli vocab decode tm.ids -t tm.tokenizer.json | head
    """
    from dlcli.text import vocab

    cfg = job.resolve()
    to_file = cfg.output != "-"
    job.run(vocab.decode, (lambda s: f"wrote {c.count(s['lines'], 'line')} to {s['output']}") if to_file else None,
            result="output" if to_file else None, cfg=cfg)
