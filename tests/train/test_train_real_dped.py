"""Training on the 100 real DPED iPhone/Canon pairs: SRCNN beats the identity, --init reproduces the reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dpedkit.interop.dped import import_dped
from dpedkit.train import TrainConfig, train

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def _layout(shared, root: Path, train_idx: range, test_idx: range) -> Path:
    """An official tree ``root/iphone`` of the real test pairs: ``train_idx`` as training data, ``test_idx`` as
    held-back test patches (renumbered from 0). Copies: import-dped follows no link out of the tree it reads."""
    src = shared("data", "dped", "iphone", "test_data", "patches")
    for parts, idx in ((("training_data",), train_idx), (("test_data", "patches"), test_idx)):
        for cam in ("iphone", "canon"):
            d = root.joinpath("iphone", *parts, cam)
            d.mkdir(parents=True)
            for new, i in enumerate(idx):
                shutil.copyfile(src / cam / f"{i}.jpg", d / f"{new}.jpg")
    return root


def test_srcnn_beats_the_identity_on_held_back_patches(shared, tmp_path):
    tree = _layout(shared, tmp_path / "dped", range(0, 80), range(80, 100))
    ds = tmp_path / "ds"
    import_dped(tree, ds, phone="iphone")
    config = TrainConfig(model="srcnn", iters=200, batch=4, lr=1e-3, eval_every=100, device="cpu", samples=2,
                         model_config={"channels1": 16, "channels2": 8})  # fmt: skip
    result = train(ds, tmp_path / "run", config=config)
    first, last = result.history[0], result.history[-1]
    assert last["step"] == 200
    assert last["psnr"] > first["identity_psnr"] + 1.0, (first, last)
    assert last["ms_ssim"] > first["ms_ssim"]


def test_init_from_the_official_iphone_model_starts_at_its_reference_psnr(shared, tmp_path):
    tree = _layout(shared, tmp_path / "dped", range(0, 10), range(0, 100))
    config = TrainConfig(iters=0, batch=2, vgg="random", device="cpu", phone="iphone", samples=0,
                         init=str(shared("models", "dped_orig") / "iphone_orig"))  # fmt: skip
    result = train(tree, tmp_path / "run", config=config)  # the official folder directly, no import
    row = result.history[0]
    assert row["step"] == 0
    assert row["psnr"] == pytest.approx(19.40, abs=0.02) and row["ms_ssim"] == pytest.approx(0.917, abs=0.001)
    assert row["identity_psnr"] == pytest.approx(14.40, abs=0.02)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["n_test"] == 100
