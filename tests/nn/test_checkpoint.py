import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dpedkit.errors import CheckpointError, ConfigError, InputError
from dpedkit.nn.checkpoint import (
    build_model,
    convert,
    count_parameters,
    load_checkpoint,
    load_model,
    save_checkpoint,
    tf_generator_state_dict,
)
from dpedkit.nn.generator import Generator, GeneratorConfig


def test_round_trip_is_exact(tmp_path):
    g = Generator(GeneratorConfig(channels=8, blocks=1))
    path = save_checkpoint(tmp_path / "g.pt", g, extra={"step": 7})
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == "dpedkit-checkpoint" and ckpt["model"] == "dped" and ckpt["step"] == 7
    assert ckpt["config"]["channels"] == 8
    g2 = load_model(path)
    assert not g2.training and g2.cfg == g.cfg
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(g2(x), g.eval()(x), rtol=0, atol=0)


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no such file.*TensorFlow checkpoint prefix"):
        load_model(tmp_path / "nope.pt")


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("notes.pt", b"hello, I am not a checkpoint", "it is a text file"),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)), "it is a JPEG image"),
        ("empty.pt", b"", "it is empty"),
        ("noise.bin", bytes(range(256)), "neither a zip archive nor a pickle"),
    ],
)
def test_non_checkpoint_file_is_not_called_a_pickle(tmp_path, name, data, kind):
    from dpedkit_cli.main import cli

    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(CheckpointError, match=f"{name}: not a dpedkit/PyTorch checkpoint or TF checkpoint prefix"):
        load_model(p)
    res = CliRunner().invoke(cli, ["convert", str(p), "-o", str(tmp_path / "n.pt")])
    message = " ".join(res.output.split())
    assert res.exit_code == 2 and name in message and kind in message and "pickled" not in message
    assert not (tmp_path / "n.pt").exists()


def test_plain_pickle_of_foreign_objects_is_refused(tmp_path):
    import collections
    import pickle

    p = tmp_path / "counter.pkl"
    p.write_bytes(pickle.dumps(collections.Counter(a=1), protocol=4))
    with pytest.raises(CheckpointError, match="pickled objects other than tensors"):
        load_checkpoint(p)


def test_truncated_checkpoint(tmp_path):
    p = save_checkpoint(tmp_path / "g.pt", Generator(GeneratorConfig(channels=4, blocks=1)))
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(p)


def test_bare_state_dict_is_foreign(tmp_path):
    p = tmp_path / "sd.pt"
    torch.save(Generator().state_dict(), p)
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_model(p)


def test_pickled_code_is_refused(tmp_path):
    p = tmp_path / "obj.pt"
    torch.save({"format": "dpedkit-checkpoint", "payload": GeneratorConfig()}, p)
    with pytest.raises(CheckpointError, match="pickled objects"):
        load_checkpoint(p)


def test_other_architecture(tmp_path):
    p = save_checkpoint(tmp_path / "d.pt", build_model("dped-discriminator"))
    with pytest.raises(CheckpointError, match="holds a 'dped-discriminator' network; this needs 'dped'"):
        load_model(p, expect="dped")
    ckpt = load_checkpoint(p)
    ckpt["model"] = "dped"
    ckpt["config"] = {}
    torch.save(ckpt, tmp_path / "lie.pt")
    with pytest.raises(CheckpointError, match="another architecture.*missing"):
        load_model(tmp_path / "lie.pt")


def test_save_refuses_reserved_extra(tmp_path):
    with pytest.raises(ConfigError, match="reserved"):
        save_checkpoint(tmp_path / "g.pt", Generator(), extra={"state_dict": {}})


def test_tf_mapping_from_synthetic_tensors():
    rng = np.random.default_rng(0)
    g = Generator(GeneratorConfig(channels=5, blocks=2))
    tensors = {}
    shapes = {1: (9, 9, 3, 5), 8: (9, 9, 5, 3)}
    for i in range(1, 9):
        tensors[f"gen/W{i}"] = rng.standard_normal(shapes.get(i, (3, 3, 5, 5))).astype(np.float32)
        tensors[f"gen/b{i}"] = rng.standard_normal(3 if i == 8 else 5).astype(np.float32)
    for j in range(8):
        tensors["gen/Variable" + (f"_{j}" if j else "")] = np.full(5, j, np.float32)
    tensors["gen/W1/Adam"] = np.zeros(1, np.float32)  # optimizer slots are ignored
    sd, cfg = tf_generator_state_dict(tensors)
    assert cfg == {"channels": 5, "blocks": 2}
    g.load_state_dict(sd)
    # HWIO -> OIHW
    assert g.c1.weight[4, 2, 1, 7] == tensors["gen/W1"][1, 7, 2, 4]
    assert torch.equal(g.blocks[1].conv2.weight, torch.from_numpy(tensors["gen/W5"].transpose(3, 2, 0, 1)))
    # k-th norm: shift Variable_{2k}, scale Variable_{2k+1}
    assert torch.all(g.blocks[0].norm1.shift == 0) and torch.all(g.blocks[0].norm1.scale == 1)
    assert torch.all(g.blocks[1].norm2.shift == 6) and torch.all(g.blocks[1].norm2.scale == 7)
    del tensors["gen/Variable_3"]
    with pytest.raises(CheckpointError, match="Variable_3 is missing"):
        tf_generator_state_dict(tensors)


