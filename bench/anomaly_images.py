"""Benchmark: `dlcli anomaly images` speed with a ViT-B/16-shaped CLIP at 240 px (random weights), on a
synthetic MVTec-layout set of the same size.

The model has OpenAI's ViT-B/16 shape (image tower 12 x 768, text tower 12 x 512, 512-d embeddings) at
240 px: a 15 x 15 patch grid, so WinCLIP's 2 x 2 and 3 x 3 windows are 196 + 169 extra forward passes
of 5 and 10 tokens per image beside the full one of 226. Random weights score nothing meaningful; this
measures time only (images per second over reading, the tower, the windows and the scoring; seconds per
phase as summary.json gives them), zero-shot and few-shot, in the precision `auto` picks (bf16 on a CPU with
native bf16) or the one asked for.

    python bench/anomaly_images.py                          # 6 test images, zero-shot and 1-shot
    python bench/anomaly_images.py --precision fp32
    python bench/anomaly_images.py --images 12 --shots 4 --batch-size 128 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import zlib
from pathlib import Path

import torch
from machine import cpu_kind

from dlcli.anomaly.images import images
from dlcli.anomaly.images_config import ImagesConfig
from dlcli.anomaly.synthetic_images import make_dataset
from dlcli.models.clip import CLIP, CLIPConfig, Preprocess


def vit_b16(image_size: int) -> tuple[CLIP, object, Preprocess]:
    """A random CLIP of ViT-B/16's shape, a hashing tokenizer of its vocabulary size, the preprocessing."""
    torch.manual_seed(0)
    cfg = CLIPConfig(image_size=image_size)
    model = CLIP(cfg).eval()

    def tokenize(texts: list[str]) -> torch.Tensor:
        rows = [[zlib.crc32(w.encode()) % 49000 + 1 for w in t.split()] + [cfg.vocab_size - 1] for t in texts]
        n = max(map(len, rows))
        return torch.tensor([r + [0] * (n - len(r)) for r in rows])

    return model, tokenize, Preprocess(image_size=image_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=6, help="test images (a third good, the rest defects)")
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--size", type=int, default=240, help="model input side (px)")
    ap.add_argument("--batch-size", type=int, default=256, help="windows per forward pass")
    ap.add_argument("--precision", default="auto", help="auto, fp32 or bf16 (auto: bf16 where native)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = vit_b16(args.size)
    print(f"CPU: {cpu_kind()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as d:
        n_defect = max(1, (args.images - args.images // 3) // 3)
        root = make_dataset(Path(d) / "weave", n_train=max(1, args.shots), n_good=args.images // 3,
                            n_defect=n_defect, size=args.size)
        for shots in (0, args.shots):
            cfg = ImagesConfig(input=str(root), output=str(Path(d) / f"out{shots}"), clip="random ViT-B/16",
                               shots=shots, batch_size=args.batch_size, device="cpu",
                               precision=args.precision)
            s = images(cfg, lambda _: model)
            print(json.dumps({"mode": s["mode"], "precision": s["precision"]["used"], "images": s["images"], "images_per_s": round(s["images_per_s"], 3),
                              "seconds": s["seconds"], "total_seconds": s["total_seconds"]}))


if __name__ == "__main__":
    main()
