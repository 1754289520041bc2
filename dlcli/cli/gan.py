"""`dlcli gan train|sample|eval`: generative adversarial networks."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from dlcli.cli import common as c

app = typer.Typer(help="Generative adversarial networks: train on 2-D mixtures, arrays or images; sample; "
                  "measure mode coverage.", no_args_is_help=True)

MODEL = c.MODEL
TRAIN = c.TRAIN


@app.command("train")
def train(
    data: Annotated[Optional[str], typer.Argument(help="ring8, grid25, spiral, moons, digits, an array file "
                                                  "(.npy/.npz/.csv) or a folder of PNG/JPEG images.",
                                                  show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Run directory (default runs/gan).",
                                                  show_default=False)] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="mlp or dcgan (default: dcgan for images, mlp "
                                                "otherwise).", rich_help_panel=MODEL, show_default=False)] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="minimax, ns (non-saturating, default), wgan-gp "
                                                "or hinge.", rich_help_panel=MODEL, show_default=False)] = None,
    z_dim: Annotated[Optional[int], typer.Option("--z-dim", help="Noise dimension (default 64).",
                                                 rich_help_panel=MODEL, show_default=False)] = None,
    hidden: Annotated[Optional[int], typer.Option("--hidden", help="MLP width (default 256).",
                                                  rich_help_panel=MODEL, show_default=False)] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", help="MLP hidden layers (default 4).",
                                                  rich_help_panel=MODEL, show_default=False)] = None,
    spectral_norm: Annotated[Optional[bool], typer.Option("--spectral-norm/--no-spectral-norm",
                                                          help="Spectral normalisation in D.",
                                                          rich_help_panel=MODEL, show_default=False)] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Resize images to 8, 16, 32 or 64 px.",
                                                      rich_help_panel=MODEL, show_default=False)] = None,
    color: Annotated[Optional[str], typer.Option("--color", help="Images: auto, gray or rgb.",
                                                 rich_help_panel=MODEL, show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Batch size (default 256).",
                                                      rich_help_panel=TRAIN, show_default=False)] = None,
    lr_g: Annotated[Optional[float], typer.Option("--lr-g", help="G's Adam learning rate (default 2e-4).",
                                                  rich_help_panel=TRAIN, show_default=False)] = None,
    lr_d: Annotated[Optional[float], typer.Option("--lr-d", help="D's Adam learning rate (default 2e-4).",
                                                  rich_help_panel=TRAIN, show_default=False)] = None,
    n_critic: Annotated[Optional[int], typer.Option("--n-critic", help="D updates per G update (default 1).",
                                                    rich_help_panel=TRAIN, show_default=False)] = None,
    r1: Annotated[Optional[float], typer.Option("--r1", help="Weight gamma of the R1 penalty on real examples; "
                                                "0 = off (default).", rich_help_panel=TRAIN,
                                                show_default=False)] = None,
    ema: Annotated[Optional[float], typer.Option("--ema", help="Decay of G's weight average; 0 = off "
                                                 "(default 0.999).", rich_help_panel=TRAIN,
                                                 show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="G updates (default 5000; 0 = none).",
                                                     rich_help_panel=TRAIN, show_default=False)] = None,
    max_time: c.MaxTimeOpt = None,
    snapshot_interval: Annotated[Optional[int], typer.Option("--snapshot-interval", help="A picture every N "
                                                             "steps (default 500).", rich_help_panel=TRAIN,
                                                             show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 0).", rich_help_panel=TRAIN,
                                                show_default=False)] = None,
    device: c.DeviceOpt = None,
    precision: c.PrecisionOpt = None,
    resume: c.ResumeOpt = False,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Train a GAN: G turns noise into samples, D tells them from the data.

    Writes a run directory: generator.safetensors, checkpoint, metrics.jsonl,
    snapshots/*.png, samples.png, training.gif, losses.png and gan.json. On
    ring8 and grid25 the VEEGAN mode-coverage metrics are logged.

    Example: dlcli gan train ring8 -o runs/ring8 --config configs/gan-ring8.yaml
    """
    with c.errors(debug):
        from dlcli.gan.train import GanConfig
        from dlcli.gan.train import train as run_train

        flags = {"data": data, "output": output, "arch": arch, "loss": loss, "z_dim": z_dim, "hidden": hidden,
                 "layers": layers, "spectral_norm": spectral_norm, "image_size": image_size, "color": color,
                 "batch_size": batch_size, "lr_g": lr_g, "lr_d": lr_d, "n_critic": n_critic, "r1_weight": r1,
                 "ema": ema, "max_steps": max_steps, "max_time": max_time, "snapshot_interval": snapshot_interval,
                 "seed": seed, "device": device, "precision": precision}
        cfg = c.resolve(GanConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = run_train(cfg, force=force, resume=resume, on_progress=on_progress)
        line = f"{s['steps']:,} steps in {s['elapsed']:.0f} s; {s['precision']}"
        c.info(line + (f"; {s['summary']}" if s["summary"] else "") + f"; picture: {s['run']}/samples.png", quiet)
        c.result(s["run"])


@app.command("sample")
def sample(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli gan train'.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Vectors: .npy or .csv. Images: .png (a grid), "
                                        ".npy (uint8) or a folder of PNGs.")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 64,
    truncation: Annotated[float, typer.Option("--truncation", help="Redraw Gaussian noise entries beyond "
                                              "this |z| (0 = off).")] = 0.0,
    folder: Annotated[bool, typer.Option("--folder", help="Write one PNG per sample into OUTPUT.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same samples.")] = 0,
    device: c.UseDeviceOpt = "auto",
    force: c.ForceOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Draw samples from a trained GAN's generator (the moving average of G).

    Example: dlcli gan sample runs/ring8 -n 2500 -o samples.npy
    """
    with c.errors(debug):
        from dlcli.gan.sample import sample as run_sample

        s = run_sample(run, n, output, force=force, seed=seed, truncation=truncation, folder=folder, device=device)
        c.result(s["written"][0])


@app.command("eval")
def evaluate(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli gan train'.")],
    n: Annotated[int, typer.Option("-n", "--num", help="Samples to draw (VEEGAN: 2500).")] = 2500,
    threshold: Annotated[int, typer.Option("--threshold", help="High-quality samples a mode needs to count as "
                                           "captured (digits: samples per class).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    device: c.UseDeviceOpt = "auto",
    debug: c.DebugOpt = False,
) -> None:
    """Measure mode coverage: modes captured, high-quality share and reverse KL
    (ring8, grid25), or classes covered and mean confidence (digits). JSON on stdout.

    Example: dlcli gan eval runs/ring8 -n 2500
    """
    with c.errors(debug):
        from dlcli.gan.sample import evaluate as run_eval

        print(json.dumps(run_eval(run, n, threshold, seed, device), indent=2))
