"""Full-resolution enhancement: strips with exact IN statistics equal the whole-image run; files, CLI."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from dpedkit.config import EnhanceConfig
from dpedkit.enhance import ImageResult, enhance, enhance_array
from dpedkit.enhance.strips import enhance_strips, plan_strips
from dpedkit.errors import ConfigError, Failure, InputError
from dpedkit.io import read_rgb, write_image
from dpedkit.nn.generator import Generator, GeneratorConfig


def _generator(channels=16, blocks=4, seed=0):
    """A generator with large random weights and norm parameters, so every layer matters."""
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(channels=channels, blocks=blocks)).eval()
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight)
                torch.nn.init.normal_(m.bias, 0, 0.1)
        for n in g.norms():
            torch.nn.init.normal_(n.scale, 1, 0.3)
            torch.nn.init.normal_(n.shift, 0, 0.3)
    return g


def _photo(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 60 * np.sin(xx / 5.0)[..., None] * np.cos(yy / 7.0)[..., None] + rng.normal(0, 30, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _whole(g, rgb):
    with torch.inference_mode():
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        return g(x)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("rows", [1, 3, 8, 23, 40, 100])
def test_strips_equal_whole_image(rng, rows):
    g = _generator()
    rgb = _photo(rng, 41, 29)
    ref = _whole(g, rgb)
    out = enhance_strips(g, rgb, rows=rows, device=torch.device("cpu"))
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_per_strip_statistics_would_differ(rng):
    """The check above can fail: normalising each strip with its own statistics changes the output a lot."""
    g = _generator()
    rgb = _photo(rng, 40, 29)
    ref = _whole(g, rgb)
    naive = np.concatenate([_whole(g, rgb[r : r + 10]) for r in range(0, 40, 10)])
    assert np.abs(naive - ref).max() > 0.05


@pytest.mark.parametrize(("blocks", "h", "w", "rows"), [(0, 30, 17, 7), (1, 3, 5, 1), (2, 12, 64, 5)])
def test_strips_edge_shapes(rng, blocks, h, w, rows):
    g = _generator(channels=8, blocks=blocks)
    rgb = _photo(rng, h, w)
    np.testing.assert_allclose(enhance_strips(g, rgb, rows=rows, device=torch.device("cpu")), _whole(g, rgb), atol=2e-5)


def test_full_width_generator_through_enhance_array(rng):
    g = _generator(channels=64)
    rgb = _photo(rng, 33, 40)
    whole, n_whole = enhance_array(g, rgb)
    tiled, n_tiled = enhance_array(g, rgb, strip_rows=10)
    assert (n_whole, n_tiled) == (0, 4)
    assert whole.min() >= 0 and whole.max() <= 1  # clipped
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


def test_plan_strips():
    assert plan_strips(720, 1280, 64, max_memory=4.0) == 0
    small = plan_strips(3000, 4000, 64, max_memory=2.0)
    smaller = plan_strips(3000, 4000, 64, max_memory=1.5)
    assert 8 <= smaller < small < 3000
    assert plan_strips(3000, 4000, 64, max_memory=2.0, can_tile=False) == 0
    assert plan_strips(3000, 4000, 64, max_memory=0.1) == 8  # floor


def test_non_generator_runs_whole_and_refuses_strips(rng):
    rgb = _photo(rng, 9, 11)
    out, strips = enhance_array(torch.nn.Identity(), rgb, max_memory=0.1)
    assert strips == 0
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-6)
    with pytest.raises(ConfigError, match="does not say how it runs in strips"):
        enhance_array(torch.nn.Identity(), rgb, strip_rows=4)
    with pytest.raises(InputError, match="uint8"):
        enhance_array(torch.nn.Identity(), rgb.astype(np.float32))


def _jpeg_with_orientation(path, rgb, orientation):
    from PIL import Image

    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=98, exif=exif)
    path.write_bytes(buf.getvalue())


def test_enhance_files_orientation_formats_failures(tmp_path, rng):
    g = _generator(channels=8, blocks=1)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", _photo(rng, 20, 30))
    _jpeg_with_orientation(src / "rot.jpg", _photo(rng, 20, 30), 6)  # stored 30 wide, shown 20 wide
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    seen = []
    res = enhance(g, [src], tmp_path / "out", config=EnhanceConfig(device="cpu", format="jpg"), on_result=seen.append)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "rot.jpg"]
    assert read_rgb(tmp_path / "out" / "rot.jpg").shape == (30, 20, 3)
    assert [r.width for r in res.images] == [30, 20]
    assert len(res.failures) == 1 and res.failures[0][1].reason == "unreadable"
    assert sum(isinstance(r, ImageResult) for r in seen) == 2 and sum(isinstance(r, Failure) for r in seen) == 1


def test_enhance_strips_config_gives_same_png(tmp_path, rng):
    g = _generator(channels=8, blocks=2)
    write_image(tmp_path / "p.png", _photo(rng, 25, 19))
    enhance(g, [tmp_path / "p.png"], tmp_path / "w", config=EnhanceConfig(device="cpu"))
    res = enhance(g, [tmp_path / "p.png"], tmp_path / "s", config=EnhanceConfig(device="cpu", strip_rows=4))
    assert res.images[0].strips == 7
    a, b = read_rgb(tmp_path / "w" / "p.png").astype(int), read_rgb(tmp_path / "s" / "p.png").astype(int)
    assert np.abs(a - b).max() <= 1


def test_enhance_input_errors(tmp_path, rng):
    g = _generator(channels=4, blocks=1)
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        write_image(tmp_path / d / "same.png", _photo(rng, 8, 8))
    with pytest.raises(ConfigError, match="would both be written"):
        enhance(g, [tmp_path / "x", tmp_path / "y"], tmp_path / "out")
    before = (tmp_path / "x" / "same.png").read_bytes()
    with pytest.raises(InputError, match="the output folder is the input"):
        enhance(g, [tmp_path / "x"], tmp_path / "x")
    with pytest.raises(InputError, match="the output folder lies inside the input"):
        enhance(g, [tmp_path / "x"], tmp_path / "x" / "enhanced")
    with pytest.raises(ConfigError, match="is one of the input photos"):  # a photo given as a file, its folder out
        enhance(g, [tmp_path / "x" / "same.png"], tmp_path / "x")
    assert (tmp_path / "x" / "same.png").read_bytes() == before
    with pytest.raises(InputError, match="no such file"):
        enhance(g, [tmp_path / "missing.png"], tmp_path / "out")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="not an image"):
        enhance(g, [tmp_path / "notes.txt"], tmp_path / "out")
    with pytest.raises(ConfigError, match="format"):
        EnhanceConfig(format="bmp")
    assert EnhanceConfig.from_dict(EnhanceConfig(max_memory=3.0).to_dict()).max_memory == 3.0


def test_cli_enhance(tmp_path, rng):
    from dpedkit_cli.main import cli

    from dpedkit.nn.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "g.pt", _generator(channels=4, blocks=1))
    write_image(tmp_path / "p.png", _photo(rng, 16, 12))
    runner = CliRunner()
    res = runner.invoke(
        cli, ["enhance", str(ckpt), str(tmp_path / "p.png"), "-o", str(tmp_path / "o"), "--format", "jpg"]
    )
    assert res.exit_code == 0, res.output
    assert read_rgb(tmp_path / "o" / "p.jpg").shape == (16, 12, 3)
    res = runner.invoke(
        cli, ["enhance", str(ckpt), str(tmp_path / "p.png"), "-o", str(tmp_path / "o"), "--format", "gif"]
    )
    assert res.exit_code == 2 and "gif" in res.output
    res = runner.invoke(cli, ["enhance", str(tmp_path / "nope.pt"), str(tmp_path / "p.png"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "error" in res.output
    odd = tmp_path / "[draft] [/b]"  # rich markup characters in a path must print as they are, not crash
    res = runner.invoke(cli, ["enhance", str(odd / "nope.pt"), str(tmp_path / "p.png"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "[draft] [/b]" in res.output, res.output


def _interrupt_on_call(n, real):
    """``real`` wrapped to raise KeyboardInterrupt (Ctrl-C) on its ``n``-th call."""
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper


def test_interrupt_removes_spill_files_and_writes_no_partial_photo(tmp_path, rng, monkeypatch):
    import pathlib

    from dpedkit.enhance import strips as enh

    g = _generator(channels=8, blocks=2)
    for name in ("a", "b"):
        write_image(tmp_path / "in" / f"{name}.png", _photo(rng, 25, 19))
    spill, out = tmp_path / "spill", tmp_path / "out"
    spill.mkdir()
    config = EnhanceConfig(device="cpu", strip_rows=4, spill_dir=str(spill))
    monkeypatch.setattr(enh._Spill, "read", _interrupt_on_call(50, enh._Spill.read))  # a takes 42 reads: in b
    with pytest.raises(KeyboardInterrupt):
        enhance(g, [tmp_path / "in"], out, config=config)
    assert [p.name for p in out.iterdir()] == ["a.png"] and list(spill.iterdir()) == []
    monkeypatch.undo()

    def half_then_interrupt(self, data):  # Ctrl-C in the middle of writing the photo
        real_write_bytes(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    real_write_bytes = pathlib.Path.write_bytes
    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        enhance(g, [tmp_path / "in" / "b.png"], out, config=config)
    monkeypatch.undo()
    assert [p.name for p in out.iterdir()] == ["a.png"] and list(spill.iterdir()) == []


def test_cli_enhance_interrupted_exits_130(tmp_path, rng, monkeypatch):
    from dpedkit_cli.main import cli

    from dpedkit.enhance import photos as enh
    from dpedkit.nn.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "g.pt", _generator(channels=4, blocks=1))
    for name in ("a", "b", "c"):
        write_image(tmp_path / "in" / f"{name}.png", _photo(rng, 16, 12))
    monkeypatch.setattr(enh, "enhance_array", _interrupt_on_call(2, enh.enhance_array))
    res = CliRunner().invoke(cli, ["enhance", str(ckpt), str(tmp_path / "in"), "-o", str(tmp_path / "o")])
    message = " ".join(res.output.split())
    assert res.exit_code == 130, res.output
    assert "interrupted: 1 of 3 photo(s) written" in message and "Aborted" not in message
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]


def test_jpeg_quality_options_agree(tmp_path):
    """`enhance --quality` and `export-dped --quality` take the same range (1-100), described the same way."""
    from click.testing import CliRunner
    from dpedkit_cli.commands import enhance, export_dped
    from dpedkit_cli.main import cli

    enh, exp = ({p.opts[0]: p for p in cmd.command.params}["--quality"] for cmd in (enhance, export_dped))
    assert enh.help == exp.help == "JPEG quality, 1-100."
    for bad in ("0", "101"):
        for args in (
            ["enhance", "m.pt", str(tmp_path), "-o", str(tmp_path / "o")],
            ["export-dped", str(tmp_path), "-o", "x"],
        ):
            res = CliRunner().invoke(cli, [*args, "--quality", bad])
            assert res.exit_code == 2 and "quality" in res.output and "100" in res.output, res.output
    with pytest.raises(ConfigError, match="quality"):
        EnhanceConfig(quality=0)


@pytest.mark.gpu
def test_strips_on_cuda_match_cpu_whole(rng):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    g = _generator()
    rgb = _photo(rng, 41, 29)
    out = enhance_strips(g.cuda(), rgb, rows=8, device=torch.device("cuda"))
    np.testing.assert_allclose(out, _whole(g.cpu(), rgb), atol=5e-3)  # cuDNN may use TF32 convolutions


@pytest.mark.shared
@pytest.mark.slow
def test_official_model_hd_photo_strips_match_whole(shared):
    from dpedkit.nn.checkpoint import load_model

    g = load_model(shared("models", "dped_orig", "iphone_orig.index"))
    rgb = read_rgb(shared("data", "dped_hd", "0.png"))[:256]  # a band of the photo keeps the test short
    whole, _ = enhance_array(g, rgb, max_memory=100)
    tiled, strips = enhance_array(g, rgb, strip_rows=64)
    assert strips == 4
    a, b = np.rint(whole * 255), np.rint(tiled * 255)
    mse = np.mean((a - b) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 45


def test_strips_refuse_without_spill_space(rng, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(InputError, match="spill space"):
        enhance_strips(_generator(channels=4, blocks=1), _photo(rng, 8, 8), rows=4, device=torch.device("cpu"))


@pytest.mark.slow
def test_bench_enhance_small():
    from dpedkit.bench.enhance import bench_enhance

    said = []
    out = bench_enhance(megapixels=0.01, device="cpu", hd_size=(96, 64), hd_strip_rows=16, on_progress=said.append)
    assert said == ["run 1 of 3: 96x64 whole on cpu", "run 2 of 3: 96x64 in strips of 16 rows on cpu",
                    "run 3 of 3: 115x86 on cpu within 2 GB (minutes on a CPU)"]  # fmt: skip
    assert out["hd_strips"]["strips"] == 4 and out["hd_whole"]["strips"] == 0
    assert out["hd_psnr_db"] >= 45
    (photo,) = out["photo"]
    assert photo["size"] == "115x86" and photo["peak_rss_gb"] > 0 and photo["cpu_seconds"] > 0


def test_existing_outputs_are_refused_before_any_work_unless_overwrite(tmp_path, rng):
    """Issue 20: enhance silently replaced a same-named file; now nothing runs until every name is free."""
    from dpedkit_cli.main import cli

    g = _generator(channels=8, blocks=1)
    for name in ("a", "b"):
        write_image(tmp_path / "in" / f"{name}.png", _photo(rng, 24, 20))
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"my own picture")
    seen: list = []
    with pytest.raises(InputError, match=r"b\.png: exists \(1 of the 2 output files do\)"):
        enhance(g, [tmp_path / "in"], out, config=EnhanceConfig(device="cpu"), on_result=seen.append)
    assert seen == [] and sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert (out / "b.png").read_bytes() == b"my own picture"
    res = enhance(g, [tmp_path / "in"], out, config=EnhanceConfig(device="cpu"), overwrite=True)
    assert len(res.images) == 2 and (out / "b.png").read_bytes() != b"my own picture"
    run = CliRunner().invoke(cli, ["enhance", "x.pt", str(tmp_path / "in"), "-o", str(out)])
    assert run.exit_code == 2 and "use --overwrite" in " ".join(run.output.split())


def test_outputs_beside_inputs_given_as_files_never_become_or_replace_inputs(tmp_path, rng):
    """Issue 20: ``enhance a/1.jpg a/2.jpg -o a/`` (or ``-o a/sub``): the safe behaviour, pinned."""
    import os

    from dpedkit_cli.main import cli

    from dpedkit.nn.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "g.pt", _generator(channels=4, blocks=1))
    a = tmp_path / "a"
    for name in ("1", "2"):
        write_image(a / f"{name}.jpg", _photo(rng, 12, 16))
    photos = {p.name: p.read_bytes() for p in a.iterdir()}
    inputs = [str(a / "1.jpg"), str(a / "2.jpg")]
    res = CliRunner().invoke(cli, ["enhance", str(ckpt), *inputs, "-o", str(a), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in a.iterdir()) == ["1.jpg", "1.png", "2.jpg", "2.png"]  # two outputs, no more
    assert all((a / n).read_bytes() == b for n, b in photos.items())  # the inputs as they were
    res = CliRunner().invoke(cli, ["enhance", str(ckpt), *inputs, "-o", str(a / "sub"), "--device", "cpu"])
    assert res.exit_code == 0 and sorted(p.name for p in (a / "sub").iterdir()) == ["1.png", "2.png"]
    g = _generator(channels=4, blocks=1)
    config = EnhanceConfig(device="cpu", format="jpg")
    with pytest.raises(ConfigError, match=r"1\.jpg is one of the input photos"):  # even with --overwrite
        enhance(g, [a / "1.jpg"], a, config=config, overwrite=True)
    (tmp_path / "out").mkdir()
    os.link(a / "2.jpg", tmp_path / "out" / "2.jpg")  # the same file under another name
    with pytest.raises(ConfigError, match=r"out/2\.jpg is one of the input photos \(the same file as .*a/2\.jpg\)"):
        enhance(g, [a / "2.jpg"], tmp_path / "out", config=config, overwrite=True)
    assert all((a / n).read_bytes() == b for n, b in photos.items())
    res = CliRunner().invoke(cli, ["enhance", str(ckpt), str(a), "-o", str(a / "sub"), "--device", "cpu"])
    assert res.exit_code == 2 and "the output folder lies inside the input" in " ".join(res.output.split())


class _HaloNet(torch.nn.Module):
    """An RGB network that tiles with overlapping strips (``tiling = "halo"``): a pooling U of two levels."""

    tiling = "halo"
    multiple = 2  # one 2x2 pooling
    halo = 10  # rows of context each side: the receptive reach (3 + 1 + 2 x 2 + 1 = 9), rounded up to the multiple

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Conv2d(3, 8, 7, padding=3), torch.nn.Conv2d(8, 8, 5, padding=2)
        self.c = torch.nn.Conv2d(16, 3, 3, padding=1)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="reflect")

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.a(x))
        b = F.interpolate(torch.relu(self.b(F.max_pool2d(a, 2))), scale_factor=2.0)
        return torch.sigmoid(self.c(torch.cat([a, b], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.pad(x))[..., : x.shape[-2], : x.shape[-1]]


@pytest.mark.parametrize("rows", [2, 6, 20])
def test_an_rgb_network_that_tiles_with_halos_runs_in_strips_equal_to_the_whole_run(rng, rows):
    net, rgb = _HaloNet().eval(), _photo(rng, 41, 30)
    whole, strips = enhance_array(net, rgb)
    assert strips == 0
    out, strips = enhance_array(net, rgb, strip_rows=rows)
    assert strips == len(range(0, 42, rows)) > 1
    np.testing.assert_allclose(out, whole, atol=1e-5)
    tiny, strips = enhance_array(net, rgb, max_memory=1e-6)  # planned: a strip holds its two halos
    assert strips > 1
    np.testing.assert_allclose(tiny, whole, atol=1e-5)
