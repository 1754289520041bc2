"""`dlcli clip classify IMAGES... --model DIR --labels "a photo of a cat" "a photo of a dog"`: zero-shot
classification with a local CLIP model."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from dlcli.cli import common as c
from dlcli.cli.command import Command, Group, Job, command


class _LabelsCommand(Command):
    """`--labels A B C` takes every word up to the next option (click takes one value per flag):
    it is read as `--labels A --labels B --labels C`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        out, taking = [], False
        for a in args:
            if a in ("--labels", "-l"):
                taking = True
                continue
            if a.startswith("-") and a != "-":
                taking = False
            out += ["--labels", a] if taking else [a]
        return super().parse_args(ctx, out)


app = typer.Typer(help="CLIP models from a local folder (Hugging Face or OpenCLIP safetensors): zero-shot "
                       "classification.", no_args_is_help=True, rich_markup_mode="rich", cls=Group)


@app.command("classify", cls=_LabelsCommand)
@command()
def classify(
    images: Annotated[list[str], typer.Argument(help="Image files (anything PIL decodes).")],
    model: Annotated[str, typer.Option("--model", "-m", help="A CLIP folder: Hugging Face (config.json, "
                                       "model.safetensors, tokenizer.json) or OpenCLIP (open_clip_config.json, "
                                       "open_clip_model.safetensors, tokenizer.json).")],
    labels: Annotated[list[str], typer.Option("--labels", "-l", help="The candidate captions, e.g. --labels "
                                              "\"a photo of a cat\" \"a photo of a dog\" (every argument up "
                                              "to the next option; two or more).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image instead of the table.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images encoded at once.")] = 8,
    *, job: Job,
) -> None:
    """Which caption fits each image best: CLIP's zero-shot classification, P(label | image) by softmax
    over the labels of the scaled cosine similarities. Nothing is downloaded.

    Example: dlcli clip classify cat.jpg dog.png -m clip-vit-base-patch16 --labels "a cat" "a dog"
    """
    from dlcli.errors import ConfigError

    if len(labels) < 2 or batch_size < 1:
        raise ConfigError("--labels: give two or more captions; --batch-size: 1 or more")
    import torch

    from dlcli.hf.clip import load_clip, read_image
    from dlcli.models.clip import zero_shot

    net, tokenizer, prep = load_clip(model)
    pictures = [read_image(p) for p in images]
    with torch.inference_mode():  # not set_grad_enabled(False): that would outlive the command in-process
        probs = zero_shot(net, tokenizer, pictures, labels, prep, batch_size=batch_size).tolist()
    if as_json:
        for path, p in zip(images, probs, strict=True):
            best = max(range(len(labels)), key=p.__getitem__)
            c.result(json.dumps({"image": path, "label": labels[best], "probability": round(p[best], 6),
                                 "probabilities": {lab: round(x, 6) for lab, x in zip(labels, p, strict=True)}}))
        return
    rows = []
    for path, p in zip(images, probs, strict=True):
        best = max(range(len(labels)), key=p.__getitem__)
        rows.append((path, labels[best], *(f"{x:.3f}" for x in p)))
    c.table(f"{len(images)} image{'s' if len(images) != 1 else ''}, {len(labels)} labels", ["image", "label",
            *labels], rows, to_stdout=True)
