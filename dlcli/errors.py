"""Errors a user can act on.

Library code raises `DlcliError` (or a subclass) for bad input; the CLI prints
its message as one line on stderr and exits non-zero. Anything else is a bug.
"""

from __future__ import annotations


class DlcliError(Exception):
    """A problem with the user's input, config or files: one clear line."""

    exit_code = 1


class ConfigError(DlcliError):
    """Invalid configuration (unknown key, wrong type, bad value)."""

    exit_code = 2


class InputError(DlcliError):
    """An input file is missing, unreadable or malformed."""


class MissingFileError(InputError):
    """An input file that is not there; `path` is what was asked for."""

    def __init__(self, path: object) -> None:
        super().__init__(f"{path}: no such file")
        self.path = str(path)


class OutputExistsError(DlcliError):
    """An output exists and neither --force nor --resume was given."""


class OutputError(DlcliError):
    """An output cannot be written: permission denied, disk full, read-only file system."""


class Interrupted(DlcliError):
    """Ctrl-C during a run; the message says what was saved."""

    exit_code = 130


class TrainingDiverged(DlcliError):
    """The loss became NaN or infinite."""


class DlcliWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI prints it as one line."""
