"""`dlcli nerf synth|train|render|eval|export|process`: neural radiance fields from posed images."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Neural radiance fields: make a procedural scene, train on posed images (Blender or Instant-NGP layout), "
          "render new views, measure the test views, export a mesh or point cloud.")


def _synth_config() -> type:
    from dlcli.nerf.synth import SynthConfig

    return SynthConfig


def _config() -> type:
    from dlcli.nerf.config import NerfConfig

    return NerfConfig


@app.command("synth")
@command(_synth_config)
def synth(
    output: Annotated[str | None, o.opt("--output", "-o", help="Scene folder to write (Blender layout).")] = None,
    size: Annotated[int | None, o.opt("--size", help="Image width and height in pixels.")] = None,
    n_train: Annotated[int | None, o.opt("--train", help="Training views.")] = None,
    n_val: Annotated[int | None, o.opt("--val", help="Validation views.")] = None,
    n_test: Annotated[int | None, o.opt("--test", help="Test views (a ring at 30 degrees).")] = None,
    seed: Annotated[int | None, o.opt("--seed", help="Seed for the training cameras.")] = None,
    *, job: Job,
) -> None:
    """Render a procedural scene of coloured spheres and boxes (analytic ray casting) into the Blender layout:
    transforms_{train,val,test}.json and RGBA PNGs.

    Example: dlcli nerf synth -o scene --size 100
    """
    from dlcli.nerf.synth import synth

    job.run(synth, lambda s: f"{s['images']} images of {s['size']}x{s['size']}", result="output")


@app.command("train")
@command(_config, options=o.training("epochs"), resume=True)
def train(
    data: Annotated[str | None, o.arg("Data set folder: transforms_{train,val,test}.json (Blender) or "
                                      "transforms.json (Instant-NGP).")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Run directory.", panel=o.OUTPUT)] = None,
    model: Annotated[str | None, o.opt("--model", "-m", help="hash (hash grid + occupancy grid, fast) or nerf (the "
                                       "original coarse + fine MLPs).", panel=o.MODEL)] = None,
    downscale: Annotated[int | None, o.opt("--downscale", help="Divide the image size by N.", panel=o.DATA)] = None,
    background: Annotated[str | None, o.opt("--background", help="white or black: what transparent pixels are "
                                            "composited on.", panel=o.DATA)] = None,
    holdout: Annotated[int | None, o.opt("--holdout", help="Instant-NGP layout: every Nth frame is a test view.",
                                         panel=o.DATA)] = None,
    batch_rays: Annotated[int | None, o.opt("--batch-rays", "-b", help="Rays per step.", panel=o.TRAIN)] = None,
    lr: Annotated[float | None, o.opt("--lr", help="Adam learning rate (default 1e-2 hash, 5e-4 nerf).",
                                      panel=o.TRAIN)] = None,
    val_interval: Annotated[int | None, o.opt("--val-interval", help="A validation render (PNG) and PSNR every N "
                                              "steps.", panel=o.TRAIN)] = None,
    *, job: Job,
) -> None:
    """Train a radiance field on posed images.

    Writes a run directory: config.yaml, nerf.json, metrics.jsonl, model.safetensors, a checkpoint,
    val/step_<N>.png (prediction | ground truth | depth) and psnr.png.

    Example: dlcli nerf train scene -o runs/scene --config configs/nerf-synth-cpu.yaml
    """
    from dlcli.nerf.train import train

    job.run(train, lambda s: f"{s['steps']:,} steps in {s['elapsed']:.0f} s; train PSNR {s['train_psnr']:.2f} dB, "
            f"validation view PSNR {s['val_psnr']:.2f} dB; {s['precision']}")


@app.command("render")
@command(options=o.WRITES)
def render(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli nerf train'.")],
    output: Annotated[str, typer.Option("--output", "-o", help="out.gif, out.mp4 (needs imageio-ffmpeg) or a "
                                        "folder for rgb_<i>.png and depth_<i>.png.")],
    path: Annotated[str, typer.Option("--path", help="orbit, spiral or test (the data set's test cameras).")
                    ] = "orbit",
    frames: Annotated[int, typer.Option("--frames", "-n", help="Frames on an orbit or spiral.")] = 60,
    width: Annotated[int | None, typer.Option("--width", help="Frame width (default: the training size; "
                                                 "keeps the aspect ratio if --height is not given).",
                                                 show_default=False)] = None,
    height: Annotated[int | None, typer.Option("--height", help="Frame height.", show_default=False)] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second (GIF, MP4).")] = 20.0,
    depth: Annotated[bool, typer.Option("--depth", help="GIF/MP4: depth beside each RGB frame.")] = False,
    radius: Annotated[float, typer.Option("--radius", help="Orbit radius as a multiple of the training "
                                          "cameras' mean distance.")] = 1.0,
    device: o.UseDevice = "auto",
    *, job: Job,
) -> None:
    """Render new views of a trained scene: an orbit or spiral path around it, or its test cameras.

    Example: dlcli nerf render runs/scene -o orbit.gif --frames 48 --depth
    """
    from dlcli.nerf.renderer import render as run_render

    with c.progress(job.quiet) as on_progress:
        s = run_render(run, output, path, frames, width, height, fps, depth, radius, job.force, device, on_progress)
    job.info(f"{s['frames']} frames of {s['width']}x{s['height']}")
    c.result(s["output"])


@app.command("eval")
@command(options=o.WRITES)
def evaluate(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli nerf train'.")],
    split: Annotated[str, typer.Option("--split", help="test or val (Instant-NGP layout: both are the "
                                       "hold-out frames).")] = "test",
    images: Annotated[str | None, typer.Option("--images", help="Also write each render beside its ground "
                                                  "truth as PNGs into this folder.", show_default=False)] = None,
    device: o.UseDevice = "auto",
    *, job: Job,
) -> None:
    """PSNR and SSIM of every test view and their means, as JSON on stdout (like nerfstudio's ns-eval).

    Example: dlcli nerf eval runs/scene > eval.json
    """
    from dlcli.nerf.renderer import evaluate as run_eval

    with c.progress(job.quiet) as on_progress:
        s = run_eval(run, split, images, device, job.force, on_progress)
    print(json.dumps(s, indent=2))


@app.command("export")
@command(options=o.WRITES)
def export(
    run: Annotated[str, typer.Argument(help="A run directory from 'dlcli nerf train'.")],
    mesh: Annotated[str | None, typer.Option("--mesh", help="Write a coloured triangle mesh (marching cubes on the "
                                             "density; needs dlcli[mesh]) to this .ply.", show_default=False)] = None,
    points: Annotated[str | None, typer.Option("--points", help="Write a coloured point cloud (the depth of the "
                                               "training views) to this .ply.", show_default=False)] = None,
    resolution: Annotated[int, typer.Option("--resolution", help="Mesh: density grid points per side.")] = 128,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Mesh: the density of the surface (default: "
                                                    "half opaque over 1/100 of the scene box's side).",
                                                    show_default=False)] = None,
    max_points: Annotated[int, typer.Option("--max-points", help="Points: at most this many.")] = 1_000_000,
    device: o.UseDevice = "auto",
    *, job: Job,
) -> None:
    """Export a trained scene's geometry as binary PLY (MeshLab, Blender, CloudCompare, Open3D): a mesh by
    marching cubes on the density, and/or a point cloud from the depth of the training views.

    Example: dlcli nerf export runs/scene --mesh scene.ply --points scene-points.ply
    """
    from dlcli.nerf.export import export as run_export

    with c.progress(job.quiet) as on_progress:
        s = run_export(run, mesh, points, resolution, threshold, max_points, job.force, device, on_progress)
    if "mesh" in s:
        m = s["mesh"]
        job.info(f"mesh: {m['vertices']:,} vertices, {m['faces']:,} faces at density {m['threshold']:.4g} "
                 f"(the grid spans {m['density_range'][0]:.3g} to {m['density_range'][1]:.3g})")
        c.result(m["path"])
    if "points" in s:
        job.info(f"points: {s['points']['points']:,} from {s['points']['views']} views")
        c.result(s["points"]["path"])


@app.command("process")
@command(options=o.WRITES)
def process(
    source: Annotated[str, typer.Argument(help="A folder of JPEG/PNG photos of one scene, or a video "
                                          "(.mp4, .mov, ...: needs imageio-ffmpeg).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Scene folder to write: transforms.json, "
                                        "images/, colmap/.")],
    downscale: Annotated[int, typer.Option("--downscale", help="Divide the image size by N (COLMAP then "
                                           "runs on the smaller images: faster).")] = 1,
    colmap_model: Annotated[str | None, typer.Option("--colmap-model", help="Read this COLMAP sparse model "
                                                     "(e.g. sparse/0, text or binary) instead of running "
                                                     "structure from motion.", show_default=False)] = None,
    matching: Annotated[str, typer.Option("--matching", help="auto (sequential for a video, exhaustive for "
                                          "photos), exhaustive or sequential.")] = "auto",
    camera_model: Annotated[str, typer.Option("--camera-model", help="COLMAP camera model: SIMPLE_PINHOLE, "
                                              "PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV.")] = "SIMPLE_RADIAL",
    frames: Annotated[int, typer.Option("--frames", "-n", help="Video: frames sampled evenly.")] = 100,
    aabb_scale: Annotated[int, typer.Option("--aabb-scale", help="Scene box written for training (a power of "
                                            "two; the box is 0.375 x this times the cameras' distance).")] = 4,
    *, job: Job,
) -> None:
    """Camera poses and intrinsics from plain photos or a video with COLMAP (pycolmap: SIFT features, matching,
    incremental mapping), written as an Instant-NGP transforms.json that 'dlcli nerf train' reads.
    Needs pip install 'dlcli[colmap]' unless --colmap-model is given.

    Example: dlcli nerf process photos/ -o scene --downscale 4
    """
    from dlcli.nerf.process import process as run_process

    with c.progress(job.quiet) as on_progress:
        s = run_process(source, output, downscale, colmap_model, matching, camera_model, frames, aabb_scale,
                        job.force, on_progress)
    err = f"{s['reprojection_error']:.2f} px" if s["reprojection_error"] == s["reprojection_error"] else "n/a"
    job.info(f"{s['registered']} of {s['images']} images registered ({s['width']}x{s['height']}), mean "
             f"reprojection error {err}, {s['points']:,} points; matching {s['matching']}; "
             + ", ".join(f"{k} {v:.1f} s" for k, v in s["times"].items()))
    c.result(s["output"])
