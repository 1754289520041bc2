"""What every command shares at run time: config resolution, error handling,
progress display and output lines (the options are in options.py). Only the
CLI imports typer and rich."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import typer
from rich.console import Console

T = TypeVar("T")

err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line on stderr; return the Exit to raise."""
    message = " ".join(message.split("\n"))
    if _tty():
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(message)}")
    else:
        print(f"error: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def _tty(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr, looked up now: tests swap it) is a terminal that draws."""
    return (stream or sys.stderr).isatty() and os.environ.get("TERM") != "dumb"


def _data_hint(e: Exception) -> str:
    """For a missing file named like a public data set: how to get it."""
    from dlcli.errors import MissingFileError

    if not isinstance(e, MissingFileError):
        return ""
    from dlcli.datasets.catalog import providing

    d = providing(e.path)
    return f" (it is in a public data set: dlcli data get {d.name} -o data)" if d else ""


@contextlib.contextmanager
def errors(debug: bool = False) -> Iterator[None]:
    """Turn library errors into one stderr line and a non-zero exit."""
    from dlcli.errors import DlcliError

    try:
        with _warnings_as_lines():
            yield
    except typer.Exit:
        raise
    except DlcliError as e:
        if debug:
            raise
        raise fail(str(e) + _data_hint(e), e.exit_code) from None
    except KeyboardInterrupt:
        if debug:
            raise
        raise fail("interrupted; no partial output was kept", 130) from None
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): not an error.
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        raise typer.Exit(0) from None
    except MemoryError:
        if debug:
            raise
        raise fail("out of memory", 1) from None
    except Exception as e:
        if debug:
            raise
        from dlcli.core.io import os_error_line

        line = os_error_line(e) if isinstance(e, OSError) else None  # permissions, a full or read-only disk
        if line is not None:
            raise fail(line, 1) from None
        raise fail(f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)", 1) from None


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """dlcli's own warnings become one `warning: ...` line on stderr; a library's are not shown
    (they are for its developers, not our users) unless DLCLI_DEBUG or PYTHONWARNINGS asks for them."""
    import warnings

    from dlcli.errors import DlcliWarning

    def show(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
        if issubclass(category, DlcliWarning):
            err.print(f"warning: {message}", markup=False, highlight=False)
        elif os.environ.get("DLCLI_DEBUG") or os.environ.get("PYTHONWARNINGS"):
            err.print(f"warning ({category.__name__}): {message}", markup=False, highlight=False)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.simplefilter("always", DlcliWarning)
        warnings.showwarning = show
        yield


def resolve(cls: type[T], config: Path | None, sets: list[str] | None, flags: dict[str, Any],
            print_config: bool) -> T:
    """Build the config (defaults < YAML < --set < flags); --print-config exits."""
    from dlcli.core.config import build_config, to_yaml

    cfg = build_config(cls, config, sets or [], flags)
    if print_config:
        sys.stdout.write(to_yaml(cfg))
        raise typer.Exit(0)
    return cfg


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000
    return f"{n:.1f} GB"


def _fmt_amount(n: float, unit: str) -> str:
    if unit == "B":
        return _fmt_bytes(n)
    return f"{n:,.0f} {unit}" + ("" if round(n) == 1 else "s")


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return "  ".join(parts)


class PlainProgress:
    """Periodic one-line progress reports for logs and pipes: one every `every` seconds, and the line that
    completes a task (its done reaching its total) whenever it comes. Rates and ETAs count from a task's
    first tick, so loading and compiling before it do not slow them."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.start = self.last = time.monotonic()
        self.first: dict[str, tuple[float, float]] = {}  # desc -> (time, done) of its first tick
        self.done: dict[str, float] = {}
        self.finished: set[str] = set()
        self.shown: set[str] = set()  # the tasks that printed a line

    def __call__(self, tick: Any) -> None:
        now = time.monotonic()
        if tick.done < self.done.get(tick.desc, 0.0):  # the same task again (another evaluation pass)
            self.first.pop(tick.desc, None)
            self.finished.discard(tick.desc)
        self.done[tick.desc] = tick.done
        t0, done0 = self.first.setdefault(tick.desc, (now, tick.done))
        # the line that completes a task, except a quick byte-counted one (reading, counting a file) that
        # showed no line before
        complete = bool(tick.total) and tick.done >= tick.total and (tick.unit != "B" or tick.desc in self.shown)
        if complete and tick.desc in self.finished:
            return
        if now - self.last < self.every and not complete:
            return
        self.last = now
        self.shown.add(tick.desc)
        if complete:
            self.finished.add(tick.desc)
        # a task's one tick (a short run's last) is measured from the start
        rate = (tick.done - done0) / (now - t0) if tick.done > done0 and now > t0 else tick.done / max(now - self.start, 1e-9)
        print(progress_line(tick, rate), file=sys.stderr, flush=True)


def progress_line(tick: Any, rate: float) -> str:
    """`train: 10 steps / 12 steps (83%), 0.3 steps/s, ETA 0:06  loss 2.1`: never past 100 %, never a
    negative ETA (a total estimated from a time budget can fall behind the steps done)."""
    text = f"{tick.desc}: {_fmt_amount(tick.done, tick.unit)}"
    total = max(tick.total, tick.done) if tick.total else None
    if total:
        text += f" / {_fmt_amount(total, tick.unit)} ({min(100.0, 100 * tick.done / total):.0f}%)"
    text += f", {_fmt_amount(rate, tick.unit)}/s" if tick.unit == "B" else f", {rate:,.1f} {tick.unit}s/s"
    if total and rate > 0 and tick.done < total:
        text += f", ETA {_fmt_time((total - tick.done) / rate)}"
    if tick.metrics:
        text += "  " + _fmt_metrics(tick.metrics)
    return text


class RichProgress:
    """A live rich progress bar on stderr."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[amount]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=err,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.start: dict[str, float] = {}

    def __call__(self, tick: Any) -> None:
        if tick.desc not in self.tasks:
            self.tasks[tick.desc] = self.progress.add_task(tick.desc, total=tick.total, amount="", rate="",
                                                           metrics="")
            self.start[tick.desc] = time.monotonic()
        elapsed = max(time.monotonic() - self.start[tick.desc], 1e-9)
        rate = tick.done / elapsed
        amount = _fmt_amount(tick.done, tick.unit)
        total = max(tick.total, tick.done) if tick.total else None  # an estimated total never behind the steps done
        if total:
            amount += f"/{_fmt_amount(total, tick.unit)}"
        self.progress.update(
            self.tasks[tick.desc],
            completed=tick.done,
            total=total,
            amount=amount,
            rate="" if elapsed < 0.5 else (
                f"{_fmt_amount(rate, tick.unit)}/s" if tick.unit == "B" else f"{rate:,.1f} {tick.unit}s/s"),
            metrics=_fmt_metrics(tick.metrics),
        )


@contextlib.contextmanager
def progress(quiet: bool) -> Iterator[Any]:
    """An `on_progress` callback suited to where stderr goes."""
    from dlcli.core import progress as p

    how = p.mode(_tty(), quiet)
    if how == "off":
        yield lambda tick: None
    elif how == "bar":
        rp = RichProgress()
        with rp.progress:
            yield rp
    else:
        yield PlainProgress(p.every())


def info(message: str, quiet: bool) -> None:
    """A summary line on stderr (not with --quiet)."""
    if not quiet:
        err.print(message, markup=False, highlight=False)


def count(n: int, word: str, plural: str = "") -> str:
    """`1 line`, `2 lines`, `1,000 lines`."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def spent(s: dict[str, Any]) -> str:
    """`train 40 s + final evaluation 43 s` (what --max-time bounds, then what comes after it), or the
    summary's `elapsed` seconds where it does not tell them apart."""
    if "train_seconds" in s and "final_seconds" in s:
        return f"train {s['train_seconds']:.0f} s + final evaluation {s['final_seconds']:.0f} s"
    return f"{s['elapsed']:.0f} s"


def result(value: str) -> None:
    """The command's result (a path written) on stdout, for $(...) and pipes."""
    print(value, flush=True)


def table(title: str, columns: list[str] | tuple[str, ...], rows: list[tuple[Any, ...]], to_stdout: bool = False,
          headings: list[str] | tuple[str, ...] | None = None, right: tuple[str, ...] = ("index", "count", "id")
          ) -> None:
    """A table under its title: a summary on stderr, or the command's result on stdout. Drawn with rich
    (`headings`, default the column names; columns named in `right` right-aligned) for a person; stdout
    that is not a terminal gets the title and the rows as space-aligned text under the `columns` names,
    one line a row and never wrapped, for grep and awk."""
    cells = [tuple(str(x) for x in r) for r in rows]
    if to_stdout and not _tty(sys.stdout):
        lines = [tuple(columns), *cells]
        widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
        print(title)
        print("\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in lines), flush=True)
        return
    from rich.table import Table

    t = Table()
    for name, heading in zip(columns, headings or columns):
        t.add_column(heading, justify="right" if name in right else "left")
    for r in cells:
        t.add_row(*r)
    out = Console(highlight=False) if to_stdout else err
    out.print(title, markup=False)  # above the table, not wrapped to its width
    out.print(t)
