"""`dlcli tabular encode`: a CSV table -> a numeric feature matrix (also `dlcli preprocess --table`)."""

from __future__ import annotations

from typing import Annotated, Any

from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Tabular data: encode a CSV table into a numeric feature matrix.")

PANEL = "Tabular features"


def _opt(name: str, help: str) -> Any:
    return o.opt(name, help=help, panel=PANEL)


# The options of TableConfig, shared with `dlcli preprocess --table`.
TABLE: dict[str, Any] = {
    "numeric": Annotated[list[str] | None, _opt("--numeric", "Numeric column (repeatable).")],
    "binary": Annotated[list[str] | None, _opt("--binary", "Binary column -> 0/1 (repeatable).")],
    "categorical": Annotated[list[str] | None, _opt("--categorical", "Categorical column -> one-hot (repeatable).")],
    "drop": Annotated[list[str] | None, _opt("--drop", "Column to leave out (repeatable).")],
    "categories": Annotated[list[str] | None, _opt("--categories", "COLUMN=FILE: the column's full category list, "
                                                   "one per line (repeatable).")],
    "standardize": Annotated[bool | None, _opt("--standardize/--no-standardize", "Scale numeric columns to mean 0, "
                                               "std 1.")],
    "unknown": Annotated[str | None, _opt("--unknown", "Unseen category: error or zeros.")],
    "missing": Annotated[str | None, _opt("--missing", "Empty numeric cell: error or mean.")],
    "encoding": Annotated[str | None, _opt("--encoding", "Apply a saved encoding (JSON) instead of fitting one.")],
    "save_encoding": Annotated[str | None, _opt("--save-encoding", "Where to save the fitted encoding (default "
                                                "OUTPUT.encoding.json).")],
    "csv": Annotated[str | None, _opt("--csv", "Also write the features as CSV here.")],
}


def config() -> type:
    from dlcli.tabular.encode import TableConfig

    return TableConfig


def encode_table(job: Job) -> None:
    """Fit (or apply) an encoding and write the features: the body of both commands."""
    from dlcli.tabular.encode import run

    job.run(run, lambda s: f"encoded {s['rows']:,} rows into {s['dim']} features", result="written",
            cfg=job.resolve(config()))


@app.command("encode")
@command(config, options=TABLE)
def encode(
    inputs: Annotated[list[str] | None, o.arg("One CSV file, or - for stdin (default).")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Feature matrix to write (.npy).")] = None,
    *, job: Job,
) -> None:
    """Encode a CSV table into a numeric feature matrix: numeric columns as numbers (optionally standardised),
    binary columns as 0/1, categorical columns one-hot; the fitted encoding is saved beside it.

    Example: dlcli tabular encode people.csv --categorical nationality -o X.npy
    """
    encode_table(job)
