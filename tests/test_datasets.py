"""`dlcli data`: the catalog, and downloads served by a local HTTP server (nothing reaches the internet):
checksums, a corrupted file refused, resumed downloads, `--from DIR`, archives, and the offline error."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from dlcli.datasets import catalog
from dlcli.datasets.catalog import CATALOG, Dataset, File
from dlcli.datasets.download import DownloadError, get

TM_SIZE = 178_979


class Handler(SimpleHTTPRequestHandler):
    """Serves a folder; honours `Range: bytes=N-` and can send only the first `cut` bytes of a body."""

    ranges: ClassVar[list[str]] = []
    cut: int | None = None
    use_range = True

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            type(self).ranges.append(rng)
        if rng and self.use_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if self.cut is None else body[: self.cut])
        if self.cut is not None:
            self.close_connection = True


@pytest.fixture
def serve():
    """serve(folder, **behaviour) -> base URL of a local server for `folder`."""
    servers = []

    def start(root: Path, cut: int | None = None, use_range: bool = True) -> str:
        handler = type("H", (Handler,), {"ranges": [], "cut": cut, "use_range": use_range,
                                         "__init__": lambda self, *a, **k: Handler.__init__(self, *a, directory=str(root),
                                                                                               **k)})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        start.handler = handler  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A cache of the test's own; no mirror from the environment."""
    monkeypatch.setenv("DLCLI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DLCLI_DATA_FROM", raising=False)
    return tmp_path / "cache" / "data"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _one_set(monkeypatch, *files: File, name: str = "toy") -> None:
    """Make the catalog hold one more data set, `name`, of `files`."""
    monkeypatch.setattr(catalog, "CATALOG", (*CATALOG, Dataset(name, "a test set", "-", "-", files)))


def test_catalog_is_complete_and_honest():
    names = {d.name for d in CATALOG}
    assert {"timemachine", "tinyshakespeare", "fra-eng", "text8", "questions-words", "wordsim353", "hh-rlhf",
            "nerf-chair", "fox"} <= names
    for d in CATALOG:
        assert d.licence and d.source and d.files
        for f in d.files:
            assert f.url.startswith(("http://", "https://")), f
            assert f.sha256 is None or len(f.sha256) == 64
            assert f.sha1 is None or len(f.sha1) == 40
    assert catalog.find("timemachine").size == TM_SIZE
    assert len(catalog.find("fox").files) == 68


def test_every_nerf_synthetic_and_llff_scene_is_its_folder_of_one_zip():
    for zip_name, prefix, scenes in (("nerf_synthetic.zip", "nerf_synthetic/", catalog.NERF_SYNTHETIC),
                                     ("nerf_llff_data.zip", "nerf_llff_data/", catalog.LLFF_SCENES)):
        assert len(scenes) == 8
        files = [catalog.find(("nerf-" if zip_name.startswith("nerf_s") else "nerf-llff-") + s).files
                 for s in scenes]
        assert all(len(f) == 1 and f[0].name == zip_name and f[0].archive == "zip" for f in files)
        assert len({(f[0].url, f[0].sha256) for f in files}) == 1 and files[0][0].sha256
        assert [f[0].members for f in files] == [f"{prefix}{s}/" for s in scenes]
        assert {f[0].strip for f in files} == {prefix}


def test_catalog_checksums_match_the_shared_copies(data):
    """Where ../shared/data holds the same file, the catalog's size and sha256 are its own."""
    pairs = [("timemachine", "timemachine.txt"), ("tinyshakespeare", "tinyshakespeare.txt"),
             ("questions-words", "questions-words.txt"), ("lee-background", "lee_background.cor")]
    for name, local in pairs:
        (f,) = catalog.find(name).files
        b = (data / local).read_bytes()
        assert (len(b), _sha(b)) == (f.size, f.sha256), name
    assert hashlib.sha1((data / "timemachine.txt").read_bytes()).hexdigest() == catalog.find("timemachine").files[0].sha1
    for f in catalog.find("fox").files:
        b = (data / "nerf" / f.name).read_bytes()
        assert (len(b), _sha(b)) == (f.size, f.sha256), f.name


def test_list(cli):
    r = cli("data", "list")
    assert r.exit_code == 0
    for name in ("timemachine", "fra-eng", "hh-rlhf", "fox"):
        assert name in r.stdout


