"""Text normalisers: each maps a chunk of whole lines to normalised lines.

A chunk is a `str` of complete lines, each ending in "\\n" (the last one may
not). Every normaliser keeps the number of lines, so the output has one line
per input line. With `whole=True` the chunk is treated as one piece of running
text (newlines are ordinary characters), which is the book's "one string" view.

- `lower`: `str.lower`.
- `nfkc`: Unicode NFKC.
- `d2l`: every run of non-letters (anything but A-Z, a-z) becomes one space,
  then lowercase; lines are stripped. This is the d2l.ai Time Machine recipe
  `re.sub('[^A-Za-z]+', ' ', line).strip().lower()`.
- `nmt`: the d2l.ai translation recipe: non-breaking spaces (U+202F, U+00A0)
  become spaces and a space is put before `,.!?` where there is none.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from dlcli.errors import ConfigError

NORMALIZERS = ("none", "lower", "nfkc", "d2l", "nmt")

# d2l at the byte level: letters lowercased, newlines kept, every other byte
# (ASCII punctuation, digits, whitespace, and each byte of a non-ASCII
# character) becomes a space; space runs are collapsed afterwards.
_D2L_LINES = bytes(
    (c | 0x20) if (65 <= c <= 90 or 97 <= c <= 122) else (10 if c == 10 else 32) for c in range(256)
)
_D2L_WHOLE = bytes((c | 0x20) if (65 <= c <= 90 or 97 <= c <= 122) else 32 for c in range(256))
_NMT_PUNCT = re.compile(r"(?<=[^ \n])([,.!?])")


def _collapse_spaces(b: bytes) -> bytes:
    while b"  " in b:
        b = b.replace(b"    ", b" ").replace(b"  ", b" ")
    return b


def d2l_bytes(chunk: bytes, whole: bool = False) -> bytes:
    """The d2l recipe on raw UTF-8 bytes (fast path; no decoding needed)."""
    if whole:
        return _collapse_spaces(chunk.translate(_D2L_WHOLE))
    b = _collapse_spaces(chunk.translate(_D2L_LINES))
    b = b.replace(b" \n", b"\n").replace(b"\n ", b"\n")
    if b.startswith(b" "):
        b = b[1:]
    if b.endswith(b" "):
        b = b[:-1]
    return b


def d2l(text: str, whole: bool = False) -> str:
    return d2l_bytes(text.encode("utf-8"), whole).decode("ascii")


def nmt(text: str, whole: bool = False) -> str:
    text = text.replace("\u202f", " ").replace("\xa0", " ")
    return _NMT_PUNCT.sub(r" \1", text)


def lower(text: str, whole: bool = False) -> str:
    return text.lower()


def nfkc(text: str, whole: bool = False) -> str:
    return unicodedata.normalize("NFKC", text)


def identity(text: str, whole: bool = False) -> str:
    return text


_BY_NAME: dict[str, Callable[[str, bool], str]] = {
    "none": identity,
    "lower": lower,
    "nfkc": nfkc,
    "d2l": d2l,
    "nmt": nmt,
}


def check_steps(steps: list[str]) -> list[str]:
    for s in steps:
        if s not in _BY_NAME:
            raise ConfigError(f"unknown normaliser '{s}': choose from {', '.join(NORMALIZERS)}")
    return [s for s in steps if s != "none"]


def normalize(text: str, steps: list[str], whole: bool = False) -> str:
    """Apply the named normalisers in order."""
    for s in check_steps(steps):
        text = _BY_NAME[s](text, whole)
    return text
