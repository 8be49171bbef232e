"""Evaluation protocols (DPED batch-pooled, PIRM per patch), the official-folder reader and `dpedkit evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dpedkit.config import EvalConfig
from dpedkit.errors import ConfigError, InputError
from dpedkit.evaluate import evaluate, evaluate_arrays
from dpedkit.interop.dped_layout import find_dped_folder, is_dped_folder, list_pairs, load_pairs
from dpedkit.io import write_image
from dpedkit.nn.device import resolve_device

SIZE = 24


def _make_dped(root, rng, n=7, phone="iphone", split_dirs=("test_data", "patches")):
    """An official-layout folder with ``n`` smooth random patch pairs; returns the phone folder."""
    base = root / "dped" / phone
    dirs = [base.joinpath(*split_dirs, side) for side in (phone, "canon")]
    for d in dirs:
        d.mkdir(parents=True)
    for i in range(n):
        dslr = rng.integers(0, 256, (6, 6, 3)).repeat(4, 0).repeat(4, 1)
        shot = np.clip(0.7 * dslr + 20 + rng.normal(0, 8, dslr.shape), 0, 255).astype(np.uint8)
        write_image(dirs[0] / f"{i}.jpg", shot, quality=100)
        write_image(dirs[1] / f"{i}.jpg", dslr.astype(np.uint8), quality=100)
    return base


def _nchw(a):
    return torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255.0


def test_resolve_device():
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_find_dped_folder_variants(tmp_path, rng):
    base = _make_dped(tmp_path, rng)
    assert is_dped_folder(base) and is_dped_folder(base.parent) and not is_dped_folder(tmp_path / "nothing")
    assert find_dped_folder(base.parent, phone="iphone").root == base
    assert find_dped_folder(base.parent).phone == "iphone"  # single phone: no --phone needed
    assert find_dped_folder(base).phone == "iphone"
    with pytest.raises(ConfigError, match="'sony'"):
        find_dped_folder(base, phone="sony")
    _make_dped(tmp_path, rng, n=2, phone="sony")
    with pytest.raises(ConfigError, match="several phones"):
        find_dped_folder(base.parent)
    with pytest.raises(ConfigError, match="phone must be one of"):
        find_dped_folder(base.parent, phone="nokia")
    with pytest.raises(InputError, match="not an official DPED folder"):
        find_dped_folder(tmp_path / "dped" / "iphone" / "test_data")


def test_pairs_by_numeric_index_and_missing_side(tmp_path, rng, caplog):
    base = _make_dped(tmp_path, rng, n=12)
    folder = find_dped_folder(base)
    pairs = list_pairs(folder, "test")
    assert [int(p.stem) for p, _ in pairs] == list(range(12))  # 10 after 9, not after 1
    assert all(p.stem == d.stem and d.parent.name == "canon" for p, d in pairs)
    (base / "test_data" / "patches" / "canon" / "11.jpg").unlink()
    assert len(list_pairs(folder, "test")) == 11
    assert "using the 11 indices" in caplog.text
    phone, dslr = load_pairs(folder, "test", limit=3)
    assert phone.shape == dslr.shape == (3, SIZE, SIZE, 3) and phone.dtype == np.uint8
    with pytest.raises(InputError, match="missing folder"):
        list_pairs(folder, "train")


def test_train_split_layout(tmp_path, rng):
    base = _make_dped(tmp_path, rng, n=3, split_dirs=("training_data",))
    phone, _ = load_pairs(find_dped_folder(base), "train")
    assert len(phone) == 3


def test_identity_model_scores_equal_identity_baseline(tmp_path, rng):
    base = _make_dped(tmp_path, rng)
    res = evaluate(torch.nn.Identity(), base, config=EvalConfig(batch=3, device="cpu"))
    assert res.n_pairs == 7
    assert res.model == res.identity
    d = res.to_dict()
    assert (
        set(d) == {"n_pairs", "dped", "pirm", "ssim", "identity", "baseline", "config"} and d["baseline"] == "identity"
    )
    assert d["config"] == EvalConfig(batch=3, device="cpu").to_dict()  # what it ran with is recorded
    assert set(d["identity"]) == {"dped", "pirm", "ssim"} and set(d["dped"]) == {"psnr", "ms_ssim"}


def test_protocols_match_manual_computation(tmp_path, rng):
    base = _make_dped(tmp_path, rng)
    phone, dslr = load_pairs(find_dped_folder(base), "test")
    x, y = _nchw(phone), _nchw(dslr)

    def net(t):  # overshoots [0, 1] so clipping matters
        return 1.3 * t - 0.15

    scores, ident = evaluate_arrays(net, phone, dslr, batch=3)
    out = net(x)
    # DPED: batches of 3, 3, 1; pooled MSE per batch, unclipped output
    batch_psnr = [10 * np.log10(1 / float(((out[s : s + 3] - y[s : s + 3]) ** 2).mean())) for s in (0, 3, 6)]
    assert scores.dped_psnr == pytest.approx(np.mean(batch_psnr), abs=1e-4)
    # PIRM: per patch, clipped
    per = [10 * np.log10(1 / float(((out[i].clamp(0, 1) - y[i]) ** 2).mean())) for i in range(7)]
    assert scores.pirm_psnr == pytest.approx(np.mean(per), abs=1e-4)
    ident_per = [10 * np.log10(1 / float(((x[i] - y[i]) ** 2).mean())) for i in range(7)]
    assert ident.pirm_psnr == pytest.approx(np.mean(ident_per), abs=1e-4)
    assert scores.dped_psnr != pytest.approx(ident.dped_psnr, abs=0.1)
    assert 0 < scores.ssim < 1 and 0 < scores.pirm_ms_ssim < 1 and 0 < scores.dped_ms_ssim < 1


def test_dpedkit_dataset_goes_through_load_split(tmp_path, rng, monkeypatch):
    import dpedkit.dataset.loader
    from dpedkit.testing import write_synthetic_dataset

    ds = write_synthetic_dataset(tmp_path / "ds", n_train=2, n_test=2, patch=SIZE)
    phone = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    calls = []

    def fake_load_split(path, split="train", **kw):
        calls.append((path, split))
        return phone, phone

    monkeypatch.setattr(dpedkit.dataset.loader, "load_split", fake_load_split)
    res = evaluate(torch.nn.Identity(), ds, config=EvalConfig(device="cpu"))
    assert calls == [(ds, "test")] and res.n_pairs == 4
    assert res.identity.pirm_psnr == float("inf") and res.identity.ssim == pytest.approx(1.0)


@pytest.mark.parametrize("split", ["test", "train"])
def test_empty_split_is_a_clear_error_before_the_model_loads(tmp_path, split):
    from dpedkit_cli.main import cli

    from dpedkit.testing import write_synthetic_dataset

    counts = {"n_train": 0, "n_test": 2} if split == "train" else {"n_train": 2, "n_test": 0}
    ds = write_synthetic_dataset(tmp_path / "ds", patch=SIZE, **counts)
    missing_model = tmp_path / "no-such-model.pt"  # a CheckpointError would mean the model was loaded first
    with pytest.raises(InputError, match=f"ds: its {split} split holds no patch pairs"):
        evaluate(missing_model, ds, config=EvalConfig(split=split, device="cpu"))
    res = CliRunner().invoke(cli, ["evaluate", str(missing_model), str(ds), "--split", split])
    assert res.exit_code == 2 and f"its {split} split holds no patch pairs" in " ".join(res.output.split())
    with pytest.raises(InputError, match="at least one"):
        evaluate_arrays(torch.nn.Identity(), np.zeros((0, SIZE, SIZE, 3), np.uint8), np.zeros((0, SIZE, SIZE, 3)))


def test_config_validation():
    with pytest.raises(ConfigError, match="split"):
        EvalConfig(split="val")
    with pytest.raises(ConfigError, match="batch"):
        EvalConfig(batch=0)
    assert EvalConfig.from_dict(EvalConfig(phone="sony").to_dict()) == EvalConfig(phone="sony")


def test_cli_evaluate_json_and_errors(tmp_path, rng):
    from dpedkit_cli.main import cli

    from dpedkit.nn.checkpoint import save_checkpoint
    from dpedkit.nn.generator import Generator, GeneratorConfig

    base = _make_dped(tmp_path, rng, n=3)
    ckpt = save_checkpoint(tmp_path / "g.pt", Generator(GeneratorConfig(channels=4, blocks=1)))
    runner = CliRunner()
    # -q: the root RichHandler of cli/main.py logs to stdout (reported to the lead)
    res = runner.invoke(cli, ["-q", "evaluate", str(ckpt), str(base.parent), "--phone", "iphone", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_pairs"] == 3 and set(out["identity"]) == {"dped", "pirm", "ssim"}
    res = runner.invoke(cli, ["evaluate", str(ckpt), str(tmp_path), "--json"])
    assert res.exit_code == 2 and "not an official DPED folder" in " ".join(res.output.split())
    res = runner.invoke(cli, ["evaluate", str(ckpt), str(base), "--batch", "0"])
    assert res.exit_code != 0


@pytest.mark.shared
@pytest.mark.slow
def test_official_iphone_model_reproduces_reference(shared):
    res = evaluate(
        shared("models", "dped_orig", "iphone_orig.index"),
        shared("data", "dped"),
        config=EvalConfig(phone="iphone", device="cpu"),
    )
    assert res.n_pairs == 100
    assert res.model.dped_psnr == pytest.approx(19.40, abs=0.02)
    assert res.model.dped_ms_ssim == pytest.approx(0.917, abs=0.001)
    assert res.model.pirm_psnr == pytest.approx(21.84, abs=0.02)
    assert res.identity.dped_psnr == pytest.approx(14.40, abs=0.02)
    assert res.identity.dped_ms_ssim == pytest.approx(0.828, abs=0.001)
    assert res.identity.pirm_psnr == pytest.approx(16.93, abs=0.02)


def test_compare_scores_each_model_as_evaluate_does_with_one_identity_row(tmp_path, rng):
    import csv
    import io

    from dpedkit_cli.main import cli

    from dpedkit.evaluate import compare
    from dpedkit.nn.checkpoint import save_checkpoint
    from dpedkit.nn.generator import Generator, GeneratorConfig

    base = _make_dped(tmp_path, rng, n=3)
    torch.manual_seed(0)
    a = save_checkpoint(tmp_path / "a.pt", Generator(GeneratorConfig(channels=4, blocks=1)))
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.pt", Generator(GeneratorConfig(channels=4, blocks=1)))  # a run folder: its best.pt
    cfg = EvalConfig(device="cpu")
    result = compare([a, run], base, config=cfg)
    assert [r["model"] for r in result.rows] == ["a.pt", "run", "identity"]
    for row, model in zip(result.rows, (a, run / "best.pt"), strict=False):
        alone = evaluate(model, base, config=cfg)
        assert row["dped_psnr"] == alone.model.dped_psnr and row["ssim"] == alone.model.ssim
    assert result.rows[-1]["dped_psnr"] == alone.identity.dped_psnr
    assert result.rows[0]["dped_psnr"] != result.rows[1]["dped_psnr"]  # two different models
    md = result.markdown().splitlines()
    assert len(md) == 5 and md[2].startswith("| a.pt | ") and md[4].startswith("| identity | ")
    table = list(csv.DictReader(io.StringIO(result.csv())))
    assert [r["model"] for r in table] == ["a.pt", "run", "identity"]
    assert float(table[0]["dped_psnr"]) == result.rows[0]["dped_psnr"]

    runner = CliRunner()
    res = runner.invoke(cli, ["-q", "compare", str(a), str(run), str(base), "--name", "first", "--name", "second",
                              "--json", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert [r["model"] for r in json.loads(res.stdout)["rows"]] == ["first", "second", "identity"]
    res = runner.invoke(cli, ["-q", "compare", str(a), str(base), "--format", "markdown", "--device", "cpu"])
    assert res.exit_code == 0 and res.stdout.startswith("| model | DPED PSNR dB")
    res = runner.invoke(cli, ["compare", str(a), str(run), str(base), "--name", "only-one"])
    assert res.exit_code == 2


@pytest.mark.shared
@pytest.mark.slow
def test_compare_the_official_model_a_trained_srcnn_and_the_identity(shared, dped_80_20, tmp_path):
    from dpedkit_cli.main import cli

    from dpedkit.config import TrainConfig
    from dpedkit.train import train

    data = dped_80_20
    cfg = TrainConfig(model="srcnn", iters=60, batch=8, eval_every=60, device="cpu", samples=0, tensorboard=False)
    train(data, tmp_path / "srcnn", config=cfg)
    official = shared("models", "dped_orig") / "iphone_orig"
    res = CliRunner().invoke(cli, ["compare", str(official), str(tmp_path / "srcnn"), str(data), "--device", "cpu"],
                             terminal_width=200)  # fmt: skip
    assert res.exit_code == 0, res.output
    print(res.output)
    lines = [ln for ln in res.output.splitlines() if ln.startswith("│")]
    assert [ln.split("│")[1].strip() for ln in lines] == ["iphone_orig", "srcnn", "identity"]
    psnr = [float(ln.split("│")[2]) for ln in lines]
    assert psnr[0] > psnr[2] and psnr[1] > psnr[2]  # both beat the phone's own photos
