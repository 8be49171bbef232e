"""``dpedkit enhance MODEL IMAGE_OR_DIR... -o OUT_DIR``: full-resolution enhancement, exact when tiled."""

from __future__ import annotations

import sys

import click
from dpedkit_cli.options import config_options, resolved_config
from dpedkit_cli.render import console, handle_errors, progress
from rich.markup import escape


@click.command(name="enhance")
@click.argument("model", type=click.Path(exists=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path())  # checked by collect_inputs: PATH: cause
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace output files that exist already (else refused first).")
@config_options("enhance")
@handle_errors
def command(model: str, inputs: tuple[str, ...], out_dir: str, overwrite: bool, **options) -> None:
    """Enhance photos (files or folders of images) at full resolution with MODEL.

    MODEL is a dpedkit checkpoint or an official DPED TensorFlow checkpoint prefix (models/iphone_orig).
    Output: OUT/<name>.<format>, upright (EXIF orientation applied), clipped to [0, 1]. The result equals a
    whole-image run of the network even when memory forces strips (instance-norm statistics are computed over
    the whole photo); strips spill activations to $TMPDIR (about 12 GB of disk for a 12 MP photo).
    Exit status: 0 when every photo was enhanced, 1 when some could not be read (the others are written),
    2 on bad usage or an unusable model, 130 when interrupted (Ctrl-C; the photos finished so far are kept).
    Options may come from --config FILE.toml ([enhance]); flags typed here override it.
    """
    from dpedkit.enhance import ImageResult, collect_inputs, enhance

    config = resolved_config("enhance", options)
    total = len(collect_inputs(inputs))
    written = [0]
    try:
        with progress("enhance", total) as advance:

            def on_result(res: object) -> None:
                ok = isinstance(res, ImageResult)
                written[0] += ok
                how = (f"{res.strips} strips" if res.strips else "whole") if ok else ""
                info = f"{res.width}x{res.height} {res.seconds:.1f} s {how}" if ok else f"[red]{escape(str(res))}"
                advance(info=info)

            result = enhance(model, inputs, out_dir, config=config, on_result=on_result, overwrite=overwrite)
    except KeyboardInterrupt:  # as `dpedkit build`: 130, not click's "Aborted!" and 1 (= unreadable photos)
        console.print(
            f"interrupted: {written[0]} of {total} photo(s) written to {escape(str(out_dir))}; the photo in "
            "progress was not written and its temporary files were removed"
        )
        sys.exit(130)
    console.print(f"{len(result.images)} photo(s) written to {escape(str(out_dir))} ({result.device})")
    for src, failure in result.failures:
        console.print(f"[red]failed[/] {escape(str(src))}: {escape(str(failure))}")
    if result.failures:
        sys.exit(1)
