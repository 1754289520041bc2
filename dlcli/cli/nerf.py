"""`dlcli nerf synth|train|render|eval`: neural radiance fields from posed images."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from dlcli.cli import common as c

app = typer.Typer(help="Neural radiance fields: make a procedural scene, train on posed images (Blender or "
                  "Instant-NGP layout), render new views, measure the test views.", no_args_is_help=True)

MODEL = c.MODEL
TRAIN = c.TRAIN
DATA = "Data"


@app.command("synth")
def synth(
    output: Annotated[str, typer.Option("--output", "-o", help="Scene folder to write (Blender layout).")],
    size: Annotated[int, typer.Option("--size", help="Image width and height in pixels.")] = 100,
    n_train: Annotated[int, typer.Option("--train", help="Training views.")] = 100,
    n_val: Annotated[int, typer.Option("--val", help="Validation views.")] = 4,
    n_test: Annotated[int, typer.Option("--test", help="Test views (a ring at 30 degrees).")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the training cameras.")] = 0,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Render a procedural scene of coloured spheres and boxes (analytic ray casting) into the Blender layout:
    transforms_{train,val,test}.json and RGBA PNGs.

    Example: dlcli nerf synth -o scene --size 100
    """
    with c.errors(debug):
        from dlcli.nerf.synth import SynthConfig
        from dlcli.nerf.synth import synth as run_synth

        cfg = SynthConfig(output=output, size=size, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
        with c.progress(quiet) as on_progress:
            s = run_synth(cfg, force=force, on_progress=on_progress)
        c.info(f"{s['images']} images of {s['size']}x{s['size']}", quiet)
        c.result(s["output"])


@app.command("train")
def train(
    data: Annotated[Optional[str], typer.Argument(help="Data set folder: transforms_{train,val,test}.json "
                                                  "(Blender) or transforms.json (Instant-NGP).",
                                                  show_default=False)] = None,
    output: Annotated[Optional[str], c.opt("--output", "Run directory (default runs/nerf).", c.OUTPUT, "-o")] = None,
    model: Annotated[Optional[str], c.opt("--model", "hash (hash grid + occupancy grid, fast; default) or nerf "
                                          "(the original coarse + fine MLPs).", MODEL)] = None,
    downscale: Annotated[Optional[int], c.opt("--downscale", "Divide the image size by N (default 1).", DATA)] = None,
    background: Annotated[Optional[str], c.opt("--background", "white or black: what transparent pixels are "
                                               "composited on (default white).", DATA)] = None,
    holdout: Annotated[Optional[int], c.opt("--holdout", "Instant-NGP layout: every Nth frame is a test view "
                                            "(default 8).", DATA)] = None,
    batch_rays: Annotated[Optional[int], c.opt("--batch-rays", "Rays per step (default 2048).", TRAIN, "-b")] = None,
    lr: Annotated[Optional[float], c.opt("--lr", "Adam learning rate (default 1e-2 hash, 5e-4 nerf).", TRAIN)] = None,
    max_steps: Annotated[Optional[int], c.opt("--max-steps", "Steps (default 5000; 0 = none).", TRAIN)] = None,
    max_time: c.MaxTimeOpt = None,
    val_interval: Annotated[Optional[int], c.opt("--val-interval", "A validation render (PNG) and PSNR every N "
                                                 "steps (default 500).", TRAIN)] = None,
    seed: Annotated[Optional[int], c.opt("--seed", "Random seed (default 0).", TRAIN)] = None,
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
    """Train a radiance field on posed images.

    Writes a run directory: config.yaml, nerf.json, metrics.jsonl, model.safetensors, a checkpoint,
    val/step_<N>.png (prediction | ground truth | depth) and psnr.png.

    Example: dlcli nerf train scene -o runs/scene --config configs/nerf-synth-cpu.yaml
    """
    with c.errors(debug):
        from dlcli.nerf.train import NerfConfig
        from dlcli.nerf.train import train as run_train

        flags = {"data": data, "output": output, "model": model, "downscale": downscale, "background": background,
                 "holdout": holdout, "batch_rays": batch_rays, "lr": lr, "max_steps": max_steps,
                 "max_time": max_time, "val_interval": val_interval, "seed": seed, "device": device,
                 "precision": precision}
        cfg = c.resolve(NerfConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = run_train(cfg, force=force, resume=resume, on_progress=on_progress)
        c.info(f"{s['steps']:,} steps in {s['elapsed']:.0f} s; train PSNR {s['train_psnr']:.2f} dB, validation view "
               f"PSNR {s['val_psnr']:.2f} dB; {s['precision']}", quiet)
        c.result(s["run"])


@app.command("render")
def render(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli nerf train'.")],
    output: Annotated[str, typer.Option("--output", "-o", help="out.gif, out.mp4 (needs imageio-ffmpeg) or a "
                                        "folder for rgb_<i>.png and depth_<i>.png.")],
    path: Annotated[str, typer.Option("--path", help="orbit, spiral or test (the data set's test cameras).")
                    ] = "orbit",
    frames: Annotated[int, typer.Option("--frames", "-n", help="Frames on an orbit or spiral.")] = 60,
    width: Annotated[Optional[int], typer.Option("--width", help="Frame width (default: the training size; "
                                                 "keeps the aspect ratio if --height is not given).",
                                                 show_default=False)] = None,
    height: Annotated[Optional[int], typer.Option("--height", help="Frame height.", show_default=False)] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second (GIF, MP4).")] = 20.0,
    depth: Annotated[bool, typer.Option("--depth", help="GIF/MP4: depth beside each RGB frame.")] = False,
    radius: Annotated[float, typer.Option("--radius", help="Orbit radius as a multiple of the training "
                                          "cameras' mean distance.")] = 1.0,
    device: c.UseDeviceOpt = "auto",
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Render new views of a trained scene: an orbit or spiral path around it, or its test cameras.

    Example: dlcli nerf render runs/scene -o orbit.gif --frames 48 --depth
    """
    with c.errors(debug):
        from dlcli.nerf.renderer import render as run_render

        with c.progress(quiet) as on_progress:
            s = run_render(run, output, path, frames, width, height, fps, depth, radius, force, device, on_progress)
        c.info(f"{s['frames']} frames of {s['width']}x{s['height']}", quiet)
        c.result(s["output"])


@app.command("eval")
def evaluate(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli nerf train'.")],
    split: Annotated[str, typer.Option("--split", help="test or val (Instant-NGP layout: both are the "
                                       "hold-out frames).")] = "test",
    images: Annotated[Optional[str], typer.Option("--images", help="Also write each render beside its ground "
                                                  "truth as PNGs into this folder.", show_default=False)] = None,
    device: c.UseDeviceOpt = "auto",
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """PSNR and SSIM of every test view and their means, as JSON on stdout (like nerfstudio's ns-eval).

    Example: dlcli nerf eval runs/scene > eval.json
    """
    with c.errors(debug):
        from dlcli.nerf.renderer import evaluate as run_eval

        with c.progress(quiet) as on_progress:
            s = run_eval(run, split, images, device, force, on_progress)
        print(json.dumps(s, indent=2))
