"""Benchmark: LoRA against full fine-tuning of a GPT-2-shaped model (124M parameters), in one process.

The model is dlcli's GPT at GPT-2 small's shape (12 layers, 12 heads, width 768, vocabulary 50,257, tied
head; --block tokens of context) with random weights: speed and memory do not depend on what the weights
hold. Each mode builds the model afresh from the same seed and trains it on the same random batches
(--batch x --block tokens) with AdamW as the stages build it (train/optim.build_optimizer):

    full   every weight trains
    lora   adapters of rank --rank (alpha 16) on every attention and MLP projection, the rest frozen

and reports the trainable parameters, the optimizer state (AdamW's two moments per trainable parameter, in
bytes, read from the optimizer after its first step), the gradients' bytes, the median time of a whole
step (forward, backward, optimizer step) over --steps steps after one untimed step, and the process's
peak resident memory (each mode runs in a fresh process, so the peaks are its own). The modes alternate
--repeats times and the medians of each mode's step times are printed, with LoRA / full ratios.

    python bench/lora.py                       # 2 x 128 tokens, 3 timed steps, 2 rounds
    python bench/lora.py --batch 1 --block 64 --steps 2 --repeats 1   # quicker

--shell DIR runs the commands instead, as a user would: a random GPT-2-shaped model built by
`transformers` (a byte-level tokenizer of 50,257 entries: the 256 bytes, fillers, <|endoftext|>) saved
to DIR/hf, `dlcli import-hf --block-size --block`, then `dlcli rlhf sft` on the toy task's pairs for
--steps + 1 steps with and without `--lora-rank`, each a fresh process: seconds per step (from
metrics.jsonl, after the first) and the process's peak resident memory (wait4).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from pathlib import Path

import torch
from machine import cpu_kind

from dlcli.models import lora
from dlcli.models.config import GPTConfig
from dlcli.models.gpt import GPT
from dlcli.train.config import OptimConfig
from dlcli.train.optim import build_optimizer


def build(mode: str, cfg: GPTConfig, rank: int) -> GPT:
    torch.manual_seed(0)
    model = GPT(cfg)
    if mode == "lora":
        lora.inject(model, ["attn", "mlp"], rank, 16.0)
    return model.train()


def run(mode: str, cfg: GPTConfig, rank: int, batch: int, steps: int) -> dict[str, float]:
    model = build(mode, cfg, rank)
    opt = build_optimizer(model, OptimConfig(lr=1e-4), torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    times = []
    for i in range(steps + 1):
        x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _, loss, _ = model(x[:, :-1], targets=x[:, 1:])
        loss.backward()
        opt.step()
        if i:  # the first step allocates the optimizer's state
            times.append(time.perf_counter() - t)
    trainable, total = lora.count(model)
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return {"trainable": trainable, "total": total, "optim_bytes": state, "grad_bytes": grads,
            "step_s": statistics.median(times), "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def fresh(args: tuple[str, GPTConfig, int, int, int, int]) -> dict[str, float]:
    """`run` in this (fresh) process with the parent's thread count."""
    torch.set_num_threads(args[-1])
    return run(*args[:-1])


def shell(work: Path, a: argparse.Namespace) -> None:
    """import-hf a random 124M GPT-2, then rlhf sft on it in full and with LoRA; print steps/s and peak RSS."""
    import json
    import os
    import subprocess
    import sys

    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from dlcli.rlhf import toytask

    hf, dlcli = work / "hf", [sys.executable, "-m", "dlcli"]
    if not (hf / "model.safetensors").is_file():
        hf.mkdir(parents=True, exist_ok=True)
        vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
        vocab.update({f"<f{i}>": i for i in range(len(vocab), 50256)})
        vocab["<|endoftext|>"] = 50256
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.save(str(hf / "tokenizer.json"))
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config(bos_token_id=50256, eos_token_id=50256)).save_pretrained(hf)
    if not (work / "base").is_dir():
        subprocess.run([*dlcli, "import-hf", str(hf), "-o", str(work / "base"), "--block-size", str(a.block), "-q"],
                       check=True)
    pairs = work / "sft.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in toytask.sft_pairs(64)), encoding="utf-8")
    for mode, extra in (("full", []), ("lora", ["--lora-rank", str(a.rank)])):
        out = work / f"sft-{mode}"
        argv = [*dlcli, "rlhf", "sft", str(work / "base"), str(pairs), "-o", str(out), "--force", "-q", "-b",
                str(a.batch), "--max-steps", str(a.steps + 1), "--device", "cpu", "--precision", "fp32",
                "--set", "log_interval=1", "--set", "eval_interval=0", "--set", "val_fraction=0.1", *extra]
        p = subprocess.Popen(argv)
        _, status, usage = os.wait4(p.pid, 0)
        assert status == 0, argv
        logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        t = [r["elapsed"] for r in logs if "loss" in r and "val_loss" not in r]
        weights = sum(f.stat().st_size for f in out.glob("*.safetensors") if not f.name.startswith("checkpoint"))
        print(f"rlhf sft {mode:>4}: {(t[-1] - t[0]) / (len(t) - 1):.2f} s/step (batch {a.batch}), peak RSS "
              f"{usage.ru_maxrss / 1024:,.0f} MiB, weights written {weights / 2**20:,.1f} MiB, checkpoint "
              f"{(out / 'checkpoint.safetensors').stat().st_size / 2**20:,.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shell", type=Path, help="run import-hf and rlhf sft in DIR instead (see above)")
    a = ap.parse_args()
    if a.shell:
        print(f"CPU: {cpu_kind()}; torch {torch.__version__}")
        return shell(a.shell, a)
    cfg = GPTConfig(vocab_size=50257, block_size=a.block, n_layer=12, n_head=12, n_embd=768, dropout=0.0)
    print(f"CPU: {cpu_kind()}; torch {torch.__version__}")
    print(f"GPT-2 shape: 12 layers, 12 heads, width 768, vocab 50257; batch {a.batch} x {a.block} tokens, fp32")
    res: dict[str, list[dict[str, float]]] = {"full": [], "lora": []}
    spawn = multiprocessing.get_context("spawn")
    for _ in range(a.repeats):
        for mode, rs in res.items():
            with spawn.Pool(1) as pool:
                rs.append(pool.apply(fresh, ((mode, cfg, a.rank, a.batch, a.steps, torch.get_num_threads()),)))
    out = {}
    for mode, rs in res.items():
        r = dict(rs[0], step_s=statistics.median(x["step_s"] for x in rs),
                 peak_rss=statistics.median(x["peak_rss"] for x in rs))
        out[mode] = r
        print(f"{mode:>4}: trainable {r['trainable']:>12,} of {r['total']:,} | optimizer state "
              f"{r['optim_bytes'] / 2**20:8.1f} MiB | gradients {r['grad_bytes'] / 2**20:7.1f} MiB | peak RSS "
              f"{r['peak_rss'] / 2**20:7.0f} MiB | step {r['step_s']:.2f} s (median of {a.steps} x {a.repeats})")
    f, lo = out["full"], out["lora"]
    print(f"LoRA r={a.rank} / full: trainable {lo['trainable'] / f['trainable']:.4f} "
          f"({100 * lo['trainable'] / f['trainable']:.2f}%), optimizer state {lo['optim_bytes'] / f['optim_bytes']:.4f}, "
          f"peak RSS {lo['peak_rss'] / f['peak_rss']:.2f}, step time {lo['step_s'] / f['step_s']:.2f}x")


if __name__ == "__main__":
    main()
