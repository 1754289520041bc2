"""`dlcli rlhf ppo`: reinforcement learning from a reward model with PPO.

One PPO step:
  1. rollouts: sample a response to each of `batch_size` prompts from the policy;
  2. score: the reward model's scalar for prompt + response (optionally whitened over the batch);
  3. per-token rewards: -kl_coef * (log pi(token) - log pi_ref(token)) at every response token, plus
     the score at the last one (pi_ref is the frozen SFT model);
  4. advantages by GAE from the value head's estimates, then whitened; returns = advantages + values;
  5. `ppo_epochs` passes over minibatches of the rollouts: clipped policy loss
     max(-A r, -A clip(r, 1-eps, 1+eps)) with r = pi/pi_old, clipped value loss, and their sum;
  6. the KL coefficient is fixed, or adaptive (Ziegler et al. 2019): nudged so the KL tracks `kl_target`.
Logged: mean reward, KL (nats per response), entropy, clip fraction, value loss, KL coefficient, and
sample generations every `sample_interval` steps. If the KL passes `kl_stop` (or is not finite), the run
stops with a clear message and keeps the last good policy.

With LoRA (lora.rank > 0) only the policy's adapters and the value head train, and pi_ref is the policy
with its adapters off: no second copy of the model.

Under torchrun (DDP) each process samples its share of every batch from its own stream (seeded by seed
and rank); the reward whitening, advantage whitening, logged means and the KL that drives the adaptive
coefficient and the KL stop are taken over the whole batch (sums all-reduced), and DDP averages the
gradients of losses that are means over the whole minibatch. Every process so keeps the same policy,
coefficient and decisions; only the first one writes.

    POLICY/model.safetensors  the policy GPT (a language-model run: `generate`, `evaluate`); with LoRA
                              POLICY/adapter.safetensors instead (lm/lora.py), model.safetensors with lora.merge
    POLICY/value_head.safetensors  POLICY/reward.png  POLICY/kl.png  POLICY/metrics.jsonl
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from dlcli.core import rundir
from dlcli.core.progress import OnProgress, nothing
from dlcli.core.runtime import seed_everything
from dlcli.errors import ConfigError, TrainingDiverged
from dlcli.models.gpt import GPT
from dlcli.models.lora import adapter_state, without_adapters
from dlcli.rlhf import data, runs, tokens
from dlcli.rlhf.advantage import Total, gae, local, masked_mean, over_processes, whiten
from dlcli.rlhf.config import RESUMABLE as STAGE_RESUMABLE
from dlcli.rlhf.config import PPOConfig
from dlcli.rlhf.loop import mean_over_processes, split
from dlcli.rlhf.policy import forward_hidden, sample, token_logprobs
from dlcli.rlhf.reward import open_rm
from dlcli.train import checkpoint, distributed, optim
from dlcli.train.loop import Saved, Stage, Update, fit
from dlcli.train.optim import build_optimizer, lr_at, set_lr
from dlcli.train.plots import plot_curves

RESUMABLE = (*STAGE_RESUMABLE, "sample_interval", "num_samples")
RANK_SEED_STRIDE = 1_000_003  # process r samples from seed + r * this (process 0: the single-process stream)


class PolicyWithValue(nn.Module):
    """The policy GPT and a value head on its last hidden states."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt
        self.value = nn.Linear(gpt.cfg.n_embd, 1)
        nn.init.zeros_(self.value.weight)
        nn.init.zeros_(self.value.bias)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) -> logits (B, T, v), values (B, T)."""
        logits, h = forward_hidden(self.gpt, ids)
        return logits, self.value(h).squeeze(-1)


@dataclass
class Rollout:
    ids: torch.Tensor  # (B, T) prompt + response, right-padded
    mask: torch.Tensor  # (B, T-1) response targets
    logp: torch.Tensor  # (B, T-1) log pi_old
    values: torch.Tensor  # (B, T-1)
    advantages: torch.Tensor
    returns: torch.Tensor
    score: torch.Tensor  # (B,) reward-model scores
    kl: torch.Tensor  # (B,) sum over the response of log pi - log pi_ref
    responses: list[list[int]]


class AdaptiveKL:
    """kl_coef *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon (fixed when not adaptive)."""

    def __init__(self, cfg: PPOConfig) -> None:
        self.value, self.cfg = cfg.kl_coef, cfg

    def update(self, kl: float, n: int) -> None:
        if self.cfg.adaptive_kl:
            err = max(-0.2, min(0.2, kl / self.cfg.kl_target - 1))
            self.value *= 1 + err * n / self.cfg.kl_horizon


def rollout(policy: PolicyWithValue, ref: Callable[..., Any], rm: Any, prompts: list[list[int]], cfg: PPOConfig,
            kl_coef: float, end_id: int, gen: torch.Generator, banned: tuple[int, ...], total: Total = local
            ) -> Rollout:
    """Responses to `prompts` and everything PPO needs of them; `total` sums the whitening statistics
    (over the processes under DDP)."""
    dev = next(policy.parameters()).device
    policy.eval()
    responses = sample(policy.gpt, prompts, cfg.max_new_tokens, end_id, gen, cfg.temperature, banned=banned)
    ids, mask = tokens.batch(prompts, responses, end_id, dev)
    lengths = torch.tensor([len(p) + len(r) for p, r in zip(prompts, responses, strict=True)], device=dev)
    with torch.no_grad():
        logits, values = policy(ids)
        logp = token_logprobs(logits, ids)
        ref_logp = token_logprobs(ref(ids)[0], ids)
        score = rm(ids, lengths).float()
    m = mask.float()
    kl_tok = (logp - ref_logp) * m
    rewards = -kl_coef * kl_tok  # the KL penalty at every response token
    final = whiten(score, total=total) if cfg.whiten_rewards else score
    rewards[torch.arange(len(prompts), device=dev), lengths - 2] += final  # the score at the last token
    values = values[:, :-1] * m
    adv, ret = gae(rewards, values, mask, cfg.gamma, cfg.lam)
    adv = whiten(adv, mask, total=total)
    policy.train()
    return Rollout(ids, mask, logp, values, adv, ret, score, kl_tok.sum(1), responses)


def ppo_update(policy: nn.Module, optimizer: torch.optim.Optimizer, ro: Rollout, cfg: PPOConfig,
               gen: torch.Generator, world: int = 1, autocast: Callable[[], Any] = contextlib.nullcontext
               ) -> dict[str, float]:
    """`ppo_epochs` passes of clipped policy + value losses over minibatches of the rollout. Under DDP
    `policy` is the DDP-wrapped model, the rollout this process's share and `world` the number of
    processes: each takes its share of every minibatch, and the losses are means over the tokens of the
    whole minibatch (so DDP's average of the gradients is the single-process gradient)."""
    stats: dict[str, float] = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "clip_frac": 0.0}
    n, count = ro.ids.size(0), 0
    size = cfg.minibatch // world
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, size):
            mb = order[i: i + size].to(ro.ids.device)
            ids, mask, adv = ro.ids[mb], ro.mask[mb].float(), ro.advantages[mb]
            with autocast():
                logits, values = policy(ids)
            logp = token_logprobs(logits, ids)
            ratio = torch.exp(logp - ro.logp[mb])
            pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip))
            n_tok = mask.sum()
            policy_loss = mean_over_processes((pg * mask).sum(), n_tok)
            v = values[:, :-1]
            v_clipped = ro.values[mb] + (v - ro.values[mb]).clamp(-cfg.clip_value, cfg.clip_value)
            vf = 0.5 * torch.maximum((v - ro.returns[mb]) ** 2, (v_clipped - ro.returns[mb]) ** 2)
            value_loss = mean_over_processes((vf * mask).sum(), n_tok)
            optim.apply_gradients(policy, optimizer, policy_loss + cfg.vf_coef * value_loss, cfg.optim.grad_clip)
            with torch.no_grad():
                lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                entropy = masked_mean(-(lp.exp() * lp).sum(-1), mask)
                clip_frac = masked_mean(((ratio - 1).abs() > cfg.clip).float(), mask)
            for k, val in (("policy_loss", policy_loss), ("value_loss", value_loss), ("entropy", entropy),
                           ("clip_frac", clip_frac)):
                stats[k] += float(val.detach())
            count += 1
    return {k: v / count for k, v in stats.items()}


