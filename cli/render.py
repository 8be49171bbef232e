"""Shared rich rendering helpers for commands: progress bars, tables, errors, JSON output."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from typing import Any

import click
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dpedkit.errors import DpedkitError, describe_os_error

WIDE = 10_000  # columns of a console that is not a terminal (COLUMNS unset): tables as wide as their content
PLAIN_EVERY = 30.0  # seconds between two progress lines when the console is not a terminal
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # log lines: ISO date and time


class _Console(Console):
    """rich's console; writing to a pipe or a file (not a terminal), it neither wraps nor cuts.

    There each message is one line however long (rich's ``soft_wrap``) and the width is ``WIDE`` (``$COLUMNS``
    when set), so a table is as wide as its content. Decided at each print, as rich decides colours.
    """

    @property
    def soft_wrap(self) -> bool:
        """Soft wrap (no wrapping, no cropping) unless writing to a terminal."""
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:  # rich's __init__ sets it; the property above decides
        pass

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size, or ``WIDE`` columns when not a terminal and ``$COLUMNS`` is unset."""
        size = super().size
        if self.is_terminal or os.environ.get("COLUMNS"):
            return size
        return ConsoleDimensions(WIDE, size.height)


console = _Console(stderr=True)


class _StderrHandler(logging.StreamHandler):
    """A log handler writing to whatever ``sys.stderr`` is at each record (as the console does)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        """The current standard error."""
        return sys.stderr


def log_handler() -> logging.Handler:
    """The log handler: rich's in a terminal; else one plain line per record: ``2026-12-07 01:22:04 INFO message``."""
    if console.is_terminal:
        from rich.logging import RichHandler

        return RichHandler(console=console, show_path=False, log_time_format=TIME_FORMAT)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt=TIME_FORMAT))
    return handler


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into one clean line and exit status 2 (see the README's exit codes).

    :class:`DpedkitError` (bad usage, unreadable or damaged input), ``OSError`` (disk full, permission denied,
    read-only folder: the path and the cause) and ``MemoryError``. Ctrl-C exits with 130 and one line (a command
    that keeps partial work says more first, and exits 130 itself).
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DpedkitError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(describe_os_error(exc))
        except MemoryError:
            fail("out of memory (try a smaller --max-memory, batch or --jobs)")
        except KeyboardInterrupt:  # not click's "Aborted!" and 1 (= some inputs failed)
            console.print("interrupted (Ctrl-C): nothing partial was kept; the same command starts again")
            sys.exit(130)

    return wrapper


def fail(message: str) -> None:
    """Print ``error: message`` on one line (a fetched dataset named by its URL) and exit with status 2."""
    from dpedkit_cli.options import as_given

    console.print(f"[bold red]error:[/] {escape(as_given(' '.join(message.splitlines())))}")
    sys.exit(2)


@contextmanager
def progress(description: str, total: int | None, *, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """Progress of some work; yields ``advance(n=1, info="", total=None)``. Silent when ``quiet``.

    In a terminal, a rich bar that appears at its first ``advance``: a command that fails before any work prints
    its error alone, not under an empty bar. Elsewhere (a pipe, a file), where a bar would print nothing until the
    end, a plain line at most every :data:`PLAIN_EVERY` seconds and one when the work ends. ``total`` (once known)
    replaces an unknown one, so no bar reads ``0/?``.
    """
    shown = None if quiet else (_Bar if console.is_terminal else _Lines)(description, total)

    def advance(n: int = 1, info: str = "", total: int | None = None) -> None:
        if shown is not None:
            shown.update(n, info, total)

    try:
        yield advance
    finally:
        if shown is not None:
            shown.stop()


class _Bar:
    """rich's progress bar: description, bar, done/total, info, elapsed and time left; shown at the first update."""

    def __init__(self, description: str, total: int | None) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task(description, total=total, info="")
        self.started = False

    def update(self, n: int, info: str, total: int | None) -> None:
        """Advance by ``n``; ``info`` replaces the info field, ``total`` an earlier total."""
        if not self.started:
            self.bar.start()
            self.started = True
        self.bar.update(self.task, advance=n, info=info, **({"total": total} if total is not None else {}))

    def stop(self) -> None:
        """Leave the bar as it ends."""
        if self.started:
            self.bar.stop()


class _Lines:
    """Progress as plain lines, for a console that is not a terminal: ``pairs 3/10 kept 5 0:00:30 elapsed, ...``."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total, self.done, self.info = description, total, 0, ""
        self.start = self.shown = time.monotonic()
        self.unshown = False  # an update since the last line (none at all: no line)

    def update(self, n: int, info: str, total: int | None) -> None:
        """Advance by ``n``; print a line when the last one is :data:`PLAIN_EVERY` seconds old."""
        self.done, self.info, self.unshown = self.done + n, info, True
        self.total = self.total if total is None else total
        if time.monotonic() - self.shown >= PLAIN_EVERY:
            self.print()

    def stop(self) -> None:
        """The last line, where the work ended (unless the line before shows it already)."""
        if self.unshown:
            self.print()

    def print(self) -> None:
        """One line: description, done/total, info, elapsed and estimated time left."""
        self.shown, self.unshown = time.monotonic(), False
        elapsed = self.shown - self.start
        left = "?"
        if self.total is not None and self.done > 0:
            left = _clock(elapsed * max(self.total - self.done, 0) / self.done)
        counts = f"{self.done}/{'?' if self.total is None else self.total}"
        parts = [f"[bold]{self.description}[/]", counts, self.info, f"{_clock(elapsed)} elapsed, {left} left"]
        console.print(" ".join(p for p in parts if p), highlight=False)


def _clock(seconds: float) -> str:
    """``0:01:05`` (as rich's time columns)."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def quiet_logs() -> None:
    """Only warnings and errors from here on (a command's own ``--quiet``, the same as the global ``-q``)."""
    logging.getLogger().setLevel(logging.WARNING)


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


def run_transfer(
    verb: str, call: Callable[[Callable[[int, int], None]], Any], as_json: bool, describe: Callable[[Any], str]
) -> None:
    """Run an import or export ``call(on_progress)`` with a shard progress bar; print ``describe(result)`` or JSON."""
    with progress(verb, None, quiet=as_json) as advance:
        result = call(lambda done, total: advance(1, info="shards", total=total))
    if as_json:
        print_json(result.to_dict())
        return
    console.print(describe(result))
