"""``dpedkit build``: phone + DSLR folders -> HDF5 patch shards (thin layer over ``dpedkit.dataset.build``)."""

from __future__ import annotations

import sys
import time

import click
from dpedkit_cli.options import FILE_OR_URL, FOLDER_OR_URL, config_options, resolved_config
from dpedkit_cli.render import console, handle_errors, print_json, progress, quiet_logs, table
from rich.markup import escape

from dpedkit.dataset.parallel import BACKENDS


@click.command("build")
@click.argument("phone_dir", type=FOLDER_OR_URL)
@click.argument("dslr_dir", type=FOLDER_OR_URL)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option("--pairs", "pairs_csv", type=FILE_OR_URL, help="Explicit pairing CSV (a file or a URL).")
@click.option("--jobs", default=1, show_default=True,
              help="Worker processes (-1: all cores). With --scheduler, 1 means all cluster workers.")  # fmt: skip
@click.option("--backend", type=click.Choice(BACKENDS), default="loky", show_default=True)
@click.option("--scheduler", help="dask scheduler address (tcp://host:8786) or ray address (with --backend).")
@config_options("build")
@click.option("--overwrite", is_flag=True, help="Rebuild even if OUT holds a finished or unfinished dataset.")
@click.option(
    "--allow-swapped",
    is_flag=True,
    help="Build even when the DSLR photos look like the phone's (smaller, softer): swapped folders?",
)
@click.option("--quiet", is_flag=True, help="No progress bar, table or log lines but warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@handle_errors
def command(phone_dir, dslr_dir, out_dir, pairs_csv, jobs, backend, scheduler, overwrite, allow_swapped, quiet,
            as_json, **options) -> None:  # fmt: skip
    """Build a DPED-style dataset: align each pair, cut NCC-checked patch pairs, write HDF5 shards.

    Photos are paired by file name, or by capture time or order (--by; [pairs]). Every alignment ([align])
    and patch ([patch]) option of the library is a flag; options may also come from
    --config FILE.toml, which flags typed here override (--print-config shows the result). Reruns resume an
    interrupted build; a finished dataset is left alone unless --overwrite.
    A new build first aligns a few pairs: when most of them look swapped (the DSLR photos smaller and softer
    than the phone's) it stops, exit 2, unless --allow-swapped.
    Exit status: 0, or 1 when no pair succeeded, 2 on bad usage.
    """
    from dpedkit.dataset.build import build_dataset, count_pairs

    config = resolved_config("build", options)
    if quiet:
        quiet_logs()
    stats = {"kept": 0, "failed": 0, "pairs": 0}
    t0 = time.perf_counter()
    with progress("pairs", count_pairs(phone_dir, dslr_dir, pairs_csv, config), quiet=quiet) as advance:

        def on_result(r) -> None:
            stats["pairs"] += len(r.pairs)
            stats["kept"] += r.rows
            stats["failed"] += sum(p["status"] != "ok" for p in r.pairs)
            rate = stats["pairs"] / max(time.perf_counter() - t0, 1e-9)
            advance(len(r.pairs), info=f"kept {stats['kept']} | failed {stats['failed']} | {rate:.2f} pairs/s")

        try:
            summary = build_dataset(phone_dir, dslr_dir, out_dir, config=config, pairs_csv=pairs_csv, jobs=jobs,
                                    backend=backend, scheduler=scheduler, overwrite=overwrite,
                                    allow_swapped=allow_swapped, on_result=on_result)  # fmt: skip
        except KeyboardInterrupt:
            console.print(f"interrupted: finished shards are kept; rerun the same command to resume {escape(out_dir)}")
            sys.exit(130)
    if as_json:
        print_json(summary.to_dict())
    elif not quiet:
        _render(summary)
    sys.exit(0 if summary.ok else 1)


def _render(s) -> None:
    if s.already_finished:
        console.print(f"{escape(s.out_dir)} is a finished dataset: left alone (--overwrite rebuilds it)")
    alone = s.by_reason.get("no-partner", 0)  # photos the pairing left without a partner: not pairs
    rows = [["pairs", s.pairs - alone], ["ok", s.ok]]
    rows += [[f"failed: {k}", v] for k, v in s.by_reason.items() if k != "no-partner"]
    rows += [["photos without a partner", alone]] if alone else []
    rows += [[f"patches {k} ({_count(s.pairs_by_split.get(k, 0), 'pair')})", v] for k, v in s.patches.items()]
    rows += [["shards (built now)", f"{s.shards} ({s.shards_built})"], ["seconds", s.seconds]]
    console.print(table(f"dpedkit build -> {escape(s.out_dir)}", ["", "value"], rows))
    if s.ok:
        console.print(_next(s))


FIRST_RUN_ITERS = 300  # a first training run that takes minutes on a CPU (the README's)


def _next(s) -> str:
    """What to run on the dataset: inspect, then a short first training run; or, without training patches, a rebuild."""
    from dpedkit.config import TrainConfig

    out, inspect = escape(s.out_dir), f"[bold]dpedkit inspect {escape(s.out_dir)}[/] (alignment report)"
    if s.patches.get("train", 0):
        return (f"next: {inspect}, then [bold]dpedkit train {out} -o run --model srcnn --iters {FIRST_RUN_ITERS}[/]"
                f" (a first run: minutes on a CPU; without --iters it trains the full recipe, {TrainConfig.iters:,} "
                "iterations: hours on a CPU)")  # fmt: skip
    n_train, n_pairs, test = s.pairs_by_split.get("train", 0), sum(s.pairs_by_split.values()), s.patches.get("test", 0)
    if n_train:  # the pairs drawn for training all failed
        why = f"its {n_train} pair(s) all failed (see pairs.jsonl)"
        fix = "another --seed or fewer --test-images, to draw other pairs for training"
    else:
        why = f"--test-images/--test-fraction put all {n_pairs} pairs in the test split"
        fix = f"fewer --test-images (below {n_pairs}) or a smaller --test-fraction, so that pairs are left for training"
    score = f", or [bold]dpedkit evaluate MODEL {out}[/] to score a model on its {test} test patch pairs"
    return (f"the train split holds no patch pairs, nothing to train on: {why}. To train, rebuild with --overwrite "
            f"and {fix}.\nnext: {inspect}{score if test else ''}")  # fmt: skip


def _count(n: int, noun: str) -> str:
    """``1 pair``, ``2 pairs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
