"""Using a translation run: open it, translate sentences, score BLEU on its held-out pairs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlcli.core import rundir
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.core.runtime import resolve_device
from dlcli.models.seq2seq import Seq2Seq
from dlcli.text import normalize as norm
from dlcli.translation.bleu import bleu, detokenize
from dlcli.translation.config import TrainTranslateConfig
from dlcli.translation.data import Tokenizers, encode_sentences, load_run_tokenizers
from dlcli.translation.search import translate_ids


@dataclass
class TranslationRun:
    model: Seq2Seq
    toks: Tokenizers
    cfg: TrainTranslateConfig
    device: torch.device


def open_translation_run(path: str | Path, device: str = "auto") -> TranslationRun:
    """The model (eval mode, on the device), tokenizers and config of a translation run."""
    run = Path(path)
    cfg, _ = rundir.open_run(run, "translate", TrainTranslateConfig, "a translation model",
                             needs=("model.safetensors",))
    toks = load_run_tokenizers(run)
    dev = resolve_device(device)
    model = Seq2Seq(cfg.model)
    rundir.load_weights(model, run / "model.safetensors")
    return TranslationRun(model.to(dev).eval(), toks, cfg, dev)


def translate_normalized(tr: TranslationRun, sents: list[str], beam: int = 1, alpha: float = 0.6,
                         strict: bool = False, batch_size: int = 64) -> tuple[list[str], int]:
    """Translate already-normalised sentences; returns the detokenised output and how many were cut."""
    t = tr.toks
    ids, cut = encode_sentences(t.src, sents, tr.cfg.model.max_len, strict, "input")
    out = translate_ids(tr.model, ids, tr.device, t.bos, t.eos, t.pad, batch_size, beam, alpha)
    steps = tr.cfg.data.normalize
    return [detokenize(t.tgt.decode(o, skip_special_tokens=True).strip(), steps) for o in out], cut


def translate_lines(run: str | Path | TranslationRun, lines: list[str], beam: int = 1, length_penalty: float = 0.6,
                    device: str = "auto", strict: bool = False) -> tuple[list[str], int]:
    """Translate raw sentences with a run (a path, or an opened run); returns
    the translations and how many inputs were truncated."""
    tr = run if isinstance(run, TranslationRun) else open_translation_run(run, device)
    sents = [norm.normalize(s, tr.cfg.data.normalize).strip() for s in lines]
    return translate_normalized(tr, sents, beam, length_penalty, strict)


def held_out_bleu(run: str | Path, beam: int = 1, device: str = "auto", limit: int = 0,
                  length_penalty: float = 0.6, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """BLEU of a translation run on its held-out pairs, cased and case-insensitive (greedy, and beam when
    asked), with sentences/s; a Tick ("BLEU greedy", sentences) every CHUNK sentences decoded."""
    run = Path(run)
    rows = [ln.split("\t") for ln in (run / "heldout.tsv").read_text(encoding="utf-8").splitlines() if ln]
    rows = rows[:limit] if limit else rows
    tr = open_translation_run(run, device)
    src, ref = [r[0] for r in rows], [detokenize(r[1], tr.cfg.data.normalize) for r in rows]
    t0 = time.perf_counter()
    hyp = _decode(tr, src, "BLEU greedy", on_progress)
    dt = time.perf_counter() - t0
    b = bleu(hyp, ref)
    out: dict[str, Any] = {"held_out": len(rows), "bleu_greedy": b.cased, "bleu_greedy_lowercase": b.lowercase,
                           "sentences_per_s_greedy": len(rows) / dt, "signature": b.signature,
                           "signature_lowercase": b.signature_lowercase}
    if beam > 1:
        t0 = time.perf_counter()
        hyp_b = _decode(tr, src, f"BLEU beam {beam}", on_progress, beam, length_penalty)
        dt = time.perf_counter() - t0
        bb = bleu(hyp_b, ref)
        out.update({"bleu_beam": bb.cased, "bleu_beam_lowercase": bb.lowercase, "beam": beam,
                    "length_penalty": length_penalty, "sentences_per_s_beam": len(rows) / dt})
    return out


CHUNK = 256  # sentences decoded between progress ticks (the decoder batches within a chunk)


def _decode(tr: TranslationRun, src: list[str], desc: str, on_progress: OnProgress, beam: int = 1,
            alpha: float = 0.6) -> list[str]:
    hyp: list[str] = []
    on_progress(Tick(desc, 0, len(src), unit="sentence"))
    for i in range(0, len(src), CHUNK):
        hyp += translate_normalized(tr, src[i: i + CHUNK], beam, alpha)[0]
        on_progress(Tick(desc, len(hyp), len(src), unit="sentence"))
    return hyp


def evaluate_run(run: str | Path, beam: int = 1, device: str = "auto",
                 on_progress: OnProgress = nothing) -> dict[str, Any]:
    """`dlcli evaluate RUN` on a translation run: the run and its held-out BLEU (`held_out_bleu`)."""
    return {"run": str(run), **held_out_bleu(run, beam=beam, device=device, on_progress=on_progress)}
