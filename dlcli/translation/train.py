"""Training a translation model: `dlcli train-transformer --task translate`.

setup (read and check the TSV, hold out pairs, tokenizers, encode) -> the loop
(length-bucketed batches, teacher forcing, label smoothing, BLEU on held-out
pairs every eval_interval steps, checkpoints, DDP) -> BLEU on all held-out
pairs (sacrebleu) -> save.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.core import precision, rundir
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError
from dlcli.models.seq2seq import Seq2SeqConfig
from dlcli.train.optim import OptimConfig
from dlcli.translation import data as pdata
from dlcli.translation.data import ParallelData

RESUMABLE = ("max_steps", "epochs", "max_time", "eval_interval", "bleu_sample", "log_interval",
             "checkpoint_interval", "device")


def _optim() -> OptimConfig:
    return OptimConfig(lr=1e-3, weight_decay=0.01, beta1=0.9, beta2=0.98, warmup_steps=400, min_lr_ratio=0.05)


@dataclass
class TrainTranslateConfig:
    output: str = "runs/translate"
    data: ParallelData = field(default_factory=ParallelData)
    model: Seq2SeqConfig = field(default_factory=lambda: Seq2SeqConfig(share_embeddings=True))
    optim: OptimConfig = field(default_factory=_optim)
    batch_size: int = 128  # sentence pairs per step, over all processes
    label_smoothing: float = 0.1
    max_steps: int = 0
    epochs: float = 0.0
    max_time: str = "20m"
    log_interval: int = 20
    eval_interval: int = 500  # steps between held-out loss and BLEU (0 = only at the end)
    bleu_sample: int = 200  # held-out pairs translated (greedy) for BLEU during training
    checkpoint_interval: int = 500  # steps (0 = only at the end and on Ctrl-C)
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto: bf16 only where native and the model is wide enough)
    seed: int = 1337
    device: str = "auto"
    strict: bool = False  # sentences longer than model.max_len: error instead of truncating

    def validate(self) -> None:
        self.data.validate()
        if self.model.n_embd % self.model.n_head:
            raise ConfigError(f"model.n_head: {self.model.n_head} heads do not divide model.n_embd "
                              f"{self.model.n_embd}")
        if self.model.share_embeddings and not self.data.shared_vocab and not self.data.src_tokenizer:
            raise ConfigError("model.share_embeddings needs one vocabulary for both sides: set data.shared_vocab "
                              "true or model.share_embeddings false")
        if not (self.max_steps or self.epochs or self.max_time):
            raise ConfigError("no budget: set max_steps, epochs or max_time")
        precision.check_name(self.precision)
        self.optim.validate()


@rundir.removed_on_failure
def train(cfg: TrainTranslateConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress = nothing) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    from dlcli.core.runtime import parse_duration, seed_everything
    from dlcli.errors import TrainingDiverged
    from dlcli.models.seq2seq import Seq2Seq
    from dlcli.train import checkpoint, distributed
    from dlcli.train.optim import apply_gradients, build_optimizer, lr_at, set_lr
    from dlcli.train.plots import plot_curves
    from dlcli.translation.bleu import bleu
    from dlcli.translation.run import TranslationRun, evaluate_run, translate_normalized

    cfg.validate()
    device, dist = distributed.setup_device(cfg.device)
    prec = precision.resolve(cfg.precision, device, width=cfg.model.n_embd)
    pairs = pdata.read_pairs(cfg.data.tsv, cfg.data.normalize, cfg.data.limit)
    train_pairs, test_pairs = pdata.split_held_out(pairs, cfg.data.held_out, cfg.seed)
    run = Path(cfg.output)

    # tokenizers: the run's own on --resume; otherwise the main process trains (or loads) them
    if resume or not dist.main:
        if not resume:
            torch.distributed.barrier()  # wait for the main process to write them
        toks = pdata.load_run_tokenizers(run)
    else:
        rundir.create(run, cfg, "translate", [cfg.data.tsv], force=force)
        toks = pdata.make_tokenizers(cfg.data, train_pairs)
    cfg.model.src_vocab_size = toks.src.get_vocab_size()
    cfg.model.tgt_vocab_size = toks.tgt.get_vocab_size()
    cfg.model.pad_id = toks.pad
    if cfg.model.share_embeddings and not toks.shared:
        raise ConfigError("model.share_embeddings needs one tokenizer for both sides; set it false")
    if resume:
        rundir.check_resume(run, cfg, RESUMABLE)
    if dist.main:
        rundir.create(run, cfg, "translate", [cfg.data.tsv], resume=True,  # records the filled-in sizes
                      device=str(device), precision=prec.record())
        if not resume:
            toks.save(run)
            with open(run / "heldout.tsv", "w", encoding="utf-8") as f:
                f.writelines(f"{s}\t{t}\n" for s, t in test_pairs)
            if dist.enabled:
                torch.distributed.barrier()
    ml = cfg.model.max_len
    src_ids, cut_s = pdata.encode_sentences(toks.src, [s for s, _ in train_pairs], ml, cfg.strict, "source")
    tgt_ids, cut_t = pdata.encode_sentences(toks.tgt, [t for _, t in train_pairs], ml, cfg.strict, "target")
    sample = test_pairs[: cfg.bleu_sample]
    val_src = pdata.encode_sentences(toks.src, [s for s, _ in sample], ml, False, "held-out source")[0]
    val_tgt = pdata.encode_sentences(toks.tgt, [t for _, t in sample], ml, False, "held-out target")[0]

    seed_everything(cfg.seed)
    model = Seq2Seq(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.optim, device)
    step, epoch, batch_i, elapsed_before = 0, 0, 0, 0.0
    if resume:
        state, _ = checkpoint.load(run, model, optimizer, device)
        step, epoch, batch_i, elapsed_before = state["step"], state["epoch"], state["batch"], state["elapsed"]
    net = DDP(model) if dist.enabled else model
    lengths = [len(x) for x in src_ids]
    n_batches = math.ceil(len(src_ids) / cfg.batch_size)
    budget = min(s for s in (cfg.max_steps, int(cfg.epochs * n_batches)) if s) if (cfg.max_steps or cfg.epochs) else 0
    max_time = parse_duration(cfg.max_time) if cfg.max_time else 0.0
    metrics = rundir.MetricsLog(run) if dist.main else None
    history = rundir.read_metrics(run) if resume and dist.main else []
    t0 = time.perf_counter()
    window, wt = 0, t0
    loss_sum = torch.zeros((), device=device)
    last_good = step if resume else -1
    val: dict[str, float] = {}

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def epoch_batches(e: int) -> list[list[int]]:
        return pdata.bucket_batches(lengths, cfg.batch_size, random.Random(cfg.seed + e))

    def batch_tensors(src_rows: list[list[int]], tgt_rows: list[list[int]]) -> tuple[Any, Any, Any]:
        src = pdata.pad([r + [toks.eos] for r in src_rows], toks.pad).to(device)
        tgt_in = pdata.pad([[toks.bos] + r for r in tgt_rows], toks.pad).to(device)  # teacher forcing: shifted right
        tgt_out = pdata.pad([r + [toks.eos] for r in tgt_rows], toks.pad).to(device)
        return src, tgt_in, tgt_out

    def save_checkpoint() -> None:
        nonlocal last_good
        if dist.main:
            checkpoint.save(run, model, optimizer, {"step": step, "epoch": epoch, "batch": batch_i,
                                                    "elapsed": elapsed()})
        last_good = step

    def check_finite(value: float) -> None:
        if not math.isfinite(value):
            kept = f"the last good checkpoint (step {last_good}) is kept" if last_good > 0 else \
                "no checkpoint had been saved yet"
            raise TrainingDiverged(f"loss became {value} at step {step}; {kept}; try a lower optim.lr")

    def evaluate() -> None:
        """Held-out loss (teacher forcing, no smoothing) and greedy BLEU on `bleu_sample` pairs."""
        if not dist.main or not sample:
            return
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(val_src), 64):
                src, tgt_in, tgt_out = batch_tensors(val_src[i: i + 64], val_tgt[i: i + 64])
                logits, _ = model(src, tgt_in)
                total += float(F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), reduction="sum",
                                               ignore_index=toks.pad))
                count += int((tgt_out != toks.pad).sum())
        hyp, _ = translate_normalized(TranslationRun(model, toks, cfg, device), [s for s, _ in sample])
        model.train()
        val.update(val_loss=total / count, val_bleu=bleu(hyp, [t for _, t in sample])[0])
        assert metrics is not None
        metrics.log(step=step, **val)
        history.append({"step": step, **val})
        plot_curves(history, run / "bleu.png", {"val_bleu": f"held-out BLEU ({len(sample)} pairs, greedy)"},
                    "BLEU", "translation")

    def close() -> None:
        if metrics is not None:
            metrics.close()
        distributed.cleanup(dist)

    model.train()
    batches = epoch_batches(epoch)
    with checkpoint.saved_on_interrupt(run, lambda: step, save_checkpoint, close):
        while True:
            if budget and step >= budget:
                break
            if max_time and distributed.any_flag(dist, elapsed() >= max_time):
                break
            if batch_i >= len(batches):
                epoch, batch_i = epoch + 1, 0
                batches = epoch_batches(epoch)
            batch = batches[batch_i]
            batch_i += 1
            if len(batch) < dist.world:  # a tail batch too small to share
                continue
            mine = batch[dist.rank:: dist.world]
            progress = step / budget if budget else (elapsed() / max_time if max_time else None)
            set_lr(optimizer, lr := lr_at(step, cfg.optim, progress))
            src, tgt_in, tgt_out = batch_tensors([src_ids[i] for i in mine], [tgt_ids[i] for i in mine])
            # the loss is a mean over the batch's target tokens on all processes together, so that DDP's
            # gradient average gives the single-process gradient
            n_tok = (tgt_out != toks.pad).sum().float()
            if dist.enabled:
                torch.distributed.all_reduce(n_tok)
            with prec.autocast():
                logits, _ = net(src, tgt_in)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=toks.pad,
                                   label_smoothing=cfg.label_smoothing, reduction="sum") * dist.world / n_tok
            apply_gradients(model, optimizer, loss, cfg.optim.grad_clip)
            step += 1
            window += 1
            loss_sum += loss.detach() / dist.world
            last = budget and step >= budget
            if step % cfg.log_interval == 0 or last:
                if dist.enabled:
                    torch.distributed.all_reduce(loss_sum)
                mean = float(loss_sum) / window
                check_finite(mean)
                now = time.perf_counter()
                rec = {"step": step, "epoch": epoch, "lr": lr, "loss": mean,
                       "sentences_per_s": window * cfg.batch_size / max(now - wt, 1e-9), "elapsed": elapsed(),
                       "precision": prec.used}
                if dist.main:
                    assert metrics is not None
                    metrics.log(**rec)
                    history.append(rec)
                    show = {"loss": mean, "sent/s": int(rec["sentences_per_s"])}
                    if "val_bleu" in val:
                        show["bleu"] = val["val_bleu"]
                    total = budget or (int(step * max_time / max(elapsed(), 1e-9)) if max_time else None)
                    on_progress(Tick("train", step, total, unit="step", metrics=show))
                loss_sum.zero_()
                window, wt = 0, now
            if cfg.eval_interval and step % cfg.eval_interval == 0 and not last:
                evaluate()
            if cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0:
                save_checkpoint()

    save_checkpoint()
    result: dict[str, Any] = {}
    if dist.main:
        assert metrics is not None
        rundir.save_tensors(model.state_dict(), run / "model.safetensors")
        plot_curves(history, run / "loss.png", {"loss": "train (label-smoothed)", "val_loss": "held-out"}, "loss",
                    "translation")
        result = evaluate_run(run, device=str(device))
        metrics.log(step=step, **{k: v for k, v in result.items() if isinstance(v, (int, float))})
        metrics.close()
        result.update({"run": str(run), "steps": step, "epochs": epoch + batch_i / max(1, len(batches)),
                       "pairs": len(train_pairs), "truncated": cut_s + cut_t, "elapsed": elapsed(),
                       "precision": prec.describe()})
        (run / "bleu.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    distributed.cleanup(dist)
    return result
