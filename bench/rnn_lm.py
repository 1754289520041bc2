"""Benchmark: `dlcli train-rnn` against a bare PyTorch loop on Tiny Shakespeare.

Throughput: the same model (2-layer LSTM, hidden 256, one-hot inputs over the
65 characters) and batch (32 x 64), AdamW lr 2e-3, gradient clipping 1.0,
trained for a fixed number of steps. Each contender runs in its own process;
runs alternate (bare, dlcli, bare, dlcli, ...) and the median tokens/s of
each is reported, so machine noise hits both alike.

Quality (--quality): dlcli's recommended config (configs/rnn-shakespeare.yaml)
for its 3-minute budget (or --max-time), beside the peer: the bare loop's
2-layer LSTM 256 (random 32 x 64 windows, AdamW 2e-3, constant) trained for
the same wall time in the same run. Both report the validation loss
(nats/char) on nanoGPT's split (last 10%), the state carried across 64-token
windows as `dlcli evaluate` does. The target (issue 15) is <= 1.65 within 3
minutes in fp32 on a 2-core AVX2 CPU.

--avx2 runs every subprocess with ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2 and MKL_ENABLE_INSTRUCTIONS=AVX2 and in fp32: an
AVX512 CPU then approximates an AVX2-only one (fp32 only: bf16 speed is
never measured this way).

Usage: python bench/rnn_lm.py [--steps 300] [--repeats 3] [--quality [--max-time 3m]] [--avx2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"

# The peer: the same 2x256 one-hot LSTM written out in bare PyTorch; the two scripts below add their loops.
BARE_MODEL = r"""
import sys, time, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(1337)
text = open(sys.argv[1], encoding="utf-8").read()
chars = sorted(set(text)); stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data)); train, val = data[:n], data[n:]
V, B, T, H = len(chars), 32, 64, 256

class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(V, H, num_layers=2, batch_first=True)
        self.head = nn.Linear(H, V)
    def forward(self, x, h=None):
        out, h = self.rnn(F.one_hot(x, V).float(), h)
        return self.head(out), h

model = LM()
opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.0)
def step():
    ix = torch.randint(len(train) - T - 1, (B,))
    x = torch.stack([train[i:i + T] for i in ix]); y = torch.stack([train[i + 1:i + T + 1] for i in ix])
    loss = F.cross_entropy(model(x)[0].reshape(-1, V), y.reshape(-1))
    opt.zero_grad(set_to_none=True); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
"""

BARE = BARE_MODEL + r"""
steps = int(sys.argv[2])
for i in range(steps + 10):
    if i == 10:
        t0 = time.perf_counter()  # after warm-up
    step()
print(steps * B * T / (time.perf_counter() - t0))
"""

BARE_QUALITY = BARE_MODEL + r"""
budget, steps = float(sys.argv[2]), 0
t0 = time.perf_counter()
while time.perf_counter() - t0 < budget:
    step(); steps += 1
model.eval(); s = (len(val) - 1) // B; xs = val[:s * B].view(B, s); ys = val[1:s * B + 1].view(B, s)
tot, h = 0.0, None
with torch.no_grad():  # B streams, the state carried from window to window
    for i in range(0, s, T):
        logits, h = model(xs[:, i:i + T], h)
        tot += F.cross_entropy(logits.reshape(-1, V), ys[:, i:i + T].reshape(-1), reduction="sum").item()
print(tot / (s * B), steps)
"""

OURS = r"""
import sys, time, json
from dlcli.core.config import build_config
from dlcli.lm.config import TrainRNNConfig
from dlcli.lm.train import train_rnn
ids, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = build_config(TrainRNNConfig, None, [f"data.train={ids}", f"output={out}", f"max_steps={steps}",
    "model.cell=lstm", "model.n_layer=2", "model.n_hidden=256", "model.n_embd=0", "batch_size=32", "seq_len=64",
    "optim.lr=2e-3", "optim.schedule=constant", "optim.grad_clip=1.0", "eval_interval=0",
    "checkpoint_interval=0", "log_interval=10", "device=cpu", "precision=fp32"])  # fp32, as the bare loop
