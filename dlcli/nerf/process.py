"""`dlcli nerf process`: camera poses and intrinsics for plain photos or a video, as a scene `nerf train` reads.

OUT/images/ gets the images (resized by `downscale`; a video's frames sampled evenly), COLMAP runs on them
(`colmap.run_sfm`: OUT/colmap/database.db and the sparse model OUT/colmap/sparse/0), or an existing model is
read (`--colmap-model`), and OUT/transforms.json is written in the Instant-NGP layout (`transforms.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core.io import atomic_write
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError, DlcliError, InputError, OutputExistsError
from dlcli.nerf import colmap
from dlcli.nerf.colmap import Camera, Model
from dlcli.nerf.media import VIDEO_SUFFIXES, is_image, is_video
from dlcli.nerf.transforms import c2w_from_colmap, normalise, scaled, transforms_doc

MATCHING = ("auto", "exhaustive", "sequential")
CAMERA_MODELS = tuple(colmap.MODEL_IDS)
MIN_IMAGES = 3


def process(source: str | os.PathLike[str], output: str | os.PathLike[str], downscale: int = 1,
            colmap_model: str | os.PathLike[str] | None = None, matching: str = "auto",
            camera_model: str = "SIMPLE_RADIAL", frames: int = 100, aabb_scale: int = 4, force: bool = False,
            on_progress: OnProgress = nothing, threads: int = -1) -> dict[str, Any]:
    """Make OUT/transforms.json and OUT/images/ from SOURCE (an image folder or a video); see the module doc."""
    if downscale < 1:
        raise ConfigError(f"downscale: {downscale} must be at least 1")
    if matching not in MATCHING:
        raise ConfigError(f"matching: '{matching}' is not one of {', '.join(MATCHING)}")
    if camera_model not in CAMERA_MODELS:
        raise ConfigError(f"camera model: '{camera_model}' is not one of {', '.join(CAMERA_MODELS)}")
    if frames < MIN_IMAGES:
        raise ConfigError(f"frames: {frames} must be at least {MIN_IMAGES}")
    if aabb_scale < 1 or aabb_scale & (aabb_scale - 1):
        raise ConfigError(f"aabb scale: {aabb_scale} must be a power of two (1, 2, 4, ... 128)")
    src, out = Path(source), Path(output)
    if not src.exists():
        raise InputError(f"{src}: no such folder or video")
    video = src.is_file()
    if video and not is_video(src):
        raise InputError(f"{src}: not a folder of images or a video ({', '.join(VIDEO_SUFFIXES)})")
    if video and colmap_model is not None:
        raise ConfigError(f"{src}: --colmap-model needs the folder of images the model was made from, not a video")
    model = colmap.read_model(colmap_model) if colmap_model is not None else None
    if model is None:
        colmap.pycolmap_module()  # fail before copying anything when it is missing
    else:
        _shared_camera(model, colmap_model)
    names = model.names if model is not None else [] if video else _image_names(src)
    if not video and len(names) < MIN_IMAGES:
        raise InputError(f"{src}: {len(names)} image{'s' if len(names) != 1 else ''}; structure from motion "
                         f"needs at least {MIN_IMAGES} (20 to 200 overlapping views work best)")
    for given in (src, colmap_model):
        _outside(Path(given) if given is not None else None, out)
    created = not out.exists()
    _prepare(out, force)
    images = out / "images"
    times: dict[str, float] = {}
    how = "none (--colmap-model)"
    try:
        t = time.perf_counter()
        if video:
            names, size = _video_frames(src, images, frames, downscale, on_progress)
        else:
            size = _copy_images(src, names, images, downscale, on_progress)
        times["images"] = time.perf_counter() - t
        if model is None:
            if len(names) < MIN_IMAGES:
                raise InputError(f"{src}: {len(names)} frames; structure from motion needs at least {MIN_IMAGES}")
            how = matching if matching != "auto" else "sequential" if video else "exhaustive"
            times.update(colmap.run_sfm(images, names, out / "colmap", how, camera_model, on_progress, threads))
            model = colmap.read_model(out / "colmap" / "sparse" / "0")
    except BaseException:
        _undo(out, created)  # nothing worth keeping: a rerun needs no --force
        raise
    n = len(names)
    if 2 * len(model.names) < n:
        raise InputError(f"{src}: COLMAP registered only {len(model.names)} of {n} images (at least half are "
                         f"needed: too little overlap or texture, or blur); the partial model is in "
                         f"{out / 'colmap' / 'sparse' / '0'}")
    t = time.perf_counter()
    camera = scaled(_shared_camera(model, colmap_model), *size)
    poses = normalise(c2w_from_colmap(model.rotations, model.translations))
    doc = transforms_doc(camera, [f"images/{name}" for name in model.names], poses, aabb_scale)
    with atomic_write(out / "transforms.json", force=True) as f:
        f.write(json.dumps(doc, indent=2).encode("utf-8"))
    times["write"] = time.perf_counter() - t
    return {"output": str(out / "transforms.json"), "images": n, "registered": len(model.names),
            "reprojection_error": model.reprojection_error, "points": model.points, "matching": how,
            "width": size[0], "height": size[1], "times": times}


def _image_names(src: Path) -> list[str]:
    return sorted(p.name for p in src.iterdir() if p.is_file() and is_image(p))


def _outside(given: Path | None, out: Path) -> None:
    """An input inside OUT/images or OUT/colmap would be removed or overwritten: refused."""
    if given is None or not out.is_dir():
        return
    p = given.resolve()
    for part in ("images", "colmap"):
        d = (out / part).resolve()
        if p == d or d in p.parents:
            raise InputError(f"{given}: is inside {out / part}, which this command rewrites; write the scene to "
                             "another folder (-o)")


def _prepare(out: Path, force: bool) -> None:
    """Refuse a non-empty OUT without --force; with it, remove only what this command writes there."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(f"{out}: exists and is not empty (use --force)")
        for part in ("images", "colmap"):
            shutil.rmtree(out / part, ignore_errors=True)
        (out / "transforms.json").unlink(missing_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)


