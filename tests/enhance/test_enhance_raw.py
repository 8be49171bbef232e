"""``dpedkit enhance RAW_MODEL photo.dng``: a learned ISP on a whole RAW file, whole or in strips, same result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpedkit.config import EnhanceConfig
from dpedkit.enhance import enhance
from dpedkit.enhance.raw import isp_array, packed_planes
from dpedkit.io import read_image
from dpedkit.io.camera import BAYER, read_mosaic
from dpedkit.io.camera_write import encode_dng
from dpedkit.nn.raw import RawGenerator, RawGeneratorConfig, SIDUNet, SIDUNetConfig, normalise_mosaic, pack_bayer


@pytest.mark.parametrize("cfa", BAYER)
def test_packed_planes_are_the_networks_packing(cfa, rng):
    mosaic = rng.integers(0, 4096, (12, 10), dtype=np.uint16)
    want = pack_bayer(normalise_mosaic(torch.from_numpy(mosaic.astype(np.float32))[None, None], 64, 4000), cfa)
    assert np.array_equal(packed_planes(mosaic, cfa, 64, 4000), want[0].permute(1, 2, 0).numpy())


def _meta(cfa="RGGB", orientation=1):
    return {"cfa": cfa, "black_level": [64] * 4, "white_level": 4000, "orientation": orientation}


@pytest.mark.parametrize(
    "net",
    [
        SIDUNet(SIDUNetConfig(channels=4, levels=3, black=64, white=4000)),
        RawGenerator(RawGeneratorConfig(channels=8, blocks=2, black=64, white=4000)),
    ],  # fmt: skip
    ids=["sid-unet", "dped-raw"],
)
def test_strips_give_the_whole_image_result(net, rng, tmp_path):
    torch.manual_seed(0)
    net = net.eval()
    mosaic = rng.integers(64, 4000, (150, 92), dtype=np.uint16)  # 75 packed rows: not a multiple of the pooling
    whole, n_whole = isp_array(net, mosaic, _meta(), device=torch.device("cpu"), max_memory=64.0)
    strips, n = isp_array(net, mosaic, _meta(), device=torch.device("cpu"), max_memory=64.0, strip_rows=24,
                          spill_dir=str(tmp_path))  # fmt: skip
    assert n_whole == 0 and n >= 4 and whole.shape == (150, 92, 3)
    assert float(np.abs(whole - strips).max()) < 2e-5
    with torch.inference_mode():
        direct = net(torch.from_numpy(packed_planes(mosaic, "RGGB", 64, 4000)).movedim(-1, 0)[None])
    assert np.allclose(whole, direct[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6)


def test_enhance_on_a_dng_writes_rgb_of_the_sensor_size_upright(tmp_path, rng):
    rgb = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "flat.dng").write_bytes(encode_dng(rgb, cfa="GRBG"))
    (tmp_path / "in" / "turned.dng").write_bytes(encode_dng(rgb, orientation=6))
    (tmp_path / "in" / "photo.png").write_bytes(b"")  # not RAW: a learned ISP cannot read it
    net = SIDUNet(SIDUNetConfig(channels=4, levels=2, black=512, white=16383))
    result = enhance(net, [tmp_path / "in"], tmp_path / "out", config=EnhanceConfig(device="cpu"))
    assert [f.reason for _, f in result.failures] == ["unreadable"] and "not a RAW file" in result.failures[0][1].detail
    sizes = {r.source.rsplit("/", 1)[1]: (r.width, r.height) for r in result.images}
    mosaic, meta = read_mosaic(tmp_path / "in" / "flat.dng")
    assert mosaic.shape == (64, 48) and sizes == {"flat.dng": (48, 64), "turned.dng": (64, 48)}
    assert read_image(tmp_path / "out" / "turned.png").rgb.shape == (48, 64, 3)  # turned upright as LibRaw turns


def test_a_small_memory_budget_plans_strips_with_their_halos_and_keeps_the_result(rng):
    from dpedkit.enhance.strips import FIXED_OVERHEAD, GB

    net = SIDUNet(SIDUNetConfig(channels=4, levels=3, black=64, white=4000)).eval()
    mosaic = rng.integers(64, 4000, (150, 92), dtype=np.uint16)
    whole, _ = isp_array(net, mosaic, _meta(), device=torch.device("cpu"), max_memory=64.0)
    tight = (FIXED_OVERHEAD + 75 * 46 * 3 * 10 + 300_000) / GB  # room for a few packed rows beyond the image
    planned, n = isp_array(net, mosaic, _meta(), device=torch.device("cpu"), max_memory=tight)
    assert n > 1 and float(np.abs(whole - planned).max()) < 2e-5


def test_a_dng_with_black_above_white_is_that_photos_failure(tmp_path, rng):
    """Issue 20: black > white stopped the whole batch and named no file; now it is recorded and the rest goes on."""
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dng").write_bytes(encode_dng(rgb, black_level=900, white_level=800))
    (tmp_path / "in" / "b.dng").write_bytes(encode_dng(rgb))
    net = SIDUNet(SIDUNetConfig(channels=4, levels=2, black=512, white=16383))
    result = enhance(net, [tmp_path / "in"], tmp_path / "out", config=EnhanceConfig(device="cpu"))
    assert [r.source.rsplit("/", 1)[1] for r in result.images] == ["b.dng"]
    ((src, failure),) = result.failures
    assert src.endswith("a.dng") and "black level 900 is not below the white level 800" in failure.detail
