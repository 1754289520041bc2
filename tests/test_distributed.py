"""dlcli.train.distributed: the process group a torchrun run joins; DDP runs of every training loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlcli.core.rundir import load_tensors
from dlcli.train import distributed

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def test_plain_run_is_a_world_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = distributed.setup(torch.device("cpu"))
    assert (d.rank, d.world, d.main, d.enabled) == (0, 1, True, False)
    assert distributed.any_flag(d, True) and not distributed.any_flag(d, False)


def test_cuda_runs_keep_gloo_for_cpu_tensors(monkeypatch):
    """Flags and logged means are CPU tensors; nccl alone cannot reduce them."""
    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", chosen.append)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed.setup(torch.device("cuda", 0)).rank == 1
    distributed.setup(torch.device("cpu"))
    assert chosen == ["cpu:gloo,cuda:nccl", "gloo"]


# ------------------------------------------------------------------------------------------------------------------
# DDP under torchrun, one launch for every training loop family: starting torchrun and two workers (each imports
# torch) costs far more than the tiny runs, so one pair of gloo processes runs them all, one after another, and
# each test below checks its own runs against the single-process result.

LAUNCH = """
import os, shlex, sys
from dlcli.core.rundir import save_tensors
from dlcli.train import distributed, optim

distributed.cleanup = lambda d: None  # one process group for the runs of this launch (torchrun has one store)
seen = []
build = optim.build_optimizer
optim.build_optimizer = lambda model, *a: seen.append(model) or build(model, *a)  # the model each process trains
from dlcli.cli.app import main

rank = os.environ["RANK"]
for args in sys.argv[1:]:
    if args == "update":  # one PPO update of fixed rollouts, each process with its share
        sys.path.insert(0, os.environ["TESTS"])
        from test_distributed import update_fixed_rollouts

        save_tensors(update_fixed_rollouts(int(rank), 2)[1], f"update.rank{rank}.safetensors")
        continue
    fails = args.startswith("!")  # a run that must stop with an error
    argv = shlex.split(args.lstrip("!"))
    sys.argv = ["dlcli", *argv]
    try:
        main()
    except SystemExit as e:
        assert bool(e.code) == fails, (args, e.code)
    save_tensors(seen[-1].state_dict(), f"{argv[argv.index('-o') + 1]}.rank{rank}.safetensors")
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # every file is written: skip the interpreter's teardown of torch and gloo (about a second)
"""


def torchrun(cwd: Path, *argv: str) -> str:
    """`argv` run by 2 gloo processes started by torchrun (a free port, so parallel runs do not collide);
    returns their stderr."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": str(here.parent), "TESTS": str(here), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", port, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # torchrun and its workers
        p.communicate()
        raise
    assert p.returncode == 0, err[-8000:]
    return err


LM_SETS = {"train-rnn": ["model.n_hidden=16", "model.n_layer=1", "seq_len=16"],
           "train-transformer": ["model.n_embd=16", "model.n_head=2", "model.n_layer=1", "model.block_size=16",
                                 "grad_accum=2"]}
LM_COMMON = ["max_steps=8", "batch_size=8", "eval_interval=0", "checkpoint_interval=0", "device=cpu", "log_interval=4"]
MT_TINY = ["--layers", "1", "--heads", "2", "--embd", "16", "--block-size", "16", "--max-time", "0", "--device", "cpu",
           "--set", "data.held_out=20", "--set", "data.vocab_size=300", "--set", "optim.warmup_steps=2",
           "--set", "log_interval=2", "--set", "bleu_sample=10", "-q"]
MT_ARGS = ["train-transformer", "--task", "translate", "-d", "small.tsv", "--max-steps", "4", "--set", "batch_size=16",
           "--set", "eval_interval=0", "--set", "model.dropout=0", *MT_TINY]
RLHF_DATA = {"sft": "sft", "reward": "prefs", "dpo": "prefs"}


def lm_args(command: str, tm_ids: Path) -> list[str]:
    return [command, "-d", str(tm_ids), "-q", *[x for s in LM_SETS[command] + LM_COMMON for x in ("--set", s)]]


def rlhf_args(stage: str, toy: dict[str, str]) -> list[str]:
    return (["rlhf", stage, toy["base"], toy[RLHF_DATA[stage]], "--max-steps", "4", "--batch-size", "8", "--device",
             "cpu", "-q", "--set", "log_interval=2", "--set", "eval_interval=0"]
            + (["--rpo-alpha", "0.5"] if stage == "dpo" else []))


