"""Bench for `dlcli rlhf` on the toy task whose "human" is a program (dlcli/rlhf/toytask.py), CPU.

    python bench/rlhf.py [--work DIR] [--threads 1] [--no-trl]

1. data from sample_data/rlhf_task.py; a tiny character GPT pretrained with `dlcli train-transformer`;
2. SFT, reward model, PPO and DPO with the library;
3. targets: the reward model's held-out pairwise accuracy (>= 95%); for PPO and DPO the TRUE reward
   (the rule's score) of sampled answers to held-out prompts (a wording no training prompt uses) must
   rise by at least half the gap between the SFT model and the best achievable (1.0), with the mean KL
   to the SFT model below KL_BOUND nats per response; true reward and KL over training are plotted.
   DPO runs with rpo_alpha 1 (plus the chosen responses' NLL); pure DPO is shown beside it;
4. speed: DPO steps/s against TRL's DPOTrainer on an identical GPT-2-shaped model (same layers, width,
   heads, context, vocabulary), the same pairs, batch size and precomputed reference log-probs, in this
   run. TRL is optional: `pip install -e '.[bench]'` (it must not change torch; check with --dry-run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "sample_data"))

KL_BOUND = 5.0  # nats per response: the documented bound on the mean KL to the reference
SAMPLES_PER_PROMPT = 16
MODEL = {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 48}


def sh(*args: Any) -> None:
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


def prepare(work: Path) -> dict[str, Path]:
    import rlhf_task

    rlhf_task.write(work)
    dl = REPO / ".venv" / "bin" / "dlcli"
    sh(dl, "preprocess", work / "corpus.txt", "-l", "char", "--whole", "-o", work / "corpus.tok", "-q", "-f")
    sh(dl, "vocab", "build", work / "corpus.tok", "-o", work / "chars.json", "-q", "-f")
    sh(dl, "vocab", "encode", work / "corpus.tok", "-t", work / "chars.json", "-o", work / "corpus.ids", "-q", "-f")
    t = time.perf_counter()
    sh(dl, "train-transformer", "-d", work / "corpus.ids", "-o", work / "base", "--layers", MODEL["n_layer"],
       "--heads", MODEL["n_head"], "--embd", MODEL["n_embd"], "--block-size", MODEL["block_size"], "--batch-size",
       32, "--lr", 0.003, "--max-steps", 400, "--seed", 1, "--device", "cpu", "-q", "-f")
    print(f"pretraining: 400 steps in {time.perf_counter() - t:.0f} s")
    return {k: work / f"{k}.jsonl" for k in ("sft", "prefs", "prompts", "heldout")} | {"base": work / "base"}


class TrueReward:
    """The rule's mean score and the KL to the reference of answers sampled for the held-out prompts."""

    def __init__(self, ref_run: Path) -> None:
        from dlcli.rlhf import policy, runs, tokens, toytask

        self.p, self.k, self.t = policy, tokens, toytask
        ref = runs.open_lm(str(ref_run), "cpu")
        self.ref, self.tok = ref.model, ref.tokenizer
        self.end = tokens.end_token(self.tok, str(ref_run))
        self.prompts = [p["prompt"] for p in toytask.held_out_prompts()] * SAMPLES_PER_PROMPT
        self.ids = [tokens.encode(self.tok, p) for p in self.prompts]

    def __call__(self, gpt: Any, seed: int = 0) -> dict[str, float]:
        p, k = self.p, self.k
        was = gpt.training
        gpt.eval()
        g = torch.Generator().manual_seed(seed)
        resp = p.sample(gpt, self.ids, 24, self.end, g, 1.0, banned=k.banned_ids(self.tok))
        x, m = k.batch(self.ids, resp, self.end, "cpu")
        with torch.no_grad():
            kl = ((p.token_logprobs(gpt(x)[0], x) - p.token_logprobs(self.ref(x)[0], x)) * m).sum(1).mean()
        gpt.train(was)
        texts = [k.decode(self.tok, r, self.end) for r in resp]
        true = sum(self.t.score(p, a) for p, a in zip(self.prompts, texts)) / len(texts)
        self.last = list(zip(self.prompts, texts))
        return {"true_reward": true, "true_kl": float(kl)}


