"""Camera files: HEIC/HEIF through pillow-heif and RAW through rawpy (LibRaw), checked against what was written."""

from __future__ import annotations

import numpy as np
import pytest

from dpedkit.errors import InputError
from dpedkit.geometry import turn_image
from dpedkit.io import read_capture_time, read_image
from dpedkit.io.camera_write import encode_dng, encode_heif

T = 1_777_629_600.25  # 2026-05-01 10:00:00.250 UTC


@pytest.fixture
def upright() -> np.ndarray:
    """A smooth, asymmetric 96 x 128 photo: a turn or a flip of it is far from it."""
    y, x = np.mgrid[0:96, 0:128] / np.array([95.0, 127.0])[:, None, None]
    rgb = np.dstack([0.15 + 0.7 * x, 0.2 + 0.6 * y * y, 0.8 - 0.5 * x * y])
    rgb[10:30, 12:40] = (0.9, 0.1, 0.1)  # a red block near the top-left corner
    return (rgb * 255).round().astype(np.uint8)


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_heic_8_bit(tmp_path, upright):
    (tmp_path / "a.heic").write_bytes(encode_heif(upright, quality=95))
    img = read_image(tmp_path / "a.heic")
    assert img.format == "heif" and img.bit_depth == 8 and img.rgb.dtype == np.uint8
    assert img.rgb.shape == upright.shape and _mean_abs(img.rgb, upright) < 3
    assert img.rgb.flags.writeable  # torch.from_numpy warns on libheif's read-only buffer (enhance on a HEIC)


def test_heic_10_bit_keeps_its_precision(tmp_path):
    ramp = np.repeat(np.linspace(0, 65535, 1024).round().astype(np.uint16)[None, :, None], 64, axis=0)
    rgb = np.repeat(ramp, 3, axis=2)
    (tmp_path / "deep.heic").write_bytes(encode_heif(rgb, quality=100, bit_depth=10))
    img = read_image(tmp_path / "deep.heic", keep_16bit=True)
    assert img.bit_depth == 10 and img.rgb.dtype == np.uint16
    row = img.rgb[32, :, 1].astype(np.int64)
    assert len(np.unique(row)) > 400  # far more than the 256 levels an 8-bit decode would leave
    assert np.abs(row - ramp[32, :, 0]).mean() < 2 * 65535 / 1023  # within two 10-bit steps, on average
    assert row.max() > 65000  # full scale: 10-bit samples are spread over 0..65535, not left at 0..1023
    assert read_image(tmp_path / "deep.heic").rgb.dtype == np.uint8  # the final conversion, by default


def test_heic_transform_and_exif_orientation_turn_it_once(tmp_path, upright):
    # orientation 6: the stored pixels are the upright photo turned counter-clockwise; shown, they turn back.
    # pillow-heif writes it as the HEIF's own rotation AND keeps the EXIF tag, as iPhones do.
    (tmp_path / "turned.heic").write_bytes(encode_heif(turn_image(upright, -90), quality=95, orientation=6))
    img = read_image(tmp_path / "turned.heic")
    assert img.rgb.shape == upright.shape, "not turned, or turned twice (EXIF applied after the HEIF transform)"
    assert _mean_abs(img.rgb, upright) < 3
    assert img.metadata["exif_orientation_ignored"] == 6 and img.orientation == 1


def test_heif_is_known_by_its_content(tmp_path, upright):
    (tmp_path / "misnamed.jpg").write_bytes(encode_heif(upright))
    assert read_image(tmp_path / "misnamed.jpg").format == "heif"


