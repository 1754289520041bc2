"""`dlcli rlhf sft`: supervised fine-tuning of a GPT run on prompt/completion pairs.

The loss is the cross-entropy of the completion tokens only (the prompt is context,
not a target). The tokenizer and model config come from the base run; the result is
a language-model run directory (`generate`, `evaluate`, and the later RLHF stages read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcli.core.progress import OnProgress, nothing
from dlcli.rlhf.common import StageConfig


@dataclass
class SFTConfig(StageConfig):
    base: str = ""  # a causal `train-transformer` run (or an earlier SFT run)
    output: str = "runs/sft"


def completion_loss(gpt: Any, ids: Any, mask: Any) -> Any:
    """Mean negative log-likelihood of the masked (completion) target tokens."""
    from dlcli.rlhf.common import token_logprobs

    logits, _, _ = gpt(ids)
    logp = token_logprobs(logits, ids)
    return -(logp * mask).sum() / mask.sum().clamp(min=1)


def run(cfg: SFTConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    import torch

    from dlcli.core.runtime import seed_everything
    from dlcli.rlhf import common, data
    from dlcli.training.plots import plot_curves

    cfg.validate()
    base = common.open_lm(cfg.base, cfg.device)
    cfg.model = base.model.cfg
    recs = data.read(cfg.data, "sft", cfg.skip_bad)
    enc = common.encode_records(cfg.data, recs, base.tokenizer, cfg.model.block_size, ("completion",), cfg.skip_bad)
    out = common.start_run(cfg, "rlhf-sft", [cfg.base, cfg.data], force)
    seed_everything(cfg.seed)
    gpt, dev = base.model, base.device
    pad_id = common.end_token(base.tokenizer, cfg.base)
    train_i, val_i = common.split(len(enc), cfg.val_fraction, cfg.seed)

    def loss_of(rows: list[int]) -> Any:
        ids, mask = common.batch([enc[i]["prompt"] for i in rows], [enc[i]["completion"] for i in rows], pad_id, dev)
        return completion_loss(gpt, ids, mask)

    def step_fn(idx: list[int]) -> tuple[Any, dict[str, float]]:
        return loss_of([train_i[i] for i in idx]), {}

    def evaluate() -> dict[str, float]:
        chunks = [val_i[i: i + cfg.batch_size] for i in range(0, len(val_i), cfg.batch_size)]
        losses = [float(loss_of(c)) * len(c) for c in chunks]
        return {"val_loss": sum(losses) / len(val_i)}

    def plots(history: list[dict[str, Any]]) -> None:
        plot_curves(history, out / "loss.png", {"loss": "train", "val_loss": "held-out"}, "completion loss",
                    "Supervised fine-tuning")

    with torch.no_grad():
        before = evaluate()["val_loss"]
    steps, last, secs = common.train_loop(cfg, out, gpt, len(train_i), step_fn, evaluate, on_progress, "sft", plots)
    gpt.eval()
    common.write_lm(out, gpt, Path(cfg.base) / "tokenizer.json")
    return {"run": str(out), "steps": steps, "examples": len(enc), "skipped": len(recs.skipped),
            "val_loss_before": before, "val_loss": last["val_loss"], "elapsed": secs}
