"""`dlcli rlhf sft|reward|score|ppo|dpo`: training a language model from feedback."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dlcli.cli import common as c

app = typer.Typer(help="Learning from human feedback: supervised fine-tuning, a reward model, PPO and DPO on "
                  "GPT runs.", no_args_is_help=True)

TRAIN = c.TRAIN
PPO = "PPO"

OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Run directory to write.",
                                                  show_default=False)]
SkipBadOpt = Annotated[Optional[bool], typer.Option("--skip-bad", help="Leave out bad JSONL lines (counted) "
                                                    "instead of stopping at the first.", show_default=False)]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Examples (PPO: rollouts) per step.",
                                                 rich_help_panel=TRAIN, show_default=False)]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate.", rich_help_panel=TRAIN,
                                                show_default=False)]
StepsOpt = Annotated[Optional[int], typer.Option("--max-steps", help="Step budget (0 = none).",
                                                 rich_help_panel=TRAIN, show_default=False)]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help="Epoch budget.", rich_help_panel=TRAIN,
                                                    show_default=False)]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 1337).",
                                                rich_help_panel=TRAIN, show_default=False)]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --output exactly where its checkpoint "
                                         "stopped (only budgets, intervals and the device may change).",
                                         rich_help_panel=TRAIN)]


def _common(output, data, batch_size, lr, max_steps, epochs, max_time, seed, device, skip_bad,  # noqa: ANN001
            precision=None) -> dict:  # noqa: ANN001
    return {"output": output, "data": data, "batch_size": batch_size, "optim.lr": lr, "max_steps": max_steps,
            "epochs": epochs, "max_time": max_time, "seed": seed, "device": device, "skip_bad": skip_bad,
            "precision": precision}


def _skipped(s: dict, quiet: bool) -> None:
    if s.get("skipped"):
        c.info(f"left out {s['skipped']} bad line(s) (--skip-bad)", quiet)


@app.command("sft")
def sft(
    base: Annotated[str, typer.Argument(help="A causal GPT run (from 'dlcli train-transformer').")],
    data: Annotated[str, typer.Argument(help='JSONL: {"prompt", "completion"} or {"messages": [...]} lines.')],
    output: OutputOpt = None, batch_size: BatchOpt = None, lr: LrOpt = None, max_steps: StepsOpt = None,
    epochs: EpochsOpt = None, max_time: c.MaxTimeOpt = None, seed: SeedOpt = None, device: c.DeviceOpt = None,
    precision: c.PrecisionOpt = None,
    skip_bad: SkipBadOpt = None, resume: ResumeOpt = False, config: c.ConfigOpt = None, set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False, force: c.ForceOpt = False, quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Supervised fine-tuning: the loss on completion tokens only, held-out loss reported.

    Example: dlcli rlhf sft runs/base sft.jsonl -o runs/sft --max-steps 300
    """
    with c.errors(debug):
        from dlcli.rlhf.sft import SFTConfig, run

        flags = {"base": base, **_common(output, data, batch_size, lr, max_steps, epochs, max_time, seed, device,
                                         skip_bad, precision)}
        cfg = c.resolve(SFTConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = run(cfg, force=force, resume=resume, on_progress=on_progress)
        _skipped(s, quiet)
        c.info(f"{s['steps']:,} steps on {s['examples']:,} pairs in {s['elapsed']:.0f} s; held-out completion loss "
               f"{s['val_loss_before']:.4f} -> {s['val_loss']:.4f}; {s['precision']}", quiet)
        c.result(s["run"])


@app.command("reward")
def reward(
    base: Annotated[str, typer.Argument(help="A causal GPT run: tokenizer, model shape and starting weights.")],
    data: Annotated[str, typer.Argument(help='JSONL: {"prompt", "chosen", "rejected"}, or HH-RLHF '
                                        '{"chosen", "rejected"} dialogues.')],
    output: OutputOpt = None, batch_size: BatchOpt = None, lr: LrOpt = None, max_steps: StepsOpt = None,
    epochs: EpochsOpt = None, max_time: c.MaxTimeOpt = None, seed: SeedOpt = None, device: c.DeviceOpt = None,
    precision: c.PrecisionOpt = None,
    skip_bad: SkipBadOpt = None, resume: ResumeOpt = False, config: c.ConfigOpt = None, set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False, force: c.ForceOpt = False, quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Train a reward model (Transformer trunk + scalar head) with the Bradley-Terry pairwise loss.

    Example: dlcli rlhf reward runs/base prefs.jsonl -o runs/rm --max-steps 300
    """
    with c.errors(debug):
        from dlcli.rlhf.reward import RewardConfig, run

        flags = {"base": base, **_common(output, data, batch_size, lr, max_steps, epochs, max_time, seed, device,
                                         skip_bad, precision)}
        cfg = c.resolve(RewardConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = run(cfg, force=force, resume=resume, on_progress=on_progress)
        _skipped(s, quiet)
        c.info(f"{s['steps']:,} steps on {s['pairs']:,} pairs in {s['elapsed']:.0f} s; held-out pairwise accuracy "
               f"{100 * s['val_accuracy']:.1f}% on {s['val_pairs']} pairs, mean margin {s['val_margin']:.3f}; "
               f"{s['precision']}", quiet)
        c.result(s["run"])


@app.command("score")
def score(
    rm: Annotated[str, typer.Argument(help="A reward model (from 'dlcli rlhf reward').")],
    data: Annotated[str, typer.Argument(help='JSONL: {"prompt", "completion"} or preference lines.')],
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL to write ('-' = stdout).")] = "-",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Lines per forward pass.")] = 64,
    device: c.UseDeviceOpt = "auto",
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave out bad lines instead of stopping.")] = False,
    force: c.ForceOpt = False, quiet: c.QuietOpt = False, debug: c.DebugOpt = False,
) -> None:
    """Add "reward" to each line (or "reward_chosen" and "reward_rejected" to preference lines).

    Example: dlcli rlhf score runs/rm answers.jsonl > scored.jsonl
    """
    with c.errors(debug):
        from dlcli.rlhf.reward import score as run_score

        s = run_score(rm, data, output, batch_size, skip_bad, device, force)
        _skipped(s, quiet)
        c.info(f"scored {s['lines']:,} lines; mean reward {s['mean_reward']:.4f}", quiet)
        if output != "-":
            c.result(output)


@app.command("ppo")
def ppo(
    sft_run: Annotated[str, typer.Argument(help="The SFT run: the starting policy and the frozen reference.")],
    rm: Annotated[str, typer.Argument(help="The reward model (from 'dlcli rlhf reward').")],
    prompts: Annotated[Optional[str], typer.Option("--prompts", help='JSONL of {"prompt"} lines.',
                                                   show_default=False)] = None,
    output: OutputOpt = None, batch_size: BatchOpt = None, lr: LrOpt = None, max_steps: StepsOpt = None,
    max_time: c.MaxTimeOpt = None, seed: SeedOpt = None, device: c.DeviceOpt = None,
    precision: c.PrecisionOpt = None, skip_bad: SkipBadOpt = None,
    resume: ResumeOpt = False,
    kl_coef: Annotated[Optional[float], typer.Option("--kl-coef", help="KL penalty coefficient (default 0.1).",
                                                     rich_help_panel=PPO, show_default=False)] = None,
    adaptive_kl: Annotated[Optional[bool], typer.Option("--adaptive-kl/--fixed-kl", help="Adapt the KL "
                                                        "coefficient towards --kl-target.", rich_help_panel=PPO,
                                                        show_default=False)] = None,
    kl_target: Annotated[Optional[float], typer.Option("--kl-target", help="Target KL, nats per response.",
                                                       rich_help_panel=PPO, show_default=False)] = None,
    ppo_epochs: Annotated[Optional[int], typer.Option("--ppo-epochs", help="Passes over each batch of rollouts.",
                                                      rich_help_panel=PPO, show_default=False)] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", "-n", help="Longest response.",
                                                          rich_help_panel=PPO, show_default=False)] = None,
    config: c.ConfigOpt = None, set_: c.SetOpt = None, print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False, quiet: c.QuietOpt = False, debug: c.DebugOpt = False,
) -> None:
    """PPO against a reward model with a per-token KL penalty to the SFT model.

    The result is a language-model run ('dlcli generate' and 'dlcli evaluate' read it); reward.png and kl.png
    plot the training.

    Example: dlcli rlhf ppo runs/sft runs/rm --prompts prompts.jsonl -o runs/ppo --max-steps 60
    """
    with c.errors(debug):
        from dlcli.rlhf.ppo import PPOConfig, run

        flags = {"sft": sft_run, "reward_model": rm, "kl_coef": kl_coef, "adaptive_kl": adaptive_kl,
                 "kl_target": kl_target, "ppo_epochs": ppo_epochs, "max_new_tokens": max_new_tokens,
                 **_common(output, prompts, batch_size, lr, max_steps, None, max_time, seed, device, skip_bad,
                           precision)}
        cfg = c.resolve(PPOConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = run(cfg, force=force, resume=resume, on_progress=on_progress)
        c.info(f"{s['steps']:,} PPO steps in {s['elapsed']:.0f} s; held-out reward {s['val_reward_before']:.3f} -> "
               f"{s['val_reward']:.3f}, KL to the reference {s['val_kl']:.3f} nats per response; {s['precision']}",
               quiet)
        c.result(s["run"])


@app.command("dpo")
def dpo(
    sft_run: Annotated[str, typer.Argument(help="The SFT run: the starting policy and the frozen reference.")],
    data: Annotated[str, typer.Argument(help="JSONL preference pairs (as for 'dlcli rlhf reward').")],
    output: OutputOpt = None, batch_size: BatchOpt = None, lr: LrOpt = None, max_steps: StepsOpt = None,
    epochs: EpochsOpt = None, max_time: c.MaxTimeOpt = None, seed: SeedOpt = None, device: c.DeviceOpt = None,
    precision: c.PrecisionOpt = None,
    skip_bad: SkipBadOpt = None, resume: ResumeOpt = False,
    beta: Annotated[Optional[float], typer.Option("--beta", help="DPO temperature beta (default 0.1).",
                                                  rich_help_panel=TRAIN, show_default=False)] = None,
    rpo_alpha: Annotated[Optional[float], typer.Option("--rpo-alpha", help="Add alpha x the chosen responses' NLL "
                                                       "per token (RPO; default 0 = pure DPO).",
                                                       rich_help_panel=TRAIN, show_default=False)] = None,
    config: c.ConfigOpt = None, set_: c.SetOpt = None, print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False, quiet: c.QuietOpt = False, debug: c.DebugOpt = False,
) -> None:
    """Direct preference optimisation: the DPO loss against reference log-probabilities computed once.

    Example: dlcli rlhf dpo runs/sft prefs.jsonl -o runs/dpo --beta 0.1 --max-steps 200
    """
    with c.errors(debug):
        from dlcli.rlhf.dpo import DPOConfig, run

        flags = {"sft": sft_run, "beta": beta, "rpo_alpha": rpo_alpha,
                 **_common(output, data, batch_size, lr, max_steps, epochs, max_time, seed, device, skip_bad,
                           precision)}
        cfg = c.resolve(DPOConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = run(cfg, force=force, resume=resume, on_progress=on_progress)
        _skipped(s, quiet)
        kl = f", KL to the reference {s['val_kl']:.3f} nats per response" if "val_kl" in s else ""
        c.info(f"{s['steps']:,} steps on {s['pairs']:,} pairs in {s['elapsed']:.0f} s; held-out implicit-reward "
               f"accuracy {100 * s['val_accuracy']:.1f}%, margin {s['val_margin']:.3f}{kl}; {s['precision']}", quiet)
        c.result(s["run"])