@pytest.mark.parametrize("cfa", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_dng_demosaics_back_to_the_photo(tmp_path, upright, cfa):
    (tmp_path / "a.dng").write_bytes(encode_dng(upright, cfa=cfa, black_level=256, white_level=4095))
    img = read_image(tmp_path / "a.dng", keep_16bit=True)
    assert img.format == "raw" and img.rgb.dtype == np.uint16 and img.rgb.shape == upright.shape
    assert _mean_abs(img.rgb[4:-4, 4:-4] / 257, upright[4:-4, 4:-4]) < 4  # demosaicing error, off the border
    meta = img.metadata
    assert meta["cfa"] == cfa and meta["black_level"] == [256] * 4 and meta["white_level"] == 4095
    assert meta["as_shot_wb"][:3] == pytest.approx([2.0, 1.0, 1 / 0.7], rel=1e-3)  # 1 / AsShotNeutral
    assert meta["image_size"] == [128, 96] and not meta["linear"]


def test_dng_orientation_half_size_and_linear(tmp_path, upright):
    (tmp_path / "turned.dng").write_bytes(encode_dng(turn_image(upright, -90), orientation=6))
    img = read_image(tmp_path / "turned.dng")
    assert img.rgb.shape == upright.shape and _mean_abs(img.rgb[4:-4, 4:-4], upright[4:-4, 4:-4]) < 4
    assert img.metadata["image_size"] == [128, 96]

    half = read_image(tmp_path / "turned.dng", half_size=True)
    assert half.rgb.shape == (48, 64, 3) and half.metadata["half_size"]

    srgb = read_image(tmp_path / "turned.dng", keep_16bit=True).rgb / 65535
    lin = read_image(tmp_path / "turned.dng", keep_16bit=True, linear=True).rgb / 65535
    expected = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    assert np.abs(lin - expected)[4:-4, 4:-4].mean() < 0.01  # linear = the sRGB output without its curve


def test_camera_capture_times(tmp_path, upright):
    (tmp_path / "p.heic").write_bytes(encode_heif(upright, capture_time=T, offset="+02:00"))
    (tmp_path / "d.dng").write_bytes(encode_dng(upright, capture_time=T))
    (tmp_path / "n.dng").write_bytes(encode_dng(upright))
    # the offset is the local clock's: "+02:00" local time is two hours ahead of UTC
    assert read_capture_time(tmp_path / "p.heic") == pytest.approx(T - 7200, abs=1e-3)
    assert read_capture_time(tmp_path / "d.dng") == pytest.approx(T, abs=1e-3)
    assert read_capture_time(tmp_path / "n.dng") is None


@pytest.mark.parametrize("name", ["garbage.dng", "garbage.cr2", "garbage.nef", "truncated.dng"])
def test_a_raw_file_libraw_cannot_read_is_an_input_error_naming_it(tmp_path, upright, name):
    path = tmp_path / name
    data = encode_dng(upright)
    path.write_bytes(data[: len(data) // 3] if name.startswith("truncated") else b"\x00not a raw file" * 50)
    with pytest.raises(InputError) as exc:
        read_image(path)
    assert str(path) in str(exc.value)


def test_raw_and_heif_pixel_limits(tmp_path, upright):
    (tmp_path / "a.dng").write_bytes(encode_dng(upright))
    (tmp_path / "a.heic").write_bytes(encode_heif(upright))
    for name in ("a.dng", "a.heic"):
        with pytest.raises(InputError, match="limit"):
            read_image(tmp_path / name, max_pixels=1000)


def test_a_cfa_pattern_naming_a_missing_colour_is_no_cfa(tmp_path):
    """Issue 20: a DNG whose CFAPattern names colour 3 of an "RGB" description was an IndexError traceback."""
    from types import SimpleNamespace

    from dpedkit.io.camera import raw_parameters

    sizes = SimpleNamespace(flip=0, width=4, height=4, raw_width=4, raw_height=4)
    levels = {"black_level_per_channel": [0] * 4, "white_level": 1023, "color_matrix": np.eye(3)}
    pattern = np.array([[0, 1], [1, 3]])
    raw = SimpleNamespace(color_desc=b"RGB", raw_pattern=pattern, camera_whitebalance=[1] * 4, sizes=sizes, **levels)
    assert raw_parameters(raw)["cfa"] is None
    raw.raw_pattern = np.array([[0, 1], [1, 2]])
    assert raw_parameters(raw)["cfa"] == "RGGB"
