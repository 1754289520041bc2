"""Normalise and tokenise chunks of text into token-stream lines.

`to_stream(chunk, spec)` is a pure function of one chunk of complete lines, so
chunks can be processed in parallel worker processes and concatenated.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from dlcli.text import normalize as norm
from dlcli.text.tokenstream import escape

LEVELS = ("char", "word")

# Placeholders for characters that need escaping at char level (private use).
_CHAR_PH = {
    " ": "\ue000", "\\": "\ue001", "\t": "\ue002", "\r": "\ue003", "\v": "\ue004", "\f": "\ue005", "\n": "\ue006"
}
_CHAR_IN_LINES = str.maketrans({c: ph for c, ph in _CHAR_PH.items() if c != "\n"})
_CHAR_IN_WHOLE = str.maketrans(_CHAR_PH)
_CHAR_OUT = str.maketrans({ph: escape(c) for c, ph in _CHAR_PH.items()})
_HAS_PH = re.compile("[\ue000-\ue006]")
# ASCII whitespace other than newline splits words like a space does.
_WS_TO_SPACE = bytes.maketrans(b"\t\r\v\f", b"    ")


@dataclass(frozen=True)
class TokenizeSpec:
    normalize: tuple[str, ...] = ()
    level: str = "word"  # "char" | "word" | "tokenizer"
    tokenizer: str | None = None  # path of a tokenizer.json for level "tokenizer"
    whole: bool = False  # the whole input is one line


@functools.lru_cache(maxsize=4)
def load_hf_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def _strip_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def _char_lines(text: str, whole: bool) -> str:
    if _HAS_PH.search(text):  # rare: input already holds our placeholders
        lines = [text] if whole else text.split("\n")
        return "\n".join(" ".join(escape(c) for c in ln) for ln in lines)
    if whole:
        return " ".join(text.translate(_CHAR_IN_WHOLE)).translate(_CHAR_OUT)
    t = text.translate(_CHAR_IN_LINES)
    return "\n".join([" ".join(ln) for ln in t.split("\n")]).translate(_CHAR_OUT)


def _word_lines_ascii(b: bytes, whole: bool) -> bytes:
    if b"\\" in b:
        b = b.replace(b"\\", b"\\\\")
    b = b.translate(_WS_TO_SPACE)
    if whole:
        b = b.replace(b"\n", b" ")
    b = norm._collapse_spaces(b).replace(b" \n", b"\n").replace(b"\n ", b"\n")
    return b.strip(b" ")


def _word_lines(text: str, whole: bool) -> str:
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if whole:
        return " ".join(text.split())
    return "\n".join([" ".join(ln.split()) for ln in text.split("\n")])


def _tokenizer_lines(text: str, path: str, whole: bool) -> str:
    tok = load_hf_tokenizer(path)
    lines = [text] if whole else text.split("\n")
    encs = tok.encode_batch(lines, add_special_tokens=False)
    return "\n".join(" ".join(map(escape, e.tokens)) for e in encs)


def to_stream(chunk: bytes, spec: TokenizeSpec) -> bytes:
    """A chunk of raw UTF-8 lines -> the same number of token-stream lines.

    In `whole` mode the result is a run of tokens with no newline (the caller
    joins chunks of one file with spaces and ends the file's line).
    """
    steps = norm.check_steps(list(spec.normalize))
    if not spec.whole and b"\r\n" in chunk:  # CRLF line ends count as LF
        chunk = chunk.replace(b"\r\n", b"\n")
    # Fast path: d2l then words is already a token stream.
    if steps == ["d2l"] and spec.level == "word":
        out = norm.d2l_bytes(chunk, spec.whole)
        if spec.whole:
            return out.replace(b"\n", b" ").strip(b" ")
        return out if not out.endswith(b"\n") else out[:-1]
    if not steps and spec.level == "word" and chunk.isascii():
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        return _word_lines_ascii(body, spec.whole)
    text = chunk.decode("utf-8")
    if steps == ["d2l"]:
        text = norm.d2l(text, spec.whole)
    elif steps:
        text = norm.normalize(text, steps, spec.whole)
    if not spec.whole:
        text = _strip_newline(text)
    if spec.level == "char":
        out_text = _char_lines(text, spec.whole)
    elif spec.level == "word":
        out_text = _word_lines(text, spec.whole)
    else:
        assert spec.tokenizer is not None
        out_text = _tokenizer_lines(text, spec.tokenizer, spec.whole)
    return out_text.encode("utf-8")
