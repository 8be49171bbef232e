"""``dpedkit bench build``: build throughput (1 vs 2 workers), cost vs decode, memory, shard read speed."""

from __future__ import annotations

import click
from dpedkit_cli.options import field_options
from dpedkit_cli.render import console, handle_errors, print_json, table

from dpedkit.config import BuildBenchConfig


@click.command("build")
@field_options(BuildBenchConfig, "pairs", "phone_mp", "dslr_mp", "reads", "repeats", "format", "mode")
@click.option("--work-dir", type=click.Path(file_okay=False), help="Keep pairs and datasets here (default: temp).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@handle_errors
def command(pairs: int, phone_mp: float, dslr_mp: float, reads: int, repeats: int, format: str,  # noqa: A002
            mode: str, work_dir: str | None, as_json: bool) -> None:  # fmt: skip
    """Dataset-build throughput with 1 and 2 workers, time per pair vs decode-only, memory, shard read speed."""
    from dpedkit.bench.build import bench_build

    config = BuildBenchConfig(pairs=pairs, phone_mp=phone_mp, dslr_mp=dslr_mp, reads=reads, repeats=repeats,
                              format=format, mode=mode)  # fmt: skip
    with console.status("benchmarking") as status:
        res = bench_build(work_dir, config=config, on_progress=lambda msg: status.update(msg))
    if as_json:
        print_json(res)
        return
    b, r, t, ok = res["build"], res["reads"], res["targets"], res["met"]
    rows = [
        ["pairs/s, 1 worker", b["1"]["pairs_per_s"], "", ""],
        ["pairs/s, 2 workers", b["2"]["pairs_per_s"], "", ""],
        ["speedup 2 vs 1", res["speedup_2_vs_1"], f">= {t['speedup_2_vs_1']}", ok["speedup_2_vs_1"]],
        ["speedup 2 vs 1 from CPU s/pair (idle cores)", res["cpu_speedup_2_vs_1"], "", ""],
        [
            "decode-only s/pair" + (" (LibRaw, both RAW files)" if format == "raw" else ""),
            res["decode_s_per_pair"],
            "",
            "",
        ],
        *(
            [["LibRaw half-size decode s/pair (alignment preview)", res["half_decode_s_per_pair"], "", ""]]
            if "half_decode_s_per_pair" in res
            else []
        ),  # fmt: skip
        ["end-to-end s/pair (1 worker)", b["1"]["s_per_pair"], "", ""],
        ["end-to-end / decode", res["e2e_over_decode"], f"<= {t['e2e_over_decode']}", ok["e2e_over_decode"]],
        ["end-to-end / decode (CPU time)", res["e2e_over_decode_cpu"], "", ""],
        *(
            [["end-to-end / the same build's decode stage", res["e2e_over_build_decode"], "", ""]]
            if "e2e_over_build_decode" in res
            else []
        ),  # fmt: skip
        ["end-to-end s/pair (2 workers)", b["2"]["s_per_pair"], "", ""],
        *[[f"  stage {k} s/pair", v, "", ""] for k, v in res["stages_s_per_pair_1_worker"].items()],
        [
            "peak MB per worker",
            res["peak_rss_mb_per_worker"],
            f"<= {t['peak_rss_mb_per_worker']:g}",
            ok["peak_rss_mb_per_worker"],
        ],  # fmt: skip
        ["1 and 2 workers identical", res["identical_1_vs_2"], "True", res["identical_1_vs_2"]],
        ["swapped-folders check, once per build (s)", res["swap_check_s"], "", ""],
        ["shard reads/s (uint8)", r["shard_raw_per_s"], "", ""],
        ["shard reads/s (float tensors)", r["shard_tensor_per_s"], "", ""],
        ["JPEG folder reads/s", r["jpeg_per_s"], "", ""],
        ["shard / JPEG read speed", res["read_ratio"], f">= {t['read_ratio']}", ok["read_ratio"]],
        ["shard reads/s without / with chunk checksums", r["checksum_read_cost"], "", ""],
        ["load average before / after", str(res["load_avg_before_after"]), f"{res['cpu_count']} CPUs", ""],
    ]
    title = f"dpedkit bench build: {pairs} pairs of {phone_mp:g} / {dslr_mp:g} MP {format.upper()}, {mode}"
    console.print(table(title, ["figure", "measured", "target", "met"], rows))
    missed = [k for k, met in ok.items() if not met]
    if missed:
        console.print(f"not met: {', '.join(missed)}; README.md, section 'Benchmarks', says where each stands and why")
