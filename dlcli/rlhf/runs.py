"""The run directories of the RLHF stages: the language-model runs they start from, the device and
process group, their own run directory (created once, with the device and precision in meta.json),
and the files that make it a language-model run `generate` and `evaluate` read."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dlcli.core import precision, rundir
from dlcli.core.runtime import seed_everything
from dlcli.errors import ConfigError, InputError
from dlcli.lm import lora as lm_lora
from dlcli.lm.config import LoRAConfig
from dlcli.lm.run import LMRun, open_run
from dlcli.models.gpt import GPT
from dlcli.rlhf import data, tokens
from dlcli.rlhf.config import RESUMABLE, StageConfig
from dlcli.text.vocabulary import vocab_hash
from dlcli.train import distributed
from dlcli.train.distributed import Dist


def open_lm(path: str, device: str) -> LMRun:
    """A causal GPT language-model run (train-transformer, or an earlier RLHF stage)."""
    run = open_run(path, device)
    if not isinstance(run.model, GPT) or not run.model.cfg.causal:
        raise InputError(f"{path}: RLHF needs a causal GPT run (from 'dlcli train-transformer' or an rlhf stage)")
    return run


def same_tokenizer(a: Any, b: Any, a_name: str, b_name: str) -> None:
    if vocab_hash(a) != vocab_hash(b):
        raise InputError(f"{a_name}: its tokenizer differs from the one of {b_name} (token ids would not match)")


def setup(cfg: StageConfig) -> tuple[torch.device, Dist]:
    """The device, and under torchrun the process group (gloo on CPU; on CUDA nccl, a GPU per process)."""
    device, d = distributed.setup_device(cfg.device)
    if cfg.batch_size < d.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is smaller than the {d.world} processes sharing it")
    return device, d


def start_run(cfg: StageConfig, stage: str, inputs: list[str], force: bool, resume: bool, device: torch.device,
              dist: Dist, resumable: tuple[str, ...] = RESUMABLE) -> tuple[Path, precision.Precision]:
    """Create the run directory (the main process), or reopen it for `resume` after checking that the
    config is the run's own (only budgets, intervals and the device may change). Returns it and the
    precision the stage runs in on `device` (by the policy's width; recorded in meta.json)."""
    run = Path(cfg.output)
    if resume:
        rundir.check_resume(run, cfg, resumable)
    prec = precision.resolve(cfg.precision, device, width=cfg.model.n_embd)
    if dist.main:
        rundir.create(run, cfg, stage, inputs, force=force, resume=resume, device=str(device),
                      precision=prec.record())
    if dist.enabled:
        torch.distributed.barrier()
    return run, prec


class Begun(NamedTuple):
    device: torch.device
    dist: Dist
    base: LMRun  # the starting run
    recs: data.Records
    enc: list[dict[str, list[int]]]  # each row's ids
    run: Path
    precision: precision.Precision


def begin(cfg: StageConfig, stage: str, base: str, kind: str, responses: tuple[str, ...], force: bool,
          resume: bool, resumable: tuple[str, ...] = RESUMABLE) -> Begun:
    """The start every SFT/preference stage shares: check the config, take the device, open the starting
    run `base` (its model shape becomes the stage's), read and encode the `kind` JSONL lines against its
    tokenizer, create (or reopen) the run directory, seed."""
    cfg.validate()
    dev, dist = setup(cfg)
    start = open_lm(base, str(dev))
    cfg.model = start.model.cfg
    recs = data.read(cfg.data, kind, cfg.skip_bad)
    enc = tokens.encode_records(cfg.data, recs, start.tokenizer, cfg.model.block_size, responses, cfg.skip_bad,
                                truncate=cfg.truncate)
    out, prec = start_run(cfg, stage, [base, cfg.data], force, resume, dev, dist, resumable)
    seed_everything(cfg.seed)
    return Begun(dev, dist, start, recs, enc, out, prec)


def adapt(model: torch.nn.Module, cfg: LoRAConfig) -> bool:
    """With `cfg.rank` > 0, adapters in `model` (its other weights frozen); whether it has them."""
    if cfg.rank:
        lm_lora.adapt(model, cfg)
    return cfg.rank > 0


def lora_summary(model: torch.nn.Module, cfg: LoRAConfig) -> dict[str, int]:
    """For a LoRA run's summary: the rank, the weights trained and all weights."""
    if not cfg.rank:
        return {}
    return {"lora_rank": cfg.rank, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "params": sum(p.numel() for p in model.parameters())}


def write_weights(run: Path, model: torch.nn.Module, cfg: LoRAConfig, base: str) -> None:
    """model.safetensors, or for a LoRA run adapter.safetensors (and the merged model.safetensors with
    lora.merge) with its base run recorded."""
    if cfg.rank:
        lm_lora.write(run, model, cfg, base)
    else:
        rundir.save_tensors(model.state_dict(), run / "model.safetensors")


def write_lm(run: Path, gpt: GPT, tokenizer_from: Path, cfg: LoRAConfig | None = None, base: str = "") -> None:
    """The weights (`write_weights`: `generate` and `evaluate` read them) and tokenizer.json."""
    write_weights(run, gpt, cfg or LoRAConfig(), base)
    if tokenizer_from.resolve() != (run / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer_from, run / "tokenizer.json")
