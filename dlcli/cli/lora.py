"""`dlcli lora merge`: LoRA runs."""

from __future__ import annotations

from typing import Annotated

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("LoRA runs (trained with --lora-rank): fold the adapter into full weights.")


@app.command("merge")
@command(options={"quiet": o.Quiet})
def merge(
    run: Annotated[str, typer.Argument(help="A LoRA run (it has adapter.safetensors).")],
    *, job: Job,
) -> None:
    """Write the run's merged weights, W + (alpha / rank) B A, as RUN/model.safetensors (as --merge does).

    The run then needs no base run: generate, evaluate, export-hf and the RLHF stages read model.safetensors.

    Example: dlcli lora merge runs/sft-lora
    """
    from dlcli.rlhf.merge import run as merge_run

    s = merge_run(run)
    job.info(f"merged the adapter of {s['run']} into {s['params']:,} weights")
    c.result(s["output"])
