"""The token stream: dlcli's text format between `preprocess` and `vocab`.

UTF-8 text, one line per input line, tokens separated by one space. A token
never contains raw ASCII whitespace or a backslash; those are escaped:

    \\\\ -> backslash   \\s -> space   \\t -> tab   \\n -> newline
    \\r -> CR          \\v -> VT      \\f -> FF

so `the time` at char level is `t h e \\s t i m e`. An empty line has no
tokens. `split()` on ASCII whitespace therefore recovers the tokens exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ESC = {"\\": "\\\\", " ": "\\s", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\v": "\\v", "\f": "\\f"}
_UNESC = {v[1]: k for k, v in _ESC.items()}
_NEEDS_ESC = re.compile(r"[\\ \t\n\r\v\f]")
_ESC_SEQ = re.compile(r"\\(.)")
_BSEQ = re.compile(rb"\\(.)")
_ASCII_WS = re.compile(r"[ \t\n\r\v\f]+")
_BUNESC = {k.encode(): v.encode() for k, v in _UNESC.items()}


def escape(token: str) -> str:
    if _NEEDS_ESC.search(token) is None:
        return token
    return "".join(_ESC.get(c, c) for c in token)


def unescape(token: str) -> str:
    if "\\" not in token:
        return token
    return _ESC_SEQ.sub(lambda m: _UNESC.get(m.group(1), m.group(0)), token)


def unescape_bytes(token: bytes) -> bytes:
    if b"\\" not in token:
        return token
    return _BSEQ.sub(lambda m: _BUNESC.get(m.group(1), m.group(0)), token)


def format_line(tokens: Iterable[str]) -> str:
    """Tokens of one line -> a stream line (without the newline)."""
    return " ".join(map(escape, tokens))


def parse_line(line: str) -> list[str]:
    """A stream line -> its tokens (split on ASCII whitespace only)."""
    return [unescape(t) for t in _ASCII_WS.split(line) if t]
