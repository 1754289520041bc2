"""Corpus BLEU (sacrebleu) of translations: cased first, case-insensitive beside it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_SPACE_PUNCT = re.compile(r" ([,.!?])")


def detokenize(s: str, steps: Sequence[str]) -> str:
    """Plain text from a sentence normalised with `steps` (a run's data.normalize).

    The byte-level BPE decodes exactly what it was trained on, so only what a normaliser did to the
    spacing is undone: `nmt` put a space before `,.!?` (and turned non-breaking spaces into spaces,
    which cannot be told apart afterwards). Without `nmt` the text is the data's own, non-breaking
    spaces included, and is returned as it is."""
    return _SPACE_PUNCT.sub(r"\1", s) if "nmt" in steps else s


@dataclass(frozen=True)
class Bleu:
    """Corpus BLEU, cased (the standard figure) and case-insensitive, with sacrebleu's signatures."""

    cased: float
    lowercase: float
    signature: str
    signature_lowercase: str


def bleu(hyps: list[str], refs: list[str]) -> Bleu:
    """Corpus BLEU (sacrebleu, 13a tokenisation) of plain (detokenised) text, one reference each."""
    from sacrebleu.metrics import BLEU

    cased, lower = BLEU(tokenize="13a"), BLEU(tokenize="13a", lowercase=True)
    c, lc = cased.corpus_score(hyps, [refs]), lower.corpus_score(hyps, [refs])
    return Bleu(float(c.score), float(lc.score), str(cased.get_signature()), str(lower.get_signature()))
