"""`dlcli translate train|run`: encoder-decoder translation (also `dlcli train-transformer --task translate`).

`dlcli translate RUN` still means `dlcli translate run RUN`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Translation: train an encoder-decoder Transformer on source<TAB>target pairs; translate sentences.",
          default="run")


def config() -> type:
    from dlcli.translation.config import TrainTranslateConfig

    return TrainTranslateConfig


def train_translator(job: Job) -> None:
    """Train and score a translator: the body of `translate train` and of `train-transformer --task translate`."""
    from dlcli.translation.train import train

    def report(s: dict[str, Any]) -> str:
        if s["truncated"]:
            c.err.print(f"warning: {s['truncated']:,} training sentences were longer than model.max_len and were "
                        "truncated", markup=False, highlight=False)
        return (f"{s['steps']:,} steps in {c.spent(s)}; held-out BLEU (greedy) {bleu_pair(s, 'greedy')} on "
                f"{s['held_out']:,} pairs [{s['signature']}]; {s['precision']}")

    job.run(train, report)


def bleu_pair(s: dict[str, Any], search: str) -> str:
    """`38.10 (cased; 41.00 case-insensitive)` from a BLEU report's bleu_<search> keys."""
    return f"{s[f'bleu_{search}']:.2f} (cased; {s[f'bleu_{search}_lowercase']:.2f} case-insensitive)"


def _model(*names: str, help: str) -> Any:
    return o.opt(*names, help=help, panel=o.MODEL)


@app.command("train")
@command(config, options=o.training(), resume=True)
def train(
    data__tsv: Annotated[str | None, o.opt("--data", "-d", help="Parallel TSV: source<TAB>target per line.")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Run directory.")] = None,
    model__n_layer: Annotated[int | None, _model("--layers", help="Encoder layers and decoder layers each.")] = None,
    model__n_head: Annotated[int | None, _model("--heads", help="Attention heads.")] = None,
    model__n_embd: Annotated[int | None, _model("--embd", help="Model width.")] = None,
    model__max_len: Annotated[int | None, _model("--block-size", help="Longest sentence, in tokens.")] = None,
    model__dropout: Annotated[float | None, _model("--dropout", help="Dropout.")] = None,
    batch_size: Annotated[int | None, o.opt("--batch-size", "-b", help="Sentence pairs per step.",
                                            panel=o.TRAIN)] = None,
    optim__lr: o.Lr = None,
    *, job: Job,
) -> None:
    """Train an encoder-decoder Transformer translator on a source<TAB>target file; held-out BLEU reported.

    Example: dlcli translate train -d fra.tsv -o runs/fra --max-time 20m
    """
    train_translator(job)


@app.command("run")
@command(options={"force": o.Force})
def translate_run(
    run: Annotated[str, o.arg("A run from 'dlcli translate train' (or 'dlcli train-transformer --task "
                              "translate').")],
    input: Annotated[str, o.arg("Sentences, one per line, or - for stdin (default).")] = "-",
    output: Annotated[str, o.opt("--output", "-o", help="Where translations go (default stdout).")] = "-",
    beam: Annotated[int, o.opt("--beam", help="Beam size; 1 = greedy (default).")] = 1,
    length_penalty: Annotated[float, o.opt("--length-penalty", help="GNMT length penalty alpha for beam search "
                                           "(default 0.6).")] = 0.6,
    strict: Annotated[bool, o.opt("--strict", help="Refuse sentences longer than the model's maximum (default: "
                                  "truncate with a warning).")] = False,
    plot_attention: Annotated[str | None, o.opt("--plot-attention", help="Also draw encoder self-attention and "
                                                "decoder cross-attention heatmaps of the first 8 sentences into this "
                                                "folder.")] = None,
    device: o.UseDevice = "auto",
    *, job: Job,
) -> None:
    """Translate sentences with a translation run, one output line per input line.

    'dlcli translate RUN ...' is short for 'dlcli translate run RUN ...'.

    Example: echo "I am cold." | dlcli translate run runs/fra
    """
    from dlcli.core import io
    from dlcli.translation.run import translate_lines

    if input == "-":
        text = sys.stdin.read()
    else:
        io.check_text_file(input)
        text = "".join(io.TextChecker(input).decode(ch) for ch in io.read_chunks(input))
    lines = text.splitlines()
    out, cut = translate_lines(run, lines, beam, length_penalty, device, strict)
    if cut:
        c.err.print(f"warning: {c.count(cut, 'input sentence')} longer than the model's maximum "
                    f"{'was' if cut == 1 else 'were'} truncated", markup=False, highlight=False)
    empty = sum(1 for src, tgt in zip(lines, out, strict=True) if src.strip() and not tgt.strip())
    if empty:
        c.err.print(f"warning: {empty} of {c.count(len(lines), 'translation')} came out empty: the model ends the "
                    f"sentence at once, as an untrained or barely trained one does ({run}: train it longer)",
                    markup=False, highlight=False)
    with io.open_output(output, job.force) as f:
        f.write(("\n".join(out) + ("\n" if out else "")).encode("utf-8"))
    if plot_attention:
        from dlcli.translation.attention import plot_attention as draw

        for path in draw(run, lines[:8], plot_attention, device, job.force):
            c.err.print(f"wrote {path}", markup=False, highlight=False)
