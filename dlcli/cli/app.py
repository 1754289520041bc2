"""The `dlcli` Typer app. Each command lives in its own module under
`dlcli.cli`; they are listed in `COMMANDS`, the one place docs and tests
iterate over. Command modules import heavy libraries only inside functions,
so `dlcli --help` stays fast."""

from __future__ import annotations

from typing import Annotated

import typer

from dlcli import __version__
from dlcli.cli import (
    anomaly,
    clip,
    data,
    embed,
    forecast,
    gan,
    hf,
    lm,
    lora,
    nerf,
    preprocess,
    rlhf,
    runs,
    tabular,
    translate,
    vocab,
)
from dlcli.cli.command import Command, Group

# (name, command): a function becomes a command; a Typer app a group.
COMMANDS: list[tuple[str, object]] = [
    ("data", data.app),
    ("preprocess", preprocess.main),
    ("vocab", vocab.app),
    ("tabular", tabular.app),
    ("train-rnn", lm.train_rnn),
    ("train-transformer", lm.train_transformer),
    ("generate", lm.generate),
    ("evaluate", lm.evaluate),
    ("import-hf", hf.import_hf),
    ("export-hf", hf.export_hf),
    ("forecast", forecast.app),
    ("anomaly", anomaly.app),
    ("clip", clip.app),
    ("translate", translate.app),
    ("rlhf", rlhf.app),
    ("lora", lora.app),
    ("embed", embed.app),
    ("gan", gan.app),
    ("nerf", nerf.app),
    ("runs", runs.app),
]

app = typer.Typer(
    name="dlcli",
    help="A command-line deep-learning toolkit: text pipelines, embeddings, RNN and Transformer language models, "
    "translation, forecasting and anomaly detection, GANs, RLHF and NeRF.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    cls=Group,
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


for _name, _obj in COMMANDS:
    if isinstance(_obj, typer.Typer):
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name, cls=Command)(_obj)


def main() -> None:
    app()
