"""The `dlcli` Typer app. Each command lives in its own module under
`dlcli.cli`; they are registered in `COMMANDS`, the one place docs and tests
iterate over. Command modules import heavy libraries only inside functions,
so `dlcli --help` stays fast."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from dlcli import __version__

# (name, module, attribute): a function becomes a command; a Typer app ("app") a group.
COMMANDS: list[tuple[str, str, str]] = [
    ("preprocess", "dlcli.cli.preprocess", "main"),
    ("vocab", "dlcli.cli.vocab", "app"),
    ("train-rnn", "dlcli.cli.lm", "train_rnn"),
    ("train-transformer", "dlcli.cli.lm", "train_transformer"),
    ("generate", "dlcli.cli.lm", "generate"),
    ("evaluate", "dlcli.cli.lm", "evaluate"),
    ("forecast", "dlcli.cli.lm", "forecast"),
    ("translate", "dlcli.cli.lm", "translate"),
    ("rlhf", "dlcli.cli.rlhf", "app"),
    ("embed", "dlcli.cli.embed", "app"),
    ("gan", "dlcli.cli.gan", "app"),
    ("nerf", "dlcli.cli.nerf", "app"),
]

app = typer.Typer(
    name="dlcli",
    help="A command-line deep-learning toolkit: text pipelines, embeddings, RNN and Transformer language models, "
    "GANs, RLHF and NeRF.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"dlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", help="Show the version and exit.", callback=_version,
                                     is_eager=True)
    ] = False,
) -> None:
    """dlcli: deep learning from the shell."""


for _name, _module, _attr in COMMANDS:
    _obj = getattr(importlib.import_module(_module), _attr)
    if isinstance(_obj, typer.Typer):
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name)(_obj)


def main() -> None:
    app()
