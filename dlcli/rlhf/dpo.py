"""`dlcli rlhf dpo`: direct preference optimisation (Rafailov et al. 2023).

With pi the policy and pi_ref the frozen SFT model, and log pi(y|x) the summed
log-probability of response y:

    implicit reward  r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))
    loss             = -log sigmoid(r(x, chosen) - r(x, rejected))

The reference log-probabilities are computed once, before training. With `rpo_alpha` > 0
the loss adds alpha times the chosen responses' negative log-likelihood per token (RPO, Pang et
al. 2024): pure DPO may lower both responses and move probability to text neither contains. Logged:
loss, implicit-reward accuracy (r_chosen > r_rejected) and margin, on training
batches and held-out pairs, and the KL to the reference (nats per response, on answers sampled
for `kl_samples` held-out prompts). The result is a language-model run directory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlcli.core import rundir
from dlcli.core.progress import OnProgress, nothing
from dlcli.models.lora import without_adapters
from dlcli.rlhf import runs, tokens
from dlcli.rlhf.config import RESUMABLE, DPOConfig
from dlcli.rlhf.loop import Loop, mean_over_processes, split, train_loop
from dlcli.rlhf.policy import sample, token_logprobs
from dlcli.train.plots import plot_curves


def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed log-probs (B,) of chosen / rejected under the policy and the reference ->
    (loss of each pair (B,), implicit reward of chosen, of rejected)."""
    r_c = beta * (pi_c - ref_c)
    r_r = beta * (pi_r - ref_r)
    return -F.logsigmoid(r_c - r_r), r_c.detach(), r_r.detach()


def sequence_logprobs(gpt: Any, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the response tokens' log-probabilities (B,), and their number (B,)."""
    logits, _, _ = gpt(ids)
    return (token_logprobs(logits, ids) * mask).sum(-1), mask.sum(-1)


@rundir.removed_on_failure
def run(cfg: DPOConfig, force: bool = False, resume: bool = False, on_progress: OnProgress = nothing,
        probe: Callable[[Any], dict[str, float]] | None = None) -> dict[str, Any]:
    """Train (or continue a checkpoint with `resume`); write the run directory; return a summary.
    `probe(policy)`, if given, adds its own held-out figures (e.g. a true reward) to every evaluation."""
    dev, dist, sft, recs, enc, out, prec = runs.begin(cfg, "rlhf-dpo", cfg.sft, "prefs", ("chosen", "rejected"),
                                                      force, resume, (*RESUMABLE, "kl_samples"))
    gpt = sft.model
    if runs.adapt(gpt, cfg.lora):  # LoRA: pi_ref is the policy with its adapters off (no second copy)
        reference: Any = without_adapters(gpt)
    else:
        reference = copy.deepcopy(gpt).eval().requires_grad_(False)  # pi_ref, frozen
    pad_id = end_id = tokens.end_token(sft.tokenizer, cfg.sft)

    def both(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Chosen and rejected of `rows` as one padded batch (chosen first) and its response mask."""
        prompts = [enc[i]["prompt"] for i in rows] * 2
        return tokens.batch(prompts, [enc[i]["chosen"] for i in rows] + [enc[i]["rejected"] for i in rows],
                            pad_id, dev)

    ref = torch.empty(len(enc), 2)  # reference log-probs of (chosen, rejected): computed once, or resumed
    with torch.no_grad():
        for i in range(0, 0 if resume else len(enc), cfg.batch_size):
            rows = list(range(i, min(i + cfg.batch_size, len(enc))))
            lp = sequence_logprobs(reference, *both(rows))[0].cpu()
            ref[rows, 0], ref[rows, 1] = lp[: len(rows)], lp[len(rows):]
    ref = ref.to(dev)  # on resume train_loop fills it from the checkpoint
    train_i, val_i = split(len(enc), cfg.val_fraction, cfg.seed)
    kl_prompts = [enc[i]["prompt"] for i in val_i[: cfg.kl_samples]]
    longest = max(len(e[k]) for e in enc for k in ("chosen", "rejected"))
    banned = tokens.banned_ids(sft.tokenizer)

    def losses(net: Any, rows: list[int]) -> tuple[torch.Tensor, ...]:
        """(summed DPO loss, summed chosen log-probs, their token count, implicit rewards of chosen, rejected)."""
        lp, count = sequence_logprobs(net, *both(rows))
        n = len(rows)
        loss, r_c, r_r = dpo_loss(lp[:n], lp[n:], ref[rows, 0], ref[rows, 1], cfg.beta)
        return loss.sum(), lp[:n].sum(), count[:n].sum(), r_c, r_r

    def step(net: Any, idx: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        dpo, lp_c, n_tok, rc, rr = losses(net, [train_i[i] for i in idx])
        loss = mean_over_processes(dpo, torch.tensor(float(len(idx))))
        if cfg.rpo_alpha:  # the chosen responses' NLL per token
            loss = loss - cfg.rpo_alpha * mean_over_processes(lp_c, n_tok)
        return loss, {"accuracy": float((rc > rr).float().mean()), "margin": float((rc - rr).mean())}

    def kl_to_reference() -> float:
        """Mean over sampled answers to held-out prompts of sum_t log pi(y_t) - log pi_ref(y_t), in nats
        per response (its expectation is KL(pi || pi_ref) of whole responses)."""
        g = torch.Generator().manual_seed(cfg.seed + 1)
        resp = sample(gpt, kl_prompts, longest, end_id, g, banned=banned)
        ids, mask = tokens.batch(kl_prompts, resp, pad_id, dev)
        log_ratio = token_logprobs(gpt(ids)[0], ids) - token_logprobs(reference(ids)[0], ids)
        return float((log_ratio * mask).sum(1).mean())

    def evaluate() -> dict[str, float]:
        parts = [losses(gpt, val_i[i: i + cfg.batch_size]) for i in range(0, len(val_i), cfg.batch_size)]
        rc, rr = torch.cat([p[3] for p in parts]), torch.cat([p[4] for p in parts])
        out = {"val_loss": sum(float(p[0]) for p in parts) / len(val_i),
               "val_accuracy": float((rc > rr).float().mean()), "val_margin": float((rc - rr).mean())}
        if kl_prompts:
            out["val_kl"] = kl_to_reference()
        return {**out, **(probe(gpt) if probe is not None else {})}

    def plots(history: list[dict[str, Any]]) -> None:
        plot_curves(history, out / "accuracy.png", {"accuracy": "train", "val_accuracy": "held-out"},
                    "implicit-reward accuracy", "DPO")
        plot_curves(history, out / "kl.png", {"val_kl": "held-out prompts"}, "KL to the reference (nats / response)",
                    "DPO: KL")

    loop = Loop("dpo", gpt, len(train_i), step, evaluate, plots, extra={"reference_logprobs": ref},
                show=("val_kl",), trainable_only=cfg.lora.rank > 0)
    steps, last, secs = train_loop(cfg, out, loop, prec, on_progress, resume, dist)
    gpt.eval()
    if dist.main:
        runs.write_lm(out, gpt, Path(cfg.sft) / "tokenizer.json", cfg.lora, cfg.sft)
    return {**runs.lora_summary(gpt, cfg.lora), "run": str(out), "steps": steps, "pairs": len(enc), "skipped": len(recs.skipped), "truncated": len(recs.truncated), "elapsed": secs,
            "steps_per_s": steps / max(secs, 1e-9),
            "precision": prec.describe(),
            **{k: v for k, v in last.items() if k != "step"}}
