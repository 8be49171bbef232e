"""One way in: ``open_source`` reads a dpedkit dataset, an official DPED folder and a ZRR folder alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpedkit.dataset.loader import load_split
from dpedkit.dataset.source import open_source
from dpedkit.errors import InputError
from dpedkit.interop.zrr import import_zrr
from dpedkit.io import read_rgb
from dpedkit.testing import write_dped_tree, write_synthetic_dataset, write_zrr_tree


def test_a_dataset(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=6, n_test=3, patch=16, seed=2)
    src = open_source(ds)
    assert not src.is_raw and src.baseline("test") is None and src.baseline_name() == "identity"
    phone, dslr = src.arrays("test")
    want = load_split(ds, "test")
    assert np.array_equal(phone, want[0]) and np.array_equal(dslr, want[1])
    reader = src.reader("train")
    assert len(reader) == 6 and np.array_equal(reader.raw(5)[1], load_split(ds, "train")[1][5])


def test_an_official_dped_folder(tmp_path, rng):
    root = write_dped_tree(tmp_path / "dped", rng, n_train=3, n_test=2)
    src = open_source(root, phone="sony")
    phone, dslr = src.arrays("test")
    assert phone.shape == (2, 32, 32, 3) and not src.is_raw
    first = root / "sony" / "test_data" / "patches" / "sony" / "0.jpg"
    assert np.array_equal(src.reader("test").raw(0)[0], read_rgb(first)) and np.array_equal(phone[0], read_rgb(first))
    with pytest.raises(InputError, match="no RAW sensor"):
        src.sensor()


def test_a_raw_dataset_says_so_from_its_manifest(tmp_path, rng):
    import_zrr(write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=2), tmp_path / "ds")
    src = open_source(tmp_path / "ds")
    assert src.is_raw and src.sensor()["cfa"] == "RGGB" and src.baseline_name() == "demosaic"
    assert src.arrays("test")[0].shape[-1] == 1 and src.baseline("test").shape[-1] == 3


def test_anything_else_is_one_clear_error(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(InputError, match="not a dpedkit dataset .* not an official DPED folder .* not a ZRR folder"):
        open_source(tmp_path / "photos")


def test_a_zrr_folder_read_in_place_equals_its_import(tmp_path, rng):
    root = write_zrr_tree(tmp_path / "zrr", rng, n_train=3, n_test=2)
    import_zrr(root, tmp_path / "ds")
    here, imported = open_source(root), open_source(tmp_path / "ds")
    assert here.is_raw and here.sensor() == imported.sensor() and here.baseline_name() == imported.baseline_name()
    for split in ("train", "test"):
        for a, b in zip(here.arrays(split), imported.arrays(split), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(here.baseline("test"), imported.baseline("test"))
    reader = here.reader("train")
    assert len(reader) == 3 and np.array_equal(reader.raw(2)[0], imported.arrays("train")[0][2])


def test_a_raw_model_trains_and_scores_on_a_zrr_folder(tmp_path, rng):
    from dpedkit.config import EvalConfig, TrainConfig
    from dpedkit.evaluate import evaluate
    from dpedkit.train import train

    root = write_zrr_tree(tmp_path / "zrr", rng, n_train=4, n_test=2)
    cfg = TrainConfig(model="sid-unet", iters=2, batch=2, eval_every=2, device="cpu", model_config={"channels": 4,
                      "levels": 2}, data_mode="memory", samples=1)  # fmt: skip
    result = train(root, tmp_path / "run", config=cfg)
    assert result.step == 2
    here = evaluate(tmp_path / "run" / "best.pt", root, config=EvalConfig(device="cpu")).to_dict()
    import_zrr(root, tmp_path / "ds")
    imported = evaluate(tmp_path / "run" / "best.pt", tmp_path / "ds", config=EvalConfig(device="cpu")).to_dict()
    assert here["baseline"] == "demosaic" and here["n_pairs"] == 2
    assert json.dumps(here, sort_keys=True) == json.dumps(imported, sort_keys=True)  # NaN-safe: the same scores


def test_full_test_pairs_come_from_the_source(tmp_path, rng):
    from dpedkit.config import EvalConfig
    from dpedkit.evaluate.full import evaluate_full

    zrr = write_zrr_tree(tmp_path / "zrr", rng, n_train=1, n_test=1)
    dped = write_dped_tree(tmp_path / "dped", rng, n_train=1, n_test=1)
    assert open_source(zrr).test_full() == [] and open_source(dped, phone="sony").test_full() == []
    with pytest.raises(InputError, match="no full aligned test pairs"):
        evaluate_full("unused.pt", dped / "sony", config=EvalConfig(device="cpu"))


def test_inspect_names_the_import_that_makes_a_dataset_of_another_layout(tmp_path, rng):
    from dpedkit.inspect.report import write_report
    from dpedkit.inspect.summary import summarize_dataset

    dped, zrr = write_dped_tree(tmp_path / "dped", rng), write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)
    for folder, layout in ((dped, "dped"), (dped / "sony", "dped"), (zrr, "zrr")):
        with pytest.raises(InputError, match=f"`dpedkit import-{layout} {folder} -o DATASET` makes one"):
            summarize_dataset(folder)
        with pytest.raises(InputError, match=f"import-{layout}"):
            write_report(folder, tmp_path / "r.html")
    with pytest.raises(InputError, match="nor an aligned pair folder"):  # a folder of no known layout
        write_report(tmp_path, tmp_path / "r.html")
