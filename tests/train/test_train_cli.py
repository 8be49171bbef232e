"""CLI smoke tests: dpedkit train / import-dped / export-dped / bench train, and the training benchmark."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from dpedkit_cli.main import cli

from dpedkit.bench.train import bench_train
from dpedkit.testing import write_synthetic_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("cli") / "ds", n_train=32, n_test=4, patch=24)


def test_train_without_vgg_says_how_to_get_the_weights(data, tmp_path):
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "imagenet-vgg-verydeep-19.mat" in res.output and "--vgg" in res.output
    assert not (tmp_path / "run").exists()


def test_a_vgg_path_that_does_not_exist_is_named_before_any_data_is_loaded(data, tmp_path, monkeypatch):
    import dpedkit.train.loop
    from dpedkit.errors import CheckpointError
    from dpedkit.train import TrainConfig, train

    def no_setup(*args, **kwargs):
        raise AssertionError("the data was loaded before the VGG path was checked")

    monkeypatch.setattr(dpedkit.train.loop, "setup_run", no_setup)
    missing = tmp_path / "imagenet-vgg-verydeep-19.mat"
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(tmp_path / "run"), "--vgg", str(missing)])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and f"{missing}: no such file" in out, res.output
    assert "none were given" not in out and "vgg19-dcbb9e9d.pth" in out  # where the weights come from
    assert not (tmp_path / "run").exists()
    for model in ("johnson", "dped"):  # the library fails as fast, even on a dataset that is not there
        config = TrainConfig(model=model, vgg=str(missing), device="cpu")
        with pytest.raises(CheckpointError, match="no such file") as err:
            train(tmp_path / "no-dataset", tmp_path / "run", config=config)
        assert "none were given" not in str(err.value)
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(tmp_path / "run")])  # no path: as before
    assert res.exit_code == 2 and "none were given" in " ".join(res.output.split())


def test_train_bad_option_is_a_clean_error(data, tmp_path):
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(tmp_path / "r"), "--model", "unet"])
    assert res.exit_code == 2 and "unet" in res.output
    res = CliRunner().invoke(cli, ["train", str(data), "-o", str(tmp_path / "r"), "--arch", "channels"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output


def test_train_and_resume_from_the_command_line(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--model", "dped", "--vgg", "random", "--batch", "2",
            "--eval-every", "2", "--arch", "channels=8", "--arch", "blocks=1", "--device", "cpu", "--json"]  # fmt: skip
    res = CliRunner().invoke(cli, [*args, "--iters", "2"])
    assert res.exit_code == 0, res.output
    assert [r["step"] for r in json.loads(res.stdout)["history"]] == [0, 2]
    res = CliRunner().invoke(cli, [*args, "--iters", "4"])
    assert res.exit_code == 2 and "--resume" in res.output
    res = CliRunner().invoke(cli, [*args, "--iters", "4", "--resume"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step"] == 4
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [0, 2, 4]


def test_the_progress_loss_is_the_mean_the_metrics_row_records(data, tmp_path):
    from dpedkit.train import TrainConfig, train

    shown, rows = [], []
    config = TrainConfig(model="srcnn", iters=15, eval_every=15, batch=2, samples=0, device="cpu",
                         model_config={"channels1": 8, "channels2": 4})  # fmt: skip
    train(data, tmp_path / "lib", config=config, on_progress=lambda s, n, losses: shown.append((s, losses)),
          on_eval=rows.append)  # fmt: skip
    assert [s for s, losses in shown if losses] == [10, 15]  # every 10th step and each evaluation
    assert shown[-1][1]["g_loss"] == rows[-1]["g_loss"]  # the mean since the last evaluation, not the last batch

    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--model", "srcnn", "--batch", "2", "--iters", "15", "--eval-every",
            "15", "--samples", "0", "--arch", "channels1=8", "--arch", "channels2=4", "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    g_loss = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["g_loss"]
    text = " ".join(res.output.split())
    assert f"mean since step 0: loss {g_loss:.4g}" in text  # the bar: labelled, and the number of the table
    assert re.search(rf"│ 15 .*│ {g_loss:.4g} ", res.output)  # the table's g_loss column


def test_import_and_export_commands(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=3, n_test=2, patch=24)
    res = CliRunner().invoke(cli, ["export-dped", str(ds), "-o", str(tmp_path / "dped"), "--phone", "pixel"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["import-dped", str(tmp_path / "dped"), "--phone", "pixel", "-o",
                                   str(tmp_path / "back"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pairs"] == {"train": 3, "test": 2}
    res = CliRunner().invoke(cli, ["import-dped", str(tmp_path), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not an official DPED folder" in " ".join(res.output.split())


def test_bench_train_reports_both_data_paths():
    out = bench_train(device="cpu", batch=2, iters=3, warmup=1, workers=1, patch=24,
                      model_config={"channels": 8, "blocks": 1})  # fmt: skip
    assert out["iters"] == 2 and out["batch"] == 2
    for mode in ("memory", "loader"):
        r = out[mode]
        assert r["iters_per_s"] > 0 and r["patches_per_s"] == pytest.approx(4 * r["iters_per_s"])
        assert 0 <= r["data_wait"] < 1
        assert r["projected_20k_min"] == pytest.approx(20_000 / r["iters_per_s"] / 60)


def test_bench_train_command_help():
    res = CliRunner().invoke(cli, ["bench", "train", "--help"])
    assert res.exit_code == 0 and "data-wait" in res.output


def test_train_summary_shows_best_against_identity_and_the_next_command(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--model", "srcnn", "--batch", "2", "--iters", "2", "--eval-every",
            "2", "--arch", "channels1=8", "--arch", "channels2=4", "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert re.search(r"best PSNR \d+\.\d\d dB vs identity \d+\.\d\d dB", text), text
    assert "d_acc" not in text  # srcnn has no discriminator: no empty column
    assert "ema_psnr" in text  # the moving average's PSNR, which "best" refers to (srcnn's recipe turns ema on)
    assert f"next: dpedkit evaluate {run}/best.pt {data}" in text
