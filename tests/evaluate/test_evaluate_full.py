"""Full-image evaluation: strict scores, and tolerant ones that remove a residual shift and mask what disagrees."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dpedkit.evaluate.full import colour_mapped, residual_shift, score_pair
from dpedkit.testing import sample_photo


def _moved(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    return cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_residual_shift_and_colour_map_are_recovered():
    dslr = sample_photo(320, 240, seed=3)
    phone = _moved(dslr, -1.5, 0.75)  # the phone sees the scene 1.5 px to the left, 0.75 px lower
    dx, dy = residual_shift(phone.astype(np.float32) / 255, dslr.astype(np.float32) / 255, 3.0)
    assert abs(dx - 1.5) < 0.1 and abs(dy + 0.75) < 0.1
    assert residual_shift(phone.astype(np.float32) / 255, dslr.astype(np.float32) / 255, 1.0) == (0.0, 0.0)

    x = dslr.astype(np.float32) / 255
    warm = np.clip(x @ np.array([[0.9, 0.05, 0], [0, 0.8, 0], [0.02, 0, 0.7]], np.float32).T + 0.05, 0, 1)
    back = colour_mapped(warm, x, np.ones(x.shape[:2], bool))
    assert np.abs(back - x).mean() < 0.01  # an affine colour change is undone by the least-squares map


def test_tolerant_scores_forgive_a_shift_that_strict_ones_punish():
    dslr = sample_photo(320, 240, seed=4)
    out = np.clip(dslr.astype(np.float32) / 255 * 0.9 + 0.03, 0, 1)  # a "model" close to the DSLR photo
    aligned = score_pair(out, dslr, dslr)
    moved = _moved(dslr, 1.5, -1.0)
    off = score_pair(out, dslr, moved)
    assert off["shift"] == pytest.approx([1.5, -1.0], abs=0.1)
    assert off["model"]["psnr"] < aligned["model"]["psnr"] - 2.0  # strict: 1.5 px costs dB
    assert off["model"]["tolerant_psnr"] == pytest.approx(aligned["model"]["tolerant_psnr"], abs=0.5)
    assert off["model"]["tolerant_ssim"] == pytest.approx(aligned["model"]["tolerant_ssim"], abs=0.02)
    assert off["identity"]["psnr"] < off["identity"]["tolerant_psnr"]


@pytest.mark.shared
@pytest.mark.slow
def test_evaluate_full_on_a_dataset_built_from_city100(shared, tmp_path):
    from dpedkit_cli.main import cli

    from dpedkit.config import BuildConfig
    from dpedkit.dataset.build import build_dataset
    from dpedkit.io import read_rgb
    from dpedkit.nn.checkpoint import save_checkpoint
    from dpedkit.nn.generator import Generator, GeneratorConfig

    city = shared("data", "city100")
    for side, cam in (("phone", "iPhoneX"), ("dslr", "NikonD5500")):
        (tmp_path / side).mkdir()
        for name in ("001H", "040H"):
            shutil.copy(city / cam / f"{name}.png", tmp_path / side)
    ds = tmp_path / "ds"
    build_dataset(tmp_path / "phone", tmp_path / "dslr", ds, config=BuildConfig(test_images=2))
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "g.pt", Generator(GeneratorConfig(channels=4, blocks=1)))

    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", str(model), str(ds), "--full", "--device", "cpu"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "2 full test images" in text and "tolerant" in text and "identity" in text and "model" in text
    res = runner.invoke(cli, ["-q", "evaluate", str(model), str(ds), "--full", "--device", "cpu", "--json"])
    out = json.loads(res.stdout)
    assert out["n_images"] == 2 and {"psnr", "ssim", "tolerant_psnr", "tolerant_ssim"} <= set(out["identity"])
    print("\ncity100 full images, identity:", {k: round(v, 3) for k, v in out["identity"].items()})

    # the same real pair with the DSLR image moved by 1.5 px in code: strict PSNR drops, tolerant recovers
    phone = read_rgb(ds / "test_full" / "phone" / "001H.png")
    dslr = read_rgb(ds / "test_full" / "dslr" / "001H.png")
    out_img = phone.astype(np.float32) / 255
    aligned = score_pair(out_img, phone, dslr)["identity"]
    moved = score_pair(out_img, phone, _moved(dslr, 1.5, -1.0))["identity"]
    print("001H aligned / moved 1.5 px:", {k: (round(aligned[k], 2), round(moved[k], 2)) for k in aligned})
    assert moved["psnr"] < aligned["psnr"] - 1.0 and moved["ssim"] < aligned["ssim"] - 0.05
    assert moved["tolerant_psnr"] == pytest.approx(aligned["tolerant_psnr"], abs=0.3)
    assert moved["tolerant_ssim"] == pytest.approx(aligned["tolerant_ssim"], abs=0.02)
