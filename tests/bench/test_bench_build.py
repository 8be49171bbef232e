import pytest

from dpedkit.bench.build import BuildBenchConfig, bench_build
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
    assert {"decode", "align", "patches", "write"} <= set(res["stages_s_per_pair_1_worker"])


def test_bench_config_validation():
    with pytest.raises(ConfigError, match="dslr_mp"):
        BuildBenchConfig(phone_mp=13, dslr_mp=5)
