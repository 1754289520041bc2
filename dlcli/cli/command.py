"""One wrapper for every command: the typer signature plus one call.

`@command(config)` adds the shared options (`options.CONFIGURED`, --debug, --resume, bundles such as
`options.TRAINING`) to a function's signature and, when it runs, turns errors into one line and hands
the body a `Job`: the flags given (parameter name = config key, `a__b` = `a.b`) and the shared
options. `job.run(stage)` resolves the config (defaults < YAML < --set < flags), honours
--print-config, runs the stage with progress, prints its summary line and its result on stdout.

Config classes are loaded by small functions (`config`) so that `dlcli --help` imports no torch;
`Command` reads the defaults from the dataclass only when a command's help is shown.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import typer
from typer.core import TyperCommand, TyperGroup

from dlcli.cli import common as c
from dlcli.cli import options as o

SHARED = ("config", "set_", "print_config", "force", "quiet", "debug", "resume", "log")
_MISSING = object()


def key(name: str) -> str:
    """The config key of a parameter: `model__n_hidden` -> `model.n_hidden`."""
    return name.replace("__", ".")


@dataclass
class Job:
    """What a command body gets: the flags given and the shared options."""

    flags: dict[str, Any]  # config key -> value; None = not given
    config_class: Callable[[], type] | None = None
    config: Path | None = None
    set_: list[str] = field(default_factory=list)
    print_config: bool = False
    force: bool = False
    quiet: bool = False
    resume: bool = False
    log: list[str] = field(default_factory=list)  # --log: trackers beside metrics.jsonl

    def renamed(self, keys: Mapping[str, str], config_class: Callable[[], type]) -> Job:
        """The same job for another config whose keys are named differently (the legacy mode switches)."""
        flags = {keys.get(k, k): v for k, v in self.flags.items()}
        return dataclasses.replace(self, flags=flags, config_class=config_class)

    def resolve(self, cls: type | None = None, **given: Any) -> Any:
        """The config: defaults < YAML < --set < flags (`given` overrides flags); --print-config exits."""
        from dlcli.errors import ConfigError

        cls = cls or self.config_class()  # type: ignore[misc]
        fields = {f.name for f in dataclasses.fields(cls)}
        flags = {}
        for k, v in {**self.flags, **given}.items():
            if k.split(".")[0] in fields:
                flags[k] = v
            elif v is not None:
                raise ConfigError(f"--{k.split('.')[-1].replace('_', '-')}: not an option of this command or mode")
        return c.resolve(cls, self.config, self.set_, flags, self.print_config)

    def run(self, stage: Callable[..., Any], report: Callable[[dict], str] | None = None, result: str | None = "run",
            cfg: Any = None) -> Any:
        """Resolve the config, run `stage(cfg, force=, resume=, on_progress=)` (the keywords it takes), print
        `report(summary)` on stderr and `summary[result]` (a path, or a list of them) on stdout."""
        cfg = cfg if cfg is not None else self.resolve()
        takes = inspect.signature(stage).parameters
        kw: dict[str, Any] = {k: v for k, v in (("force", self.force), ("resume", self.resume)) if k in takes}
        from dlcli.train import tracking

        with tracking.use(self.log), c.progress(self.quiet) as on_progress:
            if "on_progress" in takes:
                kw["on_progress"] = on_progress
            s = stage(cfg, **kw)
        if not s:  # a DDP process other than the main one: the main one reports
            return s
        if report:
            self.info(report(s))
        if result:
            for path in s[result] if isinstance(s[result], list) else [s[result]]:
                c.result(str(path))
        return s

    def info(self, message: str) -> None:
        c.info(message, self.quiet)


def command(config: Callable[[], type] | None = None, *, options: Mapping[str, Any] | None = None,
            resume: bool = False, aliases: Mapping[str, str] | None = None,
            switches: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Add the shared options to a command and hand its body a `Job` (keyword `job`).

    `config` loads the command's config class (then --config/--set/--print-config/--force/--quiet come
    too); `options` adds a bundle of options that only feed the config; `aliases` maps an old short flag
    to a parameter, kept working but not shown (e.g. {"-t": "temperature"}); `switches` are parameters
    that pick a mode (`--task`, `--table`), given to the body but not config keys."""
    extra = {**(o.CONFIGURED if config else {}), **(options or {}), "debug": o.Debug}
    if resume:
        extra["resume"] = o.Resume
        extra["log"] = o.Log  # a training command: --log tensorboard/wandb

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "job"]
        kinds = {p.name: p.annotation for p in own} | extra
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a,
                                   default=False if get_args(a)[0] is bool else None)
                 for n, a in extra.items() if n not in sig.parameters]
        hidden = [inspect.Parameter(f"alias_{n}", inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation=Annotated[_plain(kinds[n]), typer.Option(short, hidden=True)])
                  for short, n in (aliases or {}).items()]
        defaults = {p.name: p.default for p in own}

        @functools.wraps(fn)
        def run(**kw: Any) -> Any:
            for n in (aliases or {}).values():
                kw[n] = _merge(kw[n], kw.pop(f"alias_{n}"))
            shared = {k: kw.pop(k) for k in SHARED if k in kw and k not in defaults}
            with c.errors(shared.pop("debug", False)):
                flags = {key(k): (None if v == defaults.get(k, None) else v) for k, v in kw.items()
                         if k not in switches}
                job = Job(flags, config, shared.get("config"), shared.get("set_") or [],
                          shared.get("print_config", False), shared.get("force", False),
                          shared.get("quiet", False), shared.get("resume", False), shared.get("log") or [])
                return fn(job=job, **{k: v for k, v in kw.items() if k in defaults})

        params = sorted([*own, *added, *hidden], key=lambda p: p.kind)
        run.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        run.config = config  # type: ignore[attr-defined] - read by Command for the help's defaults
        return run

    return wrap


