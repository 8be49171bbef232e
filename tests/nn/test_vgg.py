import numpy as np
import pytest
import scipy.io
import torch

from dpedkit.errors import CheckpointError
from dpedkit.nn.vgg import CONV_NAMES, VGG19Features, load_vgg


def test_no_weights_explains_where_to_get_them():
    with pytest.raises(CheckpointError, match="imagenet-vgg-verydeep-19.mat.*vgg19-dcbb9e9d.pth"):
        load_vgg(None)
    with pytest.raises(CheckpointError, match="no such file.*imagenet-vgg"):
        load_vgg("/nonexistent/vgg.mat")


def test_layout_matches_torchvision_indices():
    vgg = VGG19Features()
    convs = [i for i, m in enumerate(vgg.features) if isinstance(m, torch.nn.Conv2d)]
    pools = [i for i, m in enumerate(vgg.features) if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 16 and convs[-1] == 34 and len(vgg.features) == 36
    assert pools == [4, 9, 18, 27] and all(vgg.features[i].ceil_mode for i in pools)


def test_matconvnet_preprocessing_is_mean_only():
    vgg = VGG19Features("matconvnet")
    x = torch.rand(1, 3, 4, 4)
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1)
    torch.testing.assert_close((x - vgg.mean) / vgg.std, x * 255 - mean)


def _fake_mat(path, rng, old_fields=False):
    """A tiny stand-in for imagenet-vgg-verydeep-19.mat with MatConvNet's structure (W, H, in, out kernels)."""
    vgg = VGG19Features()
    layers = np.empty((1, 16), dtype=object)
    kernels = {}
    for i, (name, conv) in enumerate(zip(CONV_NAMES, vgg.conv_layers(), strict=True)):
        o, c, h, w = conv.weight.shape
        kernel = rng.standard_normal((w, h, c, o)).astype(np.float32) * 0.01
        bias = rng.standard_normal((o, 1)).astype(np.float32)
        weights = np.empty((1, 2), dtype=object)
        weights[0, 0], weights[0, 1] = kernel, bias
        layers[0, i] = {"name": name, "type": "conv", "weights": weights}
        if old_fields:
            layers[0, i] = {"name": name, "type": "conv", "filters": kernel, "biases": bias}
        kernels[name] = (kernel, bias)
    scipy.io.savemat(path, {"layers": layers})
    return kernels


@pytest.mark.parametrize("old_fields", [False, True])
def test_loads_matconvnet_layout(tmp_path, rng, old_fields):
    kernels = _fake_mat(tmp_path / "vgg.mat", rng, old_fields)
    vgg = load_vgg(tmp_path / "vgg.mat")
    conv = vgg.conv_layers()[5]
    kernel, bias = kernels[CONV_NAMES[5]]
    # PyTorch weight[o, i, y, x] = stored[x, y, i, o]
    assert conv.weight[7, 3, 0, 2].item() == kernel[2, 0, 3, 7]
    assert torch.equal(conv.bias, torch.from_numpy(bias.ravel()))
    assert not any(p.requires_grad for p in vgg.parameters())


def test_loads_torchvision_state_dict(tmp_path):
    src = VGG19Features()
    sd = {f"features.{k}": v for k, v in src.features.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "vgg19.pth")
    vgg = load_vgg(tmp_path / "vgg19.pth")
    assert vgg.preprocess == "torchvision"
    assert torch.equal(vgg.conv_layers()[0].weight, src.conv_layers()[0].weight)


def test_wrong_weight_files(tmp_path):
    torch.save({"features.0.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="not VGG-19"):
        load_vgg(tmp_path / "bad.pth")
    (tmp_path / "bad.mat").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a MatConvNet"):
        load_vgg(tmp_path / "bad.mat")


def test_random_weights_are_seeded():
    a, b = load_vgg("random", seed=1), load_vgg("random", seed=1)
    assert torch.equal(a.conv_layers()[3].weight, b.conv_layers()[3].weight)
