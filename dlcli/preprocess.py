"""`dlcli preprocess`: normalise and tokenise text into a token stream.

Input files (or stdin) are read as a stream of line-aligned chunks, processed
in parallel worker processes, and written in order: memory does not grow with
the corpus. The token stream format is described in `dlcli.text.tokenstream`
and docs/formats.md. When the output is a file, a sidecar `<output>.json`
records how it was made, so `vocab build` can build a matching tokenizer.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.core import io
from dlcli.core.parallel import imap_ordered
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError
from dlcli.text import normalize as norm
from dlcli.text.tokenize import LEVELS, TokenizeSpec, load_hf_tokenizer, to_stream

STREAM_FORMAT = "dlcli-tokens"


@dataclass
class PreprocessConfig:
    """Options of `dlcli preprocess` (text mode)."""

    inputs: list[str] = field(default_factory=lambda: ["-"])
    output: str = "-"
    normalize: list[str] = field(default_factory=list)
    level: str = "word"
    tokenizer: str | None = None
    whole: bool = False
    workers: int = 0

    def validate(self) -> None:
        norm.check_steps(self.normalize)
        if self.level not in LEVELS:
            raise ConfigError(f"level: '{self.level}' is not one of {', '.join(LEVELS)}")
        if not self.inputs:
            raise ConfigError("inputs: give at least one file, or - for stdin")
        if self.workers < 0:
            raise ConfigError("workers: must be >= 0 (0 = one per core)")

    def spec(self) -> TokenizeSpec:
        level = "tokenizer" if self.tokenizer else self.level
        return TokenizeSpec(tuple(self.normalize), level, self.tokenizer, self.whole)


def _checked_chunks(path: str, on_progress: OnProgress, state: dict[str, int]) -> Any:
    checker = io.TextChecker(path)
    for chunk in io.read_chunks(path):
        checker.check(chunk)
        state["bytes"] += len(chunk)
        on_progress(Tick("preprocess", state["bytes"], state.get("total")))
        yield chunk
    checker.finish()


def run(cfg: PreprocessConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Write the token stream of `cfg.inputs` to `cfg.output`; return a summary."""
    cfg.validate()
    for p in cfg.inputs:
        if p != io.STDIO:
            io.check_input_file(p, "text")
    if cfg.tokenizer:
        from dlcli.text.vocabulary import load

        load(cfg.tokenizer)  # fail early, with a clear message, on a bad file
        load_hf_tokenizer(cfg.tokenizer)
    if cfg.output != io.STDIO:
        io.check_output(cfg.output, force)
        io.check_output(cfg.output + ".json", force)
    spec = cfg.spec()
    work = functools.partial(to_stream, spec=spec)
    sizes = [io.input_size(p) for p in cfg.inputs]
    state = {"bytes": 0, "total": sum(sizes) if None not in sizes else None}  # type: ignore[dict-item]
    lines = 0
    out_bytes = 0
    collapse = "d2l" in cfg.normalize
    with io.open_output(cfg.output, force) as out:
        for path in cfg.inputs:
            chunks = _checked_chunks(path, on_progress, state)
            first = True
            ended_space = False
            for piece in imap_ordered(work, chunks, cfg.workers):
                if spec.whole:
                    if collapse and ended_space and piece.startswith(b"\\s"):
                        piece = piece[3:] if piece.startswith(b"\\s ") else piece[2:]
                    if not piece:
                        continue
                    if not first:
                        out.write(b" ")
                    out.write(piece)
                    ended_space = piece.endswith(b"\\s")
                    first = False
                    out_bytes += len(piece) + 1
                else:
                    out.write(piece)
                    out.write(b"\n")
                    lines += piece.count(b"\n") + 1
                    out_bytes += len(piece) + 1
            if spec.whole:
                out.write(b"\n")
                lines += 1
    if cfg.output != io.STDIO:
        meta = {
            "format": STREAM_FORMAT,
            "version": 1,
            "normalize": cfg.normalize,
            "level": spec.level,
            "tokenizer": str(Path(cfg.tokenizer).resolve()) if cfg.tokenizer else None,
            "whole": cfg.whole,
            "lines": lines,
            "inputs": cfg.inputs,
        }
        io.write_text_atomic(cfg.output + ".json", json.dumps(meta, indent=2) + "\n", force)
    return {"output": cfg.output, "lines": lines, "bytes_in": state["bytes"], "bytes_out": out_bytes}


def read_stream_meta(path: str) -> dict[str, Any] | None:
    """The sidecar `preprocess` wrote beside a token stream, if any."""
    side = Path(path + ".json")
    if path == io.STDIO or not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == STREAM_FORMAT else None
