"""The baseline recipes on real data: the shared 100 DPED iPhone/Canon pairs, split 80/20 (held back by index)."""

from __future__ import annotations

import pytest

from dpedkit.config import TrainConfig
from dpedkit.interop.dped_layout import find_dped_folder, load_pairs
from dpedkit.testing import write_patch_dataset
from dpedkit.train import train


@pytest.mark.shared
@pytest.mark.slow
def test_the_srcnn_recipe_rises_steadily_on_real_dped_pairs(shared, tmp_path):
    phone, dslr = load_pairs(find_dped_folder(shared("data", "dped", "iphone")), "test")
    data = write_patch_dataset(tmp_path / "ds", {"train": (phone[:80], dslr[:80]), "test": (phone[80:], dslr[80:])},
                               config={"source": "dped 80/20"})  # fmt: skip
    cfg = TrainConfig(model="srcnn", iters=500, batch=8, eval_every=100, device="cpu", samples=0, save_every="0",
                      tensorboard=False)  # fmt: skip
    history = train(data, tmp_path / "run", config=cfg).history
    identity = history[0]["identity_psnr"]
    evaluated = {r["step"]: r["ema_psnr"] for r in history}  # the recipe's moving average (0.98) is what it keeps
    print(f"\nSRCNN recipe on DPED 80/20: identity {identity:.2f} dB, held-back PSNR by step {evaluated}")
    assert evaluated[500] > evaluated[100] and evaluated[500] >= identity + 1.0
    assert all(evaluated[s] < evaluated[s + 100] for s in (100, 200, 300, 400))  # no collapse on the way
