"""`dlcli anomaly images DIR --clip MODEL -o OUT`: anomaly scores and maps of images from a CLIP model.

DIR is a folder of images (searched recursively) or one in the MVTec AD layout: `test/<defect>/*.png`
(`good` = normal) with `ground_truth/<defect>/<stem>_mask.png`. Zero-shot by default; few-shot with
reference images of normal parts (`--reference`, or `--shots K` from an MVTec folder's train/good).
Scoring is dlcli/anomaly/winclip.py.

OUT gets `scores.csv` (image, score, flag), `overlays/<image>.png` (the map on the image), in the MVTec
layout `metrics.json` (dlcli/anomaly/metrics_images.py: overall and per defect), and `summary.json` (the
settings, images per second, seconds per phase). It is built in a temp folder beside OUT and renamed into
place at the end: any bad input (one line naming the file) leaves nothing behind.

Each image is resized whole to the model's square input (no crop), so the map covers the whole image; the
metrics are computed at that resolution (masks resized, nearest), the overlays at the image's own (longest
side at most 512).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.anomaly.images_config import ImagesConfig
from dlcli.core.io import replace_folder
from dlcli.core.progress import Tick
from dlcli.errors import InputError, OutputExistsError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OVERLAY_SIDE = 512


@dataclass
class Item:
    """One image to score: its file, its name in scores.csv, its defect kind and mask file (MVTec layout)."""

    path: Path
    name: str
    kind: str = ""  # test/<kind>/ in the MVTec layout ("good" = normal); "" otherwise
    mask: Path | None = None


def is_mvtec(root: Path) -> bool:
    """Whether a folder has the MVTec AD layout (test/ and ground_truth/ folders)."""
    return (root / "test").is_dir() and (root / "ground_truth").is_dir()


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def list_images(root: str | Path) -> list[Item]:
    """The images of DIR, sorted; in the MVTec layout each defect image with its mask file."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    if not is_mvtec(root):
        items = [Item(p, p.relative_to(root).as_posix()) for p in _images_under(root)]
    else:
        items = []
        for p in _images_under(root / "test"):
            rel = p.relative_to(root / "test")
            if len(rel.parts) != 2:
                raise InputError(f"{p}: expected test/<defect>/<image> in the MVTec AD layout")
            kind = rel.parts[0]
            mask = None
            if kind != "good":
                mask = root / "ground_truth" / kind / f"{p.stem}_mask.png"
                if not mask.is_file():
                    raise InputError(f"{p}: its mask {mask} is missing")
            items.append(Item(p, rel.as_posix(), kind, mask))
    if not items:
        raise InputError(f"{root}: no images ({' '.join(SUFFIXES)}) in it")
    return items


def references(cfg: ImagesConfig) -> list[Path]:
    """The reference images of few-shot: --reference (or an MVTec folder's train/good with --shots), the
    first --shots of them; [] for zero-shot."""
    if cfg.reference:
        folder = Path(cfg.reference)
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (--reference)")
    elif cfg.shots and is_mvtec(Path(cfg.input)):
        folder = Path(cfg.input) / "train" / "good"
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (--shots takes the references from train/good)")
    else:
        return []
    found = _images_under(folder)
    if not found:
        raise InputError(f"{folder}: no reference images ({' '.join(SUFFIXES)}) in it")
    if cfg.shots and cfg.shots > len(found):
        raise InputError(f"{folder}: {len(found)} images, fewer than --shots {cfg.shots}")
    return found[: cfg.shots] if cfg.shots else found