def ppo_args(toy: dict[str, str]) -> str:
    return (f"rlhf ppo {toy['base']} rm --prompts {toy['prompts']} --batch-size 8 --max-new-tokens 6 --adaptive-kl "
            "--ppo-epochs 2 --device cpu -q --set mini_batch_size=4 --set sample_interval=2 --set eval_interval=2")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, request) -> dict:
    """The one torchrun launch: its directory (a run per check, plus `<run>.rank<r>.safetensors`, the weights
    each process trained), its stderr and the RLHF toy inputs. The Time Machine and the French pairs are left
    out when the real data is not there (their tests skip)."""
    import shlex

    from test_rlhf_cli import CHARS, make_base, write_jsonl

    from dlcli.rlhf import reward, toytask

    d = tmp_path_factory.mktemp("ddp")
    toy = {"base": make_base(d, CHARS), "sft": write_jsonl(d / "sft.jsonl", toytask.sft_pairs(40)),
           "prefs": write_jsonl(d / "prefs.jsonl", toytask.preference_pairs(40)),
           "prompts": write_jsonl(d / "prompts.jsonl", toytask.prompts(20))}
    runs = [shlex.join([*rlhf_args(stage, toy), "-o", f"two-{stage}"]) for stage in RLHF_DATA]
    runs += [shlex.join([*rlhf_args(stage, toy), "--lora-rank", "4", "-o", f"two-{stage}-lora"])  # LoRA
             for stage in RLHF_DATA]
    reward.run(reward.RewardConfig(base=toy["base"], data=toy["prefs"], output=str(d / "rm"), max_steps=1,
                                   batch_size=8, device="cpu"))
    ppo = ppo_args(toy)
    runs += [f"{ppo} -o whole --max-steps 2", f"{ppo} -o cut --max-steps 1", f"{ppo} -o cut --max-steps 2 --resume",
             f"{ppo} -o lora --max-steps 2 --lora-rank 4", "update"]
    if (DATA / "timemachine.txt").is_file():
        tm_ids = request.getfixturevalue("tm_ids")
        runs += [shlex.join([*lm_args(command, tm_ids), "-o", f"two-{command}"]) for command in LM_SETS]
    if (DATA / "fra-eng.txt").is_file():
        lines = (DATA / "fra-eng.txt").read_text(encoding="utf-8").splitlines(True)
        (d / "small.tsv").write_text("".join(lines[:600]), encoding="utf-8")
        runs.append(shlex.join([*MT_ARGS, "-o", "two-translate"]))
    runs.append(f"!{ppo} -o boom --max-steps 20 --lr 0.3 --set kl_stop=0.5 --set optim.grad_clip=0")  # fails: last
    (d / "launch.py").write_text(LAUNCH)
    return {"dir": d, "err": torchrun(d, "launch.py", *runs), "toy": toy}


