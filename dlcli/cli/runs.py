"""`dlcli runs [DIR]` and `dlcli runs compare A B ... -o curves.png`: run directories side by side."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import Command, Group, Job, command


class _Group(Group):
    """`dlcli runs` alone lists runs/; `dlcli runs DIR` lists DIR (the default command `list`)."""

    default = "list"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, args or [self.default])


app = typer.Typer(help="Run directories side by side: a table of the runs under a folder; their curves on one plot.",
                  rich_markup_mode="rich", cls=_Group)


@app.command("list", cls=Command)
@command()
def list_runs(
    folder: Annotated[str, typer.Argument(help="Folder to search for run directories (default runs).",
                                          show_default=False)] = "runs",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per run instead of the table.")] = False,
    *, job: Job,
) -> None:
    """A table of the run directories under FOLDER: stage, steps, training time, best held-out figure
    (BLEU, PSNR, reward, accuracy, perplexity or loss: the first the run logs), precision and device.

    Example: dlcli runs runs/
    """
    from dlcli.runs import table

    found = table.rows(folder)
    if as_json:
        for row in found:
            c.result(json.dumps(row.as_dict()))
    elif found:
        c.table(f"{len(found)} run{'s' if len(found) != 1 else ''} under {folder}", table.COLUMNS,
                [table.cells(r) for r in found], to_stdout=True, right=("steps", "time"))
    else:
        job.info(f"no run directories under {folder}")


@app.command("compare", cls=Command)
@command(options=o.WRITES)
def compare(
    runs: Annotated[list[str], typer.Argument(help="Run directories.")],
    output: Annotated[str, typer.Option("--output", "-o", help="The plot (PNG).")] = "curves.png",
    metric: Annotated[str, typer.Option("--metric", help="The metrics.jsonl key to plot (GAN: loss_g or loss_d; "
                                        "PPO: reward).")] = "loss",
    log_y: Annotated[bool, typer.Option("--log-y", help="Logarithmic y axis.")] = False,
    x: Annotated[str, typer.Option("--x", help="The x axis: step, or time (seconds of training, from "
                                   "'elapsed'; compares runs of different speeds).")] = "step",
    *, job: Job,
) -> None:
    """Plot the training loss (or --metric) of several runs against their steps (or --x time), on one plot.

    Example: dlcli runs compare runs/rnn runs/gpt -o curves.png --x time
    """
    from dlcli.runs.compare import compare as plot

    s = plot(runs, output, metric, force=job.force, log_y=log_y, x=x)
    job.info(f"plotted {s['metric']} of {s['runs']} runs ({s['points']:,} points)")
    c.result(s["output"])
