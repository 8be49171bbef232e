import pytest
import torch

from dpedkit.errors import InputError
from dpedkit.nn.discriminator import Discriminator, DiscriminatorConfig, to_gray


def test_to_gray_weights():
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.25
    torch.testing.assert_close(to_gray(x), torch.full((1, 1, 2, 2), 0.2989 + 0.5870 * 0.5 + 0.1140 * 0.25))


def test_shapes_probabilities_and_gradients():
    d = Discriminator()
    x = torch.rand(3, 3, 100, 100, generator=torch.Generator().manual_seed(0), requires_grad=True)
    p = d(to_gray(x))
    assert p.shape == (3, 2)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(3))
    torch.log(p[:, 0]).sum().backward()
    assert x.grad.abs().sum() > 0
    for name, param in d.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_layer_sizes_follow_tf_same_padding():
    d = Discriminator()
    assert d.fc.in_features == 128 * 7 * 7
    sizes = []
    d.convs[0].register_forward_hook(lambda m, i, o: sizes.append((tuple(i[0].shape[2:]), tuple(o.shape[2:]))))
    d(torch.rand(1, 1, 100, 100))
    # padded 3 before + 4 after: 107 -> 25
    assert sizes == [((107, 107), (25, 25))]


def test_flatten_is_nhwc():
    # a conv5 output that differs only in channel order must change the FC input in TF's NHWC order
    d = Discriminator()
    h = torch.arange(128 * 49, dtype=torch.float32).view(1, 128, 7, 7)
    flat = h.permute(0, 2, 3, 1).flatten(1)
    assert flat[0, 1].item() == h[0, 1, 0, 0].item()
    assert d.cfg == DiscriminatorConfig()


def test_rejects_wrong_input():
    with pytest.raises(InputError, match="to_gray"):
        Discriminator()(torch.rand(1, 3, 100, 100))


@pytest.mark.parametrize("patch", [37, 64])
def test_other_patch_sizes(patch):
    d = Discriminator(DiscriminatorConfig(patch=patch))
    x = torch.rand(2, 1, patch, patch, generator=torch.Generator().manual_seed(0))
    p = d(x)
    assert p.shape == (2, 2) and torch.isfinite(p).all()
    p[:, 1].log().sum().backward()
    assert all(q.grad is not None for q in d.parameters())
