"""What the RLHF stages share: encoding checked against the context, padded batches,
per-token log-probabilities, a GPT's hidden states, batched sampling, the training
loop over examples (checkpoints, exact resume, DDP under torchrun), and the
language-model run files `generate` and `evaluate` read.

Sequences are prompt + response + end token, right-padded. In a causal model padding
after a sequence changes nothing before it, so no attention mask is needed; losses
use a mask of the response tokens. The end token is "<eos>" when the tokenizer has
one, else a newline.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlcli.core import precision, rundir
from dlcli.core.progress import OnProgress
from dlcli.errors import ConfigError, InputError
from dlcli.models.gpt import GPT, GPTConfig
from dlcli.rlhf.data import BadLine, Records, bad_line
from dlcli.train.args import TrainArgs
from dlcli.train.distributed import Dist
from dlcli.train.optim import OptimConfig

RESUMABLE = TrainArgs.RESUMABLE


def _optim() -> OptimConfig:
    return OptimConfig(lr=5e-4, weight_decay=0.0, warmup_steps=10, min_lr_ratio=0.1)


@dataclass
class StageConfig(TrainArgs):
    """Keys every RLHF training stage has. `model` is copied from the starting run."""

    output: str = ""
    data: str = ""
    model: GPTConfig = field(default_factory=GPTConfig)
    optim: OptimConfig = field(default_factory=_optim)
    batch_size: int = 32
    max_steps: int = 300
    val_fraction: float = 0.1  # held-out share of the lines
    eval_interval: int = 50
    checkpoint_interval: int = 100
    skip_bad: bool = False

    @property
    def seq_len(self) -> int:  # what `dlcli evaluate` reads
        return self.model.block_size

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data: give a JSONL file")
        if not self.output:
            raise ConfigError("output: give a run directory (-o)")
        if self.batch_size < 1:
            raise ConfigError("batch_size: must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction: must be between 0 and 1")
        self.check_train()
        self.optim.validate()


# ---------------------------------------------------------------------------------------------- tokens


def end_token(tok: Any, where: str) -> int:
    for t in ("<eos>", "\n"):
        i = tok.token_to_id(t)
        if i is not None:
            return int(i)
    raise InputError(f"{where}: the tokenizer has neither an <eos> token nor a newline to end a response with")


def encode(tok: Any, text: str) -> list[int]:
    """Text -> ids; characters the vocabulary lacks are a `BadLine`."""
    enc = tok.encode(text, add_special_tokens=False)
    unk = tok.model.unk_token if hasattr(tok.model, "unk_token") else None
    unk_id = tok.token_to_id(unk) if unk else None
    if unk_id is not None and unk_id in enc.ids:
        bad = sorted({text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets) if i == unk_id})
        raise BadLine(f"not in the vocabulary: {', '.join(map(repr, bad))}")
    return list(enc.ids)


def encode_records(path: str, recs: Records, tok: Any, block_size: int, responses: tuple[str, ...],
                   skip_bad: bool, room: int = 0) -> list[dict[str, list[int]]]:
    """Each row's prompt and response ids (each response ends with the end token).

    A row longer than the context (`room` tokens must stay free after a bare prompt)
    is a line-numbered error, or left out with `skip_bad` (and added to `recs.skipped`)."""
    end = end_token(tok, path)
    out = []
    for row, line in zip(recs.rows, recs.lines):
        try:
            enc = {"prompt": encode(tok, row["prompt"])}
            if not enc["prompt"]:
                raise BadLine("the prompt is empty")
            for k in responses:
                enc[k] = encode(tok, row[k]) + [end]
            longest = len(enc["prompt"]) + max((len(enc[k]) for k in responses), default=room)
            if longest > block_size:
                raise BadLine(f"{longest} tokens are longer than the context of {block_size}"
                              + (f" (the prompt and {room} new tokens)" if not responses else ""))
            out.append(enc)
        except BadLine as e:
            if not skip_bad:
                raise bad_line(path, line, str(e)) from None
            recs.skipped.append((line, str(e)))
    if len(out) < 2:
        raise InputError(f"{path}: {len(out)} usable line(s); at least 2 are needed (one is held out)")
    return out


def split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded shuffle of range(n) split into training and held-out indices (at least one of each)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g).tolist()
    n_val = min(max(1, round(n * val_fraction)), n - 1) if n > 1 else 0
    return order[n_val:], order[:n_val]


def pad(seqs: list[list[int]], pad_id: int, device: Any) -> torch.Tensor:
    t = max(len(s) for s in seqs)
    out = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def response_mask(prompt_lens: list[int], lengths: list[int], t: int, device: Any) -> torch.Tensor:
    """(B, t-1) bool: target position j (predicting token j+1) is a response token."""
    j = torch.arange(t - 1, device=device)[None, :] + 1
    p = torch.tensor(prompt_lens, device=device)[:, None]
    n = torch.tensor(lengths, device=device)[:, None]
    return (j >= p) & (j < n)


def batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int, device: Any
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + response sequences, padded: ids (B, T) and the response mask (B, T-1)."""
    seqs = [p + r for p, r in zip(prompts, responses)]
    ids = pad(seqs, pad_id, device)
    return ids, response_mask([len(p) for p in prompts], [len(s) for s in seqs], ids.size(1), device)


