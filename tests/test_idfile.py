"""Id files: ids checked against the tokenizer once, where the file is opened; the sidecar's offsets stay
beside the ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlcli.core.idfile import IdFile, IdWriter, offsets_path, sidecar_path
from dlcli.errors import InputError

TEXT = "the quick brown fox jumps over the lazy dog\n" * 40


def _write(path: Path, ids: np.ndarray, vocab_size: int = 48) -> Path:
    w = IdWriter(path, vocab_size, "hash", extra={"tokenizer": "tokenizer.json"})
    w.write(ids, [ids.size])
    w.close()
    return path


def _forge(path: Path, top: int) -> Path:
    """Raise some ids of a valid file to `top` in place: the sidecar and hash still match (as a damaged
    or hand-made file would)."""
    a = np.fromfile(path, dtype="<u2")
    a[::50] = top
    a.tofile(path)
    return path


def test_check_ids_names_the_file_the_largest_id_and_the_vocab_size(tmp_path):
    f = IdFile.open(_forge(_write(tmp_path / "c.ids", np.arange(200) % 48), 60_000))
    assert f.max_id() == 60_000
    with pytest.raises(InputError) as e:
        f.check_vocab("hash", "tokenizer.json", 48)
    assert str(e.value).startswith(f"{tmp_path / 'c.ids'}: ids go up to 60000, but tokenizer.json has 48 entries")
    f.check_ids(60_001)  # enough entries: fine


def test_the_largest_id_is_found_in_every_block(tmp_path, monkeypatch):
    from dlcli.core import idfile

    monkeypatch.setattr(idfile, "_MAX_BLOCK", 7)
    ids = np.zeros(100, dtype=np.int64)
    ids[-1] = 47
    assert IdFile.open(_write(tmp_path / "c.ids", ids)).max_id() == 47
    with pytest.raises(InputError, match="ids go up to 47, but the tokenizer has 47 entries"):
        IdFile.open(tmp_path / "c.ids").check_ids(47)


@pytest.mark.parametrize("name", ["../elsewhere.npy", "/etc/passwd", "sub/x.npy", "..", "", 3])
def test_offsets_must_name_a_file_beside_the_ids(tmp_path, name):
    p = _write(tmp_path / "c.ids", np.arange(10))
    side = sidecar_path(p)
    meta = json.loads(side.read_text())
    meta["offsets"] = name
    side.write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"'offsets' must name a file beside c\.ids"):
        IdFile.open(p)


def test_offsets_linked_out_of_the_folder_are_refused(tmp_path):
    (tmp_path / "d").mkdir()
    p = _write(tmp_path / "d" / "c.ids", np.arange(10))
    off = offsets_path(p)
    off.rename(tmp_path / "outside.npy")
    off.symlink_to(tmp_path / "outside.npy")
    with pytest.raises(InputError, match=r"links to .*outside\.npy, outside .*d \(refused\)"):
        IdFile.open(p)


def test_a_linked_id_file_may_have_linked_offsets(tmp_path):
    """A data set cache (git-annex, DVC) links every file: the ids are links too, and that is fine."""
    store, view = tmp_path / "store", tmp_path / "view"
    store.mkdir(), view.mkdir()
    p = _write(store / "c.ids", np.arange(10))
    for f in (p, sidecar_path(p), offsets_path(p)):
        (view / f.name).symlink_to(f)
    assert IdFile.open(view / "c.ids").line(0).tolist() == list(range(10))


@pytest.fixture
def corpus(tmp_path):
    """A char-level id file with its tokenizer, and a copy whose ids reach 60,000 (its sidecar unchanged)."""
    from dlcli.text import preprocess, vocab

    (tmp_path / "c.txt").write_text(TEXT)
    preprocess.run(preprocess.PreprocessConfig(inputs=["c.txt"], output="c.tok", level="char", workers=1))
    vocab.build(vocab.BuildConfig(inputs=["c.tok"], output="tokenizer.json"))
    vocab.encode(vocab.EncodeConfig(inputs=["c.tok"], output="good.ids", tokenizer="tokenizer.json", workers=1))
    for suffix in (".json", ".offsets.npy"):
        Path("bad.ids" + suffix).write_bytes(Path("good.ids" + suffix).read_bytes())
    side = json.loads(Path("bad.ids.json").read_text())
    side["offsets"] = "bad.ids.offsets.npy"
    Path("bad.ids.json").write_text(json.dumps(side))
    Path("bad.ids").write_bytes(Path("good.ids").read_bytes())
    return _forge(Path("bad.ids"), 60_000)


@pytest.mark.parametrize("command", ["train-rnn", "train-transformer"])
def test_training_on_ids_beyond_the_vocabulary_is_one_line_and_no_run_dir(cli, corpus, command):
    r = cli(command, "-d", corpus, "-o", "runs/x", "--max-steps", "2")
    assert r.exit_code == 1
    size = json.loads(Path("good.ids.json").read_text())["vocab_size"]
    assert r.stderr.strip().startswith(f"error: bad.ids: ids go up to 60000, but tokenizer.json has {size} entries")
    assert not Path("runs/x").exists() and not Path("runs").exists()


def test_evaluate_and_decode_refuse_ids_beyond_the_vocabulary(cli, corpus):
    r = cli("train-rnn", "-d", "good.ids", "-o", "runs/ok", "--max-steps", "1", "--seq-len", "8", "--batch-size",
            "2", "-q")
    assert r.exit_code == 0, r.stderr
    r = cli("evaluate", "runs/ok", "--ids", corpus)
    assert r.exit_code == 1 and "bad.ids: ids go up to 60000, but runs/ok/tokenizer.json has" in r.stderr
    r = cli("vocab", "decode", corpus, "-t", "tokenizer.json", "-o", "-")
    assert r.exit_code == 1 and "bad.ids: ids go up to 60000" in r.stderr


@pytest.mark.parametrize("command", ["train-rnn", "train-transformer"])
def test_a_token_stream_given_as_ids_says_to_encode_it_first(cli, corpus, command):
    r = cli(command, "-d", "c.tok", "-o", "runs/x", "--max-steps", "2")
    assert r.exit_code == 1
    assert r.stderr.strip() == ("error: c.tok is a token stream, not an id file: run `dlcli vocab encode c.tok "
                                "-t TOKENIZER -o c.ids` first")
    assert not Path("runs").exists()


def test_text_without_a_sidecar_given_as_ids_says_to_encode_it_first(tmp_path):
    (tmp_path / "notes.txt").write_text(TEXT)
    with pytest.raises(InputError, match=r"notes.txt is a text file, not an id file: run `dlcli vocab encode "
                                         r".*notes.txt --raw -t TOKENIZER -o .*notes.ids` first"):
        IdFile.open(tmp_path / "notes.txt")
    (tmp_path / "c.tok").write_text("t h e\n")  # a token stream that lost its sidecar
    with pytest.raises(InputError, match="c.tok is a token stream, not an id file"):
        IdFile.open(tmp_path / "c.tok")
    (tmp_path / "x.ids").write_bytes(b"\x00\x01\x02\x00")  # binary: the old message
    with pytest.raises(InputError, match="x.ids: missing sidecar x.ids.json"):
        IdFile.open(tmp_path / "x.ids")
