"""Click options generated from the config dataclasses of :mod:`dpedkit.config`, and their resolution.

``@config_options("build")`` adds to a command one option per field of the section's config class (and of its
nested configs: ``build`` also gets every ``[align]`` and ``[patch]`` option), named by
:func:`dpedkit.config.option_flag`, typed from the annotation (``Literal`` -> a choice, ``bool`` -> an on/off
pair, ``tuple`` -> several values, a ``dict`` -> repeated ``KEY=VALUE``), with the docstring's help and the
dataclass default shown; plus ``--config FILE.toml`` and ``--print-config``. :func:`resolved_config` then builds
the config: defaults < file < flags typed on the command line (a flag left at its default does not override the
file). No option or default is written twice.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
from click.core import ParameterSource

from dpedkit.config import (
    SECTIONS,
    field_default,
    field_docs,
    field_type,
    nested_class,
    option_flag,
    read_config_file,
    resolve,
    to_toml,
)

F = TypeVar("F", bound=Callable[..., Any])


class BadInputPath(click.ClickException):
    """``PATH: cause`` for an input path that is not there or not of its kind (as the library's ``InputError``)."""

    exit_code = 2


class PathOrUrl(click.ParamType):
    """A local folder (or, with ``file``, a file) that must exist, or (with ``urls``) a URL on object storage.

    Passed on as given. Not checked when the command only prints its configuration (``--print-config``, an eager
    option: parsed first).
    """

    def __init__(self, *, file: bool = False, urls: bool = True) -> None:
        self.file, self.urls = file, urls
        self.name = "file" if file else "folder"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """The URL or path as given, once checked: ``BadInputPath`` when missing or of the other kind."""
        from dpedkit.io import is_url

        if (self.urls and is_url(value)) or (ctx is not None and ctx.params.get("print_config")):
            return str(value)
        path = Path(value)
        if not path.exists():
            raise BadInputPath(f"{value}: no such {self.name}")
        if path.is_dir() == self.file:
            raise BadInputPath(f"{value}: a {'folder' if self.file else 'file'}, not a {self.name}")
        return str(value)


FOLDER_OR_URL = PathOrUrl()
FILE_OR_URL = PathOrUrl(file=True)
FOLDER = PathOrUrl(urls=False)  # a local folder that must exist
FILE = PathOrUrl(file=True, urls=False)  # a local file that must exist


FETCHED: dict[str, str] = {}  # local copy -> URL of the datasets this command fetched (errors name the URL)


def local_dataset(value: str, parts: list[str] | None = None) -> str:
    """A dataset argument as the library reads it: a URL's dataset (``parts`` of it, default all) is fetched.

    Returns the local copy's path (a folder: as given).
    """
    from dpedkit.dataset import storage
    from dpedkit.io import is_url

    local = str(storage.local_dataset(value, parts=parts))
    if is_url(value):
        FETCHED[local] = value
    return local


def as_given(message: str) -> str:
    """``message`` with the local copy of each fetched dataset named by its URL, as the user gave it."""
    for local, url in FETCHED.items():
        message = message.replace(local, url)
    return message


SEP = "__"  # option name = section + SEP + field (unique in a command whatever the flags are called)


def _section_fields(section: str) -> list[tuple[str, type, Any]]:
    """``(section, config class, field)`` for every leaf field of ``section`` and of its nested configs."""
    cls = SECTIONS[section]
    out = []
    for f in fields(cls):  # type: ignore[arg-type]
        sub = nested_class(cls, f)
        if sub is None:
            out.append((section, cls, f))
        else:
            out += [(f.name, sub, g) for g in fields(sub)]  # type: ignore[arg-type]
    return out


def _option(cls: type, f: Any, name: str) -> Callable[[F], F]:
    """The click option of field ``f`` of ``cls``, passed to the command as keyword ``name``."""
    tp, default = field_type(cls, f.name), field_default(f)
    flag = option_flag(cls, f.name)
    help_text = _help(field_docs(cls).get(f.name, ""))
    kw: dict[str, Any] = {"help": help_text, "show_default": default is not None}
    args = [t for t in get_args(tp) if t is not type(None)]
    base = args[0] if get_origin(tp) in (Union, types.UnionType) and len(args) == 1 else tp
    if base is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=default, **kw)
    if get_origin(base) is Literal:
        choices = get_args(base)
        kw["type"] = click.Choice([str(a) for a in choices])
        if all(isinstance(a, int) for a in choices):  # Literal[1, 2]: the choice is given back as the int
            kw["callback"] = lambda _ctx, _param, v: None if v is None else int(v)
    elif get_origin(base) is tuple:
        kw |= {"type": get_args(base)[0], "nargs": len(get_args(base))}
    elif base is dict or get_origin(base) is dict:
        kw |= {"multiple": True, "metavar": "KEY=VALUE", "callback": _key_values, "show_default": False}
        return click.option(flag, name, **kw)
    else:
        kw["type"] = base
    return click.option(flag, name, default=default, **kw)