def _official(shared):
    return shared("models", "dped_orig") / "iphone_orig"


def _patches(shared, camera, n):
    from dpedkit.io import read_rgb

    folder = shared("data", "dped", "iphone", "test_data", "patches", camera)
    arrays = [read_rgb(folder / f"{i}.jpg") for i in range(n)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def _psnr(a, b):
    return 10 * torch.log10(1 / ((a - b) ** 2).mean()).item()


@pytest.mark.shared
def test_official_checkpoint_improves_a_patch(shared):
    model = load_model(_official(shared))
    assert count_parameters(model) == 401_475
    x, y = _patches(shared, "iphone", 1), _patches(shared, "canon", 1)
    with torch.no_grad():
        z = model(x)
    assert _psnr(z, y) > _psnr(x, y) + 1.0  # 21.77 dB vs 20.22 dB
    assert _psnr(z, y) == pytest.approx(21.773, abs=0.01)  # regression golden of this port


# The reference scores of DPED_REFERENCE.md (19.40 dB on 100 patches, identity 14.40) are reproduced through the
# whole evaluation path by tests/evaluate/test_evaluate.py::test_official_iphone_model_reproduces_reference.


@pytest.mark.shared
def test_official_checkpoint_damaged_data(shared, tmp_path):
    src = _official(shared)
    for suffix in (".index", ".data-00000-of-00001"):
        (tmp_path / f"m{suffix}").write_bytes((src.parent / f"iphone_orig{suffix}").read_bytes())
    data = bytearray((tmp_path / "m.data-00000-of-00001").read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / "m.data-00000-of-00001").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        load_model(tmp_path / "m")
    (tmp_path / "m.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError, match="data shard .* missing"):
        load_model(tmp_path / "m")


@pytest.mark.shared
def test_convert_official(shared, tmp_path):
    out = tmp_path / "iphone.pt"
    res = convert(_official(shared), out)
    assert res.parameters == 401_475 and res.model == "dped" and res.source_format == "tensorflow"
    a, b = load_model(out), load_model(_official(shared))
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert load_checkpoint(out)["converted_from"]["format"] == "tensorflow"
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(InputError, match="exists"):
        convert(_official(shared), out)
    again = convert(out, tmp_path / "again.pt")
    assert again.source_format == "dpedkit-checkpoint"


@pytest.mark.shared
def test_tf_checkpoint_forms(shared, tmp_path):
    prefix = _official(shared)
    for form in (prefix, f"{prefix}.index", f"{prefix}.data-00000-of-00001", prefix.parent):
        assert load_checkpoint(form)["config"]["channels"] == 64


def test_convert_cli(tmp_path):
    from click.testing import CliRunner
    from dpedkit_cli.main import cli

    src = save_checkpoint(tmp_path / "g.pt", Generator(GeneratorConfig(channels=4, blocks=1)))
    runner = CliRunner()
    res = runner.invoke(cli, ["convert", str(src), "-o", str(tmp_path / "out.pt"), "--json"])
    assert res.exit_code == 0, res.output
    assert '"parameters"' in res.output and load_model(tmp_path / "out.pt").cfg.channels == 4
    res = runner.invoke(cli, ["convert", str(tmp_path / "missing"), "-o", str(tmp_path / "x.pt")])
    assert res.exit_code == 2 and "no such file" in res.output


@pytest.mark.gpu
@pytest.mark.shared
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_official_checkpoint_on_gpu_matches_cpu(shared):
    x = _patches(shared, "iphone", 4)
    with torch.no_grad():
        cpu = load_model(_official(shared))(x)
        gpu = load_model(_official(shared), device="cuda")(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, atol=2e-3, rtol=0)
