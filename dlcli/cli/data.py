"""`dlcli data`: the public data sets the docs use, listed and downloaded (verified, resumable, cached)."""

from __future__ import annotations

from typing import Annotated

import typer

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("List and download the public data sets the docs use: verified against their checksums, resumed "
          "after a break, cached under ~/.cache/dlcli (env: DLCLI_CACHE).")


@app.command("list")
@command()
def list_(*, job: Job) -> None:
    """A table of the data sets: name, download size, whether a checksum is known, licence, what it is.

    Example: dlcli data list
    """
    from dlcli.datasets.catalog import CATALOG

    rows = [(d.name, "unknown" if d.size is None else c._fmt_bytes(d.size), "yes" if d.verified else "no",
             d.licence, d.title) for d in CATALOG]
    c.table("data sets (dlcli data get NAME -o DIR)", ["name", "size", "checksum", "licence", "what"], rows,
            to_stdout=True)


@app.command()
@command(options=o.WRITES)
def get(
    names: Annotated[list[str], typer.Argument(help="Data sets to fetch (see 'dlcli data list').",
                                               show_default=False)],
    output: Annotated[str | None, typer.Option("--output", "-o", help="Folder to copy the data into (default: "
                                               "print the paths in the cache).", show_default=False)] = None,
    mirror: Annotated[str | None, typer.Option("--from", help="A folder or base URL holding the files under their "
                                               "catalog names, instead of the sources (env: DLCLI_DATA_FROM).",
                                               envvar="DLCLI_DATA_FROM", show_default=False)] = None,
    *, job: Job,
) -> None:
    """Download data sets into the cache (streamed, resumed after a break, checked against the catalog's
    sha256), unpack archives, copy them to -o DIR and print the paths written.

    Example: dlcli data get timemachine tinyshakespeare -o data
    """
    from dlcli.datasets.download import get as fetch

    for name in names:
        with c.progress(job.quiet) as on_progress:
            s = fetch(name, output, mirror, job.force, on_progress)
        how = "fetched" if s["fetched"] else "from the cache"
        check = (f"not verified ({len(s['unverified'])} of {s['files']} files have no checksum in the catalog)"
                 if s["unverified"] else "verified against the catalog's checksum" + "s" * (s["files"] > 1))
        job.info(f"{s['name']}: {s['files']} file{'s' * (s['files'] > 1)}, {c._fmt_bytes(s['size'])}, {how}, "
                 f"{check}")
        for p in s["paths"]:
            c.result(p)
