"""Real camera files through the aligner: HEIC and DNG pairs, turned and mirrored phone photos, swapped folders.

Every figure is measured against the synthetic truth (``dpedkit synth --phone-format heic --dslr-format dng
--rotate ...``) or, for the shared City100 pairs, against the same pair aligned upright.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import dpedkit.align.pipeline as pipeline
from dpedkit.align import align_files, align_pair
from dpedkit.config import AlignConfig, BuildConfig
from dpedkit.dataset.build import build_dataset
from dpedkit.geometry import mean_corner_error
from dpedkit.io import read_image, read_rgb, write_image
from dpedkit.synth.files import turn_phone
from dpedkit.synth.pairs import iter_pairs, synthesize

SIZES = {"phone_mp": 1.0, "dslr_mp": 2.0}


def corner_errors(folder):
    """``[(AlignResult, corner error px)]`` of every synthetic pair in ``folder`` against its truth."""
    out = []
    for phone, dslr, truth in iter_pairs(folder):
        res = align_files(phone, dslr)
        err = mean_corner_error(res.H_phone_to_dslr, np.asarray(truth["H_phone_to_dslr"]), *res.phone_size)
        out.append((res, truth, err if res.ok else None))
    return out


@pytest.mark.slow
def test_heic_phone_and_dng_dslr_align_and_keep_patches_as_jpeg_does(tmp_path):
    synthesize(tmp_path / "jpg", n=3, seed=0, **SIZES)
    synthesize(tmp_path / "cam", n=3, seed=0, phone_format="heic", dslr_format="dng", **SIZES)
    assert {p.suffix for p in (tmp_path / "cam" / "phone").iterdir()} == {".heic"}
    assert {p.suffix for p in (tmp_path / "cam" / "dslr").iterdir()} == {".dng"}

    rows = corner_errors(tmp_path / "cam")
    assert all(r.ok for r, _, _ in rows), [r.reason for r, _, _ in rows]
    errors = [e for _, _, e in rows]
    print("HEIC/DNG corner error px:", [round(e, 3) for e in errors])
    assert np.median(errors) <= 0.1 and max(errors) <= 0.5
    raw = rows[0][0].sources["dslr"]  # what LibRaw says of the DNG, kept with the result
    assert raw["cfa"] == "RGGB" and raw["white_level"] == 16383 and rows[0][0].sources["phone"]["format"] == "heif"

    cfg = BuildConfig(test_images=0)
    jpg = build_dataset(tmp_path / "jpg" / "phone", tmp_path / "jpg" / "dslr", tmp_path / "ds-jpg", config=cfg)
    cam = build_dataset(tmp_path / "cam" / "phone", tmp_path / "cam" / "dslr", tmp_path / "ds-cam", config=cfg)
    kept = jpg.patches["train"], cam.patches["train"]
    print("kept patches JPEG vs HEIC/DNG:", kept)
    assert cam.ok == 3 and abs(kept[1] - kept[0]) <= 0.02 * kept[0]


def test_a_raw_pair_is_fully_demosaiced_only_once_it_aligns(tmp_path, monkeypatch):
    synthesize(tmp_path, n=1, seed=1, phone_mp=0.3, dslr_mp=0.6, phone_format="dng", dslr_format="dng")
    phone, dslr, truth = next(iter(iter_pairs(tmp_path)))
    calls = []
    real = pipeline.read_image

    def counting(path, **kw):
        calls.append(("half" if kw.get("half_size") else "full", path.name if hasattr(path, "name") else path))
        return real(path, **kw)

    monkeypatch.setattr(pipeline, "read_image", counting)
    small = AlignConfig(work_mp=0.05)  # half size holds the pixels the features need
    res = align_files(phone, dslr, config=small)
    assert res.ok and sorted(k for k, _ in calls) == ["full", "full", "half", "half"]
    assert mean_corner_error(res.H_phone_to_dslr, np.asarray(truth["H_phone_to_dslr"]), *res.phone_size) < 0.3

    calls.clear()
    other = tmp_path / "other"
    synthesize(other, n=2, seed=5, phone_mp=0.3, dslr_mp=0.6, dslr_format="dng")
    rejected = align_files(phone, sorted((other / "dslr").iterdir())[1], config=small)  # another scene
    assert not rejected.ok and [k for k, _ in calls] == ["half", "half"]  # no full demosaic was paid for
    calls.clear()
    assert align_files(phone, dslr).ok  # default work_mp: half size is too small, features need the full image
    assert sorted(k for k, _ in calls) == ["full", "full", "half", "half"]


@pytest.mark.slow
@pytest.mark.parametrize("light", ["normal", "tint", "shadow"])
def test_a_raw_side_aligns_as_well_as_its_pixels_rendered(tmp_path, light):
    """Issue 21: features of a RAW file's half-size output keep every channel's detail (tinted light, shadows).

    Each pair is aligned from its DNG files and from LibRaw's full rendering of the same files saved as PNG:
    across the pairs, the RAW side's mean corner error is within 1.2x and its inliers at least 0.7x the PNG's.
    """
    synthesize(tmp_path / "cam", n=2, seed=1, phone_mp=1.0, dslr_mp=2.0, phone_format="dng", dslr_format="dng",
               light=light)  # fmt: skip
    cfg = AlignConfig(work_mp=0.2)  # both sides on the half-size path (the features need under half the pixels)
    stats = {"raw": [], "png": []}
    for phone, dslr, truth in iter_pairs(tmp_path / "cam"):
        rendered = [tmp_path / f"{p.stem}-{side}.png" for p, side in ((phone, "p"), (dslr, "d"))]
        for src, dst in zip((phone, dslr), rendered, strict=True):
            write_image(dst, read_image(src).rgb)
        for kind, (a, b) in {"raw": (phone, dslr), "png": tuple(rendered)}.items():
            res = align_files(a, b, config=cfg)
            assert res.ok, (kind, res.reason)
            err = mean_corner_error(res.H_phone_to_dslr, np.asarray(truth["H_phone_to_dslr"]), *res.phone_size)
            stats[kind].append((res.inliers, err))
    (raw_in, raw_err), (png_in, png_err) = (np.mean(stats[k], axis=0) for k in ("raw", "png"))
    print(light, "RAW vs PNG: inliers", raw_in, png_in, "corner error px", round(raw_err, 3), round(png_err, 3))
    assert raw_err <= 1.2 * png_err and raw_in >= 0.7 * png_in


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_turned_phone_photo_is_aligned_on_its_own_grid_and_the_turn_recorded(tmp_path, turn):
    synthesize(tmp_path / "up", n=2, seed=2, phone_mp=0.3, dslr_mp=0.6)
    synthesize(tmp_path / "turned", n=2, seed=2, phone_mp=0.3, dslr_mp=0.6, rotate=turn)
    for (res, truth, err), (up, _, up_err) in zip(
        corner_errors(tmp_path / "turned"), corner_errors(tmp_path / "up"), strict=True
    ):
        assert res.ok and res.orientation_fix == turn and up.orientation_fix == 0
        assert res.phone_size == tuple(truth["phone_size"])  # the turned photo's own grid
        assert err <= 0.3 and abs(err - up_err) <= 0.05  # as good as the upright photo
        assert res.to_json()["orientation_fix"] == turn


def test_an_upright_pair_and_the_same_pair_turned_give_the_same_homography(tmp_path):
    synthesize(tmp_path, n=1, seed=4, phone_mp=0.3, dslr_mp=0.6)
    phone_path, dslr_path, _ = next(iter(iter_pairs(tmp_path)))
    phone, dslr = read_rgb(phone_path), read_rgb(dslr_path)
    up = align_pair(phone, dslr)
    for turn in (90, 180, 270):
        turned, h_expected = turn_phone(phone, up.H_phone_to_dslr, turn)
        res = align_pair(turned, dslr)
        assert res.orientation_fix == turn
        assert mean_corner_error(res.H_phone_to_dslr, h_expected, turned.shape[1], turned.shape[0]) < 1e-6
        x0, y0, x1, y1 = res.crop
        assert np.array_equal(res.phone, turned[y0:y1, x0:x1])  # patches stay on the phone's pixel grid


def test_a_mirrored_phone_photo_is_rejected_as_mirrored(tmp_path):
    synthesize(tmp_path, n=1, seed=0, phone_mp=0.3, dslr_mp=0.6)
    phone_path, dslr_path, _ = next(iter(iter_pairs(tmp_path)))
    phone, dslr = read_rgb(phone_path), read_rgb(dslr_path)
    res = align_pair(np.ascontiguousarray(phone[:, ::-1]), dslr)
    assert res.status == "mirrored" and "mirror image" in res.reason
    assert align_pair(phone, dslr).ok


def test_swapped_folders_build_refuses_and_align_warns(tmp_path):
    from dpedkit_cli.main import cli

    synthesize(tmp_path / "raw", n=3, seed=0, phone_mp=0.3, dslr_mp=0.6)
    phone, dslr = tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr"
    runner = CliRunner()
    out = tmp_path / "ds"
    res = runner.invoke(cli, ["build", str(dslr), str(phone), "-o", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "look swapped" in text and str(phone) in text and str(dslr) in text and "--allow-swapped" in text
    assert not out.exists()  # refused before anything was written

    res = runner.invoke(cli, ["build", str(dslr), str(phone), "-o", str(out), "--quiet", "--allow-swapped"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(cli, ["build", str(phone), str(dslr), "-o", str(tmp_path / "ok"), "--quiet"]).exit_code == 0

    pair = runner.invoke(cli, ["align", str(dslr / "0000.jpg"), str(phone / "0000.jpg"), "-o", str(tmp_path / "a")])
    text = " ".join(pair.output.split())
    assert pair.exit_code == 0 and "wrong way round" in text and "DSLR px per phone px" in text
    assert "sharpness" in text
    fine = runner.invoke(cli, ["align", str(phone / "0000.jpg"), str(dslr / "0000.jpg"), "-o", str(tmp_path / "b")])
    assert fine.exit_code == 0 and "wrong way round" not in fine.output


@pytest.mark.shared
@pytest.mark.slow
def test_city100_pairs_turned_in_code_align_as_upright_and_mirrored_ones_are_rejected(shared):
    root = shared("data", "city100")
    turns = [90, 180, 270]
    for k, phone_path in enumerate(sorted((root / "iPhoneX").glob("*.png"))):
        phone, dslr = read_rgb(phone_path), read_rgb(root / "NikonD5500" / phone_path.name)
        up = align_pair(phone, dslr)
        assert up.ok and up.orientation_fix == 0, phone_path.name
        for turn in turns[k % 3 :: 3] if k >= 1 else turns:  # every turn of the first pair, then one turn a pair
            turned, h_expected = turn_phone(phone, up.H_phone_to_dslr, turn)
            res = align_pair(turned, dslr)
            err = mean_corner_error(res.H_phone_to_dslr, h_expected, turned.shape[1], turned.shape[0])
            assert res.ok and res.orientation_fix == turn and err <= 0.05, (phone_path.name, turn, res.reason)
        mirrored = align_pair(np.ascontiguousarray(phone[:, ::-1]), dslr)
        assert mirrored.status == "mirrored", (phone_path.name, mirrored.status, mirrored.reason)
