"""``dpedkit synth``: synthetic phone/DSLR pairs with known geometry (over ``dpedkit.synth.pairs.synthesize``)."""

from __future__ import annotations

import click
from dpedkit_cli.options import FOLDER, field_options
from dpedkit_cli.render import console, handle_errors, print_json, progress, quiet_logs, table

from dpedkit.config import SynthConfig


@click.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--n", "n", default=20, show_default=True, type=click.IntRange(min=1), help="Number of pairs.")
@click.option("--seed", default=0, show_default=True, help="Base seed (pair i uses seeds [seed, i]).")
@click.option("--source", type=FOLDER, help="Folder of your own photos.")
@field_options(SynthConfig)
@click.option("--overwrite", is_flag=True, help="Replace the pairs of an earlier run in OUT_DIR.")
@click.option("--quiet", is_flag=True, help="No progress bar, table or log lines but warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print one summary row per pair as JSON on stdout.")
@handle_errors
def command(out_dir, n, seed, source, overwrite, quiet, as_json, **options) -> None:
    """Make phone/DSLR pairs with KNOWN geometry from real photos (default: scikit-image's bundled photos).

    Writes OUT_DIR/phone/NAME.EXT, OUT_DIR/dslr/NAME.EXT and OUT_DIR/truth/NAME.json, whose
    H_phone_to_dslr maps phone pixels (x, y, 1), centres at integers, to DSLR pixels. Files carry EXIF
    capture times (--clock-offset, --time-jitter, --bursts); --phone-format heic|dng and --dslr-format dng
    write camera files; --rotate turns the phone's pixels. Use them to check an aligner (`dpedkit align` or
    `dpedkit build`) before a shoot. The table's dslr_overlap is the share of the DSLR frame the phone sees
    (`dpedkit align` reports its overlap as the share of the phone frame).
    """
    from dpedkit.synth.pairs import synthesize

    config = SynthConfig(**options)  # fail fast, before the progress bar
    if quiet:
        quiet_logs()
    rows = []
    with progress("pairs", n, quiet=quiet or as_json) as advance:

        def on_result(r) -> None:
            t = r.truth
            jpeg_phone = t["formats"]["phone"] == "jpg"  # a HEIC or DNG phone file holds no JPEG
            geo = t["geometry"]
            rows.append({"name": r.name, "source": t["source"], "dslr_overlap": t["overlap"]["dslr"],
                         "rotation_deg": geo["rotation_deg"], "scale": geo["scale"],
                         "phone_jpeg": t["applied"]["phone"]["jpeg_quality"] if jpeg_phone else None,
                         "files": "{phone}/{dslr}".format(**t["formats"]), "rotate": t["rotate"],
                         "dt_s": round(t["capture"]["dslr"] - t["capture"]["phone"], 3)})  # fmt: skip
            advance(1, info=f"{r.name} from {t['source']}")

        synthesize(out_dir, n=n, seed=seed, source=source, config=config, on_result=on_result, overwrite=overwrite)
    if as_json:
        print_json({"out_dir": out_dir, "pairs": rows})
    elif not quiet:
        columns = ["name", "source", "dslr_overlap", "rotation_deg", "scale", "phone_jpeg", "files", "rotate", "dt_s"]
        cells = [["-" if r[c] is None else r[c] for c in columns] for r in rows]
        console.print(table(f"{n} synthetic pairs in {out_dir}", columns, cells))