@rundir.removed_on_failure
def run(cfg: PPOConfig, force: bool = False, resume: bool = False, on_progress: OnProgress = nothing,
        probe: Callable[[GPT], dict[str, float]] | None = None) -> dict[str, Any]:
    """Train (or continue a checkpoint with `resume`); write the run directory; return a summary.
    `probe(policy)`, if given, adds its own held-out figures (e.g. a true reward) to every evaluation.
    Under torchrun every process runs this; the first one evaluates, logs and writes."""
    cfg.validate()
    if not cfg.reward_model:
        raise ConfigError("reward_model: give the reward model's directory")
    dev, d = runs.setup(cfg)
    cfg.check_world(d.world)
    sft = runs.open_lm(cfg.sft, str(dev))
    rm = open_rm(cfg.reward_model, str(dev))
    runs.same_tokenizer(rm.tokenizer, sft.tokenizer, cfg.reward_model, f"the policy {cfg.sft}")
    cfg.model = sft.model.cfg
    tok = sft.tokenizer
    recs = data.read(cfg.data, "prompts", cfg.skip_bad)
    enc = tokens.encode_records(cfg.data, recs, tok, min(cfg.model.block_size, rm.model.gpt.cfg.block_size), (),
                                cfg.skip_bad, room=cfg.max_new_tokens, truncate=cfg.truncate)
    out, prec = runs.start_run(cfg, "rlhf-ppo", [cfg.sft, cfg.reward_model, cfg.data], force, resume, dev, d,
                               resumable=RESUMABLE)
    seed_everything(cfg.seed)
    end_id = tokens.end_token(tok, cfg.sft)
    banned = tokens.banned_ids(tok)
    lora = runs.adapt(sft.model, cfg.lora)
    ref: Callable[..., Any] = (without_adapters(sft.model) if lora  # pi_ref: the adapters off, or a frozen copy
                               else copy.deepcopy(sft.model).eval().requires_grad_(False))
    policy = PolicyWithValue(sft.model).to(dev)  # the value head trains with or without LoRA
    optimizer = build_optimizer(policy, cfg.optim, dev)
    kl_ctl = AdaptiveKL(cfg)
    gen = torch.Generator().manual_seed(cfg.seed + RANK_SEED_STRIDE * d.rank)  # rollouts and minibatches
    total_of: Total = over_processes if d.enabled else local
    share = cfg.batch_size // d.world  # rollouts per process and step
    train_i, val_i = split(len(enc), cfg.val_fraction, cfg.seed)
    budget = cfg.budget(max(1, math.ceil(len(train_i) / cfg.batch_size)))
    first: dict[str, float] = {}  # the evaluation before training
    resumed = None
    if resume:
        resumed, extra = checkpoint.load(out, policy, optimizer, dev, trainable_only=lora)
        if resumed.get("world", 1) != d.world:
            raise ConfigError(f"{out}: its checkpoint was written by {resumed.get('world', 1)} process(es); resume "
                              f"it with as many (each has its own sampling stream), not {d.world}")
        if d.enabled:  # this process's own streams (cloned: set_state misreads a row view of a stacked tensor)
            gen.set_state(extra["rollouts_by_rank"][d.rank].cpu().clone())
            torch.set_rng_state(extra["rng_by_rank"][d.rank].cpu().clone())
        else:
            gen.set_state(extra["rollouts"].cpu())
        kl_ctl.value = resumed["kl_coef"]
        first = resumed.get("first", {})
        # a checkpoint written before PPO ran on train.loop: its step had been evaluated before it was saved
        resumed.setdefault("last_eval", {"step": resumed["step"], "val_reward": resumed.get("val_reward", math.nan)})
    net = DDP(policy) if d.enabled else policy

    def snapshot() -> dict[str, torch.Tensor]:
        """The policy's weights to fall back on (with LoRA its adapters: the rest never changes)."""
        return {k: v.clone() for k, v in (adapter_state(policy.gpt) if lora else policy.gpt.state_dict()).items()}

    good = snapshot()
    samples: list[dict[str, Any]] = []  # generations of this step, for its record (the first process)

    def summed(*values: float) -> list[float]:
        """Each value summed over the processes."""
        return total_of(torch.tensor(values, dtype=torch.float64, device=dev)).tolist()

    def keep_good(reason: str, done: int) -> TrainingDiverged:
        policy.gpt.load_state_dict(good, strict=not lora)
        if d.main:
            runs.write_lm(out, policy.gpt, Path(cfg.sft) / "tokenizer.json", cfg.lora, cfg.sft)
        return TrainingDiverged(f"{reason} at step {done}; the last good policy (step {max(0, done - 1)}) is kept in "
                                f"{out}; try a larger kl_coef or a lower optim.lr")

    def step(done: int) -> Update:
        """Rollouts, their scores and advantages, then `ppo_epochs` passes of clipped updates over them."""
        nonlocal good
        rows = [train_i[int(i)] for i in torch.randint(len(train_i), (share,), generator=gen)]
        with prec.autocast():
            ro = rollout(policy, ref, rm.model, [enc[i]["prompt"] for i in rows], cfg, kl_ctl.value, end_id, gen,
                         banned, total_of)
        n, score_sum, kl_sum, n_tok = summed(len(rows), float(ro.score.sum()), float(ro.kl.sum()),
                                             float(ro.mask.sum()))
        kl = kl_sum / n  # the mean over the whole batch: every process takes the same decisions
        if not math.isfinite(kl) or kl > cfg.kl_stop:
            raise keep_good(f"the mean KL to the reference reached {kl:.3g} nats (kl_stop {cfg.kl_stop})", done)
        good = snapshot()
        set_lr(optimizer, lr := lr_at(done, cfg.optim, done / budget.steps if budget.steps else None))
        stats = ppo_update(net, optimizer, ro, cfg, gen, d.world, prec.autocast)
        stats = {k: v / d.world for k, v in zip(stats, summed(*stats.values()), strict=True)}
        if not all(math.isfinite(v) for v in stats.values()):
            raise keep_good("the PPO losses became non-finite", done)
        kl_ctl.update(kl, cfg.batch_size)
        if d.main and cfg.sample_interval and (done + 1) % cfg.sample_interval == 0:
            samples[:] = [{"prompt": tok.decode(enc[rows[j]]["prompt"]),
                           "response": tokens.decode(tok, ro.responses[j], end_id),
                           "reward": round(float(ro.score[j]), 4)} for j in range(min(cfg.num_samples, len(rows)))]
        return Update(stats["policy_loss"] + cfg.vf_coef * stats["value_loss"],
                      {"reward": score_sum / n, "kl": kl, "response_tokens": n_tok / n, **stats},
                      {"kl_coef": kl_ctl.value, "lr": lr})

    def record(rec: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The record as PPO has always logged it (no combined `loss`), with the step's samples."""
        head = ("step", "reward", "kl", "kl_coef", "lr", "response_tokens")
        out = {**{k: rec[k] for k in head}, **{k: v for k, v in rec.items() if k not in (*head, "loss")}}
        if samples:
            out["samples"] = samples.copy()
            samples.clear()
        return out

    def evaluate(done: int) -> dict[str, float]:
        g = torch.Generator().manual_seed(cfg.seed + 1)
        ro = rollout(policy, ref, rm.model, [enc[i]["prompt"] for i in val_i], cfg, kl_ctl.value, end_id, g, banned)
        figures = {"val_reward": float(ro.score.mean()), "val_kl": float(ro.kl.mean())}
        if probe is not None:
            policy.eval()
            figures.update(probe(policy.gpt))
            policy.train()
        if done == 0 and not resume:
            first.update(figures)
        return figures

    def plots(history: list[dict[str, Any]]) -> None:
        plot_curves(history, out / "reward.png", {"reward": "rollouts", "val_reward": "held-out prompts"},
                    "reward-model score", "PPO: reward")
        plot_curves(history, out / "kl.png", {"kl": "rollouts", "val_kl": "held-out prompts"},
                    "KL to the reference (nats / response)", "PPO: KL")

    def streams() -> dict[str, torch.Tensor]:
        """The random streams a checkpoint keeps: under DDP every process's (gathered)."""
        if not d.enabled:
            return {"rollouts": gen.get_state()}
        mine = torch.stack([gen.get_state(), torch.get_rng_state()]).to(dev)
        parts = [torch.empty_like(mine) for _ in range(d.world)]
        tdist.all_gather(parts, mine)
        every = torch.stack(parts).cpu()  # (world, 2, state)
        return {"rollouts": gen.get_state(), "rollouts_by_rank": every[:, 0], "rng_by_rank": every[:, 1]}

    def saved() -> Saved:
        """A checkpoint to resume from, and the policy so far as a usable run (written by the first process)."""
        if d.main:
            runs.write_lm(out, policy.gpt, Path(cfg.sft) / "tokenizer.json", cfg.lora, cfg.sft)
        return Saved(policy, optimizer, {"first": first, "world": d.world, "kl_coef": kl_ctl.value}, streams(),
                     trainable_only=lora)

    stage = Stage("ppo", step, saved, evaluate=evaluate, plots=plots, record=record,
                  show=lambda rec, _: {"reward": rec["reward"], "kl": rec["kl"], "clip": rec["clip_frac"]},
                  hint="try a larger kl_coef or a lower optim.lr", evaluate_first=True)
    try:
        result = fit(stage, out, budget, cfg.every(), d, on_progress, resumed)
        if d.main:
            rundir.save_tensors(policy.value.state_dict(), out / "value_head.safetensors")
        rewards = [h["reward"] for h in result.history if "reward" in h]
        summary = {**runs.lora_summary(policy, cfg.lora), "run": str(out), "steps": result.steps,
                   "elapsed": result.elapsed,
                   "val_reward": result.last_eval.get("val_reward", math.nan),
                   "val_reward_before": first.get("val_reward", math.nan), "val_kl": result.last_eval.get("val_kl"),
                   "reward_first": rewards[0] if rewards else math.nan,
                   "reward_last": rewards[-1] if rewards else math.nan,
                   "kl_coef": kl_ctl.value, "precision": prec.describe(),
                   "skipped": len(recs.skipped), "truncated": len(recs.truncated)}
        if d.enabled:  # the other processes report the first one's figures
            box = [summary]
            tdist.broadcast_object_list(box)
            summary = box[0]
    finally:
        distributed.cleanup(d)
    return summary
