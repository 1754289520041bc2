"""Training a translation model: `dlcli train-transformer --task translate`.

setup (read and check the TSV, hold out pairs, tokenizers, encode) -> the shared loop
(`train.loop.fit`: length-bucketed batches, teacher forcing, label smoothing, held-out loss
and BLEU on `bleu_sample` pairs every eval_interval steps, checkpoints, DDP) -> BLEU on all
held-out pairs (sacrebleu) -> save.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from dlcli.core import precision, rundir
from dlcli.core.progress import OnProgress, nothing
from dlcli.core.runtime import seed_everything
from dlcli.errors import ConfigError
from dlcli.models.seq2seq import Seq2Seq
from dlcli.train import checkpoint, distributed
from dlcli.train.loop import Saved, Stage, Update, fit
from dlcli.train.optim import apply_gradients, build_optimizer, lr_at, set_lr
from dlcli.train.plots import plot_curves
from dlcli.translation import data as pdata
from dlcli.translation.bleu import bleu, detokenize
from dlcli.translation.config import TrainTranslateConfig
from dlcli.translation.run import TranslationRun, held_out_bleu, translate_normalized


@rundir.removed_on_failure
def train(cfg: TrainTranslateConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress = nothing) -> dict[str, Any]:
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
        rundir.check_output(run, "translate", force)  # before the tokenizers are trained; made below
        toks = pdata.make_tokenizers(cfg.data, train_pairs)
    cfg.model.src_vocab_size = toks.src.get_vocab_size()
    cfg.model.tgt_vocab_size = toks.tgt.get_vocab_size()
    cfg.model.pad_id = toks.pad
    if cfg.model.share_embeddings and not toks.shared:
        raise ConfigError("model.share_embeddings needs one tokenizer for both sides; set it false")
    if resume:
        rundir.check_resume(run, cfg, cfg.RESUMABLE)
    ml = cfg.model.max_len  # the sentences are checked (strict) before the run directory is made
    src_ids, cut_s = pdata.encode_sentences(toks.src, [s for s, _ in train_pairs], ml, cfg.strict, "source")
    tgt_ids, cut_t = pdata.encode_sentences(toks.tgt, [t for _, t in train_pairs], ml, cfg.strict, "target")
    if dist.main:
        rundir.create(run, cfg, "translate", [cfg.data.tsv], force=force, resume=resume,  # with the filled-in sizes
                      device=str(device), precision=prec.record())
        if not resume:
            toks.save(run)
            with open(run / "heldout.tsv", "w", encoding="utf-8") as f:
                f.writelines(f"{s}\t{t}\n" for s, t in test_pairs)
            if dist.enabled:
                torch.distributed.barrier()
    sample = test_pairs[: cfg.bleu_sample]
    val_src = pdata.encode_sentences(toks.src, [s for s, _ in sample], ml, False, "held-out source")[0]
    val_tgt = pdata.encode_sentences(toks.tgt, [t for _, t in sample], ml, False, "held-out target")[0]

    seed_everything(cfg.seed)
    model = Seq2Seq(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.optim, device)
    epoch, batch_i = 0, 0
    resumed = None
    if resume:
        state, _ = checkpoint.load(run, model, optimizer, device)
        epoch, batch_i = state["epoch"], state["batch"]
        # checkpoints from before the shared loop have no last_eval: they were written after their step's evaluation
        resumed = {"last_eval": {"step": state["step"]}, **state}
    net = DDP(model) if dist.enabled else model
    lengths = [len(x) for x in src_ids]
    n_batches = math.ceil(len(src_ids) / cfg.batch_size)
    budget = cfg.budget(n_batches)
    t0, elapsed_before = time.perf_counter(), (resumed or {}).get("elapsed", 0.0)
    logged = (resumed or {}).get("step", 0)  # the step of the last log record (sentences/s over the window)

    def epoch_batches(e: int) -> list[list[int]]:
        return pdata.bucket_batches(lengths, cfg.batch_size, random.Random(cfg.seed + e))

    batches = epoch_batches(epoch)

    def batch_tensors(src_rows: list[list[int]], tgt_rows: list[list[int]]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = pdata.pad([r + [toks.eos] for r in src_rows], toks.pad).to(device)
        tgt_in = pdata.pad([[toks.bos] + r for r in tgt_rows], toks.pad).to(device)  # teacher forcing: shifted right
        tgt_out = pdata.pad([r + [toks.eos] for r in tgt_rows], toks.pad).to(device)
        return src, tgt_in, tgt_out

    def next_batch() -> list[int]:
        """The next length bucket of the epoch (a new shuffle each epoch), skipping a tail batch too
        small to share between the processes."""
        nonlocal epoch, batch_i, batches
        while True:
            if batch_i >= len(batches):
                epoch, batch_i = epoch + 1, 0
                batches = epoch_batches(epoch)
            batch = batches[batch_i]
            batch_i += 1
            if len(batch) >= dist.world:
                return batch

    def step(done: int) -> Update:
        mine = next_batch()[dist.rank:: dist.world]
        frac = budget.fraction(done, elapsed_before + time.perf_counter() - t0)
        set_lr(optimizer, lr := lr_at(done, cfg.optim, frac))
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
        return Update(loss.detach(), info={"epoch": epoch, "lr": lr})

    def evaluate(done: int) -> dict[str, float]:
        """Held-out loss (teacher forcing, no smoothing) and greedy BLEU (cased, and case-insensitive
        beside it) on `bleu_sample` pairs, at the
        eval intervals. The final evaluation is BLEU on every held-out pair, after the weights are saved."""
        at_interval = bool(cfg.eval_interval) and done % cfg.eval_interval == 0 \
            and not (budget.steps and done >= budget.steps)
        if not (at_interval and sample):
            return {}
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
        b = bleu(hyp, [detokenize(t, cfg.data.normalize) for _, t in sample])
        return {"val_loss": total / count, "val_bleu": b.cased, "val_bleu_lowercase": b.lowercase}

    def plots(history: list[dict[str, Any]]) -> None:
        plot_curves(history, run / "bleu.png", {"val_bleu": f"held-out BLEU ({len(sample)} pairs, greedy)"},
                    "BLEU", "translation")

    def record(rec: dict[str, Any], seconds: float) -> dict[str, Any]:
        nonlocal logged
        steps, logged = rec["step"] - logged, rec["step"]
        elapsed = rec.pop("elapsed")
        return {**rec, "sentences_per_s": steps * cfg.batch_size / max(seconds, 1e-9), "elapsed": elapsed,
                "precision": prec.used}

    def show(rec: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, Any]:
        bar = {"loss": rec["loss"], "sent/s": int(rec["sentences_per_s"])}
        if "val_bleu" in last_eval:
            bar["bleu"] = last_eval["val_bleu"]
        return bar

    stage = Stage("train", step, lambda: Saved(model, optimizer, {"epoch": epoch, "batch": batch_i}),
                  evaluate=evaluate, plots=plots, record=record, show=show)
    model.train()
    try:
        done = fit(stage, run, budget, cfg.every(), dist, on_progress, resumed)
        t_fit = time.perf_counter()
        result: dict[str, Any] = {}
        if dist.main:
            rundir.save_tensors(model.state_dict(), run / "model.safetensors")
            plot_curves(done.history, run / "loss.png", {"loss": "train (label-smoothed)", "val_loss": "held-out"},
                        "loss", "translation")
            result = held_out_bleu(run, device=str(device), on_progress=on_progress)
            with rundir.MetricsLog(run) as log:
                log.log(step=done.steps, **{k: v for k, v in result.items() if isinstance(v, (int, float))})
            result.update({"run": str(run), "steps": done.steps,
                           "epochs": epoch + batch_i / max(1, len(batches)), "pairs": len(train_pairs),
                           "truncated": cut_s + cut_t,
                           "elapsed": done.elapsed + time.perf_counter() - t_fit,  # the final BLEU included
                           # --max-time bounds the training; the final evaluation, saving and BLEU come after
                           "train_seconds": done.elapsed - done.final_seconds,
                           "final_seconds": done.final_seconds + time.perf_counter() - t_fit,
                           "precision": prec.describe()})
            (run / "bleu.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    finally:
        distributed.cleanup(dist)
    return result
