"""`dlcli evaluate`: loss, perplexity and bits per character of a language
model run on held-out ids or text."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.core import io
from dlcli.core.idfile import IdFile
from dlcli.core.progress import OnProgress, nothing
from dlcli.errors import ConfigError, InputError
from dlcli.lm.config import EvaluateConfig
from dlcli.lm.metrics import evaluate_ids, evaluate_mlm
from dlcli.lm.mlm import mask_ids
from dlcli.lm.run import open_run
from dlcli.models.gpt import GPT
from dlcli.text import vocabulary


def evaluate(cfg: EvaluateConfig, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Loss and perplexity (bits per character for a character vocabulary) of a language-model run on
    `cfg.ids` or `cfg.text`; masked-token accuracy beside the majority baseline for a masked-LM run.
    Ticks ("evaluate", tokens) once a batch."""
    cfg.validate()
    if cfg.ids is None and cfg.text is None:
        raise ConfigError("give an id file (--ids) or a text file (--text) to evaluate a language model on")
    run = open_run(cfg.run, cfg.device)
    if cfg.ids is not None:
        f = IdFile.open(cfg.ids)
        f.check_vocab(vocabulary.vocab_hash(run.tokenizer), str(Path(cfg.run) / "tokenizer.json"),
                      run.tokenizer.get_vocab_size(with_added_tokens=True))
        ids = np.asarray(f.ids)
        source = cfg.ids
    else:
        assert cfg.text is not None
        io.check_text_file(cfg.text)
        checker = io.TextChecker(cfg.text)
        text = "".join(checker.decode(c) for c in io.read_chunks(cfg.text))
        ids = np.asarray(run.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
        source = cfg.text
    if len(ids) < 2:
        raise InputError(f"{source}: needs at least 2 tokens to evaluate, has {len(ids)}")
    batch = cfg.batch_size or run.batch_size
    seq = cfg.seq_len or run.seq_len
    if run.masked:
        assert isinstance(run.model, GPT)
        mask_id, specials = mask_ids(run.tokenizer, str(Path(cfg.run) / "tokenizer.json"))
        r = evaluate_mlm(run.model, ids, batch, seq, run.device, mask_id, specials, on_progress=on_progress)
        return {"run": str(cfg.run), "data": source, "objective": "mlm", "masked_tokens": r["masked"],
                "loss": r["loss"], "masked_accuracy": r["accuracy"], "majority_accuracy": r["majority_accuracy"]}
    loss, n = evaluate_ids(run.model, ids, batch, seq, run.device, on_progress=on_progress)
    out: dict[str, Any] = {"run": str(cfg.run), "data": source, "tokens": n, "loss": loss,
                           "perplexity": math.exp(min(loss, 700))}
    if run.level == "char":
        out["bits_per_char"] = loss / math.log(2)
    return out
