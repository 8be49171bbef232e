"""The RAW-input networks (dped-raw, sid-unet) and the Bayer packing they share."""

from __future__ import annotations

import pytest
import torch

from dpedkit.errors import ConfigError
from dpedkit.nn.checkpoint import load_model, save_checkpoint
from dpedkit.nn.generator import Generator
from dpedkit.nn.raw import RawGenerator, RawGeneratorConfig, SIDUNet, SIDUNetConfig, normalise_mosaic, pack_bayer


@pytest.mark.parametrize("cfa", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_pack_bayer_gives_r_g1_g2_b_whatever_the_cfa(cfa):
    h, w = 6, 8
    planes = {c: torch.full((h // 2, w // 2), float(v)) for c, v in (("R", 1), ("G1", 2), ("G2", 3), ("B", 4))}
    mosaic = torch.zeros(1, h, w)
    red_row = cfa.index("R") // 2
    for k, colour in enumerate(cfa):
        dy, dx = divmod(k, 2)
        name = colour if colour != "G" else ("G1" if dy == red_row else "G2")
        mosaic[0, dy::2, dx::2] = planes[name]
    packed = pack_bayer(mosaic, cfa)
    assert packed.shape == (1, 4, h // 2, w // 2)
    assert [float(packed[0, c].unique()) for c in range(4)] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ConfigError, match="even"):
        pack_bayer(torch.zeros(1, 5, 8), cfa)
    with pytest.raises(ConfigError, match="CFA"):
        pack_bayer(mosaic, "RGBG")


def test_normalise_mosaic():
    raw = torch.tensor([0, 512, 8447.5, 16383, 20000])
    assert normalise_mosaic(raw, 512, 16383).tolist() == pytest.approx([0, 0, 0.5, 1, 1], abs=1e-6)
    with pytest.raises(ConfigError):
        normalise_mosaic(raw, 100, 100)


def _convs(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_dped_raw_is_the_dped_generator_with_a_packed_input_and_a_pixel_shuffle_head():
    g = RawGenerator()
    out = g(torch.rand(2, 4, 12, 10))
    assert out.shape == (2, 3, 24, 20) and out.min() > -0.09 and out.max() < 1.09
    n = sum(p.numel() for p in g.parameters())
    rgb = sum(p.numel() for p in Generator().parameters())  # 401,475: the official DPED generator
    assert n == rgb - _convs(3, 64, 9) - _convs(64, 3, 9) + _convs(4, 64, 9) + _convs(64, 12, 9)


def test_sid_unet_layers_and_any_input_size():
    u = SIDUNet()
    widths = [32, 64, 128, 256, 512]
    down = sum(_convs(cin, c, 3) + _convs(c, c, 3) for cin, c in zip([4, *widths], widths, strict=False))
    up = sum(w * (w // 2) * 4 + w // 2 + _convs(w, w // 2, 3) + _convs(w // 2, w // 2, 3) for w in widths[:0:-1])
    assert sum(p.numel() for p in u.parameters()) == down + up + _convs(32, 12, 1) == 7_760_748
    for h, w in ((16, 16), (15, 22), (3, 5)):
        assert u(torch.rand(1, 4, h, w)).shape == (1, 3, 2 * h, 2 * w)


def test_raw_models_are_checkpointed_like_the_others(tmp_path):
    torch.manual_seed(0)
    for model in (
        RawGenerator(RawGeneratorConfig(channels=8, blocks=1, cfa="GRBG", black=64, white=1023)),
        SIDUNet(SIDUNetConfig(channels=4, levels=3)),
    ):
        path = save_checkpoint(tmp_path / f"{model.name}.pt", model)
        back = load_model(path)
        assert type(back) is type(model) and back.cfg == model.cfg
        x = torch.rand(1, 4, 8, 8)
        assert torch.equal(back.eval()(x), model.eval()(x))


def test_raw_models_take_the_stored_mosaic_and_normalise_it_for_their_sensor():
    cfg = SIDUNetConfig(channels=4, levels=2, cfa="GRBG", black=64, white=1023)
    net = SIDUNet(cfg).eval()
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 1100, (2, 1, 8, 12), generator=g).float()
    packed = pack_bayer(normalise_mosaic(raw, 64, 1023), "GRBG")
    assert torch.equal(net(raw / 65535.0), net(packed))
    with pytest.raises(ConfigError):
        SIDUNetConfig(cfa="XYZW")
    with pytest.raises(ConfigError):
        SIDUNetConfig(black=1000, white=900)
