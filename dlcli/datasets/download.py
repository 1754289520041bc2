"""Fetch a catalogued data set into the cache: streamed, resumed, verified, unpacked, then copied to `-o DIR`.

A file is written to `NAME.part` in the cache, resumed there with an HTTP Range request, checked against
the catalog's size and checksum, and only then renamed to its final name; a file that fails the check is
removed. Archives are unpacked after they are verified, refusing members that would land outside the
data set's folder. The cache is `$DLCLI_CACHE`, else `$XDG_CACHE_HOME/dlcli`, else `~/.cache/dlcli`.
"""

from __future__ import annotations

import filecmp
import gzip
import hashlib
import http.client
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from dlcli import __version__
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.datasets.catalog import File, find
from dlcli.errors import InputError, OutputExistsError

CHUNK = 1 << 18
TIMEOUT = 30.0


class DownloadError(InputError):
    """A download failed, was refused by its checksum, or the source is unreachable."""


def cache_dir() -> Path:
    """dlcli's cache folder: $DLCLI_CACHE, else $XDG_CACHE_HOME/dlcli, else ~/.cache/dlcli."""
    if os.environ.get("DLCLI_CACHE"):
        return Path(os.environ["DLCLI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlcli"


def get(name: str, output: str | None = None, mirror: str | None = None, force: bool = False,
        on_progress: OnProgress = nothing) -> dict[str, Any]:
    """Fetch data set `name` (from its URLs, or from `mirror`: a folder or a base URL holding the files
    under their catalog names) into the cache and copy it to `output`; returns the paths written."""
    ds = find(name)
    home = cache_dir() / "data" / ds.name
    home.mkdir(parents=True, exist_ok=True)
    fetched = 0
    unverified = []
    tops: list[str] = []
    for f in ds.files:
        path = home / f.name
        found = _unpacked(f, home) if f.archive else None
        if found is None:
            if not path.is_file():
                fetched += _fetch(f, _source(f, mirror), path, on_progress)
            found = _unpack(path, f, home) if f.archive else [PurePosixPath(f.name).parts[0]]
        if not (f.sha256 or f.sha1):
            unverified.append(f.name)
        for top in found:
            if top not in tops:
                tops.append(top)
    paths = [home / t for t in tops]
    if output is not None:
        paths = [_copy(p, Path(output) / p.name, force) for p in paths]
    return {"name": ds.name, "paths": [str(p) for p in paths], "files": len(ds.files), "fetched": fetched,
            "size": _size(home, tops), "unverified": unverified, "cache": str(home)}


def _size(home: Path, tops: list[str]) -> int:
    return sum(p.stat().st_size for t in tops for p in [home / t, *(home / t).rglob("*")] if p.is_file())


def _is_url(s: str) -> bool:
    return urllib.parse.urlsplit(s).scheme in ("http", "https", "file")


def _source(f: File, mirror: str | None) -> str:
    """Where file `f` is read from: its URL, or its name under a mirror (a base URL or a folder)."""
    if mirror is None:
        return f.url
    if _is_url(mirror):
        return mirror.rstrip("/") + "/" + urllib.parse.quote(f.name)
    if not Path(mirror).is_dir():
        raise DownloadError(f"{mirror}: --from is neither a folder nor an http(s) URL")
    return str(Path(mirror) / f.name)


# ---------------------------------------------------------------- fetching and checking one file

def _fetch(f: File, source: str, path: Path, on_progress: OnProgress) -> int:
    """Write `source` to `path` by way of `path.part` (resumed if there), verified; returns bytes fetched."""
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_url(source):
        fetched = _http(source, part, f, on_progress)
    else:
        fetched = _copy_local(Path(source), part, f, on_progress)
    _verify(part, f, source, on_progress)
    os.replace(part, path)
    return fetched


def _http(url: str, part: Path, f: File, on_progress: OnProgress) -> int:
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"dlcli/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is whole already: let the checksum decide
            return 0
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        host = urllib.parse.urlsplit(url).netloc or url
        raise DownloadError(f"cannot reach {host} for {f.name} ({reason}); check the connection, or fetch the "
                            "file elsewhere and use --from DIR_OR_URL") from None
    with resp:
        if have and resp.status != 206:  # the server ignored the Range: start again
            have = 0
        kind = resp.headers.get("Content-Type", "")
        if kind.startswith("text/html") and not f.name.endswith(".html"):
            raise DownloadError(f"{url}: the server sent a web page instead of {f.name} (it may ask for a "
                                "confirmation); download it in a browser and use --from DIR")
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else f.size
        done = have
        try:
            with open(part, "ab" if have else "wb") as out:
                for chunk in _chunks(resp):
                    out.write(chunk)
                    done += len(chunk)
                    on_progress(Tick(f"download {f.name}", done, total, "B"))
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, OSError) and e.filename is not None:
                raise
            raise DownloadError(f"{url}: the connection broke after {done:,} bytes ({e}); run the same command "
                                "again to resume") from None
        if total is not None and done < total:
            raise DownloadError(f"{url}: the connection closed after {done:,} of {total:,} bytes; run the same "
                                "command again to resume")
    return done - have


def _chunks(src: IO[bytes]) -> Iterator[bytes]:
    while chunk := src.read(CHUNK):
        yield chunk


def _copy_local(src: Path, part: Path, f: File, on_progress: OnProgress) -> int:
    if not src.is_file():
        raise DownloadError(f"{src}: not found (the --from folder should hold {f.name})")
    total = src.stat().st_size
    done = 0
    with open(src, "rb") as inp, open(part, "wb") as out:
        for chunk in _chunks(inp):
            out.write(chunk)
            done += len(chunk)
            on_progress(Tick(f"copy {f.name}", done, total, "B"))
    return done


def _verify(part: Path, f: File, source: str, on_progress: OnProgress) -> None:
    """Check `part` against the catalog's size and checksum; remove it and raise when it differs."""
    size = part.stat().st_size
    problem = None
    if f.size is not None and size != f.size:
        problem = f"{size:,} bytes where the catalog has {f.size:,}"
    elif f.sha256 or f.sha1:
        algo, want = ("sha256", f.sha256) if f.sha256 else ("sha1", f.sha1)
        h = hashlib.new(algo)
        done = 0
        with open(part, "rb") as inp:
            for chunk in _chunks(inp):
                h.update(chunk)
                done += len(chunk)
                on_progress(Tick(f"verify {f.name}", done, size, "B"))
        if h.hexdigest() != want:
            problem = f"{algo} {h.hexdigest()[:16]}... where the catalog has {want[:16]}..."  # type: ignore[index]
    if problem:
        part.unlink()
        raise DownloadError(f"{source}: {problem}; the download was removed (a damaged or changed file: try "
                            "again, or another --from)")


# ---------------------------------------------------------------- unpacking

def _marker(f: File, home: Path) -> Path:
    return home / ".unpacked" / (f.name.replace("/", "__") + ".json")


def _unpacked(f: File, home: Path) -> list[str] | None:
    """The top-level names an archive was unpacked to, if it was and they are still there."""
    marker = _marker(f, home)
    if not marker.is_file():
        return None
    tops = json.loads(marker.read_text(encoding="utf-8"))
    there = [home / t for t in tops] + ([home / f.name[: -len(".gz")]] if f.archive == "gz" else [])
    return tops if all(p.exists() for p in there) else None


def _unpack(archive: Path, f: File, home: Path) -> list[str]:
    """Unpack a verified archive into `home`, remember it and remove the archive; returns its top-level names."""
    if f.archive == "gz":
        tops = [PurePosixPath(_gunzip(archive, f, home)).parts[0]]
    else:
        tmp = home / f".unpack-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            names = _unzip(archive, f, tmp) if f.archive == "zip" else _untar(archive, f, tmp)
            if not names:
                raise DownloadError(f"{archive}: no files under {f.members or 'its top level'}")
            tops = sorted({PurePosixPath(n).parts[0] for n in names})
            for t in tops:
                _replace(tmp / t, home / t)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    marker = _marker(f, home)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps(tops), encoding="utf-8")
    archive.unlink()
    return tops