# ---------------------------------------------------------------------------------------------- model


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, j+1] | ids[:, :j+1]) for every j: (B, T-1)."""
    lg = logits[:, :-1].float()
    return -F.cross_entropy(lg.reshape(-1, lg.size(-1)), ids[:, 1:].reshape(-1), reduction="none").view(ids.size(0), -1)


def forward_hidden(gpt: GPT, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GPT's logits (B, T, v) and its last hidden states after the final LayerNorm (B, T, C)."""
    seen: list[torch.Tensor] = []
    handle = gpt.ln_f.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        logits, _, _ = gpt(ids)
    finally:
        handle.remove()
    return logits, seen[0]


@torch.no_grad()
def sample(gpt: GPT, prompts: list[list[int]], max_new: int, end_id: int, gen: torch.Generator,
           temperature: float = 1.0, top_k: int = 0, banned: tuple[int, ...] = ()) -> list[list[int]]:
    """A response to each prompt (ending with `end_id` unless it ran out of room), sampled with the
    key/value cache. Prompts of one length go together, so no padding mask is needed."""
    from dlcli.lm.generate import sample_next

    device = next(gpt.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for length, rows in sorted(by_len.items()):
        steps = min(max_new, gpt.cfg.block_size - length)
        idx = torch.tensor([prompts[i] for i in rows], device=device)
        logits, _, cache = gpt(idx)
        new = torch.empty(len(rows), 0, dtype=torch.long)
        done = torch.zeros(len(rows), dtype=torch.bool)
        for _ in range(steps):
            last = logits[:, -1, :].float().cpu()
            if banned:
                last[:, list(banned)] = float("-inf")
            nxt = sample_next(last, temperature, top_k, 1.0, gen)
            new = torch.cat([new, nxt[:, None]], dim=1)
            done |= nxt == end_id
            if bool(done.all()):
                break
            logits, _, cache = gpt(nxt[:, None].to(device), cache)
        for r, i in enumerate(rows):
            seq = new[r].tolist()
            out[i] = seq[: seq.index(end_id) + 1] if end_id in seq else seq
    return out


def banned_ids(tok: Any) -> tuple[int, ...]:
    """Tokens a response never uses: the unknown and padding tokens."""
    return tuple(i for t in ("<unk>", "<pad>") if (i := tok.token_to_id(t)) is not None)


def decode(tok: Any, ids: list[int], end_id: int) -> str:
    return tok.decode([i for i in ids if i != end_id], skip_special_tokens=False)


# ---------------------------------------------------------------------------------------------- runs


def open_lm(path: str, device: str) -> Any:
    """A causal GPT language-model run (train-transformer, or an earlier RLHF stage)."""
    from dlcli.lm.run import open_run

    run = open_run(path, device)
    if not isinstance(run.model, GPT) or not run.model.cfg.causal:
        raise InputError(f"{path}: RLHF needs a causal GPT run (from 'dlcli train-transformer' or an rlhf stage)")
    return run


def same_tokenizer(a: Any, b: Any, a_name: str, b_name: str) -> None:
    from dlcli.text.vocabulary import vocab_hash

    if vocab_hash(a) != vocab_hash(b):
        raise InputError(f"{a_name}: its tokenizer differs from the one of {b_name} (token ids would not match)")


def write_lm(run: Path, gpt: GPT, tokenizer_from: Path) -> None:
    """model.safetensors (the bare GPT, so `generate` and `evaluate` read it) and tokenizer.json."""
    rundir.save_tensors(gpt.state_dict(), run / "model.safetensors")
    if tokenizer_from.resolve() != (run / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer_from, run / "tokenizer.json")


def mean_over_processes(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """`total / count` for a training step, with `count` summed over every process under torchrun and the
    result multiplied by their number: DDP averages the processes' gradients, which makes that average
    the gradient of the mean over the whole batch (the single-process result)."""
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()):
        return total / count
    count = count.detach().float().clone()
    tdist.all_reduce(count)
    return total * tdist.get_world_size() / count


@dataclass
class Loop:
    """What a training stage hands the shared loop."""

    name: str  # the progress label
    model: torch.nn.Module
    n_train: int  # training examples; every step draws batch_size of them, reshuffled each pass
    # (net, this process's example indices) -> (loss, statistics as means over those examples); the loss
    # must use `mean_over_processes` so that 2 processes train like 1
    step: Callable[[torch.nn.Module, list[int]], tuple[torch.Tensor, dict[str, float]]]
    evaluate: Callable[[], dict[str, float]]  # held-out figures (the main process only)
    plots: Callable[[list[dict[str, Any]]], None]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # kept in checkpoints (restored in place)
    show: tuple[str, ...] = ()  # held-out figures the progress line shows
    unused_parameters: bool = False  # some parameters get no gradient (DDP must look for them)
    precision: precision.Precision | None = None  # set by train_loop: what the forward passes ran in


def train_loop(cfg: StageConfig, run: Path, loop: Loop, on_progress: OnProgress, resume: bool,
               d: Dist) -> tuple[int, dict[str, float], float]:
    """Minibatches of shuffled example indices on the shared loop (`train.loop`); under torchrun each
    process takes its share of every batch. Returns (steps, last evaluation, seconds)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from dlcli.train import checkpoint, distributed
    from dlcli.train.loop import Saved, Stage, Update, fit
    from dlcli.train.optim import apply_gradients, build_optimizer, lr_at, set_lr

    model = loop.model
    device = next(model.parameters()).device
    prec = loop.precision = resolve_precision(cfg, device, run, d)
    optimizer = build_optimizer(model, cfg.optim, device)
    budget = cfg.budget(max(1, math.ceil(loop.n_train / cfg.batch_size)))
    g = torch.Generator().manual_seed(cfg.seed)  # the shuffle
    order: list[int] = []
    resumed = None
    if resume:
        resumed, extra = checkpoint.load(run, model, optimizer, device)
        order = list(resumed.get("order", []))
        g.set_state(extra.pop("shuffle").cpu())
        for k, v in extra.items():
            loop.extra[k].copy_(v)
    net = DDP(model, find_unused_parameters=loop.unused_parameters) if d.enabled else model
    t0, done_before = time.perf_counter(), (resumed or {}).get("elapsed", 0.0)

    def step(done: int) -> Update:
        nonlocal order
        if len(order) < cfg.batch_size:
            order += torch.randperm(loop.n_train, generator=g).tolist()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size:]
        frac = budget.fraction(done, done_before + time.perf_counter() - t0)
        set_lr(optimizer, lr := lr_at(done, cfg.optim, frac))
        mine = idx[d.rank:: d.world]
        with prec.autocast():
            loss, stats = loop.step(net, mine)
        apply_gradients(model, optimizer, loss, cfg.optim.grad_clip)
        return Update(loss.detach(), stats, {"lr": lr}, weight=len(mine))

    def evaluate(done: int) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            out = loop.evaluate()
        model.train()
        return out

    def show(rec: dict[str, Any], last_eval: dict[str, Any]) -> dict[str, Any]:
        keys = [k for k in rec if k not in ("step", "lr", "elapsed")][:3]
        return {**{k: rec[k] for k in keys}, **{k: last_eval[k] for k in loop.show if k in last_eval}}

    stage = Stage(loop.name, step, lambda: Saved(model, optimizer, {"order": order},
                                                  {"shuffle": g.get_state(), **loop.extra}),
                  evaluate=evaluate, plots=loop.plots, show=show)
    model.train()
    try:
        result = fit(stage, run, budget, cfg.every(), d, on_progress, resumed)
    finally:
        distributed.cleanup(d)
    return result.steps, result.last_eval, result.elapsed


def resolve_precision(cfg: StageConfig, device: torch.device, run: Path, d: Dist) -> precision.Precision:
    """The stage's precision on `device` (by the policy's width), recorded in the run's meta.json."""
    prec = precision.resolve(cfg.precision, device, width=cfg.model.n_embd)
    if d.main:
        rundir.update_meta(run, device=str(device), precision=prec.record())
    return prec


def setup(cfg: StageConfig) -> tuple[torch.device, Dist]:
    """The device, and under torchrun the process group (gloo on CPU; on CUDA nccl, a GPU per process)."""
    from dlcli.train import distributed

    device, d = distributed.setup_device(cfg.device)
    if cfg.batch_size < d.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is smaller than the {d.world} processes sharing it")
    return device, d


def start_run(cfg: StageConfig, stage: str, inputs: list[str], force: bool, resume: bool, dist: Dist,
              resumable: tuple[str, ...] = RESUMABLE) -> Path:
    """Create the run directory (the main process), or reopen it for `resume` after checking that
    the config is the run's own (only budgets, intervals and the device may change)."""
    run = Path(cfg.output)
    if resume:
        rundir.check_resume(run, cfg, resumable)
    if dist.main:
        rundir.create(run, cfg, stage, inputs, force=force, resume=resume)
    if dist.enabled:
        torch.distributed.barrier()
    return run