def _help(doc: str) -> str:
    """The first sentence of a field's description, capitalised (the docstring keeps the rationale)."""
    m = re.match(r"(.+?\.)(?=\s+[A-Z0-9(]|$)", doc)
    text = m.group(1) if m else doc
    return text[:1].upper() + text[1:]


def _key_values(_ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, Any] | None:
    """``("channels=16", "blocks=1")`` -> ``{"channels": 16, "blocks": 1}`` (values parsed as JSON when they can be)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param=param)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out or None


def config_options(section: str) -> Callable[[F], F]:
    """Decorator: an option per field of ``section``'s config, plus ``--config`` and ``--print-config``."""

    def decorate(func: F) -> F:
        for sec, cls, f in reversed(_section_fields(section)):
            func = _option(cls, f, f"{sec}{SEP}{f.name}")(func)
        func = click.option(
            "--print-config",
            is_flag=True,
            is_eager=True,  # before the arguments: their folders need not exist to print the configuration
            help="Print the resolved configuration as TOML (defaults < --config file < flags) and exit.",
        )(func)
        return click.option(
            "--config",
            "config_file",
            type=FILE,
            help=f"TOML file of options (sections {', '.join(_sections(section))}); flags typed here override it.",
        )(func)

    return decorate


def field_options(cls: type, *names: str) -> Callable[[F], F]:
    """Decorator: options for the fields ``names`` of a config class (all when none), keyword = field name.

    For commands whose config has no TOML section (``synth``, ``demo``, ``inspect``): the flags, types, help and
    defaults still come from the dataclass.
    """
    chosen = [f for f in fields(cls) if not names or f.name in names]  # type: ignore[arg-type]

    def decorate(func: F) -> F:
        for f in reversed(chosen):
            func = _option(cls, f, f.name)(func)
        return func

    return decorate


def _sections(section: str) -> list[str]:
    return list(dict.fromkeys(sec for sec, _, _ in _section_fields(section)))


def typed_options(ctx: click.Context, section: str, options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The config options typed on the command line, by section: ``{"align": {"work_mp": 0.7}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        if SEP not in key:
            continue
        source = ctx.get_parameter_source(key)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT):
            sec, name = key.split(SEP, 1)
            out.setdefault(sec, {})[name] = list(value) if isinstance(value, tuple) else value
    return out


def file_options(config_file: str | None) -> dict[str, dict[str, Any]]:
    """The sections of a ``--config`` file (empty without one)."""
    return read_config_file(config_file) if config_file else {}


def given_options(section: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``section`` that the ``--config`` file or the command line set (file < flags)."""
    ctx = click.get_current_context()
    file = file_options(options.get("config_file")).get(section, {})
    return dict(file) | typed_options(ctx, section, options).get(section, {})


def resolved_config(section: str, options: dict[str, Any]) -> Any:
    """Build ``section``'s config from a command's keyword arguments (popping the config options from them).

    Handles ``--print-config``: prints the resolved TOML on stdout and exits 0.
    """
    ctx = click.get_current_context()
    config_file, print_only = options.pop("config_file", None), options.pop("print_config", False)
    typed = typed_options(ctx, section, options)
    for key in [k for k in options if SEP in k]:
        del options[key]
    config = resolve(section, file_options(config_file), typed)
    if print_only:
        print_config(section, config, ctx)
    return config


def print_config(section: str, config: Any, ctx: click.Context) -> None:
    """Print ``config`` as a TOML config file on stdout and exit 0."""
    click.echo(to_toml(config, section, title=f"dpedkit {ctx.info_name}: resolved configuration"), nl=False)
    ctx.exit(0)


def import_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every ``import-*`` command shares: ``--rows-per-shard``, ``--jobs``, ``--overwrite``, ``--json``."""
    for option in (
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."),
        click.option("--overwrite", is_flag=True, help="Replace an earlier import in a non-empty OUT."),
        click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes (-1: all cores)."),
        click.option("--rows-per-shard", type=click.IntRange(min=1), default=10_000, show_default=True),
    ):
        func = option(func)
    return func
