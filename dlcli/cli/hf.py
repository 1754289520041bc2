"""`dlcli import-hf` and `dlcli export-hf`: Hugging Face model folders in and out."""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any

import typer

from dlcli.cli import options as o
from dlcli.cli.command import Job, command


def _hf() -> ModuleType:
    """The configs (torch-free), imported when a command runs or shows its help."""
    import dlcli.hf.config

    return dlcli.hf.config


def _imported(s: dict[str, Any]) -> str:
    return (f"imported a {s['family']} model: {s['params']:,} parameters ({s['dtype']}), context "
            f"{s['block_size']:,} tokens")


@command(lambda: _hf().ImportConfig)
def import_hf(
    source: Annotated[str, typer.Argument(help="A Hugging Face model folder: config.json, model.safetensors (or its "
                                          "shards and index), tokenizer.json.")],
    output: Annotated[str | None, o.opt("--output", "-o", help="Run directory to write.")] = None,
    block_size: Annotated[int | None, o.opt("--block-size", help="Longest context the run uses (0 = the model's "
                                            "own); evaluation reads windows this long.")] = None,
    *, job: Job,
) -> None:
    """Turn a local Hugging Face GPT-2, Llama, SmolLM or Qwen2 model into a dlcli GPT run.

    The run works with generate, evaluate and the rlhf stages. Weights are read
    memory-mapped from safetensors; pickled weights (pytorch_model.bin) are refused.
    Nothing is downloaded.

    Example: dlcli import-hf ~/models/SmolLM2-135M -o runs/smollm
    """
    from dlcli.hf.load import run

    job.run(run, _imported)


@command(lambda: _hf().ExportConfig)
def export_hf(
    run: Annotated[str, typer.Argument(help="A GPT run (train-transformer, import-hf or an rlhf stage).")],
    output: Annotated[str | None, o.opt("--output", "-o", help="Folder to write.")] = None,
    *, job: Job,
) -> None:
    """Write a GPT run as a Hugging Face model folder (config.json, model.safetensors, tokenizer.json).

    transformers' AutoModelForCausalLM.from_pretrained(FOLDER) loads it and
    gives the run's logits. A run with no transformers equivalent (bias off, a
    masked-LM encoder) is refused.

    Example: dlcli export-hf runs/gpt -o out/gpt
    """
    from dlcli.hf.save import run as export

    job.run(export, lambda s: f"exported a {s['family']} model: {s['tensors']} tensors ({s['dtype']})")
