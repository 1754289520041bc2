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
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.core import io
from dlcli.core.parallel import Range, file_ranges, imap_ordered, parts_dir, report_bytes, run_jobs
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError
from dlcli.text import normalize as norm
from dlcli.text.tokenize import LEVELS, TokenizeSpec, to_stream

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


def _process_range(job: tuple[Range, TokenizeSpec, str]) -> int:
    """Token-stream lines of one byte range, written to a part file; returns the line count."""
    rng, spec, part = job
    checker = io.TextChecker(rng.path, rng.start)
    lines = 0
    with open(part, "wb") as out:
        for chunk in io.read_chunks(rng.path, None, rng.start, rng.stop):
            checker.check(chunk)
            piece = to_stream(chunk, spec)
            out.write(piece)
            out.write(b"\n")
            lines += piece.count(b"\n") + 1
            report_bytes(len(chunk))
    return lines


def _stream_file_ranges(cfg: PreprocessConfig, spec: TokenizeSpec, paths: list[str], out: Any,
                        on_progress: OnProgress, state: dict[str, Any]) -> int:
    """Line mode, file inputs: each worker takes a byte range; parts are joined in order."""
    ranges = file_ranges(paths, cfg.workers)
    parts = parts_dir(None if cfg.output == io.STDIO else Path(cfg.output).resolve().parent)
    try:
        jobs = [(r, spec, os.path.join(parts, f"part-{r.index}")) for r in ranges]
        done = state["bytes"]

        def on_bytes(n: int) -> None:
            state["bytes"] = done + n
            on_progress(Tick("preprocess", state["bytes"], state.get("total")))

        counts = run_jobs(_process_range, jobs, cfg.workers, on_bytes)
        for _, _, part in jobs:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
        return sum(counts)
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def run(cfg: PreprocessConfig, force: bool = False, on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Write the token stream of `cfg.inputs` to `cfg.output`; return a summary."""
    cfg.validate()
    for p in cfg.inputs:
        if p != io.STDIO:
            io.check_text_file(p)
    if cfg.tokenizer:
        from dlcli.text.vocabulary import load

        load(cfg.tokenizer)  # fail early, with a clear message, on a bad file
    if cfg.output != io.STDIO:
        io.check_output(cfg.output, force)
        io.check_output(cfg.output + ".json", force)
    spec = cfg.spec()
    work = functools.partial(to_stream, spec=spec)
    sizes = [io.input_size(p) for p in cfg.inputs]
    state: dict[str, Any] = {"bytes": 0, "total": sum(sizes) if None not in sizes else None}  # type: ignore[arg-type]
    lines = 0
    collapse = "d2l" in cfg.normalize
    with io.open_output(cfg.output, force) as out:
        k = 0
        while k < len(cfg.inputs):
            path = cfg.inputs[k]
            if not spec.whole and path != io.STDIO:
                # a run of file inputs: parallel over byte ranges
                run_of = [path]
                while k + len(run_of) < len(cfg.inputs) and cfg.inputs[k + len(run_of)] != io.STDIO:
                    run_of.append(cfg.inputs[k + len(run_of)])
                lines += _stream_file_ranges(cfg, spec, run_of, out, on_progress, state)
                k += len(run_of)
                continue
            k += 1
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
                else:
                    out.write(piece)
                    out.write(b"\n")
                    lines += piece.count(b"\n") + 1
            if spec.whole:
                out.write(b"\n")
                lines += 1
    # the completing tick: stdin's total is known only now, and the last worker poll may lag
    if state["bytes"]:
        on_progress(Tick("preprocess", state["bytes"], state["bytes"]))
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
    return {"output": cfg.output, "lines": lines, "bytes_in": state["bytes"]}


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