def stages(work: Path, files: dict[str, Path]) -> dict[str, Any]:
    from dlcli.rlhf import dpo, ppo, reward, sft
    from dlcli.train.config import OptimConfig

    out: dict[str, Any] = {}
    t = time.perf_counter()
    out["sft"] = sft.run(sft.SFTConfig(base=str(files["base"]), data=str(files["sft"]), output=str(work / "sft"),
                                       max_steps=300, batch_size=32, device="cpu", optim=OptimConfig(lr=1e-3)),
                         force=True)
    print(f"sft: {out['sft']['steps']} steps in {time.perf_counter() - t:.0f} s, held-out completion loss "
          f"{out['sft']['val_loss_before']:.4f} -> {out['sft']['val_loss']:.4f}")
    t = time.perf_counter()
    out["rm"] = reward.run(reward.RewardConfig(base=str(files["base"]), data=str(files["prefs"]),
                                               output=str(work / "rm"), max_steps=300, batch_size=32, device="cpu",
                                               optim=OptimConfig(lr=1e-3)), force=True)
    print(f"reward model: {out['rm']['steps']} steps in {time.perf_counter() - t:.0f} s, held-out pairwise accuracy "
          f"{100 * out['rm']['val_accuracy']:.1f}% on {out['rm']['val_pairs']} pairs, mean margin "
          f"{out['rm']['val_margin']:.2f}  (target >= 95%)")
    probe = TrueReward(work / "sft")
    out["sft_true"] = probe(probe.ref)
    t = time.perf_counter()
    out["ppo"] = ppo.run(ppo.PPOConfig(sft=str(work / "sft"), reward_model=str(work / "rm"), data=str(files["prompts"]),
                                       output=str(work / "ppo"), max_steps=60, batch_size=64, device="cpu",
                                       eval_interval=5, sample_interval=20), force=True, probe=probe)
    out["ppo_secs"] = time.perf_counter() - t
    out["ppo_samples"] = probe.last[:6]  # one per topic
    t = time.perf_counter()
    out["dpo"] = dpo.run(dpo.DPOConfig(sft=str(work / "sft"), data=str(files["prefs"]), output=str(work / "dpo"),
                                       max_steps=200, batch_size=32, device="cpu", eval_interval=20, beta=0.1,
                                       rpo_alpha=1.0), force=True, probe=probe)
    out["dpo_secs"] = time.perf_counter() - t
    out["dpo_samples"] = probe.last[:6]
    pure = dpo.run(dpo.DPOConfig(sft=str(work / "sft"), data=str(files["prefs"]), output=str(work / "dpo-pure"),
                                 max_steps=200, batch_size=32, device="cpu", eval_interval=20, beta=0.1), force=True,
                   probe=probe)
    out["dpo_pure"] = pure  # its summary holds the last evaluation, true reward included
    return out


