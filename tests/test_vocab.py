"""`dlcli vocab`: build, train, encode, decode; HF compatibility; id files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from dlcli.core.idfile import IdFile

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def pipeline(cli, src: Path, level: str, *build_args: str) -> None:
    assert cli("preprocess", src, "-n", "d2l", "-l", level, "-o", "c.tok").exit_code == 0
    r = cli("vocab", "build", "c.tok", "-o", "tok.json", *build_args)
    assert r.exit_code == 0, r.stderr
    r = cli("vocab", "encode", "c.tok", "-t", "tok.json", "-o", "c.ids")
    assert r.exit_code == 0, r.stderr


PIPELINE_FILES = ("c.tok", "tok.json", "c.ids", "c.ids.json", "c.ids.offsets.npy")


@pytest.fixture(scope="module")
def tm_pipeline(tmp_path_factory):
    """`tm_pipeline(cli, level)`: the Time Machine through `pipeline`, run once per level in this module,
    its files copied into the test's directory (a test may damage its copies)."""
    import os
    import shutil

    built: dict[str, Path] = {}

    def copy(cli, level: str) -> None:
        if not DATA.is_dir():
            pytest.skip(f"real data not found at {DATA}")
        if level not in built:
            here = Path.cwd()
            built[level] = tmp_path_factory.mktemp(f"tm-{level}")
            os.chdir(built[level])
            try:
                pipeline(cli, DATA / "timemachine.txt", level)
            finally:
                os.chdir(here)
        for name in PIPELINE_FILES:
            shutil.copyfile(built[level] / name, name)

    return copy


def test_time_machine_word_vocabulary(cli, tm_pipeline):
    tm_pipeline(cli, "word")
    tok = Tokenizer.from_file("tok.json")
    vocab = tok.get_vocab()
    assert len(vocab) == 4580
    inv = sorted(vocab, key=vocab.get)
    assert inv[:11] == ["<unk>", "the", "i", "and", "of", "a", "to", "was", "in", "that", "my"]


def test_time_machine_char_vocabulary_and_table(cli, data):
    assert cli("preprocess", data / "timemachine.txt", "-n", "d2l", "-l", "char", "-o", "c.tok").exit_code == 0
    r = cli("vocab", "build", "c.tok", "-o", "tok.json", "-k", "3")
    assert r.exit_code == 0
    assert Tokenizer.from_file("tok.json").get_vocab_size() == 28
    assert "28 entries" in r.stderr and "17,838" in r.stderr  # 'e' is the 2nd most frequent
    assert r.stdout.strip() == "tok.json"


@pytest.mark.parametrize("level", ["char", "word"])
def test_hf_tokenizer_encodes_raw_text_exactly_as_dlcli(cli, tm_pipeline, data, level):
    tm_pipeline(cli, level)
    ids = IdFile.open("c.ids")
    tok = Tokenizer.from_file("tok.json")
    lines = (data / "timemachine.txt").read_text(encoding="utf-8").split("\n")[:-1]
    encs = tok.encode_batch(lines, add_special_tokens=False)
    assert len(encs) == len(ids.offsets) - 1
    for i, e in enumerate(encs):
        assert e.ids == ids.line(i).tolist(), f"line {i + 1}: {lines[i]!r}"


@pytest.mark.parametrize("level", ["char", "word"])
def test_round_trip_is_exact(cli, tm_pipeline, data, level):
    tm_pipeline(cli, level)
    r = cli("vocab", "decode", "c.ids", "-t", "tok.json")
    assert r.exit_code == 0, r.stderr
    expected = [re.sub("[^A-Za-z]+", " ", ln).strip().lower()
                for ln in (data / "timemachine.txt").read_text().split("\n")[:-1]]
    assert r.stdout.split("\n")[:-1] == expected


def test_raw_encode_equals_stream_encode(cli, tm_pipeline, data):
    tm_pipeline(cli, "word")
    r = cli("vocab", "encode", data / "timemachine.txt", "--raw", "-t", "tok.json", "-o", "raw.ids")
    assert r.exit_code == 0, r.stderr
    assert Path("raw.ids").read_bytes() == Path("c.ids").read_bytes()


def test_id_file_layout(cli, tm_pipeline):
    tm_pipeline(cli, "char")
    meta = json.loads(Path("c.ids.json").read_text())
    assert meta["format"] == "dlcli-ids" and meta["dtype"] == "uint16"
    assert meta["count"] == 170_580 and meta["lines"] == 3221
    raw = np.memmap("c.ids", dtype=meta["dtype"], mode="r")
    offsets = np.load("c.ids.offsets.npy", mmap_mode="r")
    assert raw.size == meta["count"] == offsets[-1]
    assert Path("c.ids").stat().st_size == 2 * meta["count"]
    tok = Tokenizer.from_file("tok.json")
    assert tok.decode(raw[offsets[0]:offsets[1]].tolist()) == "the time machine by h g wells"


