"""Heatmaps of a translation model's attention, like the figures of the Transformer paper."""

from __future__ import annotations

from pathlib import Path

import torch

from dlcli.core.io import atomic_write
from dlcli.text import normalize as norm
from dlcli.translation.bleu import detokenize
from dlcli.translation.data import encode_sentences
from dlcli.translation.run import open_translation_run


def plot_attention(run: str | Path, sentences: list[str], out_dir: str | Path, device: str = "auto",
                   force: bool = False) -> list[str]:
    """PNG heatmaps of the last layer's encoder self-attention and decoder
    cross-attention, averaged over heads, one file per sentence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = open_translation_run(run, device)
    t, model = tr.toks, tr.model
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n, sent in enumerate(sentences, 1):
        s = norm.normalize(sent, tr.cfg.data.normalize).strip()
        (src_ids,), _ = encode_sentences(t.src, [s], tr.cfg.model.max_len, False, "input")
        src = torch.tensor([src_ids + [t.eos]], device=tr.device)
        hyp = model.greedy(src, t.bos, t.eos)[0]
        tgt_in = torch.tensor([[t.bos] + hyp], device=tr.device)
        enc, cross = model.attention_maps(src, tgt_in)
        label = [t.src.decode([i]).strip() or "_" for i in src_ids] + ["</s>"]
        hyp_label = ["<s>"] + [t.tgt.decode([i]).strip() or "_" for i in hyp]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=100)
        for ax, w, ys, title in ((axes[0], enc[-1], label, "encoder self-attention"),
                                 (axes[1], cross[-1], hyp_label, "decoder cross-attention")):
            m = w[0].mean(0).cpu().numpy()  # average over heads
            ax.imshow(m, cmap="viridis", vmin=0.0, vmax=max(float(m.max()), 1e-6))
            ax.set_xticks(range(len(label)), label, rotation=60, ha="right", fontsize=8)
            ax.set_yticks(range(len(ys)), ys, fontsize=8)
            ax.set_title(title)
        out_text = detokenize(t.tgt.decode(hyp, skip_special_tokens=True).strip(), tr.cfg.data.normalize)
        fig.suptitle(f"{sent}  ->  {out_text}", fontsize=9)
        fig.tight_layout()
        path = out / f"attention-{n}.png"
        with atomic_write(path, force=force) as f:
            fig.savefig(f, format="png")
        plt.close(fig)
        written.append(str(path))
    return written