def _member(archive: Path, name: str, f: File) -> str | None:
    """The path a member unpacks to (under the data set's folder), None to skip it; refuses escapes."""
    if not name.startswith(f.members):
        return None
    rel = name.removeprefix(f.strip)
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DownloadError(f"{archive}: member {name!r} would be written outside the data set's folder; refused")
    return str(p) if p.parts and str(p) != "." else None


def _unzip(archive: Path, f: File, dest: Path) -> list[str]:
    names = []
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            rel = _member(archive, info.filename, f)
            if rel is None or info.is_dir():
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(dest / rel, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            names.append(rel)
    return names


def _untar(archive: Path, f: File, dest: Path) -> list[str]:
    names = []
    with tarfile.open(archive) as t:
        for m in t:
            rel = _member(archive, m.name, f)
            if rel is None or m.isdir():
                continue
            if not m.isfile():
                raise DownloadError(f"{archive}: member {m.name!r} is a link or a device; refused")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            src = t.extractfile(m)
            assert src is not None  # a regular file
            with src, open(dest / rel, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            names.append(rel)
    return names


def _gunzip(archive: Path, f: File, home: Path) -> str:
    """Decompress NAME.gz to NAME beside it (by a temp and one rename); returns NAME."""
    rel = f.name[: -len(".gz")]
    tmp = home / f"{rel}.tmp-{os.getpid()}"
    try:
        with gzip.open(archive) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        os.replace(tmp, home / rel)
    except (OSError, EOFError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is not None:
            raise
        raise DownloadError(f"{archive}: not a whole gzip file ({e})") from None
    return rel


def _replace(src: Path, dst: Path) -> None:
    """Move `src` over `dst` (a file or a folder)."""
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


# ---------------------------------------------------------------- copying out of the cache

def _copy(src: Path, dst: Path, force: bool) -> Path:
    """Copy a cached file or folder to `dst` (by a temp beside it, then one rename); an identical copy
    already there is kept, a different one replaced only with `force`."""
    if dst.exists() or dst.is_symlink():
        if _same(src, dst):
            return dst
        if not force:
            raise OutputExistsError(f"{dst}: exists and differs from the data set (--force replaces it)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        _replace(tmp, dst)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return dst


def _same(a: Path, b: Path) -> bool:
    if a.is_file() and b.is_file():
        return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
    if a.is_dir() and b.is_dir() and not b.is_symlink():
        ours = sorted(p.relative_to(a) for p in a.rglob("*"))
        theirs = sorted(p.relative_to(b) for p in b.rglob("*"))
        return ours == theirs and all(_same(a / p, b / p) for p in ours if (a / p).is_file())
    return False