train_rnn(cfg, force=True)
rows = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if '"tokens_per_s"' in l]
rows = rows[1:]  # the first window includes warm-up
print(sum(r["tokens_per_s"] for r in rows) / len(rows))
"""


def sh(cmd: list[str], cwd: Path) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{r.stderr[-2000:]}")
    return r.stdout.strip()


def prepare(work: Path) -> Path:
    py = [sys.executable, "-m", "dlcli"]
    sh([*py, "preprocess", str(DATA), "-l", "char", "--whole", "-o", "ts.tok", "-q", "--force"], work)
    sh([*py, "vocab", "build", "ts.tok", "-o", "tokenizer.json", "-q", "--force"], work)
    sh([*py, "vocab", "encode", "ts.tok", "-t", "tokenizer.json", "-o", "ts.ids", "-q", "--force"], work)
    return work / "ts.ids"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quality", action="store_true", help="also run the recommended config and the bare loop")
    ap.add_argument("--max-time", default="", help="--quality budget (default: the config's, 3m)")
    ap.add_argument("--avx2", action="store_true", help="run as an AVX2-only CPU would (fp32)")
    args = ap.parse_args()
    if args.avx2:
        os.environ.update(AVX2_ENV)  # every subprocess inherits it
        print("AVX2 emulation: " + " ".join(f"{k}={v}" for k, v in AVX2_ENV.items()) + ", fp32")
    work = Path(tempfile.mkdtemp(prefix="dlcli-rnn-bench-"))
    ids = prepare(work)
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(float(sh([sys.executable, "-c", BARE, str(DATA), str(args.steps)], work)))
        ours.append(float(sh([sys.executable, "-c", OURS, str(ids), "run-tput", str(args.steps)], work)))
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"throughput, 2-layer LSTM 256, batch 32 x 64, {args.steps} steps, median of {args.repeats}:")
    print(f"  bare PyTorch loop  {b:9,.0f} tokens/s   (runs: {', '.join(f'{x:,.0f}' for x in bare)})")
    print(f"  dlcli train-rnn    {o:9,.0f} tokens/s   (runs: {', '.join(f'{x:,.0f}' for x in ours)})")
    print(f"  ratio dlcli / bare: {o / b:.2f}x (target >= 1.0)")
    if args.quality:
        from dlcli.core.runtime import parse_duration

        cfg = REPO / "configs" / "rnn-shakespeare.yaml"
        extra = (["--max-time", args.max_time] if args.max_time else []) + (
            ["--set", "precision=fp32"] if args.avx2 else [])
        sh([sys.executable, "-m", "dlcli", "train-rnn", "--config", str(cfg), "--data", str(ids), "-o", "run-q",
            "-q", "--force", *extra], work)
        rows = [json.loads(line) for line in (work / "run-q" / "metrics.jsonl").read_text().splitlines()]
        val = [r for r in rows if "val_loss" in r][-1]
        last = [r for r in rows if "elapsed" in r][-1]
        prec = last.get("precision", "?")
        print(f"quality, {cfg.name} ({prec}): validation loss {val['val_loss']:.4f} nats/char after "
              f"{last['elapsed']:.0f} s and {last['step']} steps (target <= 1.65 within 3 minutes in fp32 on AVX2)")
        budget = parse_duration(args.max_time) if args.max_time else last["elapsed"]
        bval, bsteps = sh([sys.executable, "-c", BARE_QUALITY, str(DATA), str(budget)], work).split()
        print(f"  peer, bare PyTorch 2-layer LSTM 256 loop (fp32, same run): validation loss {float(bval):.4f} "
              f"after {budget:.0f} s and {bsteps} steps")


if __name__ == "__main__":
    main()
