"""Shared rich rendering helpers for commands: progress bars, tables, errors, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dpedkit.errors import DpedkitError

console = Console(stderr=True)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`DpedkitError` into a clean message and exit status 2 (bad usage or unreadable input)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DpedkitError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
            sys.exit(2)

    return wrapper


@contextmanager
def progress(description: str, total: int | None, *, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields ``advance(n=1, **fields)``. Silent when ``quiet``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = "") -> None:
            bar.update(task, advance=n, info=info)

        yield advance


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table with string-formatted cells (floats to 4 significant digits)."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    return t


def print_json(obj: Mapping[str, Any]) -> None:
    """Print ``obj`` as strict JSON on stdout (for ``--json``), nothing else: NaN and infinities become null."""
    from dpedkit.io import json_safe  # not at import: `dpedkit --help` stays free of OpenCV

    click.echo(json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False))
