"""`dlcli rlhf sft|reward|score|ppo|dpo`: training a language model from feedback."""

from __future__ import annotations

from types import ModuleType
from typing import Annotated

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Learning from human feedback: supervised fine-tuning, a reward model, PPO and DPO on GPT runs.")

PPO = "PPO"

# The options every RLHF training stage has (config keys of rlhf.config.StageConfig).
STAGE = {
    "output": Annotated[str | None, o.opt("--output", "-o", help="Run directory to write.")],
    "batch_size": Annotated[int | None, o.opt("--batch-size", "-b", help="Examples (PPO: rollouts) per step.",
                                              panel=o.TRAIN)],
    "optim__lr": o.Lr,
    "skip_bad": Annotated[bool | None, o.opt("--skip-bad", help="Leave out bad JSONL lines (counted) instead of "
                                             "stopping at the first.")],
    "truncate": Annotated[str | None, o.opt("--truncate", help="A line longer than the context: none (refused) "
                                            "or keep-end (cut to fit as TRL does: the oldest prompt tokens go "
                                            "first, then the responses' ends; counted).")],
}


def _rlhf() -> ModuleType:
    """The RLHF stages' configs (torch-free), imported when a command runs or shows its help."""
    import dlcli.rlhf.config

    return dlcli.rlhf.config


def _skipped(s: dict) -> str:
    """What happened to the lines that did not fit as they were (and, for a LoRA run, what trained)."""
    return ((f"LoRA rank {s['lora_rank']}: {s['trainable']:,} of {s['params']:,} weights trained; "
             if s.get("lora_rank") else "")
            + (f"left out {c.count(s['skipped'], 'bad line')} (--skip-bad); " if s.get("skipped") else "")
            + (f"truncated {c.count(s['truncated'], 'line')} to the context (--truncate keep-end); "
               if s.get("truncated") else ""))


@app.command("sft")
@command(lambda: _rlhf().SFTConfig, options=STAGE | o.training() | o.LORA, resume=True)
def sft(
    base: Annotated[str, typer.Argument(help="A causal GPT run (from 'dlcli train-transformer').")],
    data: Annotated[str, typer.Argument(help='JSONL: {"prompt", "completion"} or {"messages": [...]} lines.')],
    *, job: Job,
) -> None:
    """Supervised fine-tuning: the loss on completion tokens only, held-out loss reported.

    Example: dlcli rlhf sft runs/base sft.jsonl -o runs/sft --max-steps 300
    """
    from dlcli.rlhf.sft import run

    job.run(run, lambda s: f"{_skipped(s)}{s['steps']:,} steps on {s['examples']:,} pairs in {s['elapsed']:.0f} s; "
            f"held-out completion loss {s['val_loss_before']:.4f} -> {s['val_loss']:.4f}; {s['precision']}")


@app.command("reward")
@command(lambda: _rlhf().RewardConfig, options=STAGE | o.training() | o.LORA, resume=True)
def reward(
    base: Annotated[str, typer.Argument(help="A causal GPT run: tokenizer, model shape and starting weights.")],
    data: Annotated[str, typer.Argument(help='JSONL: {"prompt", "chosen", "rejected"}, or HH-RLHF '
                                        '{"chosen", "rejected"} dialogues.')],
    *, job: Job,
) -> None:
    """Train a reward model (Transformer trunk + scalar head) with the Bradley-Terry pairwise loss.

    Example: dlcli rlhf reward runs/base prefs.jsonl -o runs/rm --max-steps 300
    """
    from dlcli.rlhf.reward import run

    job.run(run, lambda s: f"{_skipped(s)}{s['steps']:,} steps on {s['pairs']:,} pairs in {s['elapsed']:.0f} s; "
            f"held-out pairwise accuracy {100 * s['val_accuracy']:.1f}% on {s['val_pairs']} pairs, mean margin "
            f"{s['val_margin']:.3f}; {s['precision']}")