def _undo(out: Path, created: bool) -> None:
    for part in ("images", "colmap"):
        shutil.rmtree(out / part, ignore_errors=True)
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def _target(width: int, height: int, downscale: int) -> tuple[int, int]:
    return max(1, round(width / downscale)), max(1, round(height / downscale))


def _copy_images(src: Path, names: list[str], dst: Path, downscale: int, on_progress: OnProgress) -> tuple[int, int]:
    """Copy (downscale 1) or resize each image into dst under the same name; all must have one size."""
    from PIL import Image

    size = None
    for i, name in enumerate(names):
        p = src / name
        if Path(os.path.normpath(name)).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"{p}: image name '{name}' leaves the image folder (refused)")
        try:
            with Image.open(p) as im:
                if size is None:
                    size = im.size
                elif im.size != size:
                    raise InputError(f"{p}: image is {im.size[0]}x{im.size[1]} but {names[0]} is {size[0]}x"
                                     f"{size[1]} (all images must have one size)")
                target = dst / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if downscale == 1:
                    shutil.copyfile(p, target)
                else:
                    w, h = _target(*size, downscale)
                    if im.format == "JPEG":
                        im.draft("RGB", (w, h))  # decode at reduced size: much faster
                    small = im.convert("RGB").resize((w, h), Image.Resampling.BOX)
                    small.save(target, quality=95) if im.format == "JPEG" else small.save(target)
        except FileNotFoundError:
            raise InputError(f"{p}: image not found (named in the COLMAP model)") from None
        except OSError as e:
            raise InputError(f"{p}: not a readable image ({e})") from None
        on_progress(Tick("images", i + 1, len(names), unit="image"))
    assert size is not None
    return _target(*size, downscale)


def _video_frames(src: Path, dst: Path, frames: int, downscale: int,
                  on_progress: OnProgress) -> tuple[list[str], tuple[int, int]]:
    """`frames` frames sampled evenly over the video, as frame_<i>.jpg."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise DlcliError(f"{src}: reading a video needs imageio-ffmpeg: pip install imageio-ffmpeg") from None
    from PIL import Image

    try:
        total = imageio_ffmpeg.count_frames_and_secs(str(src))[0]
        reader = imageio_ffmpeg.read_frames(str(src))
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration):
        raise InputError(f"{src}: not a readable video (ffmpeg cannot decode it)") from None
    w, h = meta["size"]
    keep = set(np.linspace(0, max(0, total - 1), min(frames, total)).round().astype(int).tolist())
    names: list[str] = []
    try:
        for i, raw in enumerate(reader):
            if i in keep:
                im = Image.fromarray(np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3))
                if downscale > 1:
                    im = im.resize(_target(w, h, downscale), Image.Resampling.BOX)
                names.append(f"frame_{len(names) + 1:05d}.jpg")
                im.save(dst / names[-1], quality=95)
                on_progress(Tick("frames", len(names), len(keep), unit="frame"))
    finally:
        reader.close()
    return names, _target(w, h, downscale)


def _shared_camera(model: Model, where: str | os.PathLike[str] | None) -> Camera:
    """The one camera every registered image uses (`nerf train` reads one set of intrinsics)."""
    used = {model.cameras[i].key(): model.cameras[i] for i in set(model.camera_ids)}
    if len(used) > 1:
        raise InputError(f"{where or 'the COLMAP model'}: the images use {len(used)} different cameras; "
                         "dlcli nerf train needs one shared camera (run COLMAP with a single camera)")
    return next(iter(used.values()))
