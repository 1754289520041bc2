"""`dlcli rlhf sft`: supervised fine-tuning of a GPT run on prompt/completion pairs.

The loss is the cross-entropy of the completion tokens only (the prompt is context,
not a target). The tokenizer and model config come from the base run; the result is
a language-model run directory (`generate`, `evaluate`, and the later RLHF stages read it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlcli.core import rundir
from dlcli.core.progress import OnProgress, nothing
from dlcli.rlhf import runs, tokens
from dlcli.rlhf.config import SFTConfig
from dlcli.rlhf.loop import Loop, mean_over_processes, split, train_loop
from dlcli.rlhf.policy import token_logprobs
from dlcli.train.plots import plot_curves


def completion_nll(gpt: Any, ids: Any, mask: Any) -> tuple[Any, Any]:
    """Summed negative log-likelihood of the masked (completion) target tokens, and their number."""
    logits, _, _ = gpt(ids)
    return -(token_logprobs(logits, ids) * mask).sum(), mask.sum().clamp(min=1)


@rundir.removed_on_failure
def run(cfg: SFTConfig, force: bool = False, resume: bool = False, on_progress: OnProgress = nothing
        ) -> dict[str, Any]:
    """Train (or continue a checkpoint with `resume`); write the run directory; return a summary."""
    dev, dist, base, recs, enc, out, prec = runs.begin(cfg, "rlhf-sft", cfg.base, "sft", ("completion",), force,
                                                       resume)
    gpt = base.model
    lora = runs.adapt(gpt, cfg.lora)
    pad_id = tokens.end_token(base.tokenizer, cfg.base)
    train_i, val_i = split(len(enc), cfg.val_fraction, cfg.seed)

    def nll(net: Any, rows: list[int]) -> tuple[Any, Any]:
        ids, mask = tokens.batch([enc[i]["prompt"] for i in rows], [enc[i]["completion"] for i in rows], pad_id, dev)
        return completion_nll(net, ids, mask)

    def step(net: Any, idx: list[int]) -> tuple[Any, dict[str, float]]:
        return mean_over_processes(*nll(net, [train_i[i] for i in idx])), {}

    def evaluate() -> dict[str, float]:
        parts = [nll(gpt, val_i[i: i + cfg.batch_size]) for i in range(0, len(val_i), cfg.batch_size)]
        return {"val_loss": sum(float(t) for t, _ in parts) / sum(float(n) for _, n in parts)}

    def plots(history: list[dict[str, Any]]) -> None:
        plot_curves(history, out / "loss.png", {"loss": "train", "val_loss": "held-out"}, "completion loss",
                    "Supervised fine-tuning")

    with torch.no_grad():
        before = evaluate()["val_loss"]
    loop = Loop("sft", gpt, len(train_i), step, evaluate, plots, trainable_only=lora)
    steps, last, secs = train_loop(cfg, out, loop, prec, on_progress, resume, dist)
    gpt.eval()
    if dist.main:
        runs.write_lm(out, gpt, Path(cfg.base) / "tokenizer.json", cfg.lora, cfg.base)
    return {**runs.lora_summary(gpt, cfg.lora), "run": str(out), "steps": steps, "examples": len(enc), "skipped": len(recs.skipped), "truncated": len(recs.truncated),
            "val_loss_before": before, "val_loss": last["val_loss"], "elapsed": secs, "precision": prec.describe()}
