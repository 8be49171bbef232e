"""LPIPS from local weight files: the file formats of torchvision and of the lpips package, the formula, errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpedkit.errors import ConfigError
from dpedkit.nn.lpips import BACKBONE_FILE, LINEAR_FILE, load_lpips

CONVS = {0: (3, 64, 11), 3: (64, 192, 5), 6: (192, 384, 3), 8: (384, 256, 3), 10: (256, 256, 3)}


@pytest.fixture
def weights(tmp_path):
    """Random weights saved as torchvision's AlexNet and lpips' v0.1 linear layers save theirs."""
    g = torch.Generator().manual_seed(0)
    alex = {}
    for i, (cin, cout, k) in CONVS.items():
        alex[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2 / (cin * k * k)) ** 0.5
        alex[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    alex["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision's file holds the classifier too
    lin = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate((64, 192, 384, 256, 256))
    }
    torch.save(alex, tmp_path / BACKBONE_FILE)
    torch.save(lin, tmp_path / LINEAR_FILE)
    return tmp_path, alex, lin


def reference(alex, lin, x, y):
    """LPIPS v0.1 written out from the paper and the package's defaults, step by step."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    strides = {0: (4, 2), 3: (1, 2), 6: (1, 1), 8: (1, 1), 10: (1, 1)}

    def taps(img):
        h, out = ((2 * img - 1) - shift) / scale, []
        for n, i in enumerate(CONVS):
            if n in (1, 2):
                h = F.max_pool2d(h, kernel_size=3, stride=2)
            h = torch.relu(F.conv2d(h, alex[f"features.{i}.weight"], alex[f"features.{i}.bias"], *strides[i]))
            out.append(h)
        return out

    d = 0
    for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = lin[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
        d = d + ((a - b) ** 2 * w).sum(1).mean(dim=(1, 2))
    return d


def test_lpips_matches_the_formula_and_is_a_distance(weights):
    folder, alex, lin = weights
    metric = load_lpips(folder)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    d = metric(x, y)
    assert d.shape == (3,) and torch.allclose(d, reference(alex, lin, x, y), rtol=1e-4, atol=1e-6)
    assert torch.all(d > 0) and torch.allclose(metric(y, x), d) and torch.all(metric(x, x) == 0)
    near = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.all(metric(x, near) < d)  # a small change is a small distance


def test_missing_or_wrong_weights_say_where_to_get_them(weights, tmp_path):
    with pytest.raises(ConfigError, match="alexnet-owt-7be5be79.pth.*download.pytorch.org"):
        load_lpips(tmp_path / "nowhere")
    folder, _, _ = weights
    torch.save({"something": torch.zeros(1)}, folder / LINEAR_FILE)
    with pytest.raises(ConfigError, match="not the LPIPS AlexNet weights"):
        load_lpips(folder)


def test_evaluate_and_compare_report_lpips(weights, tmp_path):
    from click.testing import CliRunner
    from dpedkit_cli.main import cli

    from dpedkit.config import EvalConfig
    from dpedkit.evaluate import compare, evaluate_arrays
    from dpedkit.nn.checkpoint import save_checkpoint
    from dpedkit.nn.generator import Generator, GeneratorConfig
    from dpedkit.testing import write_synthetic_dataset

    folder, _, _ = weights
    rng = np.random.default_rng(0)
    phone = (rng.random((4, 32, 32, 3)) * 255).astype(np.uint8)
    model, identity = evaluate_arrays(lambda t: t, phone, phone, lpips=load_lpips(folder))
    assert model.lpips == identity.lpips == 0.0 and "lpips" in model.to_dict()

    data = write_synthetic_dataset(tmp_path / "ds", n_train=4, n_test=4, patch=32, seed=0)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "g.pt", Generator(GeneratorConfig(channels=4, blocks=1)))
    result = compare([ckpt], data, config=EvalConfig(device="cpu", lpips=str(folder)))
    assert all(r["lpips"] > 0 for r in result.rows) and "LPIPS" in result.markdown()
    res = CliRunner().invoke(cli, ["-q", "evaluate", str(ckpt), str(data), "--lpips", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    assert "lpips" in res.stdout
    res = CliRunner().invoke(cli, ["evaluate", str(ckpt), str(data), "--lpips", str(tmp_path / "none")])
    assert res.exit_code == 2 and "download.pytorch.org" in " ".join(res.output.split())


@pytest.mark.skipif(importlib.util.find_spec("lpips") is None, reason="the lpips package is not installed")
def test_lpips_equals_the_lpips_package(tmp_path):  # pragma: no cover - runs where lpips and torchvision are
    import lpips

    ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)  # its own v0.1 linear layers
    alex = {}
    for name, v in ref.net.state_dict().items():  # slice{n}.{index}.weight -> features.{index}.weight
        _, index, kind = name.split(".")
        alex[f"features.{index}.{kind}"] = v
    torch.save(alex, tmp_path / BACKBONE_FILE)
    torch.save({k: v for k, v in ref.state_dict().items() if k.startswith("lin")}, tmp_path / LINEAR_FILE)
    ours = load_lpips(tmp_path)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    assert torch.allclose(ours(x, y), ref(x, y, normalize=True).flatten(), rtol=1e-5)