def test_get_over_http_verifies_and_copies(cli, data, serve, cache, tmp_path):
    url = serve(data)
    r = cli("data", "get", "timemachine", "tinyshakespeare", "--from", url, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    out = [tmp_path / "out" / "timemachine.txt", tmp_path / "out" / "tinyshakespeare.txt"]
    assert r.stdout.split() == [str(p) for p in out]
    assert out[0].read_bytes() == (data / "timemachine.txt").read_bytes()
    assert "timemachine: 1 file, 179.0 KB, fetched, verified" in r.stderr
    assert not list(cache.rglob("*.part"))
    # Again: from the cache, and the identical copy in out/ is kept.
    r = cli("data", "get", "timemachine", "--from", "http://127.0.0.1:9/nothing-here", "-o", tmp_path / "out")
    assert r.exit_code == 0 and "from the cache" in r.stderr, r.output


def test_get_without_output_prints_the_cached_path(cli, data, cache):
    r = cli("data", "get", "timemachine", "--from", data)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(cache / "timemachine" / "timemachine.txt")


def test_corrupted_download_is_refused_and_removed(cli, data, serve, cache, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    b = bytearray((data / "timemachine.txt").read_bytes())
    b[1000] ^= 1  # same size, one bit off
    (bad / "timemachine.txt").write_bytes(bytes(b))
    r = cli("data", "get", "timemachine", "--from", serve(bad), "-o", tmp_path / "out")
    assert r.exit_code == 1
    line = r.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: http://127.0.0.1:")
    assert "sha256" in line and "the download was removed" in line
    assert not (cache / "timemachine" / "timemachine.txt").exists()
    assert not (cache / "timemachine" / "timemachine.txt.part").exists()
    assert not (tmp_path / "out").exists()


def test_a_short_file_is_refused_by_its_size(data, tmp_path, cache):
    short = tmp_path / "short"
    short.mkdir()
    (short / "timemachine.txt").write_bytes((data / "timemachine.txt").read_bytes()[:-10])
    with pytest.raises(DownloadError, match=r"178,969 bytes where the catalog has 178,979"):
        get("timemachine", mirror=str(short))
    assert not list((cache / "timemachine").iterdir())


def test_broken_connection_keeps_the_part_and_the_next_run_resumes(cli, data, serve, cache):
    url = serve(data, cut=50_000)
    r = cli("data", "get", "timemachine", "--from", url)
    assert r.exit_code == 1
    assert "connection closed after 50,000 of 178,979 bytes; run the same command again to resume" in r.stderr
    part = cache / "timemachine" / "timemachine.txt.part"
    assert part.stat().st_size == 50_000
    url = serve(data)
    s = get("timemachine", mirror=url)
    assert serve.handler.ranges == ["bytes=50000-"]
    assert s["fetched"] == TM_SIZE - 50_000
    assert Path(s["paths"][0]).read_bytes() == (data / "timemachine.txt").read_bytes()
    assert not part.exists()


def test_a_server_that_ignores_range_starts_over(data, serve, cache):
    part = cache / "timemachine" / "timemachine.txt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # not even the right bytes: a restart must not append to them
    s = get("timemachine", mirror=serve(data, use_range=False))
    assert serve.handler.ranges == ["bytes=1000-"]
    assert s["fetched"] == TM_SIZE
    assert Path(s["paths"][0]).read_bytes() == (data / "timemachine.txt").read_bytes()


def test_a_whole_part_file_is_verified_not_fetched_again(data, serve, cache):
    part = cache / "timemachine" / "timemachine.txt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes((data / "timemachine.txt").read_bytes())
    s = get("timemachine", mirror=serve(data))  # the server answers 416 to bytes=178979-
    assert s["fetched"] == 0 and Path(s["paths"][0]).stat().st_size == TM_SIZE


def test_from_a_folder_with_many_files(cli, data, tmp_path):
    r = cli("data", "get", "fox", "--from", data / "nerf", "-o", tmp_path / "out", "-q")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(tmp_path / "out" / "fox")]
    assert len(list((tmp_path / "out" / "fox" / "images").glob("*.jpg"))) == 67
    assert (tmp_path / "out/fox/transforms.json").read_bytes() == (data / "nerf/fox/transforms.json").read_bytes()
    assert r.stderr == ""


def test_from_a_folder_that_lacks_the_file(cli, tmp_path):
    r = cli("data", "get", "timemachine", "--from", tmp_path)
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'timemachine.txt'}: not found (the --from folder should hold " \
                               "timemachine.txt)"


def test_offline_is_one_line(cli, monkeypatch, cache):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DLCLI_DATA_FROM", f"http://127.0.0.1:{port}")  # the mirror from the environment
    r = cli("data", "get", "timemachine")
    assert r.exit_code == 1
    line = r.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in line
    assert line.startswith(f"error: cannot reach 127.0.0.1:{port} for timemachine.txt (")
    assert line.endswith("use --from DIR_OR_URL")
    assert not (cache / "timemachine" / "timemachine.txt").exists()


def test_http_404(cli, serve, tmp_path):
    r = cli("data", "get", "timemachine", "--from", serve(tmp_path))
    assert r.exit_code == 1 and "/timemachine.txt: HTTP 404" in r.stderr


def test_unknown_name(cli):
    r = cli("data", "get", "timemachin")
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: timemachin: no such data set (did you mean timemachine?); 'dlcli data list' " \
                               "shows them"


