"""Normalisers, tokenisation and the token-stream format."""

from __future__ import annotations

import random
import re

import pytest

from dlcli.text import normalize as norm
from dlcli.text import tokenstream as ts
from dlcli.text.tokenize import TokenizeSpec, to_stream

SAMPLES = [
    "The Time Machine, by H. G. Wells [1898]\n",
    "  leading and trailing  \n\n",
    "Ünïcödé — “quotes” and 1234 digits\tTAB\r\n",
    "a\\b back\\slash  double  spaces\n",
    "",
    "no newline at end",
    "Va !\u202fCours\u00a0! Qui? Oui, non.\n",
]


def d2l_reference(line: str) -> str:
    return re.sub("[^A-Za-z]+", " ", line).strip().lower()


@pytest.mark.parametrize("text", SAMPLES)
def test_d2l_matches_the_book_recipe(text):
    lines = text.split("\n")
    assert norm.d2l(text).split("\n") == [d2l_reference(ln) for ln in lines]


def test_d2l_whole_text_matches_book():
    text = "".join(SAMPLES)
    assert norm.d2l(text, whole=True) == re.sub("[^A-Za-z]+", " ", text).lower()


def test_nmt_matches_d2l_preprocess_nmt():
    def reference(text: str) -> str:  # d2l's preprocess_nmt, without the lowercasing
        text = text.replace("\u202f", " ").replace("\xa0", " ")
        out = [" " + c if i > 0 and c in ",.!?" and text[i - 1] != " " else c for i, c in enumerate(text)]
        return "".join(out)

    line = "Va !\u202fCours\u00a0! Qui? Oui,non.Bien!?"
    assert norm.nmt(line) == reference(line)


def test_normalisers_compose_in_order():
    assert norm.normalize("ＡＢＣ", ["nfkc", "lower"]) == "abc"
    assert norm.normalize("ＡＢＣ", ["lower"]) == "ａｂｃ"


@pytest.mark.parametrize("token", ["a", " ", "\\", "\\s", "a b", "\t\n\r\v\f", "é", "<unk>", "\\\\s "])
def test_escape_round_trip(token):
    esc = ts.escape(token)
    assert ts.unescape(esc) == token
    assert esc.split() == [esc]  # never contains whitespace


def test_stream_line_round_trip_random():
    rng = random.Random(0)
    alphabet = "ab \\\t\n\r\v\fé\u00a0s"
    for _ in range(300):
        tokens = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(0, 6))]
        line = ts.format_line(tokens)
        assert "\n" not in line
        assert ts.parse_line(line) == tokens


def _stream(text: str, **kw) -> list[list[str]]:
    out = to_stream(text.encode(), TokenizeSpec(**kw)).decode()
    return [ts.parse_line(ln) for ln in out.split("\n")]


def test_char_level_keeps_every_character():
    text = "a b\\c\td\r\n\nxé"
    lines = _stream(text, level="char")
    assert lines == [list("a b\\c\td"), [], list("xé")]


def test_word_level_splits_on_whitespace():
    text = "Hello,  world!\n\n tab\tsep \\slash\n"
    assert _stream(text, level="word") == [["Hello,", "world!"], [], ["tab", "sep", "\\slash"]]
    # the non-ASCII path agrees with the ASCII fast path
    assert _stream(text + "é", level="word")[:3] == _stream(text, level="word")


def test_word_level_d2l_fast_path_equals_general_path():
    text = "".join(SAMPLES)
    fast = to_stream(text.encode(), TokenizeSpec(("d2l",), "word")).decode()
    general = "\n".join(" ".join(d2l_reference(ln).split()) for ln in text[:-1].split("\n"))
    assert fast == general


def test_whole_mode_makes_one_line():
    text = "ab\ncd\n"
    assert _stream(text, level="char", whole=True) == [list("ab\ncd\n")]
    assert _stream(text, level="word", whole=True) == [["ab", "cd"]]
