import json

import pytest
from click.testing import CliRunner

from dpedkit.demo import STAGES, DemoConfig, run_demo
from dpedkit.errors import ConfigError
from dpedkit.io import read_rgb

TINY = DemoConfig(pairs=3, phone_mp=0.2, dslr_mp=0.4, test_images=1, iters=4, batch=4, device="cpu")


@pytest.mark.slow
def test_demo_writes_every_result(tmp_path):
    seen, steps = [], []
    res = run_demo(tmp_path / "demo", config=TINY, on_stage=lambda s, i, n: seen.append((s, i, n)),
                   on_step=lambda i, n: steps.append((i, n)))  # fmt: skip
    assert [s for s, _, _ in seen] == list(STAGES) and seen[-1][1:] == (5, 6)
    assert steps[-1] == (TINY.iters, TINY.iters) and len(steps) == TINY.iters  # the training stage reports
    for key in ("raw", "dataset", "report", "init", "run", "model", "enhanced", "summary"):
        assert res.paths[key].exists(), key
    assert (res.paths["dataset"] / "dataset.json").is_file() and res.patches["train"] > 0 and res.patches["test"] > 0
    assert "id='pairs-table'" in res.paths["report"].read_text()
    # the enhanced photo is a held-out (test split) phone photo at full resolution
    assert read_rgb(res.paths["enhanced"]).shape == read_rgb(res.paths["phone"]).shape
    test_pairs = [json.loads(x) for x in (res.paths["dataset"] / "pairs.jsonl").read_text().splitlines()]
    assert str(res.paths["phone"]) in [r["phone"] for r in test_pairs if r["split"] == "test"]
    saved = json.loads(res.paths["summary"].read_text())
    assert saved["scores"]["n_pairs"] == res.patches["test"]
    assert set(saved["seconds"]) == set(STAGES) and set(saved["commands"]) == set(STAGES)
    assert saved["scores"]["identity"]["dped_psnr"] > 10
    # the phone photos carry the demo's camera look: darker than their DSLR twins (gamma 1.4)
    phone, dslr = read_rgb(res.paths["raw"] / "phone" / "0000.jpg"), read_rgb(res.paths["raw"] / "dslr" / "0000.jpg")
    assert phone.mean() < dslr.mean() - 10
    # a second run refuses to clobber the first one unless asked
    with pytest.raises(ConfigError, match="overwrite"):
        run_demo(tmp_path / "demo", config=TINY)


@pytest.mark.parametrize(
    ("field", "value"), [("pairs", 1), ("dslr_mp", 0.1), ("model", "unet"), ("test_images", 8), ("iters", 0)]
)
def test_demo_config_validation(field, value):
    with pytest.raises(ConfigError, match=field):
        DemoConfig(**{field: value})


def test_demo_config_round_trip():
    assert DemoConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ConfigError, match="unknown"):
        DemoConfig.from_dict({"pears": 3})


def test_cli_demo_refuses_earlier_demo(tmp_path):
    from dpedkit_cli.main import cli

    (tmp_path / "report.html").write_text("earlier")
    res = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert (tmp_path / "report.html").read_text() == "earlier"


def test_apply_look_is_pointwise_and_analytic():
    import numpy as np

    from dpedkit.demo import apply_look

    grey = np.full((2, 3, 3), 128, np.uint8)
    out = apply_look(grey, {"gamma": 2.0, "gains": [1.0, 1.0, 0.5], "saturation": 0.5})
    expect = np.rint(255 * np.array([128 / 255, 128 / 255, 64 / 255]) ** 2)  # grey stays grey under saturation
    assert np.array_equal(out, np.broadcast_to(expect, out.shape).astype(np.uint8))


def test_identity_srcnn_starts_at_the_identity(tmp_path):
    import torch

    from dpedkit.demo import TINY_SRCNN, identity_srcnn
    from dpedkit.nn.checkpoint import load_model

    state = torch.random.get_rng_state()
    path = identity_srcnn(TINY_SRCNN, tmp_path / "id.pt", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded privately
    net = load_model(path)
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (net(x) - x).abs()
    assert err.mean() < 0.02 and err.mean() > 0  # identity plus a little trainable noise
    plain = load_model(identity_srcnn(TINY_SRCNN, tmp_path / "plain.pt", seed=3, noise=0.0))
    with torch.no_grad():
        assert torch.allclose(plain(x), x, atol=1e-6)


def test_the_default_test_split_fits_any_number_of_pairs():
    assert [DemoConfig(pairs=n).held_out for n in (2, 3, 5, 6, 8)] == [1, 1, 1, 2, 2]
    assert DemoConfig(pairs=8, test_images=3).held_out == 3
