from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def data() -> Path:
    """The real corpora in ../shared/data (see its README)."""
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@functools.cache
def _click_command(app):
    import typer.main

    return typer.main.get_command(app)


@pytest.fixture
def cli(monkeypatch):
    """Run `dlcli ARGS...` in-process; returns the click Result (stdout, stderr, exit_code).

    The click command tree is built once per session, as `dlcli` builds it once per process: typer's
    CliRunner rebuilds it for every call (about 0.1 s, several hundred calls)."""
    import typer.testing

    from dlcli.cli.app import app

    monkeypatch.setattr(typer.testing, "_get_command", _click_command, raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def _char_ids(text: Path, d: Path, name: str, normalize: list[str]) -> Path:
    """`text` as one character-level id file `d/name.ids`, with tokenizer.json beside it."""
    from dlcli.text import preprocess, vocab

    tok = str(d / f"{name}.tok")
    preprocess.run(preprocess.PreprocessConfig(inputs=[str(text)], output=tok, normalize=normalize, level="char",
                                               whole=True))
    vocab.build(vocab.BuildConfig(inputs=[tok], output=str(d / "tokenizer.json")))
    vocab.encode(vocab.EncodeConfig(inputs=[tok], output=str(d / f"{name}.ids"), tokenizer=str(d / "tokenizer.json")))
    return d / f"{name}.ids"


@pytest.fixture(scope="session")
def tm_ids(tmp_path_factory) -> Path:
    """The Time Machine, d2l-normalised, char level, as an id file (tokenizer.json beside it); built once."""
    text = DATA / "timemachine.txt"
    if not text.is_file():
        pytest.skip("real data not found")
    return _char_ids(text, tmp_path_factory.mktemp("tm"), "tm", ["d2l"])


@pytest.fixture(scope="session")
def ts_ids(tmp_path_factory) -> Path:
    """The first 60,000 characters of Tiny Shakespeare as char ids (tokenizer.json beside them); built once."""
    text = DATA / "tinyshakespeare.txt"
    if not text.is_file():
        pytest.skip("real data not found")
    d = tmp_path_factory.mktemp("ts")
    (d / "ts.txt").write_text(text.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    return _char_ids(d / "ts.txt", d, "ts", [])


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own empty working directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _ctrl_c_as_in_a_terminal():
    """Tests press Ctrl-C as a user does in a foreground terminal. A suite started in the background
    (`make test &`, nohup) has SIGINT ignored, which its commands rightly respect, so those tests would
    fail there: each test gets Python's own SIGINT handler (and its subprocesses the default action)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def _grad_stays_on():
    """A command run in-process must not leave autograd switched off for the tests after it."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("this test left torch autograd switched off (set_grad_enabled(False) outside a with-block)")


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and share the machine best) on one torch thread."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
