"""Benchmark: image embeddings per second of a ViT-B/16-shaped CLIP (random weights), dlcli's CLIP against
transformers' CLIPModel.get_image_features in the same process, batch 8, fp32, no gradients.

The model is built by transformers with random weights, saved as a Hugging Face folder and read back by
dlcli's load_clip, so both compute the same function (the largest difference is printed). The text tower
is one layer: it does not take part. Each figure is the median of --reps timed batches after one warm-up.

    python bench/clip.py                        # 224 and 240 px
    python bench/clip.py --sizes 224 --reps 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_kind


def timed(fn, x: torch.Tensor, reps: int) -> float:
    """Images per second: the median of `reps` timed calls after one warm-up."""
    fn(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return x.size(0) / statistics.median(times)


def main() -> None:
    from transformers import CLIPConfig, CLIPModel

    from dlcli.hf.clip import load_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="224,240")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    print(f"CPU: {cpu_kind()}; torch {torch.__version__}; batch {args.batch}, fp32")
    for size in (int(s) for s in args.sizes.split(",")):
        torch.manual_seed(0)
        cfg = CLIPConfig(text_config={"num_hidden_layers": 1},
                         vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                                        "num_attention_heads": 12, "image_size": size, "patch_size": 16},
                         projection_dim=512)
        theirs = CLIPModel(cfg).eval()
        with tempfile.TemporaryDirectory() as tmp:
            theirs.save_pretrained(tmp)
            from tokenizers import Tokenizer, models

            Tokenizer(models.WordLevel({"<|endoftext|>": 0}, unk_token="<|endoftext|>")).save(
                str(Path(tmp) / "tokenizer.json"))
            ours, _, _ = load_clip(tmp)
        x = torch.randn(args.batch, 3, size, size)

        def hf(p: torch.Tensor, model: CLIPModel = theirs) -> torch.Tensor:
            out = model.get_image_features(pixel_values=p)
            return getattr(out, "pooler_output", out)

        diff = (ours.encode_image(x) - hf(x)).abs().max().item()
        mine, ref = timed(ours.encode_image, x, args.reps), timed(hf, x, args.reps)
        print(f"{size} px ({(size // 16) ** 2} patches): dlcli {mine:.1f} images/s, transformers {ref:.1f} "
              f"images/s (ratio {mine / ref:.2f}); max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