def read_image(path: Path) -> Any:
    """The image as RGB (PIL); one line when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: cannot be decoded as an image ({type(e).__name__})") from None


def read_mask(item: Item, size: tuple[int, int], side: int) -> np.ndarray:
    """The item's boolean mask resized (nearest) to side x side; all False for a good image."""
    from PIL import Image, UnidentifiedImageError

    if item.mask is None:
        return np.zeros((side, side), bool)
    try:
        with Image.open(item.mask) as im:
            mask = im.convert("L")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{item.mask}: cannot be decoded as an image ({type(e).__name__})") from None
    if mask.size != size:
        raise InputError(f"{item.mask}: mask of {mask.size[0]}x{mask.size[1]} pixels does not match its image "
                         f"{item.path} ({size[0]}x{size[1]})")
    return np.asarray(mask.resize((side, side), Image.Resampling.NEAREST)) > 127


def to_pixels(images: list[Any], side: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """PIL images -> normalised pixels (B, 3, side, side): each resized whole (bicubic), / 255, minus mean,
    over std."""
    import torch
    from PIL import Image

    x = np.stack([np.asarray(im.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255 for im in images])
    x = torch.from_numpy(x).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def upsample(maps: Any, side: int, sigma: float = 0.0) -> np.ndarray:
    """Patch maps (B, g, g) -> (B, side, side) float32: bilinear, then a Gaussian blur of `sigma` pixels
    (0: none; WinCLIP blurs with 4), the borders reflected."""
    import torch
    import torch.nn.functional as F

    x = F.interpolate(maps[:, None].float(), size=(side, side), mode="bilinear", align_corners=False)
    if sigma > 0:
        r = min(int(4 * sigma + 0.5), side - 1)
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
        k = (k / k.sum()).to(x.device)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))  # along rows
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))  # along columns
    return x[:, 0].cpu().numpy()


def overlay(image: Any, heat: np.ndarray, lo: float, hi: float) -> bytes:
    """The PNG of the heat map (coloured, range lo..hi) blended over the image."""
    from matplotlib import colormaps
    from PIL import Image

    w, h = image.size
    scale = min(1.0, OVERLAY_SIDE / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    base = np.asarray(image.resize(size, Image.Resampling.BILINEAR), np.float32) / 255
    heat = np.asarray(Image.fromarray(heat.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))
    norm = np.clip((heat - lo) / max(hi - lo, 1e-12), 0, 1)
    colour = colormaps["jet"](norm)[..., :3]
    out = (0.55 * base + 0.45 * colour) * 255 + 0.5
    buf = io.BytesIO()
    Image.fromarray(out.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write_csv(path: Path, items: list[Item], scores: np.ndarray, flags: np.ndarray) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "flag"])
        for it, s, fl in zip(items, scores, flags):
            w.writerow([it.name, f"{s:.6f}", int(fl)])


