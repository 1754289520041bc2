"""`dlcli train-rnn` and `dlcli train-transformer`: a language model trained on an id file.

setup (data, model, optimizer, resume) -> the one training loop (`train.loop.fit`) -> model.safetensors.
One step of the loop is one optimizer update:

    for each of grad_accum micro-batches:
        the next batch (x, y)  [masked LM: mask 15% of x, y keeps only those positions]
        logits, loss = model(x, state, y); backward(loss / grad_accum)
    clip the global gradient norm; optimizer step

An RNN on sequential batches carries its hidden state from batch to batch, detached (truncated BPTT);
a Transformer sees each batch on its own.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.nn.parallel import DistributedDataParallel as DDP

from dlcli.core import precision, rundir
from dlcli.core.progress import OnProgress, nothing
from dlcli.core.runtime import seed_everything
from dlcli.errors import ConfigError, DlcliWarning, InputError
from dlcli.lm import lora as lm_lora
from dlcli.lm.config import LMConfig, LoRAConfig, TrainRNNConfig, TrainTransformerConfig
from dlcli.lm.data import LMBatches, load_data
from dlcli.lm.embeddings import load_pretrained
from dlcli.lm.metrics import evaluate_ids, evaluate_mlm
from dlcli.lm.mlm import mask_ids, mask_tokens
from dlcli.lm.run import LMRun, open_run
from dlcli.models.config import GPTConfig, RNNConfig
from dlcli.models.gpt import GPT
from dlcli.models.rnn import RNNLM, Hidden, detach, state_from_tensors, state_tensors
from dlcli.text.vocabulary import vocab_hash
from dlcli.train import checkpoint, distributed
from dlcli.train.distributed import Dist
from dlcli.train.loop import Saved, Stage, Update, fit
from dlcli.train.optim import build_optimizer, lr_at, set_lr
from dlcli.train.plots import plot_curves


@dataclass
class Kind:
    """What differs between the models a language model is trained as."""

    stage: str  # meta.json's stage
    model: RNNConfig | GPTConfig  # vocab_size is filled in from the tokenizer before `build`
    build: Callable[[], RNNLM | GPT]
    carries_state: bool  # an RNN on sequential batches
    width: int  # the hidden width and the family tell `precision: auto` whether bf16 pays
    family: str
    what: str  # the model in errors: "the LSTM"
    title: str  # of the perplexity plot
    masked: bool = False  # masked-LM pretraining
    tokenizer: Tokenizer | None = None  # the one the starting run (--init) was trained with: the data must use it
    lora: LoRAConfig | None = None  # adapters only train (the model starts from a run: `init`)
    init: str = ""  # the run it starts from


def train_rnn(cfg: TrainRNNConfig, force: bool = False, resume: bool = False,
              on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Train an RNN language model; write the run directory; return a summary."""
    cfg.validate()
    cell = cfg.model.cell.upper()
    kind = Kind("train-rnn", cfg.model, lambda: RNNLM(cfg.model), cfg.sampling == "sequential",
                cfg.model.n_hidden, "rnn", f"the {cell}", f"{cell} language model")
    return train_lm(cfg, kind, force, resume, on_progress)


