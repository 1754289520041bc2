"""`dlcli preprocess`: text -> token stream, or a CSV table -> feature matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli import tabular
from dlcli.cli.command import Job, command

TEXT = "Text"


def _config() -> type:
    from dlcli.text.preprocess import PreprocessConfig

    return PreprocessConfig


@command(_config, options=tabular.TABLE, aliases={"-n": "normalize"}, switches=("table",))
def main(
    inputs: Annotated[list[str] | None, o.arg("Text files, or - for stdin (default).")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Output path, or - for stdout.")] = None,
    normalize: Annotated[list[str] | None, o.opt("--normalize", help="Normaliser, repeatable and applied in order: "
                                                 "none, lower, nfkc, d2l, nmt.", panel=TEXT)] = None,
    level: Annotated[str | None, o.opt("--level", "-l", help="Tokens: char or word.", panel=TEXT)] = None,
    tokenizer: Annotated[str | None, o.opt("--tokenizer", "-t", help="Tokenise with a trained tokenizer.json "
                                           "instead (e.g. BPE from 'dlcli vocab train').", panel=TEXT)] = None,
    whole: Annotated[bool | None, o.opt("--whole/--lines", help="Treat each input as one line (newlines are text), "
                                        "or line by line (default).", panel=TEXT)] = None,
    workers: o.Workers = None,
    table: Annotated[bool, typer.Option("--table", help="Encode a CSV table into a feature matrix instead (as "
                                        "'dlcli tabular encode').", rich_help_panel=tabular.PANEL)] = False,
    *, job: Job,
) -> None:
    """Normalise and tokenise text into a token stream, or encode a CSV table.

    Text gives one token-stream line per input line; with [bold]--table[/] a CSV
    table becomes a numeric feature matrix (as [bold]dlcli tabular encode[/]).

    Examples:

      dlcli preprocess timemachine.txt --normalize d2l -l char -o tm.tok

      cat corpus.txt | dlcli preprocess --normalize nfkc --normalize lower | head

      dlcli preprocess people.csv --table --categorical nationality -o X.npy
    """
    if table:
        return tabular.encode_table(job)
    from dlcli.text import preprocess

    cfg = job.resolve()
    s = job.run(preprocess.run, result=None, cfg=cfg)
    if cfg.output != "-":
        job.info(f"wrote {c.count(s['lines'], 'line')} to {cfg.output}")
        c.result(str(Path(cfg.output)))
