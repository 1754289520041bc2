"""Corpus BLEU (sacrebleu) of translations."""

from __future__ import annotations

import re

_SPACE_PUNCT = re.compile(r" ([,.!?])")


def detokenize(s: str) -> str:
    """Undo the nmt normaliser's space before punctuation, for BLEU on plain text."""
    return _SPACE_PUNCT.sub(r"\1", s)


def bleu(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    """Corpus BLEU (sacrebleu, 13a tokenisation) of detokenised text, and sacrebleu's signature."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="13a")
    score = metric.corpus_score([detokenize(h) for h in hyps], [[detokenize(r) for r in refs]])
    return float(score.score), str(metric.get_signature())
