"""`dlcli rlhf reward` and `dlcli rlhf score`: a reward model and its scores.

The model is the base run's Transformer trunk (its weights to start from) with a
scalar head on the hidden state of the last token of prompt + response (its end
token). Training minimises the Bradley-Terry pairwise loss

    loss = -log sigmoid(r(prompt, chosen) - r(prompt, rejected))

(the probability that a person prefers `chosen` is sigmoid of the reward difference).
Reported: held-out pairwise accuracy (r_chosen > r_rejected) and mean margin.

    RM/config.yaml  RM/meta.json (stage rlhf-reward)  RM/tokenizer.json
    RM/model.safetensors  (gpt.* trunk, head.* scalar head)  RM/metrics.jsonl  RM/loss.png

With LoRA (lora.rank > 0) the trunk's adapters and the whole head train, and RM/adapter.safetensors holds
them (gpt.*.lora_A, gpt.*.lora_B, head.*) in place of model.safetensors (see lm/lora.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlcli.core import rundir
from dlcli.core.io import open_output
from dlcli.core.progress import OnProgress, nothing
from dlcli.core.runtime import resolve_device
from dlcli.lm import lora as lm_lora
from dlcli.models.config import GPTConfig
from dlcli.models.gpt import GPT
from dlcli.models.lora import merge as lora_merge
from dlcli.rlhf import data, runs, tokens
from dlcli.rlhf.config import RewardConfig
from dlcli.rlhf.loop import Loop, mean_over_processes, split, train_loop
from dlcli.rlhf.policy import forward_hidden
from dlcli.text import vocabulary
from dlcli.train.plots import plot_curves


class RewardModel(nn.Module):
    """GPT trunk -> hidden state at each sequence's last token -> one scalar."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.gpt = GPT(cfg)
        self.head = nn.Linear(cfg.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) right-padded, lengths (B,) -> rewards (B,)."""
        _, h = forward_hidden(self.gpt, ids)
        last = h[torch.arange(ids.size(0), device=ids.device), lengths - 1]  # (B, C)
        return self.head(last).squeeze(-1)


def bradley_terry(r_chosen: torch.Tensor, r_rejected: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-log sigmoid(r_c - r_r), averaged (or summed) over the pairs."""
    loss = -F.logsigmoid(r_chosen - r_rejected)
    return loss.sum() if reduction == "sum" else loss.mean()


def score_pairs(rm: RewardModel, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                device: Any) -> torch.Tensor:
    seqs = [p + r for p, r in zip(prompts, responses, strict=True)]
    return rm(tokens.pad(seqs, pad_id, device), torch.tensor([len(s) for s in seqs], device=device))


