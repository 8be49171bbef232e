import pytest
import torch

from dpedkit.errors import ConfigError
from dpedkit.nn.baselines import SRCNN, Johnson, JohnsonConfig, SRCNNConfig, start_at_identity
from dpedkit.nn.checkpoint import build_model, load_model, save_checkpoint


def test_srcnn_is_9_1_5():
    m = SRCNN()
    assert [c.kernel_size for c in (m.conv1, m.conv2, m.conv3)] == [(9, 9), (1, 1), (5, 5)]
    assert (m.conv1.out_channels, m.conv2.out_channels) == (64, 32)
    # 9*9*3*64+64 + 64*32+32 + 5*5*32*3+3
    assert sum(p.numel() for p in m.parameters()) == 15616 + 2080 + 2403


@pytest.mark.parametrize("cls", [SRCNN, Johnson])
@pytest.mark.parametrize("size", [(24, 24), (23, 37)])
def test_shape_and_gradients(cls, size):
    torch.manual_seed(0)
    m = cls(cls.config_class(channels=8, blocks=1) if cls is Johnson else None)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_johnson_output_range_and_default_size():
    m = Johnson()
    assert 1_500_000 < sum(p.numel() for p in m.parameters()) < 1_800_000
    y = m(torch.rand(1, 3, 20, 20))
    assert y.min() >= 0 and y.max() <= 1


def test_configs_validate_and_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="norm"):
        JohnsonConfig(norm="group")
    with pytest.raises(ConfigError, match="kernels"):
        SRCNNConfig(kernels=(9, 2, 5))
    for name, cfg in (("srcnn", SRCNNConfig(channels1=16)), ("johnson", JohnsonConfig(channels=4, blocks=2))):
        m = build_model(name, cfg.to_dict())
        path = save_checkpoint(tmp_path / f"{name}.pt", m)
        back = load_model(path, expect=name)
        assert back.cfg == cfg and type(back) is type(m)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a - b).square().mean()))


def test_a_fresh_srcnn_starts_at_the_identity():
    """The default SRCNN begins as the identity baseline (the phone patch as it is), so a short run cannot end far
    below it (issue 21: from PyTorch's random start, 300 iterations ended below the identity)."""
    x = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh, paper = SRCNN(), SRCNN(SRCNNConfig(identity_start=False))
    with torch.no_grad():
        assert _psnr(fresh(x), x) > 40  # the identity plus a little trainable noise
        assert _psnr(paper(x), x) < 15  # PyTorch's initialisation: far from any photo
        exact = start_at_identity(paper, noise=0.0)
        assert torch.allclose(exact(x), x, atol=1e-6)
    with pytest.raises(ConfigError, match="identity_start"):
        SRCNNConfig(channels1=2)
    assert SRCNN(SRCNNConfig(channels1=2, identity_start=False)).conv1.out_channels == 2


def test_the_default_srcnn_of_training_starts_at_the_identity(tmp_path):
    """What `dpedkit train --model srcnn` builds: its step-0 evaluation is the identity baseline's."""
    from dpedkit.config import TrainConfig
    from dpedkit.testing import write_synthetic_dataset
    from dpedkit.train import train

    data = write_synthetic_dataset(tmp_path / "ds", n_train=4, n_test=4, patch=16)
    cfg = TrainConfig(model="srcnn", iters=1, batch=2, eval_every=1, device="cpu", samples=0, save_every="0",
                      tensorboard=False, lr=1e-12)  # fmt: skip
    first = train(data, tmp_path / "run", config=cfg).history[0]
    assert first["step"] == 0 and abs(first["psnr"] - first["identity_psnr"]) < 0.05