@pytest.mark.parametrize("command", ["train-rnn", "train-transformer"])
def test_ddp_lm_two_processes_match_one(cli, tm_ids, ddp, command):
    """Two gloo processes with half the batch each give the single-process result."""
    r = cli(*lm_args(command, tm_ids), "-o", "one")
    assert r.exit_code == 0, r.stderr
    a = load_tensors("one/model.safetensors")
    b = load_tensors(ddp["dir"] / f"two-{command}" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_ddp_translate_two_processes_match_one(cli, data, ddp):
    Path("small.tsv").write_bytes((ddp["dir"] / "small.tsv").read_bytes())
    r = cli(*MT_ARGS, "-o", "one")
    assert r.exit_code == 0, r.stderr
    # the same losses (a mean over all target tokens of the batch, whichever process holds them) ...
    losses = [[json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
              for run in (Path("one"), ddp["dir"] / "two-translate")]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-5)
    # ... and the same weights, up to float noise that Adam magnifies in parameters whose true gradient is 0
    # (the key biases: softmax ignores a constant added to every score)
    a, b = load_tensors("one/model.safetensors"), load_tensors(ddp["dir"] / "two-translate/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5 if "kv.bias" not in k else 1e-3), k


@pytest.mark.parametrize("stage", list(RLHF_DATA))
def test_ddp_rlhf_two_processes_match_one(ddp, stage: str) -> None:
    """Two gloo processes, each with half of every batch, train the weights one process trains."""
    from test_rlhf_cli import stage_run

    run, cfg = stage_run(stage, ddp["toy"], "one", max_steps=4, log_interval=2, eval_interval=0)
    run(cfg)
    two = ddp["dir"] / f"two-{stage}"
    losses = [[r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
              for d in (Path("one"), two)]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-5)  # steps 2 and 4
    # the same weights, up to float noise that Adam magnifies in a parameter whose true gradient is 0 (the
    # reward head's bias: it cancels in r_chosen - r_rejected)
    a, b = load_tensors("one/model.safetensors"), load_tensors(two / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5 if k != "head.bias" else 1e-3), k


@pytest.mark.parametrize("stage", list(RLHF_DATA))
def test_ddp_lora_two_processes_match_one(ddp, stage: str) -> None:
    """LoRA under DDP: the two processes hold the same adapters (and reward head), those one process trains
    (frozen weights take no part in the all-reduce)."""
    from test_rlhf_cli import stage_run

    from dlcli.lm.config import LoRAConfig

    run, cfg = stage_run(stage, ddp["toy"], "one", max_steps=4, log_interval=2, eval_interval=0,
                         lora=LoRAConfig(rank=4))
    run(cfg)
    two = ddp["dir"] / f"two-{stage}-lora"
    a, b = load_tensors("one/adapter.safetensors"), load_tensors(two / "adapter.safetensors")
    assert a.keys() == b.keys() and all(k.endswith(("lora_A", "lora_B")) or k.startswith("head.") for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5 if k != "head.bias" else 1e-3), k  # head.bias: see above
    r0, r1 = (load_tensors(ddp["dir"] / f"two-{stage}-lora.rank{r}.safetensors") for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)


def update_fixed_rollouts(rank: int = 0, world: int = 1) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The policy's weights before and after 3 PPO epochs on one minibatch of 8 fixed rollouts (responses of
    1 to 6 tokens); under DDP process `rank` of `world` takes its share of them."""
    from dataclasses import fields

    from torch.nn.parallel import DistributedDataParallel as DDP

    from dlcli.models.config import GPTConfig
    from dlcli.models.gpt import GPT
    from dlcli.rlhf.config import PPOConfig
    from dlcli.rlhf.policy import token_logprobs
    from dlcli.rlhf.ppo import PolicyWithValue, Rollout, ppo_update
    from dlcli.train.config import OptimConfig
    from dlcli.train.optim import build_optimizer

    torch.manual_seed(0)
    policy = PolicyWithValue(GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=1, n_head=2, n_embd=16,
                                           dropout=0.0)))
    torch.nn.init.normal_(policy.value.weight, std=0.1)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(11, (8, 10), generator=g)
    j = torch.arange(9)
    mask = (j >= 3) & (j < 4 + torch.arange(8)[:, None] % 6)
    with torch.no_grad():
        logits, values = policy(ids)
    ro = Rollout(ids, mask, token_logprobs(logits, ids) + 0.1 * torch.randn(8, 9, generator=g), values[:, :-1] * mask,
                 torch.randn(8, 9, generator=g) * mask, torch.randn(8, 9, generator=g) * mask, torch.zeros(8),
                 torch.zeros(8), [[]] * 8)
    mine = slice(rank * 8 // world, (rank + 1) * 8 // world)
    ro = Rollout(*(getattr(ro, f.name)[mine] for f in fields(Rollout)))
    cfg = PPOConfig(data="x", batch_size=8, mini_batch_size=8, ppo_epochs=3,
                    optim=OptimConfig(lr=1e-2, weight_decay=0.0, warmup_steps=0, schedule="constant"))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    net = DDP(policy) if world > 1 else policy
    ppo_update(net, build_optimizer(policy, cfg.optim, torch.device("cpu")), ro, cfg, torch.Generator(), world)
    return before, policy.state_dict()


def test_ddp_ppo_keeps_one_policy_on_every_process_and_resumes(ddp) -> None:
    """PPO by 2 gloo processes through the CLI: the policies (and value heads) of the two processes are the
    same after every run, the first one alone logs, a run stopped at step 1 and resumed (each process
    with its own sampling stream back) ends with the weights of the run that was not stopped, and an
    exploding KL stops both processes after the same step. And one PPO
    update of fixed rollouts split over the 2 processes (unequal token counts) is the update one process
    makes of all of them: the losses are means over the whole minibatch, the gradients averaged."""
    from test_rlhf_cli import same_weights

    d, err = ddp["dir"], ddp["err"]
    # the KL stop is decided on the whole batch: both processes stop at the same step (or one would hang)
    stops = [line for line in err.splitlines() if "mean KL to the reference reached" in line]
    assert len(stops) == 2 and stops[0] == stops[1] and "is kept in boom" in stops[0], err[-3000:]
    for run in ("whole", "cut", "lora"):
        same_weights(f"{d}/{run}.rank0.safetensors", f"{d}/{run}.rank1.safetensors")
    # LoRA: the adapters and the value head trained, the frozen weights are the base's
    lo, base = load_tensors(f"{d}/lora.rank0.safetensors"), load_tensors(ddp["toy"]["base"] + "/model.safetensors")
    assert (d / "lora/adapter.safetensors").is_file() and not (d / "lora/model.safetensors").exists()
    assert torch.equal(lo["gpt.head.weight"], base["head.weight"])
    assert any(k.endswith("lora_B") and v.abs().sum() > 0 for k, v in lo.items())
    same_weights(f"{d}/whole.rank0.safetensors", f"{d}/cut.rank0.safetensors")
    a, b = load_tensors(f"{d}/whole.rank0.safetensors"), load_tensors(ddp["toy"]["base"] + "/model.safetensors")
    assert not torch.equal(a["gpt.head.weight"], b["head.weight"])  # it trained
    recs = [json.loads(line) for line in (d / "whole/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "reward" in r] == [1, 2]  # one process logs
    last = [r for r in recs if "reward" in r][-1]  # the last step's record; the evaluation's follows it
    assert len(last["samples"]) == 4 and last["kl_coef"] != 0.1 and "val_reward" in recs[-1]
    assert json.loads((d / "whole/checkpoint.json").read_text())["state"]["world"] == 2
    before, one = update_fixed_rollouts()
    assert not torch.allclose(before["gpt.head.weight"], one["gpt.head.weight"], atol=1e-3)  # it learnt
    for rank in (0, 1):
        two = load_tensors(f"{d}/update.rank{rank}.safetensors")
        for k in one:
            assert torch.allclose(one[k], two[k], atol=1e-4), k