@rundir.removed_on_failure
def run(cfg: RewardConfig, force: bool = False, resume: bool = False, on_progress: OnProgress = nothing
        ) -> dict[str, Any]:
    """Train (or continue a checkpoint with `resume`); write the reward model's directory; return a summary."""
    dev, dist, base, recs, enc, out, prec = runs.begin(cfg, "rlhf-reward", cfg.base, "prefs", ("chosen", "rejected"),
                                                       force, resume)
    rm = RewardModel(cfg.model)
    rm.gpt = base.model  # the starting run's model itself: no second copy of its weights
    rm.to(dev)
    lora = runs.adapt(rm.gpt, cfg.lora)  # the head stays trainable
    pad_id = tokens.end_token(base.tokenizer, cfg.base)
    train_i, val_i = split(len(enc), cfg.val_fraction, cfg.seed)

    def rewards(net: Any, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = [enc[i]["prompt"] for i in rows] * 2
        resp = [enc[i]["chosen"] for i in rows] + [enc[i]["rejected"] for i in rows]
        r = score_pairs(net, prompts, resp, pad_id, dev)
        return r[: len(rows)], r[len(rows):]

    def step(net: Any, idx: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        rc, rr = rewards(net, [train_i[i] for i in idx])
        loss = mean_over_processes(bradley_terry(rc, rr, "sum"), torch.tensor(float(len(idx))))
        return loss, {"accuracy": float((rc > rr).float().mean())}

    def evaluate() -> dict[str, float]:
        rc, rr = zip(*(rewards(rm, val_i[i: i + cfg.batch_size]) for i in range(0, len(val_i), cfg.batch_size)),
                     strict=True)
        c, r = torch.cat(rc), torch.cat(rr)
        return {"val_loss": float(bradley_terry(c, r)), "val_accuracy": float((c > r).float().mean()),
                "val_margin": float((c - r).mean())}

    def plots(history: list[dict[str, Any]]) -> None:
        plot_curves(history, out / "accuracy.png", {"accuracy": "train", "val_accuracy": "held-out"},
                    "pairwise accuracy", "Reward model (Bradley-Terry)")

    # the trunk's language-model head (when not tied to the embedding) gets no gradient
    loop = Loop("reward", rm, len(train_i), step, evaluate, plots, unused_parameters=not cfg.model.tie_weights,
                trainable_only=lora)
    steps, last, secs = train_loop(cfg, out, loop, prec, on_progress, resume, dist)
    if dist.main:
        runs.write_weights(out, rm, cfg.lora, cfg.base)
        shutil.copyfile(Path(cfg.base) / "tokenizer.json", out / "tokenizer.json")
    return {**runs.lora_summary(rm, cfg.lora), "run": str(out), "steps": steps, "pairs": len(enc), "skipped": len(recs.skipped), "truncated": len(recs.truncated), "elapsed": secs,
            "val_pairs": len(val_i), "precision": prec.describe(),
            **{k: v for k, v in last.items() if k != "step"}}


@dataclass
class LoadedRM:
    model: RewardModel
    tokenizer: Any
    device: Any
    path: Path


def open_rm(path: str, device: str = "auto") -> LoadedRM:
    p = Path(path)
    adapter_only = not (p / "model.safetensors").is_file() and (p / lm_lora.ADAPTER).is_file()
    cfg, _ = rundir.open_run(p, "rlhf-reward", RewardConfig, "a reward model from 'dlcli rlhf reward'",
                             needs=(lm_lora.ADAPTER if adapter_only else "model.safetensors", "tokenizer.json"))
    rm = RewardModel(cfg.model)
    if adapter_only:  # LoRA: the base run's trunk, the adapter (and head) merged in
        rm.gpt.load_state_dict(runs.open_lm(str(lm_lora.base_of(p)), "cpu").model.state_dict())
        lm_lora.adapt(rm.gpt, cfg.lora)
        lm_lora.load(rm, p)
        lora_merge(rm)
    else:
        rundir.load_weights(rm, p / "model.safetensors")
    dev = resolve_device(device)
    return LoadedRM(rm.to(dev).eval(), vocabulary.load(p / "tokenizer.json"), dev, p)


def score(rm_path: str, data_path: str, output: str = "-", batch_size: int = 64, skip_bad: bool = False,
          device: str = "auto", force: bool = False, truncate: str = "none") -> dict[str, Any]:
    """Add "reward" to each prompt/completion line (or "reward_chosen" and "reward_rejected" to a
    preference line) of a JSONL file; write JSONL to `output` ('-' = stdout)."""
    rm = open_rm(rm_path, device)
    first = _first_object(data_path)
    kind = "prefs" if "chosen" in first else "sft"
    keys = ("chosen", "rejected") if kind == "prefs" else ("completion",)
    recs = data.read(data_path, kind, skip_bad)
    enc = tokens.encode_records(data_path, recs, rm.tokenizer, rm.model.gpt.cfg.block_size, keys, skip_bad,
                                truncate=truncate)
    kept = sorted(set(recs.lines) - {n for n, _ in recs.skipped})
    originals = _objects(data_path, set(kept))
    pad_id = tokens.end_token(rm.tokenizer, rm_path)
    scores: dict[str, list[float]] = {k: [] for k in keys}
    with torch.no_grad():
        for i in range(0, len(enc), batch_size):
            chunk = enc[i: i + batch_size]
            for k in keys:
                scores[k] += score_pairs(rm.model, [e["prompt"] for e in chunk], [e[k] for e in chunk], pad_id,
                                         rm.device).tolist()
    names = {"completion": "reward", "chosen": "reward_chosen", "rejected": "reward_rejected"}
    lines = []
    for j, n in enumerate(kept):
        obj = originals[n]
        for k in keys:
            obj[names[k]] = round(scores[k][j], 6)
        lines.append(json.dumps(obj, ensure_ascii=False) + "\n")
    with open_output(output, force) as f:
        f.write("".join(lines).encode("utf-8"))
    return {"lines": len(lines), "skipped": len(recs.skipped), "truncated": len(recs.truncated), "output": output,
            "mean_reward": sum(scores[keys[0]]) / max(1, len(scores[keys[0]]))}


def _first_object(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return {}
                return obj if isinstance(obj, dict) else {}
    return {}


def _objects(path: str, wanted: set[int]) -> dict[int, dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return {n: json.loads(line) for n, line in enumerate(f, 1) if n in wanted}
