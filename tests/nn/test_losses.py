import math

import numpy as np
import pytest
import torch

from dpedkit.errors import ConfigError, InputError
from dpedkit.nn.discriminator import Discriminator
from dpedkit.nn.losses import (
    PRESETS,
    LossWeights,
    color_blur,
    color_kernel,
    color_loss,
    content_loss,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    texture_loss,
    tv_loss,
)
from dpedkit.nn.vgg import load_vgg


@pytest.fixture(scope="module")
def vgg():
    return load_vgg("random")


def _img(seed, shape=(2, 3, 32, 32)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_presets():
    assert PRESETS["code"] == LossWeights() == LossWeights(10, 1, 0.5, 2000)
    assert PRESETS["paper"] == LossWeights(1, 0.4, 0.1, 400)
    assert LossWeights.from_dict(PRESETS["paper"].to_dict()) == PRESETS["paper"]
    with pytest.raises(ConfigError, match="'code', 'paper'"):
        LossWeights.preset("papers")
    with pytest.raises(ConfigError, match="tv"):
        LossWeights(tv=-1)


def test_color_kernel_is_the_official_one():
    k = color_kernel()
    assert k.shape == (21, 21) and k.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(k, k.T)
    # separable: k = outer(g, g), g = sqrt of the Gaussian mass in 21 bins spanning +-(3 + 1/6) sigma
    edges = np.linspace(-19 / 6, 19 / 6, 22)
    mass = np.diff([0.5 * (1 + math.erf(e / math.sqrt(2))) for e in edges])
    g = np.sqrt(mass) / np.sqrt(mass).sum()
    np.testing.assert_allclose(k, np.outer(g, g), rtol=1e-12)
    # the square root widens the paper's sigma of 3 px
    assert math.sqrt((g * (np.arange(21) - 10.0) ** 2).sum()) == pytest.approx(4.3367, abs=1e-3)
    assert k[10, 10] == pytest.approx(0.0075631, abs=1e-7)


def test_identical_images_give_zero(vgg):
    x = _img(0)
    assert color_loss(x, x) == 0
    assert content_loss(x, x, vgg=vgg) == 0


def test_color_loss_of_a_constant_offset_is_analytic():
    # blur(x + c) - blur(x) = c * blur(ones); with zero padding blur(ones)[i, j] = G(i) G(j),
    # G(i) = sum of g over the taps that fall inside the image.
    n, h, w, c = 2, 30, 40, 0.1
    x = _img(1, (n, 3, h, w)).double()
    g = color_kernel().sum(axis=0)

    def inside(size):
        return np.array([sum(g[t] for t in range(21) if 0 <= i + t - 10 < size) for i in range(size)])

    expected = c**2 * 3 * n * (inside(h) ** 2).sum() * (inside(w) ** 2).sum() / (2 * n)
    assert color_loss(x + c, x).item() == pytest.approx(expected, rel=1e-9)
    # far from the borders the blur of a constant is the constant
    assert color_blur(torch.ones(1, 1, 41, 41, dtype=torch.float64))[0, 0, 20, 20] == pytest.approx(1.0)


def test_tv():
    assert tv_loss(torch.full((2, 3, 9, 9), 0.3)) == 0
    # a horizontal ramp with step s: mean squared horizontal difference s^2, vertical 0
    ramp = torch.arange(10.0).mul(0.1).expand(1, 3, 6, 10)
    assert tv_loss(ramp).item() == pytest.approx(0.01)
    # checkerboard of 0/1: every difference squared is 1
    cb = (torch.arange(8)[:, None] + torch.arange(8)[None]).remainder(2).float().expand(2, 3, 8, 8)
    assert tv_loss(cb).item() == pytest.approx(2.0)


def test_discriminator_and_texture_losses():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    adv = torch.tensor([1.0, 0.0, 1.0])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4))
    assert discriminator_loss(p, adv).item() == pytest.approx(expected)
    # texture = -discriminator loss when every flag is 0; saturating, so <= 0
    zeros = torch.zeros(3)
    assert texture_loss(p).item() == pytest.approx(-discriminator_loss(p, zeros).item())
    assert texture_loss(p).item() == pytest.approx(math.log(0.1) + math.log(0.8) + math.log(0.6))
    # clipped at 1e-10
    assert texture_loss(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.log(1e-10))
    assert discriminator_accuracy(p, adv).item() == pytest.approx(2 / 3)


def test_content_loss_shape_and_gradient(vgg):
    assert vgg(_img(2, (1, 3, 100, 100))).shape == (1, 512, 7, 7)  # ceil-mode pools: 100 -> 50 -> 25 -> 13 -> 7
    a, b = _img(2, (2, 3, 48, 48)), _img(3, (2, 3, 48, 48))
    a.requires_grad_(True)
    loss = content_loss(a, b, vgg=vgg)
    loss.backward()
    assert loss > 0 and a.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_generator_loss_combines_terms(vgg):
    disc = Discriminator()
    a, b = _img(4, (1, 3, 100, 100)), _img(5, (1, 3, 100, 100))
    w = PRESETS["paper"]
    t = generator_loss(a, b, vgg=vgg, discriminator=disc, weights=w)
    expected = w.content * t["content"] + w.texture * t["texture"] + w.color * t["color"] + w.tv * t["tv"]
    torch.testing.assert_close(t["total"], expected)


def test_mismatched_inputs():
    with pytest.raises(InputError, match="one shape"):
        color_loss(_img(0), _img(0, (2, 3, 16, 16)))
