"""Every option that two commands share, declared once, and the bundles `command.command` adds.

A command's own options name their config key in the parameter name (`model__n_hidden` is the key
`model.n_hidden`); their help leaves out the default, which `command.Command` reads from the config
dataclass when the help is shown.

Short flags mean one thing everywhere: -b batch size, -c config, -d data, -e epochs, -f force,
-j workers, -k top k, -l level, -m model, -n how many to make (samples, tokens, frames), -o output,
-p prompt, -q quiet, -s special token, -t tokenizer, -v vocabulary size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

CONFIG = "Config"
OUTPUT = "Output"
MODEL = "Model"
TRAIN = "Training"
DATA = "Data"


def opt(*names: str, help: str, panel: str | None = None) -> Any:
    """A typer option whose default is not printed by typer: `Command` adds the config's default to the help."""
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False)


def arg(help: str) -> Any:
    """An optional positional argument (its default comes from the config)."""
    return typer.Argument(help=help, show_default=False)


Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file with config keys (see "
                                                "--print-config).", rich_help_panel=CONFIG)]
Set = Annotated[list[str] | None, typer.Option("--set", help="Override one config key: key=value (repeatable).",
                                                  rich_help_panel=CONFIG)]
PrintConfig = Annotated[bool, typer.Option("--print-config", help="Print the resolved config as YAML and exit.",
                                           rich_help_panel=CONFIG)]
Force = Annotated[bool, typer.Option("--force", "-f", help="Replace existing outputs (a run directory only by a run "
                                     "of the same stage; the old one is kept aside until the new run has saved).",
                                     rich_help_panel=OUTPUT)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.",
                                     rich_help_panel=OUTPUT)]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors (env: DLCLI_DEBUG=1).",
                                     envvar="DLCLI_DEBUG", rich_help_panel=OUTPUT)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --output exactly where its checkpoint "
                                      "stopped (Ctrl-C, --max-time or a crash); only budgets, intervals and the "
                                      "device may change.", rich_help_panel=TRAIN)]
Log = Annotated[list[str] | None, typer.Option("--log", metavar="NAME", help="Also log the metrics to tensorboard "
                                              "(event files in RUN/tensorboard; pip install 'dlcli\\[tensorboard]') or "
                                              "wandb (Weights & Biases; WANDB_MODE=offline respected); repeatable.",
                                              rich_help_panel=TRAIN, show_default=False)]

Device = Annotated[str | None, opt("--device", help="auto, cpu, cuda or mps.", panel=TRAIN)]
Precision = Annotated[str | None, opt("--precision", help="auto, fp32 or bf16 (auto: bf16 autocast only where "
                                         "the device runs it natively and the model is wide enough; the choice and "
                                         "its reason are in meta.json).", panel=TRAIN)]
MaxTime = Annotated[str | None, opt("--max-time", help="Wall-clock budget: 90s, 10m, 1h; stops cleanly and saves "
                                       "a checkpoint (continue with --resume).", panel=TRAIN)]
MaxSteps = Annotated[int | None, opt("--max-steps", help="Step budget; 0 = none.", panel=TRAIN)]
Epochs = Annotated[float | None, opt("--epochs", help="Epoch budget; 0 = none.", panel=TRAIN)]
Seed = Annotated[int | None, opt("--seed", help="Random seed.", panel=TRAIN)]
BatchSize = Annotated[int | None, opt("--batch-size", "-b", help="Examples per step.", panel=TRAIN)]
Lr = Annotated[float | None, opt("--lr", help="Peak learning rate.", panel=TRAIN)]
Workers = Annotated[int | None, opt("--workers", "-j", help="Worker processes (0 = one per core).")]
Data = Annotated[str | None, opt("--data", "-d", help="Training data.")]
# Commands that use a finished run (no config): the device is a plain option.
UseDevice = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]

# Bundles: parameter name -> annotation, added to a command's signature by `command.command`.
CONFIGURED: dict[str, Any] = {"config": Config, "set_": Set, "print_config": PrintConfig, "force": Force,
                              "quiet": Quiet}
WRITES: dict[str, Any] = {"force": Force, "quiet": Quiet}
TRAINING: dict[str, Any] = {"max_steps": MaxSteps, "epochs": Epochs, "max_time": MaxTime, "seed": Seed,
                            "device": Device, "precision": Precision}


def training(*without: str) -> dict[str, Any]:
    """The training options, less those a stage does not have (e.g. `epochs`)."""
    return {k: v for k, v in TRAINING.items() if k not in without}


# LoRA (keys of lm.config.LoRAConfig): on train-transformer --init and rlhf sft, reward, dpo and ppo.
LORA_PANEL = "LoRA"
LORA: dict[str, Any] = {
    "lora__rank": Annotated[int | None, opt("--lora-rank", help="Train low-rank adapters of this rank only, the "
                                            "other weights frozen; the run saves adapter.safetensors (0 = off).",
                                            panel=LORA_PANEL)],
    "lora__alpha": Annotated[float | None, opt("--lora-alpha", help="Adapter scale numerator: the update is "
                                               "(alpha / rank) B A.", panel=LORA_PANEL)],
    "lora__dropout": Annotated[float | None, opt("--lora-dropout", help="Dropout on the adapters' input.",
                                                 panel=LORA_PANEL)],
    "lora__targets": Annotated[str | None, opt("--lora-targets", help="Linear layers to adapt, comma-separated "
                                               "dotted name parts: attn (Q/K/V and output), mlp, or e.g. "
                                               "attn.qkv,mlp.fc.", panel=LORA_PANEL)],
    "lora__merge": Annotated[bool | None, opt("--lora-merge/--no-lora-merge", "--merge", help="Also write the "
                                              "merged full weights (model.safetensors): a run that needs no "
                                              "base.", panel=LORA_PANEL)],
}