def images(cfg: ImagesConfig, load: Callable[[str], tuple[Any, Any, Any]], force: bool = False,
           on_progress: Callable[[Tick], None] | None = None) -> dict[str, Any]:
    """Score every image of cfg.input into cfg.output; the summary. `load(folder)` gives the CLIP model, a
    function from prompts to token ids, and the preprocessing (dlcli/models/clip.py's `Preprocess`)."""
    from dlcli.anomaly import metrics_images, winclip
    from dlcli.core.precision import resolve
    from dlcli.core.runtime import resolve_device

    start = time.perf_counter()
    out = Path(cfg.output)
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists (use --force to replace it)")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist")
    items = list_images(cfg.input)
    refs = references(cfg)
    device = resolve_device(cfg.device)
    obj = cfg.object or Path(cfg.input).resolve().name.replace("_", " ")
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    model, tokenize, prep = load(cfg.clip)
    model = model.to(device).eval()
    side, grid = model.config.image_size, model.config.grid
    seconds["load"] = time.perf_counter() - t
    precision = resolve(cfg.precision, device, width=model.config.vision.width)

    t = time.perf_counter()
    with precision.autocast():
        text = winclip.text_classes(model, tokenize, obj)
    seconds["text"] = time.perf_counter() - t

    def feats_of(paths: list[Path]) -> tuple[list[Any], winclip.Features]:
        t = time.perf_counter()
        ims = [read_image(p) for p in paths]
        pixels = to_pixels(ims, side, prep.mean, prep.std).to(device)
        seconds["read"] = seconds.get("read", 0.0) + time.perf_counter() - t
        with precision.autocast():
            return ims, winclip.features(model, pixels, cfg.scales, cfg.batch_size, seconds)

    memory = None
    if refs:
        ref_feats = []
        for i, p in enumerate(refs):
            ref_feats.append(feats_of([p])[1])
            if on_progress:
                on_progress(Tick("references", i + 1, len(refs), "image"))
        memory = winclip.Memory.of(ref_feats)
        seconds["reference"] = sum(seconds.pop(k, 0.0) for k in ("read", "image_tower", "windows"))

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".dlcli-tmp", dir=out.parent))
    try:
        scores, maps, masks, sizes = [], [], [], []
        kept: list[Any] = []  # the decoded images, for the overlays
        for i, item in enumerate(items):
            ims, f = feats_of([item.path])
            t = time.perf_counter()
            s, m = winclip.score(model, f, text, memory, cfg.text_weight)
            scores.append(float(s[0]))
            maps.append(upsample(m, side, cfg.smooth * model.config.patch_size)[0])
            seconds["score"] = seconds.get("score", 0.0) + time.perf_counter() - t
            sizes.append(ims[0].size)
            if item.kind:
                masks.append(read_mask(item, ims[0].size, side))
            kept.append(ims[0] if cfg.overlays else None)
            if on_progress:
                on_progress(Tick("images", i + 1, len(items), "image"))
        scores_a = np.array(scores)
        flags = scores_a >= cfg.threshold
        _write_csv(tmp / "scores.csv", items, scores_a, flags)

        metrics = None
        if items[0].kind:
            t = time.perf_counter()
            metrics = metrics_images.report([it.kind for it in items], scores_a, masks, maps, cfg.max_fpr)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
            seconds["metrics"] = time.perf_counter() - t

        if cfg.overlays:
            t = time.perf_counter()
            lo, hi = float(min(m.min() for m in maps)), float(max(m.max() for m in maps))
            for item, im, m in zip(items, kept, maps):
                png = tmp / "overlays" / f"{Path(item.name).with_suffix('')}.png"
                png.parent.mkdir(parents=True, exist_ok=True)
                png.write_bytes(overlay(im, m, lo, hi))
            seconds["overlays"] = time.perf_counter() - t

        total = time.perf_counter() - start
        scored = seconds.get("read", 0) + seconds.get("image_tower", 0) + seconds.get("windows", 0) + \
            seconds.get("score", 0)
        summary: dict[str, Any] = {
            "output": str(out), "input": cfg.input, "clip": cfg.clip, "object": obj,
            "mode": f"few-shot ({len(refs)} references)" if refs else "zero-shot", "images": len(items),
            "flagged": int(flags.sum()), "threshold": cfg.threshold, "scales": list(cfg.scales),
            "image_size": side, "grid": grid, "device": str(device),
            "precision": precision.record(),
            "images_per_s": len(items) / scored if scored > 0 else None,
            "seconds": {k: round(v, 4) for k, v in seconds.items()}, "total_seconds": round(total, 4),
        }
        if metrics is not None:
            summary["metrics"] = metrics["overall"]
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def report(s: dict[str, Any]) -> str:
    """The summary line."""
    line = (f"{s['mode']}: scored {s['images']:,} images of '{s['object']}' in {s['total_seconds']:.1f} s "
            f"({s['images_per_s']:.2f} images/s scoring), {s['flagged']:,} flagged at {s['threshold']:g}")
    if "metrics" in s:
        m = {k: "n/a" if v is None else f"{v:.3f}" for k, v in s["metrics"].items()}
        line += (f"; image AUROC {m['image_auroc']}, pixel AUROC {m['pixel_auroc']}, PRO {m['pro']}, "
                 f"F1-max {m['image_f1_max']}")
    return line
