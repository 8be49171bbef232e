import pytest
import torch

from dpedkit.errors import ConfigError
from dpedkit.nn.generator import Generator, GeneratorConfig, InstanceNorm, output_activation, tf_same_padding


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_matches_official():
    assert _params(Generator()) == 401_475


@pytest.mark.parametrize("shape", [(2, 3, 100, 100), (1, 3, 37, 51)])
def test_shape_range_and_gradients(shape):
    torch.manual_seed(0)
    g = Generator()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    y = g(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert y.min() >= 0.5 - 0.58 and y.max() <= 0.5 + 0.58
    y.square().mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_instance_norm_matches_definition():
    x = torch.randn(2, 4, 7, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    norm = InstanceNorm(4)
    with torch.no_grad():
        norm.scale.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        norm.shift.copy_(torch.tensor([0.0, 1.0, -1.0, 0.25]))
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)  # biased
    expected = (x - mean) / torch.sqrt(var + 1e-3) * norm.scale.view(1, 4, 1, 1) + norm.shift.view(1, 4, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    # differs from torch's default instance norm (eps 1e-5, no affine)
    assert not torch.allclose(norm(x), torch.nn.functional.instance_norm(x))


def test_injected_statistics_reproduce_whole_image_output():
    norm = InstanceNorm(3)
    x = torch.randn(1, 3, 8, 10, generator=torch.Generator().manual_seed(2))
    stats = InstanceNorm.statistics(x)
    left = norm(x[..., :5], stats)
    right = norm(x[..., 5:], (stats[0].view(-1), stats[1].view(-1)))  # (C,) form accepted too
    torch.testing.assert_close(torch.cat([left, right], dim=-1), norm(x))


def test_output_activation_range():
    z = torch.tensor([-1e6, 0.0, 1e6])
    torch.testing.assert_close(output_activation(z), torch.tensor([-0.08, 0.5, 1.08]))


@pytest.mark.parametrize(
    ("size", "k", "s", "pad"), [(100, 11, 4, (3, 4)), (25, 5, 2, (2, 2)), (13, 3, 2, (1, 1)), (13, 3, 1, (1, 1))]
)
def test_tf_same_padding(size, k, s, pad):
    assert tf_same_padding(size, k, s) == pad


def test_config_validation_and_round_trip():
    cfg = GeneratorConfig(channels=16, blocks=2)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="channels"):
        GeneratorConfig(channels=0)
    with pytest.raises(ConfigError, match="unknown GeneratorConfig option"):
        GeneratorConfig.from_dict({"chanels": 3})


def test_init_is_truncated_normal():
    g = Generator()
    w = g.c1.weight
    assert w.abs().max() <= 0.02 + 1e-7
    assert 0.005 < w.std() < 0.01
    assert torch.all(g.c1.bias == 0.01)


def test_low_precision_autocast_stays_close():
    g = Generator()
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = g(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = g(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, atol=0.02, rtol=0)
