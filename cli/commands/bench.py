"""``dpedkit bench ...``: a lazy group, one module ``bench_<name>.py`` per benchmark."""

from __future__ import annotations

import click
from dpedkit_cli.main import LazyGroup

BENCHES: dict[str, tuple[str, str]] = {
    "align": ("bench_align", "Alignment time vs decode-only time, peak memory, corner error (13 + 20 MP pair)."),
    "build": ("bench_build", "Dataset-build throughput with 1 and 2 workers, memory, shard read speed."),
    "train": ("bench_train", "Training iterations/s, patches/s and data-wait fraction on the device at hand."),
    "enhance": ("bench_enhance", "Full-resolution enhancement of a 12 MP photo: seconds and peak memory."),
}


@click.group(cls=LazyGroup, registry=BENCHES, package="dpedkit_cli.commands")
def command() -> None:
    """Benchmarks that print ratios measured side by side in one run."""