def _plain(annotation: Any) -> Any:
    """`Annotated[T, ...]` -> T."""
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _merge(value: Any, alias: Any) -> Any:
    if alias is None or alias == []:
        return value
    return [*(value or []), *alias] if isinstance(alias, list) else alias if value is None else value


class Command(TyperCommand):
    """A typer command whose help has one style: each option's default as "(default X)" at the end of its
    help (read from the config dataclass when the help is shown, else the option's own default), and no
    value placeholder after an on/off flag."""

    _defaults_added = False

    def format_help(self, ctx: Any, formatter: Any) -> None:
        if not self._defaults_added:
            self._defaults_added = True
            load = getattr(self.callback, "config", None)
            _add_defaults(self.params, load()() if load is not None else None)
        super().format_help(ctx, formatter)

    def get_params(self, ctx: Any) -> list[Any]:
        return _bare_flags(super().get_params(ctx))


def _add_defaults(params: list[Any], defaults: Any) -> None:
    """Append "(default X)" to each parameter's help, in place of typer's "[default: X]"."""
    for p in params:
        if p.param_type_name not in ("option", "argument") or not p.name:
            continue
        value = _lookup(defaults, key(p.name)) if defaults is not None else _MISSING
        if value is _MISSING and p.show_default is True and not callable(p.default):
            value = p.default
        p.show_default = False
        text = _default_text(value, p)
        help = getattr(p, "help", None) or ""
        if text and "default" not in help:
            p.help = f"{help.rstrip('.')} (default {text})." if help else f"Default {text}."


def _bare_flags(params: list[Any]) -> list[Any]:
    """On/off flags take no value: show no `<bool>` placeholder after them."""
    for p in params:
        if getattr(p, "is_flag", False) and not getattr(p, "count", False):
            p.metavar = ""
    return params


def _lookup(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part, _MISSING)
    return cfg


def _default_text(value: Any, p: Any) -> str | None:
    if value is _MISSING or value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        names = p.opts if value else p.secondary_opts
        return names[0] if names else None
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


class Group(TyperGroup):
    """A command group; with `default` set, `dlcli GROUP ARGS` runs `dlcli GROUP DEFAULT ARGS` when ARGS do
    not start with one of its commands (how `dlcli forecast RUN` keeps working beside `forecast train`).
    A run directory named like the default command (`dlcli translate run` for a folder `run`) is the
    run when no other argument follows it: the command itself would need one."""

    default: str | None = None

    def get_params(self, ctx: Any) -> list[Any]:
        return _bare_flags(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if self.default and args and args[0] not in ctx.help_option_names and (
                args[0] not in self.commands
                or (args[0] == self.default and os.path.isdir(args[0]) and (len(args) == 1 or args[1][:1] == "-"))):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


class App(typer.Typer):
    """A typer app whose commands are `Command`s and whose group is a `Group` (with a default command)."""

    def __init__(self, help: str, default: str | None = None) -> None:
        group = type("Group", (Group,), {"default": default})
        super().__init__(help=help, no_args_is_help=True, rich_markup_mode="rich", cls=group)

    def command(self, name: str | None = None, **kw: Any) -> Any:  # type: ignore[override]
        kw.setdefault("cls", Command)
        return super().command(name, **kw)