def test_uint32_for_large_vocabularies(cli):
    words = [f"w{i}" for i in range(70_000)]
    Path("big.tok").write_text(" ".join(words) + "\n")
    assert cli("vocab", "build", "big.tok", "-o", "tok.json").exit_code == 0
    assert cli("vocab", "encode", "big.tok", "-t", "tok.json", "-o", "big.ids").exit_code == 0
    f = IdFile.open("big.ids")
    assert f.meta["dtype"] == "uint32" and int(f.ids.max()) == 70_000


def test_specials_min_freq_and_max_size(cli):
    Path("c.tok").write_text("b b b a a c\nd a\n")
    r = cli("vocab", "build", "c.tok", "-o", "tok.json", "-s", "<pad>", "-s", "<unk>", "-s", "<eos>",
            "--min-freq", "2")
    assert r.exit_code == 0, r.stderr
    vocab = Tokenizer.from_file("tok.json").get_vocab()
    assert sorted(vocab, key=vocab.get) == ["<pad>", "<unk>", "<eos>", "a", "b"]  # tie 3/3: 'a' < 'b'
    r = cli("vocab", "build", "c.tok", "-o", "tok2.json", "--max-size", "3")
    vocab = Tokenizer.from_file("tok2.json").get_vocab()
    assert sorted(vocab, key=vocab.get) == ["<unk>", "a", "b"]
    r = cli("vocab", "encode", "c.tok", "-t", "tok2.json", "-o", "c.ids")
    assert "2 unknown tokens" in r.stderr
    assert IdFile.open("c.ids").ids.tolist() == [2, 2, 2, 1, 1, 0, 0, 1]


@pytest.mark.parametrize("model", ["bpe", "wordpiece", "unigram"])
def test_subword_training(cli, data, model):
    Path("small.txt").write_text((data / "tinyshakespeare.txt").read_text()[:100_000])
    r = cli("vocab", "train", "small.txt", "-m", model, "-v", "500", "-o", "sub.json", "-s", "<unk>", "-s", "<pad>")
    assert r.exit_code == 0, r.stderr
    tok = Tokenizer.from_file("sub.json")
    assert 200 < tok.get_vocab_size() <= 500
    assert tok.token_to_id("<unk>") == 0 and tok.token_to_id("<pad>") == 1
    assert cli("vocab", "encode", "small.txt", "--raw", "-t", "sub.json", "-o", "s.ids").exit_code == 0
    if model == "bpe":  # byte-level BPE is lossless: decode gives the text back
        r = cli("vocab", "decode", "s.ids", "-t", "sub.json")
        assert r.stdout == Path("small.txt").read_text().rstrip("\n") + "\n"  # lines end in newlines


def test_bpe_stream_through_preprocess(cli, data):
    Path("small.txt").write_text((data / "tinyshakespeare.txt").read_text()[:50_000])
    assert cli("vocab", "train", "small.txt", "-v", "400", "-o", "bpe.json").exit_code == 0
    assert cli("preprocess", "small.txt", "-t", "bpe.json", "-o", "s.tok").exit_code == 0
    assert cli("vocab", "encode", "s.tok", "-t", "bpe.json", "-o", "a.ids").exit_code == 0
    assert cli("vocab", "encode", "small.txt", "--raw", "-t", "bpe.json", "-o", "b.ids").exit_code == 0
    assert Path("a.ids").read_bytes() == Path("b.ids").read_bytes()


def test_mismatched_vocabulary_is_refused(cli, tm_pipeline):
    tm_pipeline(cli, "char")
    Path("other.tok").write_text("x y z\n")
    assert cli("vocab", "build", "other.tok", "-o", "other.json").exit_code == 0
    r = cli("vocab", "decode", "c.ids", "-t", "other.json")
    assert r.exit_code != 0
    assert "c.ids: vocabulary mismatch" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda: Path("t.json").write_text("{not json"), ["encode", "c.tok", "-t", "t.json", "-o", "o.ids"],
         "t.json: not a valid tokenizer.json"),
        (lambda: Path("c.ids").write_bytes(b"\x00\x01"), ["decode", "c.ids", "-t", "tok.json"],
         "c.ids: missing sidecar"),
        (None, ["build", "nothing.tok", "-o", "o.json"], "nothing.tok: no such file"),
        (None, ["build", "c.tok", "-o", "o.json", "--unk", "<oov>"], "unk: '<oov>' must be one of the specials"),
        (None, ["build", "c.tok", "-o", "o.json", "-s", "<mask>"],
         "name it too (-s '<unk>' -s '<mask>'; -s replaces the default list)"),
        (None, ["train", "c.tok", "-m", "bpx", "-o", "o.json"], "model: 'bpx' is not one of"),
    ],
)
def test_bad_vocab_input(cli, setup, args, message):
    Path("c.tok").write_text("a b c\n")
    assert cli("vocab", "build", "c.tok", "-o", "tok.json").exit_code == 0
    if setup:
        setup()
    r = cli("vocab", *args)
    assert r.exit_code != 0
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_truncated_id_file_is_refused(cli, tm_pipeline):
    tm_pipeline(cli, "char")
    Path("c.ids").write_bytes(Path("c.ids").read_bytes()[:-10])
    r = cli("vocab", "decode", "c.ids", "-t", "tok.json")
    assert r.exit_code != 0 and "does not match 170580 ids" in r.stderr
