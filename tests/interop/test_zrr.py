"""import-zrr / export-zrr: the Zurich RAW-to-RGB layout <-> dpedkit RAW-to-RGB dataset, byte-exact round trips."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from dpedkit.dataset.format import DatasetDir
from dpedkit.dataset.loader import load_baseline, load_split
from dpedkit.errors import ConfigError, InputError
from dpedkit.interop.dped import export_dped, import_dped
from dpedkit.interop.zrr import export_zrr, import_zrr
from dpedkit.io import read_rgb
from dpedkit.io.camera import render_mosaic
from dpedkit.testing import write_dped_tree, write_synthetic_dataset, write_zrr_tree
from tests.interop.test_dped import _same_tree


def test_import_then_export_round_trips_the_files_exactly(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng)
    result = import_zrr(tree, tmp_path / "ds", rows_per_shard=2, jobs=2)
    assert result.pairs == {"train": 5, "test": 3} and result.shards == 5 and result.full_size == 1
    back = export_zrr(tmp_path / "ds", tmp_path / "back")
    assert back.copied_pairs == 8 and back.encoded_pairs == 0 and back.full_size == 1
    _same_tree(tree, tmp_path / "back")


def test_the_dataset_holds_the_mosaics_as_stored_and_the_sensor(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng)
    import_zrr(tree, tmp_path / "ds", rows_per_shard=2)
    phone, dslr = load_split(tmp_path / "ds", "test")
    assert phone.shape == (3, 32, 32, 1) and phone.dtype == np.uint16 and dslr.shape == (3, 32, 32, 3)
    for i in range(3):
        stored = cv2.imread(str(tree / "test" / "huawei_raw" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(phone[i, ..., 0], stored)  # not one value changed
        assert np.array_equal(dslr[i], read_rgb(tree / "test" / "canon" / f"{i}.jpg"))
    ds = DatasetDir(tmp_path / "ds")
    assert ds.is_raw() and ds.sensor() == {"cfa": "RGGB", "black": 0.0, "white": 1020.0}
    baseline = load_baseline(tmp_path / "ds", "test")  # the plain ISP: demosaic, grey world, gamma
    assert np.array_equal(baseline[1], render_mosaic(phone[1], "RGGB", 0.0, 1020.0))


def test_export_of_other_levels_maps_them_to_zrr_and_encodes(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=2)
    import_zrr(tree, tmp_path / "ds", sensor={"cfa": "RGGB", "black": 60, "white": 1023})
    shutil.rmtree(tmp_path / "ds" / "zrr_source")  # no original bytes: every row is encoded
    out = export_zrr(tmp_path / "ds", tmp_path / "out", quality=90)
    assert out.encoded_pairs == 4 and out.copied_pairs == 0 and out.full_size == 0
    phone, _ = load_split(tmp_path / "ds", "train")
    written = cv2.imread(str(tmp_path / "out" / "train" / "huawei_raw" / "1.png"), cv2.IMREAD_UNCHANGED)
    want = np.clip(np.rint((phone[1, ..., 0].astype(float) - 60) * 1020 / (1023 - 60)), 0, 1020)
    assert written.dtype == np.uint16 and np.array_equal(written, want)
    assert import_zrr(tmp_path / "out", tmp_path / "again").pairs == {"train": 2, "test": 2}


def test_clear_errors(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)
    with pytest.raises(InputError, match="no train/ or test/ folder"):
        import_zrr(tmp_path / "zrr" / "train", tmp_path / "x")
    with pytest.raises(ConfigError, match="CFA"):
        import_zrr(tree, tmp_path / "x", sensor={"cfa": "RGBG", "black": 0, "white": 1020})
    cv2.imwrite(str(tree / "train" / "huawei_raw" / "1.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="16-bit one-channel PNGs"):
        import_zrr(tree, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    rgb = write_synthetic_dataset(tmp_path / "rgb", n_train=1, n_test=1, patch=16)
    with pytest.raises(ConfigError, match="export-dped writes those"):
        export_zrr(rgb, tmp_path / "y")
    good = write_zrr_tree(tmp_path / "good", rng, n_train=1, n_test=1)
    import_zrr(good, tmp_path / "ds", sensor={"cfa": "GRBG", "black": 0, "white": 1020})
    with pytest.raises(ConfigError, match="export-zrr writes those"):
        export_dped(tmp_path / "ds", tmp_path / "dped", phone="p")
    export_zrr(tmp_path / "ds", tmp_path / "copy")  # byte copies: any CFA goes back as it came
    _same_tree(good, tmp_path / "copy")
    shutil.rmtree(tmp_path / "ds" / "zrr_source")
    with pytest.raises(ConfigError, match="RGGB"):  # rows to encode: ZRR's readers take R at (0, 0)
        export_zrr(tmp_path / "ds", tmp_path / "y")
    assert not (tmp_path / "y").exists() and not (tmp_path / "dped").exists()


def test_values_above_the_white_level_are_kept_and_another_layout_replaces_an_import_whole(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=1, n_test=1)
    hot = cv2.imread(str(tree / "train" / "huawei_raw" / "0.png"), cv2.IMREAD_UNCHANGED)
    hot[0, 0] = 1023  # a 10-bit sensor's top code, above ZRR's 1020
    cv2.imwrite(str(tree / "train" / "huawei_raw" / "0.png"), hot)
    import_zrr(tree, tmp_path / "ds")
    assert load_split(tmp_path / "ds", "train")[0][0, 0, 0, 0] == 1023  # as recorded
    import_dped(write_dped_tree(tmp_path / "dped", rng), tmp_path / "ds", phone="sony", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["dataset.json", "dped_source", "test", "train"]


def test_imported_zrr_data_trains_a_raw_model_and_is_scored_against_its_demosaic(tmp_path, rng):
    from dpedkit.config import EvalConfig, TrainConfig
    from dpedkit.evaluate import compare, evaluate, evaluate_arrays, load_test_pairs
    from dpedkit.inspect.report import ReportConfig, write_report
    from dpedkit.nn.checkpoint import load_model
    from dpedkit.train import train

    import_zrr(write_zrr_tree(tmp_path / "zrr", rng, n_train=8, n_test=2), tmp_path / "ds")
    cfg = TrainConfig(model="sid-unet", iters=2, batch=4, eval_every=2, device="cpu", samples=1, save_every="0",
                      model_config={"channels": 4, "levels": 2})  # fmt: skip
    train(tmp_path / "ds", tmp_path / "run", config=cfg)
    model = load_model(tmp_path / "run" / "best.pt")
    assert (model.cfg.cfa, model.cfg.black, model.cfg.white) == ("RGGB", 0.0, 1020.0)  # from the manifest
    result = evaluate(tmp_path / "run" / "best.pt", tmp_path / "ds", config=EvalConfig(device="cpu"))
    plain = evaluate_arrays(lambda t: t, load_baseline(tmp_path / "ds", "test"), load_test_pairs(tmp_path / "ds")[1])
    assert result.baseline == "demosaic" and result.identity.dped_psnr == plain[0].dped_psnr
    table = compare([tmp_path / "run" / "best.pt"], tmp_path / "ds", config=EvalConfig(device="cpu"))
    assert [r["model"] for r in table.rows] == ["best.pt", "demosaic"]
    assert table.rows[0]["dped_psnr"] == pytest.approx(result.model.dped_psnr)
    write_report(tmp_path / "ds", tmp_path / "r.html", config=ReportConfig(pair_views=0, samples=2, lowest=1))
    html = (tmp_path / "r.html").read_text()
    # two sample strips (mosaics shown with the sensor's levels); an import has no NCC: no lowest-NCC gallery
    assert html.count("data:image/png") >= 2 and "no NCC: imported" in html


def test_export_overwrite_replaces_only_its_own_files(tmp_path, rng):
    import_zrr(write_zrr_tree(tmp_path / "zrr", rng, n_train=3, n_test=1), tmp_path / "ds")
    export_zrr(tmp_path / "ds", tmp_path / "out")
    (tmp_path / "out" / "train" / "notes.txt").write_text("mine")
    (tmp_path / "out" / "train" / "huawei_raw" / "99.png").write_bytes(b"mine too")  # in a folder of the layout
    with pytest.raises(InputError, match="not empty"):
        export_zrr(tmp_path / "ds", tmp_path / "out")
    import_zrr(write_zrr_tree(tmp_path / "small", rng, n_train=2, n_test=1), tmp_path / "ds2")
    export_zrr(tmp_path / "ds2", tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "train" / "huawei_raw" / "2.png").exists()  # the earlier export's own row
    assert (tmp_path / "out" / "train" / "huawei_raw" / "99.png").read_bytes() == b"mine too"  # not in its record
    assert (tmp_path / "out" / "train" / "notes.txt").read_text() == "mine"
    assert len(list((tmp_path / "out" / "test" / "huawei_full_resolution").iterdir())) == 1