def test_an_existing_different_output_needs_force(cli, data, tmp_path):
    (tmp_path / "timemachine.txt").write_text("my own notes")
    r = cli("data", "get", "timemachine", "--from", data, "-o", tmp_path)
    assert r.exit_code == 1 and "exists and differs" in r.stderr
    assert (tmp_path / "timemachine.txt").read_text() == "my own notes"
    r = cli("data", "get", "timemachine", "--from", data, "-o", tmp_path, "--force")
    assert r.exit_code == 0 and (tmp_path / "timemachine.txt").stat().st_size == TM_SIZE


# ---------------------------------------------------------------- archives


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    return buf.getvalue()


def _tar(entries: dict[str, bytes], link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for n, b in entries.items():
            info = tarfile.TarInfo(n)
            info.size = len(b)
            t.addfile(info, io.BytesIO(b))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            t.addfile(info)
    return buf.getvalue()


def test_zip_is_unpacked_after_verifying(cli, monkeypatch, serve, tmp_path, cache):
    z = _zip({"set/scene/a.txt": b"a", "set/scene/sub/b.txt": b"bb", "set/other/c.txt": b"c", "__MACOSX/x": b""})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "set.zip").write_bytes(z)
    _one_set(monkeypatch, File("https://example.invalid/set.zip", "set.zip", len(z), _sha(z), members="set/scene/",
                               strip="set/"))
    r = cli("data", "get", "toy", "--from", serve(tmp_path / "m"), "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(tmp_path / "out" / "scene")]
    assert (tmp_path / "out/scene/sub/b.txt").read_bytes() == b"bb"
    assert not (tmp_path / "out/other").exists() and not (cache / "toy" / "set.zip").exists()
    r = cli("data", "get", "toy", "--from", "http://127.0.0.1:9/")  # unpacked already: nothing to fetch
    assert r.exit_code == 0 and r.stdout.split() == [str(cache / "toy" / "scene")], r.output


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs.txt"])
def test_an_archive_member_outside_the_folder_is_refused(monkeypatch, tmp_path, cache, evil):
    z = _zip({"ok.txt": b"ok", evil: b"gotcha"})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "set.zip").write_bytes(z)
    _one_set(monkeypatch, File("https://example.invalid/set.zip", "set.zip", len(z), _sha(z)))
    with pytest.raises(DownloadError, match="would be written outside the data set's folder; refused"):
        get("toy", mirror=str(tmp_path / "m"))
    assert not (cache / "escape.txt").exists() and not (cache / "toy" / "ok.txt").exists()


def test_tar_links_are_refused(monkeypatch, tmp_path):
    t = _tar({"d/a.txt": b"a"}, link="d/passwd")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "set.tar.gz").write_bytes(t)
    _one_set(monkeypatch, File("https://example.invalid/set.tar.gz", "set.tar.gz", len(t), _sha(t)))
    with pytest.raises(DownloadError, match="'d/passwd' is a link or a device; refused"):
        get("toy", mirror=str(tmp_path / "m"))


def test_tar_and_gz_without_checksum_say_not_verified(cli, monkeypatch, tmp_path):
    t = _tar({"d/a.txt": b"a"})
    g = gzip.compress(b'{"chosen": "x"}\n')
    (tmp_path / "m" / "toy").mkdir(parents=True)
    (tmp_path / "m" / "set.tgz").write_bytes(t)
    (tmp_path / "m" / "toy" / "train.jsonl.gz").write_bytes(g)
    _one_set(monkeypatch, File("https://example.invalid/set.tgz", "set.tgz"),
             File("https://example.invalid/train.jsonl.gz", "toy/train.jsonl.gz"))
    r = cli("data", "get", "toy", "--from", tmp_path / "m", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(tmp_path / "out" / "d"), str(tmp_path / "out" / "toy")]
    assert (tmp_path / "out/toy/train.jsonl").read_bytes() == b'{"chosen": "x"}\n'
    assert not (tmp_path / "out/toy/train.jsonl.gz").exists()
    assert "not verified (2 of 2 files have no checksum in the catalog)" in r.stderr


def test_a_missing_input_named_like_a_data_set_says_how_to_get_it(cli):
    r = cli("preprocess", "timemachine.txt", "-o", "tm.tok")
    assert r.exit_code != 0
    assert r.stderr.strip() == "error: timemachine.txt: no such file (it is in a public data set: dlcli data get " \
        "timemachine -o data)"
    assert "dlcli data get fra-eng" in cli("translate", "train", "-d", "fra-eng.txt", "-o", "r").stderr
    r = cli("preprocess", "notes.txt", "-o", "n.tok")
    assert r.stderr.strip() == "error: notes.txt: no such file"
    from dlcli.datasets.catalog import providing

    assert providing("transforms.json") is None and providing("data/text8").name == "text8"
