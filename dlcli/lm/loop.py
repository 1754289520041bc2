"""The language-model training loop shared by `train-rnn` and `train-transformer`.

setup (data, model, optimizer, resume) -> the loop -> evaluate -> save. The
loop is one function: read a batch, forward, backward (over `grad_accum`
micro-batches), clip, step; log, evaluate, checkpoint and check the budget on
their intervals. A model is any nn.Module with
`forward(idx, state, targets) -> (logits, loss, state)`; models whose
`carries_state` is True (RNNs) get their state carried across sequential
batches.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core import rundir
from dlcli.core.idfile import IdFile
from dlcli.core.precision import Precision, check_name
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import parse_duration
from dlcli.errors import ConfigError, InputError

# Keys that may change when resuming (budgets, intervals, where it runs).
RESUMABLE = ("max_steps", "epochs", "max_time", "eval_interval", "log_interval", "checkpoint_interval", "device")


@dataclass
class DataConfig:
    train: str = ""  # id file from `dlcli vocab encode`
    val: str | None = None  # separate validation id file; else the last val_fraction of train
    val_fraction: float = 0.1
    tokenizer: str | None = None  # default: the tokenizer named in the id file's sidecar


def check_common(cfg: Any) -> None:
    """Checks every LM training config shares."""
    if not cfg.data.train:
        raise ConfigError("data.train: give an id file to train on (from 'dlcli vocab encode')")
    check_name(cfg.precision)
    if min(cfg.batch_size, cfg.seq_len, cfg.grad_accum) < 1:
        raise ConfigError("batch_size, seq_len and grad_accum must be >= 1")
    if not 0 < cfg.data.val_fraction < 1 and cfg.data.val is None:
        raise ConfigError("data.val_fraction: must be between 0 and 1")
    if cfg.max_time:
        parse_duration(cfg.max_time)
    if not (cfg.max_steps or cfg.epochs or cfg.max_time):
        raise ConfigError("no budget: set max_steps, epochs or max_time")
    cfg.optim.validate()


def load_data(cfg: Any) -> tuple[Any, str, np.ndarray, np.ndarray]:
    """Tokenizer (checked against the ids), its path, train ids, validation ids."""
    from dlcli.text import vocabulary

    train = IdFile.open(cfg.data.train)
    tok_path = cfg.data.tokenizer or train.meta.get("tokenizer")
    if not tok_path:
        raise ConfigError(f"{cfg.data.train}: no tokenizer recorded; give data.tokenizer")
    if cfg.data.tokenizer is None and not Path(tok_path).is_absolute():
        # the sidecar names it as given to `vocab encode`: relative to where that ran, or beside the ids
        beside = train.path.parent / Path(tok_path).name
        tok_path = str(beside) if not Path(tok_path).exists() and beside.exists() else tok_path
    tok = vocabulary.load(tok_path)
    vhash = vocabulary.vocab_hash(tok)
    train.check_vocab(vhash, str(tok_path))
    ids = train.ids
    if cfg.data.val:
        val_file = IdFile.open(cfg.data.val)
        val_file.check_vocab(vhash, str(tok_path))
        train_ids, val_ids = ids, val_file.ids
    else:
        n = int(len(ids) * (1 - cfg.data.val_fraction))
        train_ids, val_ids = ids[:n], ids[n:]
    need = cfg.seq_len + 2
    if len(train_ids) < need:
        raise InputError(f"{cfg.data.train}: {len(train_ids)} training tokens is shorter than one sequence "
                         f"(seq_len {cfg.seq_len} + 1)")
    if len(val_ids) < 2:
        raise InputError(f"{cfg.data.val or cfg.data.train}: too few validation tokens ({len(val_ids)})")
    return tok, str(tok_path), train_ids, val_ids


def evaluate_mlm(model: Any, ids: np.ndarray, batch_size: int, seq_len: int, device: Any, mask_id: int,
                 special_ids: tuple[int, ...] = (), seed: int = 0) -> dict[str, Any]:
    """Masked-token loss and accuracy on `ids` with a fixed masking, beside the
    accuracy of always guessing the most frequent masked token."""
    import torch
    import torch.nn.functional as F

    from dlcli.lm.data import eval_streams
    from dlcli.lm.mlm import IGNORE, mask_tokens

    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    total, correct, count = 0.0, 0, 0
    seen: list[torch.Tensor] = []
    with torch.no_grad():
        for x, _ in eval_streams(ids, batch_size, seq_len):
            xb, yb = mask_tokens(torch.from_numpy(x), mask_id, model.cfg.vocab_size, g, special_ids=special_ids)
            logits, _, _ = model(xb.to(device))
            m = yb != IGNORE
            if not m.any():
                continue
            picked, target = logits.float().cpu()[m], yb[m]
            total += float(F.cross_entropy(picked, target, reduction="sum"))
            correct += int((picked.argmax(-1) == target).sum())
            count += int(m.sum())
            seen.append(target)
    model.train(was_training)
    targets = torch.cat(seen) if seen else torch.zeros(0, dtype=torch.long)
    majority = int(torch.bincount(targets).max()) if count else 0
    return {"loss": total / max(1, count), "accuracy": correct / max(1, count),
            "majority_accuracy": majority / max(1, count), "masked": count}


def evaluate_ids(model: Any, ids: np.ndarray, batch_size: int, seq_len: int, device: Any,
                 precision: Precision | None = None) -> tuple[float, int]:
    """Mean cross-entropy (nats/token) over `ids`, carrying state across batches."""
    import torch
    import torch.nn.functional as F

    from dlcli.lm.data import eval_streams

    was_training = model.training
    model.eval()
    total, count, h = 0.0, 0, None
    with torch.no_grad():
        for x, y in eval_streams(ids, batch_size, seq_len):
            state = h if getattr(model, "carries_state", True) else None
            with precision.autocast() if precision else contextlib.nullcontext():
                logits, _, h = model(torch.from_numpy(x).to(device), state)
            logits = logits.float()
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), torch.from_numpy(y).to(device).reshape(-1),
                                   reduction="sum")
            total += float(loss)
            count += y.size
    model.train(was_training)
    return total / max(1, count), count


@rundir.removed_on_failure
def fit(cfg: Any, stage: str, build_model: Callable[[], Any], title: str, force: bool = False,
        resume: bool = False, on_progress: OnProgress = nothing, width: int | None = None,
        family: str = "transformer", what: str = "the model") -> dict[str, Any]:
    """Train the model `build_model()` makes; write the run directory; return a summary.
    `width` (the model's hidden width) and `family` ("rnn", "transformer") tell `precision: auto`
    whether bf16 pays; `what` names the model in errors ("the LSTM")."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from dlcli.core import precision
    from dlcli.core.runtime import seed_everything
    from dlcli.errors import TrainingDiverged
    from dlcli.lm.data import LMBatches
    from dlcli.models.rnn import detach, state_from_tensors, state_tensors
    from dlcli.train import checkpoint, distributed
    from dlcli.train.optim import build_optimizer, lr_at, set_lr
    from dlcli.train.plots import plot_curves

    cfg.validate()
    device, dist = distributed.setup_device(cfg.device)
    if cfg.batch_size % dist.world:
        raise ConfigError(f"batch_size {cfg.batch_size} does not divide by {dist.world} processes")
    prec = precision.resolve(cfg.precision, device, width=width, family=family)
    tok, tok_path, train_ids, val_ids = load_data(cfg)
    cfg.model.vocab_size = tok.get_vocab_size(with_added_tokens=True)
    run = Path(cfg.output)
    if resume:
        rundir.check_resume(run, cfg, RESUMABLE)

    seed_everything(cfg.seed)
    model = build_model().to(device)
    model.eval()  # no dropout: the probe draws no random numbers
    precision.check_runs(prec, lambda: model(torch.zeros((1, 2), dtype=torch.long, device=device)), what)
    model.train()
    if dist.main:
        rundir.create(run, cfg, stage, [cfg.data.train] + ([cfg.data.val] if cfg.data.val else []),
                      force=force, resume=resume, device=str(device), precision=prec.record())
        if Path(tok_path).resolve() != (run / "tokenizer.json").resolve():
            shutil.copyfile(tok_path, run / "tokenizer.json")
    if dist.enabled:
        torch.distributed.barrier()
    coverage = None
    if getattr(cfg, "init_embeddings", "") and not resume:  # a resumed run has its weights already
        from dlcli.lm.embeddings import load_pretrained

        coverage = load_pretrained(model, tok, cfg.init_embeddings)
    optimizer = build_optimizer(model, cfg.optim, device)
    batches = LMBatches(train_ids, cfg.batch_size, cfg.seq_len, cfg.sampling, cfg.seed, dist.rank, dist.world)
    step, epoch, batch_i, elapsed_before = 0, 0, 0, 0.0
    h = None
    if resume:
        state, extra = checkpoint.load(run, model, optimizer, device)
        step, epoch, batch_i = state["step"], state["epoch"], state["batch"]
        elapsed_before = state.get("elapsed", 0.0)
        if extra:
            full = state_from_tensors(extra)
            rows = batches.rows
            h = tuple(t[:, rows].contiguous() for t in full) if isinstance(full, tuple) else full[:, rows].contiguous()
    net = DDP(model) if dist.enabled else model

    nb = batches.num_batches(epoch)
    if nb == 0:
        raise InputError(f"{cfg.data.train}: too few tokens for one batch of {cfg.batch_size} x {cfg.seq_len}")
    budget_steps = min(s for s in (cfg.max_steps, int(cfg.epochs * nb / cfg.grad_accum) if cfg.epochs else 0) if s) if (
        cfg.max_steps or cfg.epochs) else 0
    max_time = parse_duration(cfg.max_time) if cfg.max_time else 0.0
    tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum
    carry = cfg.sampling == "sequential" and getattr(model, "carries_state", True)
    mlm, specials = None, ()
    if getattr(cfg, "objective", "clm") == "mlm":
        from dlcli.lm.mlm import mask_tokens

        mlm = tok.token_to_id("<mask>")
        if mlm is None:
            raise InputError(f"{tok_path}: masked-LM pretraining needs a <mask> token; build the vocabulary with "
                             "--special '<mask>'")
        specials = tuple(i for t in tok.get_added_tokens_decoder().values() if (i := tok.token_to_id(t.content))
                         is not None)
    metrics = rundir.MetricsLog(run) if dist.main else None
    history = rundir.read_metrics(run) if resume and dist.main else []
    t0 = time.perf_counter()
    window_t, window_steps = t0, 0
    loss_sum = torch.zeros((), device=device)
    last_good = step if resume else -1
    val_loss = math.nan

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def progress() -> float | None:
        if budget_steps:
            span = max(1, budget_steps - cfg.optim.warmup_steps)
            return (step - cfg.optim.warmup_steps) / span
        return elapsed() / max_time if max_time else None

    def hidden_full() -> dict[str, torch.Tensor]:
        if h is None or not carry:
            return {}
        parts = h if isinstance(h, tuple) else (h,)
        if dist.enabled:
            gathered = []
            for t in parts:
                bufs = [torch.empty_like(t) for _ in range(dist.world)]
                torch.distributed.all_gather(bufs, t.contiguous())
                gathered.append(torch.cat(bufs, dim=1))
            parts = tuple(gathered)
        return state_tensors(parts if len(parts) == 2 else parts[0])  # type: ignore[arg-type]

    def save_checkpoint() -> None:
        nonlocal last_good
        hid = hidden_full()  # every rank joins the gather
        if dist.main:
            checkpoint.save(run, model, optimizer, {"step": step, "epoch": epoch, "batch": batch_i,
                                                    "elapsed": elapsed()}, hid)
        last_good = step

    def check_finite(value: float) -> None:
        if not math.isfinite(value):
            kept = f"the last good checkpoint (step {last_good}) is kept" if last_good > 0 else \
                "no checkpoint had been saved yet"
            raise TrainingDiverged(f"loss became {value} at step {step}; {kept}; try a lower optim.lr "
                                   "or optim.grad_clip")

    def evaluate() -> float:
        nonlocal val_loss
        if dist.main:
            if mlm is not None:
                r = evaluate_mlm(model, val_ids, cfg.batch_size, cfg.seq_len, device, mlm, specials)
                val_loss = r["loss"]
                rec = {"step": step, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50)),
                       "val_masked_accuracy": r["accuracy"], "val_majority_accuracy": r["majority_accuracy"]}
            else:
                val_loss, _ = evaluate_ids(model, val_ids, cfg.batch_size, cfg.seq_len, device, prec)
                rec = {"step": step, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))}
            assert metrics is not None
            metrics.log(**rec)
            history.append(rec)
            plot_curves(history, run / "perplexity.png", {"ppl": "train", "val_ppl": "validation"},
                        "perplexity", title, log_y=True)
        return val_loss

    def close() -> None:
        if metrics is not None:
            metrics.close()
        distributed.cleanup(dist)

    def never_diverged() -> bool:
        return math.isfinite(float(loss_sum) if window_steps else 0.0)

    model.train()
    with checkpoint.saved_on_interrupt(run, lambda: step, save_checkpoint, close, never_diverged):
        while True:
            if budget_steps and step >= budget_steps:
                break
            if max_time and distributed.any_flag(dist, elapsed() >= max_time):
                break
            set_lr(optimizer, lr := lr_at(step, cfg.optim, progress()))
            optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                if batch_i >= nb:
                    epoch, batch_i, h = epoch + 1, 0, None
                    nb = batches.num_batches(epoch)
                x, y = batches.batch(epoch, batch_i)
                xb = torch.from_numpy(x).to(device, non_blocking=True)
                yb = torch.from_numpy(y).to(device, non_blocking=True)
                # gradients are averaged across processes only on the last micro-batch
                sync = contextlib.nullcontext() if not dist.enabled or micro == cfg.grad_accum - 1 else net.no_sync()
                if mlm is not None:
                    xb, yb = mask_tokens(xb, mlm, cfg.model.vocab_size, special_ids=specials)
                with sync:
                    with prec.autocast():
                        _, loss, h = net(xb, h if carry else None, yb)
                    (loss / cfg.grad_accum).backward()
                h = detach(h) if carry else None
                step_loss += loss.detach() / cfg.grad_accum
                batch_i += 1
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            step += 1
            loss = step_loss
            loss_sum += loss.detach()
            window_steps += 1
            last = budget_steps and step >= budget_steps
            if step % cfg.log_interval == 0 or last:
                mean = float(loss_sum) / window_steps
                check_finite(mean)
                now = time.perf_counter()
                tps = window_steps * tokens_per_step / max(now - window_t, 1e-9)
                rec = {"step": step, "epoch": epoch, "lr": lr, "loss": mean, "ppl": math.exp(min(mean, 50)),
                       "tokens_per_s": tps, "elapsed": elapsed(), "precision": prec.used}
                if dist.main:
                    assert metrics is not None
                    metrics.log(**rec)
                    history.append(rec)
                    show = {"loss": mean, "ppl": rec["ppl"], "tok/s": int(tps)}
                    if math.isfinite(val_loss):
                        show["val_ppl"] = math.exp(min(val_loss, 50))
                    total = budget_steps or (int(step * max_time / max(elapsed(), 1e-9)) if max_time else None)
                    on_progress(Tick("train", step, total, unit="step", metrics=show))
                loss_sum.zero_()
                window_t, window_steps = now, 0
            if cfg.eval_interval and step % cfg.eval_interval == 0 and not last:
                evaluate()
            if cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0:
                check_finite(float(loss_sum))  # never checkpoint diverged weights
                save_checkpoint()

    save_checkpoint()
    evaluate()
    if dist.main:
        rundir.save_tensors(model.state_dict(), run / "model.safetensors")
        assert metrics is not None
        metrics.close()
    distributed.cleanup(dist)
    return {"run": str(run), "steps": step, "epochs": epoch + batch_i / max(1, nb), "val_loss": val_loss,
            "val_ppl": math.exp(min(val_loss, 50)), "elapsed": elapsed(), "tokens": step * tokens_per_step,
            "params": sum(p.numel() for p in model.parameters()), "init_embeddings": coverage,
            "precision": prec.describe()}
