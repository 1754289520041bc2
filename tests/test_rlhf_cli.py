"""`dlcli rlhf`: tiny end-to-end runs of every stage and the bad input of the issue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlcli.core.rundir import load_tensors
from dlcli.errors import ConfigError, Interrupted
from dlcli.rlhf import toytask

HH = [
    {"chosen": "\n\nHuman: about cats?\n\nAssistant: cats are nice.",
     "rejected": "\n\nHuman: about cats?\n\nAssistant: cats are bad."},
    {"chosen": "\n\nHuman: hi\n\nAssistant: hello.\n\nHuman: about tea?\n\nAssistant: tea is good.",
     "rejected": "\n\nHuman: hi\n\nAssistant: hello.\n\nHuman: about tea?\n\nAssistant: no."},
    {"chosen": "\n\nHuman: rain?\n\nAssistant: rain is fun.",
     "rejected": "\n\nHuman: rain?\n\nAssistant: rain is sad."},
    {"chosen": "\n\nHuman: dogs?\n\nAssistant: dogs are great.",
     "rejected": "\n\nHuman: dogs?\n\nAssistant: dogs are awful."},
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def make_base(path: Path, chars: str, block_size: int = 96, name: str = "base", dropout: float = 0.0) -> str:
    """A tiny, untrained `train-transformer` run over `chars` (what RLHF starts from)."""
    from dlcli.core import rundir
    from dlcli.lm.config import TrainTransformerConfig
    from dlcli.models.config import GPTConfig
    from dlcli.models.gpt import GPT
    from dlcli.text.vocabulary import word_level

    tok = word_level(["<unk>"] + sorted(set(chars)), "<unk>", "char", [])
    cfg = TrainTransformerConfig(model=GPTConfig(vocab_size=tok.get_vocab_size(), block_size=block_size, n_layer=1,
                                                 n_head=2, n_embd=16, dropout=dropout))
    cfg.data.train = "x.ids"
    run = rundir.create(path / name, cfg, "train-transformer")
    tok.save(str(run / "tokenizer.json"))
    torch.manual_seed(0)
    rundir.save_tensors(GPT(cfg.model).state_dict(), run / "model.safetensors")
    return str(run)


CHARS = "".join(sorted(set(toytask.corpus(200) + "".join(json.dumps(h) for h in HH) + "\n?!HA")))


@pytest.fixture
def toy(tmp_path: Path) -> dict[str, str]:
    return {"base": make_base(tmp_path, CHARS),
            "sft": write_jsonl(tmp_path / "sft.jsonl", toytask.sft_pairs(40)),
            "prefs": write_jsonl(tmp_path / "prefs.jsonl", toytask.preference_pairs(40)),
            "prompts": write_jsonl(tmp_path / "prompts.jsonl", toytask.prompts(20)),
            "hh": write_jsonl(tmp_path / "hh.jsonl", HH)}


FAST = ["--device", "cpu", "-q", "--batch-size", "8"]


def test_every_stage_end_to_end(cli, toy, tmp_path: Path) -> None:
    r = cli("rlhf", "sft", toy["base"], toy["sft"], "-o", "sft", "--max-steps", "4", *FAST)
    assert r.exit_code == 0, r.output
    for f in ("config.yaml", "meta.json", "metrics.jsonl", "tokenizer.json", "model.safetensors", "loss.png"):
        assert (Path("sft") / f).is_file(), f
    r = cli("rlhf", "reward", toy["base"], toy["prefs"], "-o", "rm", "--max-steps", "4", *FAST)
    assert r.exit_code == 0, r.output
    assert any("val_accuracy" in json.loads(line) for line in Path("rm/metrics.jsonl").read_text().splitlines())
    r = cli("rlhf", "score", "rm", toy["sft"])
    assert r.exit_code == 0, r.output
    scored = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(scored) == 40 and all(isinstance(s["reward"], float) for s in scored)
    r = cli("rlhf", "ppo", "sft", "rm", "--prompts", toy["prompts"], "-o", "ppo", "--max-steps", "2",
            "--max-new-tokens", "8", "--adaptive-kl", *FAST, "--set", "mini_batch_size=4",
            "--set", "sample_interval=1")
    assert r.exit_code == 0, r.output
    for f in ("model.safetensors", "value_head.safetensors", "reward.png", "kl.png", "tokenizer.json"):
        assert (Path("ppo") / f).is_file(), f
    recs = [json.loads(line) for line in Path("ppo/metrics.jsonl").read_text().splitlines()]
    steps = [x for x in recs if "reward" in x]
    assert len(steps) == 2 and all({"kl", "entropy", "clip_frac", "kl_coef", "samples"} <= set(x) for x in steps)
    assert steps[1]["kl_coef"] != 0.1  # adaptive
    r = cli("rlhf", "dpo", "sft", toy["prefs"], "-o", "dpo", "--max-steps", "3", *FAST)
    assert r.exit_code == 0, r.output
    last = [json.loads(line) for line in Path("dpo/metrics.jsonl").read_text().splitlines()][-1]
    assert {"val_accuracy", "val_margin"} <= set(last)
    for run in ("sft", "ppo", "dpo"):  # language-model runs: generate and evaluate read them
        r = cli("generate", run, "--prompt", "about cats:", "-n", "5", "--seed", "1")
        assert r.exit_code == 0 and r.stdout.startswith("about cats:"), r.output
    Path("held.txt").write_text(toytask.corpus(20, seed=9))
    r = cli("evaluate", "ppo", "--text", "held.txt")
    assert r.exit_code == 0, r.output


def test_hh_dialogues_train_a_reward_model_and_dpo(cli, toy) -> None:
    r = cli("rlhf", "reward", toy["base"], toy["hh"], "-o", "rm", "--max-steps", "2", *FAST,
            "--set", "val_fraction=0.25")
    assert r.exit_code == 0, r.output
    r = cli("rlhf", "dpo", toy["base"], toy["hh"], "-o", "dpo", "--max-steps", "2", "--rpo-alpha", "1", *FAST)
    assert r.exit_code == 0, r.output
    assert Path("dpo/model.safetensors").is_file()


def test_sft_learns_the_completions(toy) -> None:
    from dlcli.rlhf.config import SFTConfig
    from dlcli.rlhf.sft import run
    from dlcli.train.config import OptimConfig

    s = run(SFTConfig(base=toy["base"], data=toy["sft"], output="sft", max_steps=60, batch_size=16, device="cpu",
                      eval_interval=0, optim=OptimConfig(lr=3e-3)))
    assert s["val_loss"] < 0.75 * s["val_loss_before"]


def test_bad_input_is_one_line_and_leaves_nothing(cli, toy, tmp_path: Path) -> None:
    rows = [toytask.sft_pairs(1)[0], '{"prompt": "about cats:"}'] + toytask.sft_pairs(2)
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    r = cli("rlhf", "sft", toy["base"], bad, "-o", "out", *FAST)
    assert r.exit_code != 0 and 'line 2: missing key "completion"' in r.stderr and not Path("out").exists()
    r = cli("rlhf", "sft", toy["base"], bad, "-o", "out", "--max-steps", "1", "--skip-bad", "--device", "cpu")
    assert r.exit_code == 0 and "left out 1 bad line" in r.stderr
    long = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "about cats:" * 9, "completion": " cats."}])
    r = cli("rlhf", "sft", toy["base"], long, "-o", "out2", *FAST)
    assert r.exit_code != 0 and "longer than the context of 96" in r.stderr and not Path("out2").exists()
    same = write_jsonl(tmp_path / "same.jsonl", [{"prompt": "a", "chosen": " b", "rejected": " b"}])
    r = cli("rlhf", "dpo", toy["base"], same, "-o", "out3", *FAST)
    assert r.exit_code != 0 and "chosen is identical to rejected" in r.stderr
    unknown = write_jsonl(tmp_path / "unk.jsonl", [{"prompt": "about ÷:", "completion": " x"}])
    r = cli("rlhf", "sft", toy["base"], unknown, "-o", "out4", *FAST)
    assert r.exit_code != 0 and "not in the vocabulary: '÷'" in r.stderr


def test_reward_model_with_another_tokenizer_is_refused(cli, toy, tmp_path: Path) -> None:
    other = make_base(tmp_path, CHARS + "#", name="other")
    assert cli("rlhf", "reward", other, toy["prefs"], "-o", "rm", "--max-steps", "1", *FAST).exit_code == 0
    r = cli("rlhf", "ppo", toy["base"], "rm", "--prompts", toy["prompts"], "-o", "ppo", *FAST)
    assert r.exit_code != 0 and "its tokenizer differs from the one of the policy" in r.stderr
    assert not Path("ppo").exists()


def test_exploding_kl_stops_and_keeps_the_last_good_policy(cli, toy) -> None:
    r = cli("rlhf", "ppo", toy["base"], toy["base"], "--prompts", toy["prompts"], "-o", "ppo", *FAST)
    assert r.exit_code != 0 and "not a reward model" in r.stderr
    assert cli("rlhf", "reward", toy["base"], toy["prefs"], "-o", "rm", "--max-steps", "1", *FAST).exit_code == 0
    r = cli("rlhf", "ppo", toy["base"], "rm", "--prompts", toy["prompts"], "-o", "ppo", "--max-steps", "20",
            "--lr", "0.3", "--max-new-tokens", "8", *FAST, "--set", "kl_stop=0.5", "--set", "optim.grad_clip=0")
    assert r.exit_code != 0 and "mean KL to the reference reached" in r.stderr and "is kept in ppo" in r.stderr
    from dlcli.lm.run import open_run

    assert open_run("ppo", "cpu").stage == "rlhf-ppo"  # the kept policy is a usable run


# ---------------------------------------------------------------------------------------------- resume, DDP, KL


def stage_run(stage: str, toy: dict[str, str], out: str, **kw):
    """(run function, config) of a tiny run of `stage`; `kw` overrides config keys."""
    from dlcli.rlhf import dpo, ppo, reward, sft

    every = {"output": out, "max_steps": 6, "batch_size": 8, "log_interval": 1, "eval_interval": 3,
             "device": "cpu", **kw}
    if stage == "sft":
        return sft.run, sft.SFTConfig(base=toy["base"], data=toy["sft"], **every)
    if stage == "reward":
        return reward.run, reward.RewardConfig(base=toy["base"], data=toy["prefs"], **every)
    if stage == "dpo":
        return dpo.run, dpo.DPOConfig(sft=toy["base"], data=toy["prefs"], rpo_alpha=0.5, kl_samples=4, **every)
    return ppo.run, ppo.PPOConfig(sft=toy["base"], reward_model=toy["rm"], data=toy["prompts"], max_new_tokens=6,
                                  mini_batch_size=4, ppo_epochs=2, sample_interval=2, **every)


def same_weights(a: str, b: str) -> None:
    x, y = load_tensors(a), load_tensors(b)
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), k


@pytest.mark.parametrize("stage, how", [("sft", "raise"), ("reward", "signal"), ("dpo", "signal"), ("ppo", "signal")])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(toy, tmp_path: Path, monkeypatch, stage: str, how: str
                                                        ) -> None:
    """Interrupted at step 3 of 4 (checkpoint on Ctrl-C), resumed: the same weights, bit for bit, as one run.
    Dropout is on, so the random state must come back too. A real SIGINT in the middle of step 3 (between
    the forward pass and the optimizer step) is held until the step is done."""
    import os
    import signal

    from dlcli.train import optim

    toy["base"] = make_base(tmp_path, CHARS, dropout=0.1, name="drop")
    if stage == "ppo":
        from dlcli.rlhf import reward

        reward.run(reward.RewardConfig(base=toy["base"], data=toy["prefs"], output="rm", max_steps=1, batch_size=8,
                                       device="cpu"))
        toy["rm"] = "rm"
    steps = {"max_steps": 4, "eval_interval": 2}
    run, cfg = stage_run(stage, toy, "whole", **steps)
    run(cfg)

    def stop_at_3(tick) -> None:
        if tick.done == 3 and how == "raise":
            raise KeyboardInterrupt

    calls, real = [], optim.apply_gradients
    at = 2 * 4 + 2 if stage == "ppo" else 3  # PPO: 2 epochs x 2 minibatches per step

    def signalling(*args, **kw) -> None:
        calls.append(1)
        if how == "signal" and len(calls) == at:
            os.kill(os.getpid(), signal.SIGINT)
        real(*args, **kw)

    monkeypatch.setattr(optim, "apply_gradients", signalling)
    run, cfg = stage_run(stage, toy, "cut", **steps)
    with pytest.raises(Interrupted, match="interrupted at step 3; checkpoint saved in cut"):
        run(cfg, on_progress=stop_at_3)
    assert (Path("cut/model.safetensors").exists()) == (stage == "ppo")  # PPO keeps the policy so far too
    run, cfg = stage_run(stage, toy, "cut", **steps)
    s = run(cfg, resume=True)
    assert s["steps"] == 4
    same_weights("whole/model.safetensors", "cut/model.safetensors")
    if stage == "ppo":
        same_weights("whole/value_head.safetensors", "cut/value_head.safetensors")
    evals = [r["step"] for r in map(json.loads, Path("cut/metrics.jsonl").read_text().splitlines())
             if any(k.startswith("val_") for k in r)]
    assert 2 in evals and 4 in evals  # before the interruption and after the resume


def test_interval_checkpoint_survives_a_crash_and_a_changed_config_is_refused(toy) -> None:
    """A crash at step 5 (no Ctrl-C checkpoint): --resume continues from the step-4 interval checkpoint."""
    run, cfg = stage_run("reward", toy, "whole")
    run(cfg)

    def crash_at_5(tick) -> None:
        if tick.done == 5:
            raise RuntimeError("power cut")

    run, cfg = stage_run("reward", toy, "cut", checkpoint_interval=2)
    with pytest.raises(RuntimeError, match="power cut"):
        run(cfg, on_progress=crash_at_5)
    assert json.loads(Path("cut/checkpoint.json").read_text())["state"]["step"] == 4
    run, cfg = stage_run("reward", toy, "cut", checkpoint_interval=2, batch_size=4)
    with pytest.raises(ConfigError, match="batch_size: 8 -> 4"):
        run(cfg, resume=True)
    run, cfg = stage_run("reward", toy, "cut", checkpoint_interval=5, log_interval=2)  # intervals may change
    run(cfg, resume=True)
    same_weights("whole/model.safetensors", "cut/model.safetensors")


def test_cli_resume_continues_a_finished_run_with_a_larger_budget(cli, toy) -> None:
    const = ["--set", "optim.schedule=constant", "--set", "optim.warmup_steps=0", *FAST]
    assert cli("rlhf", "dpo", toy["base"], toy["prefs"], "-o", "six", "--max-steps", "6", *const).exit_code == 0
    assert cli("rlhf", "dpo", toy["base"], toy["prefs"], "-o", "more", "--max-steps", "3", *const).exit_code == 0
    r = cli("rlhf", "dpo", toy["base"], toy["prefs"], "-o", "more", "--max-steps", "6", "--resume", *const)
    assert r.exit_code == 0, r.output
    same_weights("six/model.safetensors", "more/model.safetensors")
    r = cli("rlhf", "dpo", toy["base"], toy["prefs"], "-o", "more", "--max-steps", "9", "--resume", "--beta", "0.2",
            *const)
    assert r.exit_code != 0 and "config differs from the run being resumed: beta: 0.1 -> 0.2" in r.stderr
    r = cli("rlhf", "sft", toy["base"], toy["sft"], "-o", "none", "--resume", *FAST)
    assert r.exit_code != 0 and "nothing to resume" in r.stderr


def test_dpo_logs_the_kl_to_the_reference(toy) -> None:
    """KL (nats per response, on sampled answers): ~0 while the policy is the reference, > 0 once it moves;
    in metrics.jsonl, on the progress line and in kl.png."""
    from dlcli.train.config import OptimConfig

    ticks = []
    run, cfg = stage_run("dpo", toy, "still", eval_interval=2, optim=OptimConfig(lr=1e-12, warmup_steps=0))
    run(cfg, on_progress=ticks.append)
    kls = [r["val_kl"] for r in map(json.loads, Path("still/metrics.jsonl").read_text().splitlines()) if "val_kl" in r]
    assert len(kls) == 3 and all(abs(k) < 1e-4 for k in kls)
    assert "val_kl" not in ticks[0].metrics and "val_kl" in ticks[-1].metrics and Path("still/kl.png").is_file()
    run, cfg = stage_run("dpo", toy, "moved", eval_interval=2, optim=OptimConfig(lr=1e-2, warmup_steps=0))
    s = run(cfg)
    assert s["val_kl"] > 0.5


def test_ppo_checkpoint_resumes_with_as_many_processes_and_batches_split_evenly(toy, tmp_path: Path) -> None:
    from dlcli.rlhf import reward

    reward.run(reward.RewardConfig(base=toy["base"], data=toy["prefs"], output="rm", max_steps=1, batch_size=8,
                                   device="cpu"))
    toy["rm"] = "rm"
    run, cfg = stage_run("ppo", toy, "one", max_steps=1)
    run(cfg)
    from safetensors.torch import load_file, save_file

    from dlcli.train import checkpoint

    doc = checkpoint.read("one")  # the bookkeeping lives in the checkpoint's metadata
    doc["state"]["world"] = 2
    save_file(load_file("one/checkpoint.safetensors"), "one/checkpoint.safetensors",
              metadata={checkpoint.KEY: json.dumps(doc)})
    run, cfg = stage_run("ppo", toy, "one", max_steps=2)
    with pytest.raises(ConfigError, match="written by 2 process"):
        run(cfg, resume=True)
    cfg.check_world(2)
    cfg.mini_batch_size = 3
    with pytest.raises(ConfigError, match=r"batch_size \(8\) and the minibatch size \(3\) must be multiples of the 2"):
        cfg.check_world(2)


def test_truncate_keep_end_trains_on_lines_longer_than_the_context(cli, toy, tmp_path: Path) -> None:
    long = {"prompt": "about cats:" * 12, "chosen": " cats are nice.", "rejected": " cats are bad."}
    prefs = write_jsonl(tmp_path / "long.jsonl", [long, *toytask.preference_pairs(7)])
    r = cli("rlhf", "reward", toy["base"], prefs, "-o", "rm", "--max-steps", "1", "--device", "cpu")
    assert r.exit_code != 0 and "line 1: 148 tokens are longer than the context of 96" in r.stderr
    r = cli("rlhf", "reward", toy["base"], prefs, "-o", "rm", "--max-steps", "1", "--device", "cpu",
            "--batch-size", "4", "--truncate", "keep-end")
    assert r.exit_code == 0, r.output
    assert "truncated 1 line to the context (--truncate keep-end)" in r.stderr
    assert "truncate: keep-end" in Path("rm/config.yaml").read_text()