@app.command("score")
@command(options=o.WRITES)
def score(
    rm: Annotated[str, typer.Argument(help="A reward model (from 'dlcli rlhf reward').")],
    data: Annotated[str, typer.Argument(help='JSONL: {"prompt", "completion"} or preference lines.')],
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL to write ('-' = stdout).")] = "-",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Lines per forward pass.")] = 64,
    device: o.UseDevice = "auto",
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave out bad lines instead of stopping.")] = False,
    truncate: Annotated[str, typer.Option("--truncate", help="A line longer than the context: none (refused) or "
                                          "keep-end (cut to fit, the oldest prompt tokens first).")] = "none",
    *, job: Job,
) -> None:
    """Add "reward" to each line (or "reward_chosen" and "reward_rejected" to preference lines).

    Example: dlcli rlhf score runs/rm answers.jsonl > scored.jsonl
    """
    from dlcli.rlhf.reward import score as run_score

    s = run_score(rm, data, output, batch_size, skip_bad, device, job.force, truncate)
    job.info(f"{_skipped(s)}scored {c.count(s['lines'], 'line')}; mean reward {s['mean_reward']:.4f}")
    if output != "-":
        c.result(output)


@app.command("ppo")
@command(lambda: _rlhf().PPOConfig, options=STAGE | o.training("epochs") | o.LORA, resume=True)
def ppo(
    sft: Annotated[str, typer.Argument(help="The SFT run: the starting policy and the frozen reference.")],
    reward_model: Annotated[str, typer.Argument(help="The reward model (from 'dlcli rlhf reward').")],
    data: Annotated[str | None, o.opt("--prompts", help='JSONL of {"prompt"} lines.')] = None,
    kl_coef: Annotated[float | None, o.opt("--kl-coef", help="KL penalty coefficient.", panel=PPO)] = None,
    adaptive_kl: Annotated[bool | None, o.opt("--adaptive-kl/--fixed-kl", help="Adapt the KL coefficient towards "
                                              "--kl-target.", panel=PPO)] = None,
    kl_target: Annotated[float | None, o.opt("--kl-target", help="Target KL, nats per response.", panel=PPO)] = None,
    ppo_epochs: Annotated[int | None, o.opt("--ppo-epochs", help="Passes over each batch of rollouts.",
                                            panel=PPO)] = None,
    max_new_tokens: Annotated[int | None, o.opt("--max-new-tokens", "-n", help="Longest response.", panel=PPO)] = None,
    *, job: Job,
) -> None:
    """PPO against a reward model with a per-token KL penalty to the SFT model.

    The result is a language-model run ('dlcli generate' and 'dlcli evaluate' read it); reward.png and kl.png
    plot the training.

    Example: dlcli rlhf ppo runs/sft runs/rm --prompts prompts.jsonl -o runs/ppo --max-steps 60
    """
    from dlcli.rlhf.ppo import run

    job.run(run, lambda s: f"{_skipped(s)}{s['steps']:,} PPO steps in {s['elapsed']:.0f} s; held-out reward "
            f"{s['val_reward_before']:.3f} -> {s['val_reward']:.3f}, KL to the reference {s['val_kl']:.3f} nats per "
            f"response; {s['precision']}")


@app.command("dpo")
@command(lambda: _rlhf().DPOConfig, options=STAGE | o.training() | o.LORA, resume=True)
def dpo(
    sft: Annotated[str, typer.Argument(help="The SFT run: the starting policy and the frozen reference.")],
    data: Annotated[str, typer.Argument(help="JSONL preference pairs (as for 'dlcli rlhf reward').")],
    beta: Annotated[float | None, o.opt("--beta", help="DPO temperature beta.", panel=o.TRAIN)] = None,
    rpo_alpha: Annotated[float | None, o.opt("--rpo-alpha", help="Add alpha x the chosen responses' NLL per token "
                                             "(RPO; 0 = pure DPO).", panel=o.TRAIN)] = None,
    *, job: Job,
) -> None:
    """Direct preference optimisation: the DPO loss against reference log-probabilities computed once.

    Example: dlcli rlhf dpo runs/sft prefs.jsonl -o runs/dpo --beta 0.1 --max-steps 200
    """
    from dlcli.rlhf.dpo import run

    job.run(run, lambda s: f"{_skipped(s)}{s['steps']:,} steps on {s['pairs']:,} pairs in {s['elapsed']:.0f} s; "
            f"held-out implicit-reward accuracy {100 * s['val_accuracy']:.1f}%, margin {s['val_margin']:.3f}"
            + (f", KL to the reference {s['val_kl']:.3f} nats per response" if "val_kl" in s else "")
            + f"; {s['precision']}")
