"""`dlcli gan train|sample|eval`: generative adversarial networks."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Generative adversarial networks: train on 2-D mixtures, arrays or images; sample; measure mode coverage.")


def _config() -> type:
    from dlcli.gan.config import GanConfig

    return GanConfig


def _opt(name: str, help: str, panel: str = o.MODEL) -> Any:
    return o.opt(name, help=help, panel=panel)


@app.command("train")
@command(_config, options=o.training("epochs"), resume=True)
def train(
    data: Annotated[str | None, o.arg("ring8, grid25, spiral, moons, digits, an array file (.npy/.npz/.csv) "
                                         "or a folder of PNG/JPEG images.")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Run directory.")] = None,
    arch: Annotated[str | None, _opt("--arch", "mlp or dcgan (default: dcgan for images, mlp otherwise).")] = None,
    loss: Annotated[str | None, _opt("--loss", "minimax, ns (non-saturating), wgan-gp or hinge.")] = None,
    z_dim: Annotated[int | None, _opt("--z-dim", "Noise dimension.")] = None,
    hidden: Annotated[int | None, _opt("--hidden", "MLP width.")] = None,
    layers: Annotated[int | None, _opt("--layers", "MLP hidden layers.")] = None,
    spectral_norm: Annotated[bool | None, _opt("--spectral-norm/--no-spectral-norm",
                                                  "Spectral normalisation in D.")] = None,
    image_size: Annotated[int | None, _opt("--image-size", "Resize images to 8, 16, 32 or 64 px.")] = None,
    color: Annotated[str | None, _opt("--color", "Images: auto, gray or rgb.")] = None,
    batch_size: o.BatchSize = None,
    lr_g: Annotated[float | None, _opt("--lr-g", "G's Adam learning rate.", o.TRAIN)] = None,
    lr_d: Annotated[float | None, _opt("--lr-d", "D's Adam learning rate.", o.TRAIN)] = None,
    n_critic: Annotated[int | None, _opt("--n-critic", "D updates per G update.", o.TRAIN)] = None,
    r1_weight: Annotated[float | None, _opt("--r1", "Weight gamma of the R1 penalty on real examples; 0 = off.",
                                               o.TRAIN)] = None,
    ema: Annotated[float | None, _opt("--ema", "Decay of G's weight average; 0 = off.", o.TRAIN)] = None,
    snapshot_interval: Annotated[int | None, _opt("--snapshot-interval", "A picture every N steps.",
                                                     o.TRAIN)] = None,
    *, job: Job,
) -> None:
    """Train a GAN: G turns noise into samples, D tells them from the data.

    Writes a run directory: generator.safetensors, checkpoint, metrics.jsonl,
    snapshots/*.png, samples.png, training.gif, losses.png and gan.json. On
    ring8 and grid25 the VEEGAN mode-coverage metrics are logged.

    Example: dlcli gan train ring8 -o runs/ring8 --config configs/gan-ring8.yaml
    """
    from dlcli.gan.train import train

    job.run(train, lambda s: f"{s['steps']:,} steps in {s['elapsed']:.0f} s; {s['precision']}"
            + (f"; {s['summary']}" if s["summary"] else "") + f"; picture: {s['run']}/samples.png")


@app.command("sample")
@command(options=o.WRITES)
def sample(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli gan train'.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Vectors: .npy or .csv. Images: .png (a grid), "
                                        ".npy (uint8) or a folder of PNGs.")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 64,
    truncation: Annotated[float, typer.Option("--truncation", help="Redraw Gaussian noise entries beyond "
                                              "this |z| (0 = off).")] = 0.0,
    folder: Annotated[bool, typer.Option("--folder", help="Write one PNG per sample into OUTPUT.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same samples.")] = 0,
    device: o.UseDevice = "auto",
    *, job: Job,
) -> None:
    """Draw samples from a trained GAN's generator (the moving average of G).

    Example: dlcli gan sample runs/ring8 -n 2500 -o samples.npy
    """
    from dlcli.gan.sample import sample as run_sample

    s = run_sample(run, n, output, force=job.force, seed=seed, truncation=truncation, folder=folder, device=device)
    c.result(s["written"][0])


@app.command("eval")
@command()
def evaluate(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli gan train'.")],
    n: Annotated[int, typer.Option("-n", "--num", help="Samples to draw (VEEGAN: 2500).")] = 2500,
    threshold: Annotated[int, typer.Option("--threshold", help="High-quality samples a mode needs to count as "
                                           "captured (digits: samples per class).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    device: o.UseDevice = "auto",
    *, job: Job,
) -> None:
    """Measure mode coverage: modes captured, high-quality share and reverse KL
    (ring8, grid25), or classes covered and mean confidence (digits). JSON on stdout.

    Example: dlcli gan eval runs/ring8 -n 2500
    """
    from dlcli.gan.sample import evaluate as run_eval

    print(json.dumps(run_eval(run, n, threshold, seed, device), indent=2))
