"""The wording of tabular errors: values quoted for one line, and the row errors that reading, fitting
and applying an encoding share (each names the file, the row and the column)."""

from __future__ import annotations

from typing import Any

from dlcli.errors import DlcliWarning, InputError


def q(v: Any, limit: int = 60) -> str:
    """A value quoted for a one-line message."""
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 4] + "...'"


def short_list(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(map(q, names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def missing_error(source: str, row: int, column: str, missing: str) -> InputError:
    hint = "" if missing == "mean" else " (use missing=mean to fill numeric columns with the mean)"
    return InputError(f"{source}: row {row}, column {q(column)}: missing value (empty cell){hint}")


def nan_error(source: str, row: int, column: str, value: str) -> InputError:
    return InputError(f"{source}: row {row}, column {q(column)}: {q(value)} is not a number")


def unseen_error(source: str, row: int, column: str, value: str) -> InputError:
    return InputError(f"{source}: row {row}, column {q(column)}: unseen category {q(value)} "
                      "(use unknown=zeros to encode unseen categories as all zeros)")


def inferred_text_warning(source: str, column: str, kind: str, row: int, value: str, numbers: int,
                          texts: int) -> DlcliWarning:
    """A column of mostly numbers that one or a few other values made categorical (or binary)."""
    others = "the only value" if texts == 1 else f"the first of {texts} values"
    return DlcliWarning(f"{source}: column {q(column)} is encoded as {kind}, not numeric: row {row} has "
                        f"{q(value)}, {others} that {'is' if texts == 1 else 'are'} not a number among {numbers:,} "
                        "numbers; fix it, or declare the column with --numeric or --categorical")