def curves(work: Path) -> Path:
    """True reward and KL over training for PPO and DPO, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlcli.core.rundir import read_metrics

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for name in ("ppo", "dpo"):
        pts = [(r["step"], r["true_reward"], r["true_kl"]) for r in read_metrics(work / name) if "true_reward" in r]
        if pts:
            s, rw, kl = zip(*pts)
            axes[0].plot(s, rw, marker="o", markersize=3, label=name.upper())
            axes[1].plot(s, kl, marker="o", markersize=3, label=name.upper())
    axes[0].set(xlabel="step", ylabel="true reward (held-out prompts)", title="reward")
    axes[1].axhline(KL_BOUND, color="gray", linestyle="--", label="bound")
    axes[1].set(xlabel="step", ylabel="KL to SFT (nats / response)", title="KL")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = work / "rlhf_curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def report(out: dict[str, Any]) -> bool:
    sft_r = out["sft_true"]["true_reward"]
    need = sft_r + 0.5 * (1.0 - sft_r)
    ok = out["rm"]["val_accuracy"] >= 0.95
    print(f"\nheld-out prompts x {SAMPLES_PER_PROMPT} samples, temperature 1; best achievable true reward 1.0")
    print(f"SFT   true reward {sft_r:.3f}; target for PPO and DPO >= {need:.3f} with KL < {KL_BOUND} nats/response")
    for name in ("ppo", "dpo"):
        from dlcli.core.rundir import read_metrics

        last = [r for r in read_metrics(Path(out[name]["run"])) if "true_reward" in r][-1]
        good = last["true_reward"] >= need and last["true_kl"] < KL_BOUND
        ok &= good
        own = f" (its own logged val_kl {last['val_kl']:.2f}, on its held-out split)" if "val_kl" in last else ""
        print(f"{name.upper():5} true reward {last['true_reward']:.3f}, KL {last['true_kl']:.2f} nats/response{own}, "
              f"{out[name]['steps']} steps in {out[name + '_secs']:.0f} s  {'PASS' if good else 'FAIL'}")
        for p, a in out[name + "_samples"]:
            print(f"      {p}{a}")
    pure = out["dpo_pure"]
    print(f"(pure DPO, rpo_alpha 0, same budget: true reward {pure['true_reward']:.3f}, KL {pure['true_kl']:.2f} "
          "nats/response; it lowers both responses and drifts to text neither contains)")
    return ok


def dpo_speed(work: Path, files: dict[str, Path], steps: int = 60, batch: int = 32) -> None:
    """Steady-state DPO steps/s: dlcli against TRL's DPOTrainer, same model shape, data and batch."""
    from dlcli.core.rundir import read_metrics
    from dlcli.rlhf import dpo

    def steady(records: list[dict[str, Any]]) -> float:
        r = [x for x in records if "elapsed" in x and "val_loss" not in x]
        return (r[-1]["step"] - r[0]["step"]) / (r[-1]["elapsed"] - r[0]["elapsed"])

    dpo.run(dpo.DPOConfig(sft=str(work / "sft"), data=str(files["prefs"]), output=str(work / "dpo-speed"),
                          max_steps=steps, batch_size=batch, device="cpu", eval_interval=0, log_interval=10),
            force=True)
    ours = steady(read_metrics(work / "dpo-speed"))
    from dlcli.lm.run import open_run

    n = sum(p.numel() for p in open_run(work / "dpo-speed", "cpu").model.parameters())
    print(f"\nDPO speed, batch {batch} pairs, {steps} steps, steady state (after step 10):")
    print(f"dlcli rlhf dpo    {ours:7.2f} steps/s  (dlcli GPT {n:,} parameters)")
    try:
        theirs = trl_speed(work, files, steps, batch)
    except Exception as e:  # an optional peer: report why it did not run
        print(f"TRL DPOTrainer    did not run: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return
    print(f"TRL DPOTrainer    {theirs:7.2f} steps/s")
    print(f"speed-up          {ours / theirs:7.2f}x  (target >= 1.0x)")


def trl_speed(work: Path, files: dict[str, Path], steps: int, batch: int) -> float:
    import datasets
    import transformers
    import trl
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback

    from dlcli.rlhf import data as rdata
    from dlcli.text import vocabulary

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    tok = vocabulary.load(work / "sft" / "tokenizer.json")
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="\n", pad_token="\n", unk_token="<unk>")
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=MODEL["block_size"], n_embd=MODEL["n_embd"],
                     n_layer=MODEL["n_layer"], n_head=MODEL["n_head"], resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, bos_token_id=0, eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.eos_token_id)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    rows = rdata.read(files["prefs"], "prefs").rows
    ds = datasets.Dataset.from_list(rows)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            times.append(time.perf_counter())

    args = trl.DPOConfig(output_dir=str(work / "trl"), per_device_train_batch_size=batch, max_steps=steps,
                         learning_rate=2e-4, beta=0.1, logging_steps=1000, save_strategy="no", report_to=[],
                         use_cpu=True, precompute_ref_log_probs=True, max_length=MODEL["block_size"],
                         dataloader_num_workers=0, disable_tqdm=True, seed=1)
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=hf_tok)
    trainer.add_callback(Clock())
    trainer.train()
    print(f"                  (TRL {trl.__version__}, transformers {transformers.__version__}, GPT2LMHeadModel "
          f"{sum(p.numel() for p in model.parameters()):,} parameters)")
    return (len(times) - 10) / (times[-1] - times[9])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these tiny models)")
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL speed comparison")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # for the pretraining subprocess
    print(f"torch {torch.__version__}, {a.threads} thread(s), CPU; model {json.dumps(MODEL)}")
    work = a.work or Path(tempfile.mkdtemp(prefix="rlhf-bench-"))
    files = prepare(work)
    out = stages(work, files)
    ok = report(out)
    print(f"plot: {curves(work)}  (and {work}/ppo/reward.png, kl.png)")
    if not a.no_trl:
        dpo_speed(work, files)
    print("\nall quality targets met" if ok else "\nsome quality targets missed")


if __name__ == "__main__":
    main()
