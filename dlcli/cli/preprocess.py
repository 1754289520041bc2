"""`dlcli preprocess`: text -> token stream, or a CSV table -> feature matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlcli.cli import common as c

TEXT = "Text"
TABLE = "Tabular features (--table)"


def main(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Text files, or - for stdin (default).",
                                                          show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output path, or - for stdout "
                                                  "(default for text).", show_default=False)] = None,
    normalize: Annotated[Optional[list[str]], typer.Option(
        "--normalize", "-n", help="Normaliser, repeatable and applied in order: none, lower, nfkc, d2l, nmt.",
        rich_help_panel=TEXT, show_default=False)] = None,
    level: Annotated[Optional[str], typer.Option("--level", "-l", help="Tokens: char or word (default word).",
                                                 rich_help_panel=TEXT, show_default=False)] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="Tokenise with a trained "
                                                     "tokenizer.json instead (e.g. BPE from 'dlcli vocab train').",
                                                     rich_help_panel=TEXT, show_default=False)] = None,
    whole: Annotated[Optional[bool], typer.Option("--whole/--lines", help="Treat each input as one line "
                                                  "(newlines are text), or line by line (default).",
                                                  rich_help_panel=TEXT, show_default=False)] = None,
    workers: c.WorkersOpt = None,
    table: Annotated[bool, typer.Option("--table", help="Encode a CSV table into a feature matrix instead.",
                                        rich_help_panel=TABLE)] = False,
    numeric: Annotated[Optional[list[str]], typer.Option("--numeric", help="Numeric column (repeatable).",
                                                         rich_help_panel=TABLE, show_default=False)] = None,
    binary: Annotated[Optional[list[str]], typer.Option("--binary", help="Binary column -> 0/1 (repeatable).",
                                                        rich_help_panel=TABLE, show_default=False)] = None,
    categorical: Annotated[Optional[list[str]], typer.Option("--categorical", help="Categorical column -> "
                                                             "one-hot (repeatable).", rich_help_panel=TABLE,
                                                             show_default=False)] = None,
    drop: Annotated[Optional[list[str]], typer.Option("--drop", help="Column to leave out (repeatable).",
                                                      rich_help_panel=TABLE, show_default=False)] = None,
    categories: Annotated[Optional[list[str]], typer.Option(
        "--categories", help="COLUMN=FILE: the column's full category list, one per line (repeatable).",
        rich_help_panel=TABLE, show_default=False)] = None,
    standardize: Annotated[Optional[bool], typer.Option("--standardize/--no-standardize", help="Scale numeric "
                                                        "columns to mean 0, std 1.", rich_help_panel=TABLE,
                                                        show_default=False)] = None,
    unknown: Annotated[Optional[str], typer.Option("--unknown", help="Unseen category: error (default) or "
                                                   "zeros.", rich_help_panel=TABLE, show_default=False)] = None,
    missing: Annotated[Optional[str], typer.Option("--missing", help="Empty numeric cell: error (default) or "
                                                   "mean.", rich_help_panel=TABLE, show_default=False)] = None,
    encoding: Annotated[Optional[str], typer.Option("--encoding", help="Apply a saved encoding (JSON) instead "
                                                    "of fitting one.", rich_help_panel=TABLE,
                                                    show_default=False)] = None,
    save_encoding: Annotated[Optional[str], typer.Option("--save-encoding", help="Where to save the fitted "
                                                         "encoding (default OUTPUT.encoding.json).",
                                                         rich_help_panel=TABLE, show_default=False)] = None,
    csv: Annotated[Optional[str], typer.Option("--csv", help="Also write the features as CSV here.",
                                               rich_help_panel=TABLE, show_default=False)] = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Normalise and tokenise text into a token stream, or encode a CSV table.

    Text gives one token-stream line per input line; with [bold]--table[/] a CSV
    table becomes a numeric feature matrix.

    Examples:

      dlcli preprocess timemachine.txt -n d2l -l char -o tm.tok

      cat corpus.txt | dlcli preprocess -n nfkc -n lower | head

      dlcli preprocess people.csv --table --categorical nationality -o X.npy
    """
    with c.errors(debug):
        if table:
            from dlcli.tabular import encode

            flags = {"inputs": inputs, "output": output, "numeric": numeric, "binary": binary,
                     "categorical": categorical, "drop": drop, "categories": categories,
                     "standardize": standardize, "unknown": unknown, "missing": missing, "encoding": encoding,
                     "save_encoding": save_encoding, "csv": csv}
            tcfg = c.resolve(encode.TableConfig, config, set_, flags, print_config)
            summary = encode.run(tcfg, force)
            c.info(f"encoded {summary['rows']:,} rows into {summary['dim']} features", quiet)
            for path in summary["written"]:
                c.result(path)
            return
        from dlcli.text import preprocess

        flags = {"inputs": inputs, "output": output, "normalize": normalize, "level": level,
                 "tokenizer": tokenizer, "whole": whole, "workers": workers}
        cfg = c.resolve(preprocess.PreprocessConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            summary = preprocess.run(cfg, force, on_progress)
        if cfg.output != "-":
            c.info(f"wrote {summary['lines']:,} lines to {cfg.output}", quiet)
            c.result(str(Path(cfg.output)))
