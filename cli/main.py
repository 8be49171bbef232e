"""The ``dpedkit`` command group.

Commands are imported lazily (``dpedkit --help`` must not import torch or OpenCV): each entry of
``COMMANDS`` names the module under ``dpedkit_cli.commands`` that defines ``command`` and its one-line help.
"""

from __future__ import annotations

import importlib
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from dpedkit import __version__

# name -> (module in dpedkit_cli.commands, one-line help shown by `dpedkit --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "Run the whole pipeline on synthetic pairs: the first thing to try."),
    "synth": ("synth", "Make phone/DSLR pairs with known geometry from real photos."),
    "align": ("align", "Align one phone photo to its DSLR twin and crop both to the overlap."),
    "pairs": ("pairs", "Pair phone and DSLR photos by name, capture time or order."),
    "build": ("build", "Build a DPED-style patch dataset (HDF5 shards) from two photo folders."),
    "inspect": ("inspect", "Report on alignment quality of a dataset or an aligned pair."),
    "train": ("train", "Train an enhancement network on a dataset."),
    "evaluate": ("evaluate", "Score a model on test patches (DPED and PIRM protocols)."),
    "compare": ("compare", "Score several models on the same test patches: one table, identity included."),
    "enhance": ("enhance", "Enhance full-resolution photos with a trained model."),
    "verify": ("verify", "Check a dataset's shards: checksums, schema, every chunk readable."),
    "convert": ("convert", "Convert an official DPED TensorFlow checkpoint to a dpedkit checkpoint."),
    "import-dped": ("import_dped", "Convert an official DPED folder into a dpedkit dataset."),
    "export-dped": ("export_dped", "Write a dpedkit dataset in the official DPED folder layout."),
    "import-zrr": ("import_zrr", "Convert a Zurich RAW-to-RGB folder into a dpedkit RAW-to-RGB dataset."),
    "export-zrr": ("export_zrr", "Write a dpedkit RAW-to-RGB dataset in the Zurich RAW-to-RGB layout."),
    "bench": ("bench", "Benchmarks: align, build, train, enhance."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules imported on first use."""

    def __init__(self, *args, registry: dict[str, tuple[str, str]], package: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.registry = registry
        self.package = package

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Registered names, sorted."""
        return sorted(set(self.registry) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Import the command's module on first use."""
        if name in self.commands:
            return self.commands[name]
        if name not in self.registry:
            return None
        module = importlib.import_module(f"{self.package}.{self.registry[name][0]}")
        return module.command

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        """Make click's context, with its errors (a bad group option) as one ``error:`` line and exit status 2."""
        with _errors_as_lines():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, with click's errors (usage, parameters, ...) as one ``error:`` line and exit status 2."""
        with _errors_as_lines():
            return super().invoke(ctx)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands with their registry help, without importing them."""
        rows = [(name, self.registry[name][1]) for name in sorted(self.registry)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


@contextmanager
def _errors_as_lines() -> Iterator[None]:
    """Print click's own errors as dpedkit's (``fail``): ``error: message`` on one line, exit status 2.

    A usage error adds ``(see dpedkit COMMAND --help)``; ``dpedkit`` alone still shows the help.
    """
    try:
        yield
    except _NO_ARGS_IS_HELP:
        raise
    except click.ClickException as exc:
        from dpedkit_cli.render import fail  # here: `dpedkit --help` imports no rich

        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message += f" (see {exc.ctx.command_path} --help)"
        fail(message)


@click.group(
    cls=LazyGroup,
    registry=COMMANDS,
    package="dpedkit_cli.commands",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name="dpedkit")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """dpedkit: DPED-style paired datasets from phone + DSLR photos, alignment inspection, training.

    Conventions: images RGB, (x, y) pixel coordinates with pixel centres at integers, homographies map
    phone to DSLR. Run `dpedkit COMMAND --help` for each command.
    """
    from dpedkit_cli.render import log_handler

    # a file-size limit (ulimit -f) then gives an error naming the file instead of killing the process
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.getLogger("PIL").setLevel(logging.INFO)  # Pillow's chunk-by-chunk DEBUG lines drown -v output
    for sdk in ("botocore", "aiobotocore", "s3fs", "fsspec"):  # object storage: where credentials came from, ...
        logging.getLogger(sdk).setLevel(max(level, logging.WARNING))
    logging.basicConfig(level=level, format="%(message)s", handlers=[log_handler()], force=True)


if __name__ == "__main__":  # pragma: no cover
    cli()