def train_transformer(cfg: TrainTransformerConfig, force: bool = False, resume: bool = False,
                      on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Train a GPT (or, with objective mlm, a masked-LM encoder); write the run directory; return a summary."""
    cfg.validate()
    start = _start(cfg) if cfg.init else None

    def build() -> GPT:
        model = start.model if start is not None else GPT(cfg.model)  # the run's model: no second copy
        if start is not None and cfg.lora.rank:  # adapters in, the rest frozen
            lm_lora.adapt(model, cfg.lora)
        if cfg.compile:
            model.forward = torch.compile(model.forward)  # type: ignore[method-assign]
        return model

    kind = Kind("train-transformer", cfg.model, build, False, cfg.model.n_embd, "transformer", "the Transformer",
                "Transformer language model", masked=cfg.objective == "mlm",
                tokenizer=start.tokenizer if start else None, lora=cfg.lora if cfg.lora.rank else None,
                init=cfg.init)
    return train_lm(cfg, kind, force, resume, on_progress)


def _start(cfg: TrainTransformerConfig) -> LMRun:
    """The run `cfg.init` names (a GPT of the same objective); its model shape becomes the config's."""
    start = open_run(cfg.init, "cpu")  # its model is the one `build` trains
    if not isinstance(start.model, GPT):
        raise InputError(f"{cfg.init}: --init needs a Transformer run (this is an RNN)")
    if start.model.cfg.causal != cfg.model.causal:
        raise ConfigError(f"objective: {cfg.objective} does not fit {cfg.init}, a "
                          f"{'causal' if start.model.cfg.causal else 'masked'} language model")
    if cfg.init_embeddings:
        raise ConfigError("init_embeddings: the model starts from --init's weights; give one or the other")
    default = GPTConfig()
    ignored = [f"model.{f.name}" for f in fields(GPTConfig) if f.name != "vocab_size"
               and getattr(cfg.model, f.name) not in (getattr(default, f.name), getattr(start.model.cfg, f.name))]
    if ignored:
        warnings.warn(DlcliWarning(f"{', '.join(ignored)}: ignored; the model's shape is {cfg.init}'s (--init)"),
                      stacklevel=1)
    cfg.model = start.model.cfg
    return start


class Feed:
    """Training batches in order, from any position: the epoch, the next batch in it, and an RNN's state
    carried from batch to batch (a new epoch starts it afresh)."""

    def __init__(self, batches: LMBatches, epoch: int = 0, batch: int = 0) -> None:
        self.batches, self.epoch, self.batch = batches, epoch, batch
        self.size = batches.num_batches(epoch)
        self.state: Hidden | None = None

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self.batch >= self.size:
            self.epoch, self.batch, self.state = self.epoch + 1, 0, None
            self.size = self.batches.num_batches(self.epoch)
        x, y = self.batches.batch(self.epoch, self.batch)
        self.batch += 1
        return x, y


def ppl(loss: float) -> float:
    return math.exp(min(loss, 50))


@rundir.removed_on_failure
def train_lm(cfg: LMConfig, kind: Kind, force: bool = False, resume: bool = False,
          on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Train the model `kind` builds on the loop; write the run directory; return a summary."""
    device, dist = distributed.setup_device(cfg.device)
    try:
        return _train(cfg, kind, device, dist, force, resume, on_progress)
    finally:
        distributed.cleanup(dist)


def _train(cfg: LMConfig, kind: Kind, device: torch.device, dist: Dist, force: bool, resume: bool,
           on_progress: OnProgress) -> dict[str, Any]:
    if cfg.batch_size % dist.world:
        raise ConfigError(f"batch_size {cfg.batch_size} does not divide by {dist.world} processes")
    prec = precision.resolve(cfg.precision, device, width=kind.width, family=kind.family)
    data = load_data(cfg.data, cfg.seq_len)
    tok = data.tokenizer
    if kind.tokenizer is not None and vocab_hash(tok) != vocab_hash(kind.tokenizer):
        raise InputError(f"{data.tokenizer_path}: the data's tokenizer differs from the one of {kind.init} (token "
                         "ids would not match; encode the data with its tokenizer.json)")
    kind.model.vocab_size = tok.get_vocab_size(with_added_tokens=True)
    run = Path(cfg.output)
    if resume:
        rundir.check_resume(run, cfg, cfg.RESUMABLE)

    seed_everything(cfg.seed)
    model = kind.build().to(device)
    model.eval()  # no dropout: the probe draws no random numbers
    precision.check_runs(prec, lambda: model(torch.zeros((1, 2), dtype=torch.long, device=device)), kind.what)
    model.train()
    batches = LMBatches(data.train, cfg.batch_size, cfg.seq_len, cfg.sampling, cfg.seed, dist.rank, dist.world)
    if batches.num_batches(0) == 0:  # before the run directory is made
        raise InputError(f"{cfg.data.train}: too few tokens for one batch of {cfg.batch_size} x {cfg.seq_len}")
    if dist.main:
        rundir.create(run, cfg, kind.stage, [cfg.data.train] + ([cfg.data.val] if cfg.data.val else []),
                      force=force, resume=resume, device=str(device), precision=prec.record())
        if Path(data.tokenizer_path).resolve() != (run / "tokenizer.json").resolve():
            shutil.copyfile(data.tokenizer_path, run / "tokenizer.json")
    if dist.enabled:
        torch.distributed.barrier()
    # a resumed run has its weights already
    coverage = load_pretrained(model, tok, cfg.init_embeddings) if cfg.init_embeddings and not resume else None
    mask_id, specials = mask_ids(tok, data.tokenizer_path) if kind.masked else (0, ())
    optimizer = build_optimizer(model, cfg.optim, device)
    resumed = None
    if resume:
        resumed, extra = checkpoint.load(run, model, optimizer, device, trainable_only=kind.lora is not None)
        feed = Feed(batches, resumed["epoch"], resumed["batch"])
        if extra:  # the state of every row of the batch; this process carries its own rows on
            full = state_from_tensors(extra)
            rows = batches.rows
            feed.state = tuple(t[:, rows].contiguous() for t in full) if isinstance(full, tuple) else \
                full[:, rows].contiguous()
    else:
        feed = Feed(batches)
    if feed.size == 0:
        raise InputError(f"{cfg.data.train}: too few tokens for one batch of {cfg.batch_size} x {cfg.seq_len}")
    net = DDP(model) if dist.enabled else model
    budget = cfg.budget(feed.size / cfg.grad_accum)
    tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum
    t0, before = time.perf_counter(), (resumed or {}).get("elapsed", 0.0)
    window_steps = 0  # steps since the last log record (for tokens/s)

    def step(done: int) -> Update:
        nonlocal window_steps
        # the cosine decays over the steps after the warm-up
        frac = budget.fraction(done, before + time.perf_counter() - t0, start=cfg.optim.warmup_steps)
        set_lr(optimizer, lr := lr_at(done, cfg.optim, frac))
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            x, y = feed.next()
            xb = torch.from_numpy(x).to(device, non_blocking=True)
            yb = torch.from_numpy(y).to(device, non_blocking=True)
            if kind.masked:
                xb, yb = mask_tokens(xb, mask_id, kind.model.vocab_size, special_ids=specials)
            # gradients are averaged across processes only on the last micro-batch
            sync = net.no_sync() if dist.enabled and micro < cfg.grad_accum - 1 else contextlib.nullcontext()
            with sync:
                with prec.autocast():
                    _, loss, h = net(xb, feed.state, yb)
                (loss / cfg.grad_accum).backward()
            feed.state = detach(h) if kind.carries_state else None
            loss_sum += loss.detach() / cfg.grad_accum
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        window_steps += 1
        return Update(loss_sum, info={"epoch": feed.epoch, "lr": lr})

    def saved() -> Saved:
        state = gathered(feed.state, dist) if kind.carries_state and feed.state is not None else {}
        return Saved(model, optimizer, {"epoch": feed.epoch, "batch": feed.batch}, state, kind.lora is not None)

    def evaluate(done: int) -> dict[str, float]:
        if kind.masked:
            assert isinstance(model, GPT)
            r = evaluate_mlm(model, data.val, cfg.batch_size, cfg.seq_len, device, mask_id, specials,
                             on_progress=on_progress)
            return {"val_loss": r["loss"], "val_ppl": ppl(r["loss"]), "val_masked_accuracy": r["accuracy"],
                    "val_majority_accuracy": r["majority_accuracy"]}
        loss, _ = evaluate_ids(model, data.val, cfg.batch_size, cfg.seq_len, device, prec, on_progress)
        return {"val_loss": loss, "val_ppl": ppl(loss)}

    def plots(history: list[dict[str, Any]]) -> None:
        plot_curves(history, run / "perplexity.png", {"ppl": "train", "val_ppl": "validation"}, "perplexity",
                    kind.title, log_y=True)

    def record(rec: dict[str, Any], seconds: float) -> dict[str, Any]:
        nonlocal window_steps
        tps = window_steps * tokens_per_step / max(seconds, 1e-9)
        window_steps = 0
        return {"step": rec["step"], "epoch": rec["epoch"], "lr": rec["lr"], "loss": rec["loss"],
                "ppl": ppl(rec["loss"]), "tokens_per_s": tps, "elapsed": rec["elapsed"], "precision": prec.used}

    def show(rec: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, Any]:
        bar = {"loss": rec["loss"], "ppl": rec["ppl"], "tok/s": int(rec["tokens_per_s"])}
        val = last_eval.get("val_loss")
        if isinstance(val, float) and math.isfinite(val):
            bar["val_ppl"] = ppl(val)
        return bar

    stage = Stage("train", step, saved, evaluate=evaluate, plots=plots, record=record, show=show,
                  hint="try a lower optim.lr or optim.grad_clip")
    model.train()
    result = fit(stage, run, budget, cfg.every(), dist, on_progress, resumed)
    t_saved = time.perf_counter()
    if dist.main and kind.lora is not None:
        lm_lora.write(run, model, kind.lora, kind.init)
    elif dist.main:
        rundir.save_tensors(model.state_dict(), run / "model.safetensors")
    final = result.final_seconds + time.perf_counter() - t_saved  # outside --max-time: evaluation and saving
    val_loss = result.last_eval.get("val_loss", math.nan)
    return {"run": str(run), "steps": result.steps, "epochs": feed.epoch + feed.batch / max(1, feed.size),
            "val_loss": val_loss, "val_ppl": ppl(val_loss), "elapsed": result.elapsed - result.final_seconds + final,
            "train_seconds": result.elapsed - result.final_seconds, "final_seconds": final,
            "tokens": result.steps * tokens_per_step, "params": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "init_embeddings": coverage, "precision": prec.describe()}


def gathered(state: Hidden, dist: Dist) -> dict[str, torch.Tensor]:
    """An RNN's state for every row of the batch (each process holds its own rows), as checkpoint tensors.
    Every process must call it: the rows are gathered."""
    parts = state if isinstance(state, tuple) else (state,)
    if dist.enabled:
        whole = []
        for t in parts:
            bufs = [torch.empty_like(t) for _ in range(dist.world)]
            torch.distributed.all_gather(bufs, t.contiguous())
            whole.append(torch.cat(bufs, dim=1))
        parts = tuple(whole)
    return state_tensors((parts[0], parts[1]) if len(parts) == 2 else parts[0])
