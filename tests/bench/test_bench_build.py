import pytest

from dpedkit.bench.build import BuildBenchConfig, bench_build, interleaved_rates
from dpedkit.errors import ConfigError


@pytest.mark.slow
def test_bench_build_smoke(tmp_path):
    cfg = BuildBenchConfig(pairs=2, phone_mp=0.1, dslr_mp=0.2, reads=50, jpeg_patches=40, repeats=1)
    seen = []
    res = bench_build(tmp_path, config=cfg, on_progress=seen.append)
    assert res["identical_1_vs_2"] is True
    assert set(res["build"]) == {"1", "2"} and all(b["pairs_per_s"] > 0 for b in res["build"].values())
    assert res["decode_s_per_pair"] > 0 and res["peak_rss_mb_per_worker"] > 0
    n = res["reads"]["patches"]
    assert 0 < n <= 40 and len(list((tmp_path / "dped" / "canon").iterdir())) == n
    assert set(res["met"]) == set(res["targets"]) and len(seen) >= 4
    stages = res["stages_s_per_pair_1_worker"]
    assert {"decode", "align", "patches", "write"} <= set(stages)
    assert res["e2e_over_build_decode"] == pytest.approx(res["build"]["1"]["s_per_pair"] / stages["decode"])


def test_read_layouts_take_turns_on_their_own_indices():
    calls = []
    readers = {name: (lambda i, name=name: calls.append((name, i))) for name in ("shard", "jpeg")}
    rates = interleaved_rates(readers, 1000, 7, block=3, seed=4)
    assert set(rates) == {"shard", "jpeg"} and all(r > 0 for r in rates.values())
    timed = calls[2 * 7 :]  # after each reader's warm-up (on its first 20 indices: here all 7)
    seen = {name: [i for n, i in timed if n == name] for name in readers}
    assert seen["shard"] == [i for n, i in calls[:7]] and len(seen["jpeg"]) == 7  # each its whole order, once
    assert seen["shard"] != seen["jpeg"]  # drawn apart: no reader meets rows another has just read
    turns = [timed[k][0] for k in range(0, len(timed), 3)]  # blocks of 3, 3, 1 calls
    assert turns[:4] == ["shard", "jpeg", "jpeg", "shard"]  # reversed every other block: neither always first


def test_bench_config_validation():
    with pytest.raises(ConfigError, match="dslr_mp"):
        BuildBenchConfig(phone_mp=13, dslr_mp=5)


@pytest.mark.slow
def test_bench_build_raw_measures_libraw_decode_and_the_preview(tmp_path):
    cfg = BuildBenchConfig(pairs=2, phone_mp=0.2, dslr_mp=0.4, reads=20, jpeg_patches=10, repeats=1, format="raw")
    res = bench_build(tmp_path, config=cfg)
    assert sorted(p.suffix for p in (tmp_path / "raw" / "phone").iterdir()) == [".dng", ".dng"]
    assert res["identical_1_vs_2"] is True and res["build"]["1"]["pairs_per_s"] > 0
    assert 0 < res["half_decode_s_per_pair"] < res["decode_s_per_pair"]  # the preview is LibRaw's fast path
    assert "e2e_over_build_decode" not in res  # a RAW build decodes in two steps: its decode stage is no floor


@pytest.mark.slow
def test_bench_build_raw2rgb(tmp_path):
    cfg = BuildBenchConfig(pairs=2, phone_mp=0.2, dslr_mp=0.4, reads=20, jpeg_patches=10, repeats=1, format="raw",
                           mode="raw2rgb")  # fmt: skip
    res = bench_build(tmp_path, config=cfg)
    assert res["identical_1_vs_2"] is True and res["build"]["1"]["pairs_per_s"] > 0
    assert res["config"]["mode"] == "raw2rgb"
    with pytest.raises(ConfigError, match="--format raw"):
        BuildBenchConfig(mode="raw2rgb")
