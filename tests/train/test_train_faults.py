"""Issue 20, training: NaN init weights, a best.pt copied over latest.pt, a dataset rebuilt under a run."""

from __future__ import annotations

import shutil

import pytest
import torch

from dpedkit.errors import CheckpointError, ConfigError
from dpedkit.nn.checkpoint import build_model, save_checkpoint
from dpedkit.testing import write_synthetic_dataset
from dpedkit.train import TrainConfig, train

SRCNN = {"channels1": 8, "channels2": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("faults") / "ds", n_train=16, n_test=4, patch=24, seed=1)


def _cfg(**kw) -> TrainConfig:
    base = dict(model="srcnn", iters=2, batch=2, eval_every=2, model_config=SRCNN, device="cpu", data_mode="memory",
                samples=0)  # fmt: skip
    return TrainConfig(**(base | kw))


def test_init_weights_holding_nan_are_refused(data, tmp_path):
    net = build_model("srcnn", SRCNN)
    with torch.no_grad():
        next(net.parameters())[0].fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", net)
    with pytest.raises(CheckpointError, match="hold NaN or infinite values"):
        train(data, tmp_path / "run", config=_cfg(init=str(tmp_path / "nan.pt")))


def test_a_best_pt_copied_over_latest_pt_is_a_clear_error(data, tmp_path):
    run = tmp_path / "run"
    train(data, run, config=_cfg())
    shutil.copy(run / "best.pt", run / "latest.pt")
    with pytest.raises(CheckpointError, match=r"no training state \(opt_g\).*a copied best\.pt"):
        train(data, run, config=_cfg(iters=4), resume=True)


def test_resume_on_a_dataset_rebuilt_at_the_same_path_is_refused(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=16, n_test=4, patch=24, seed=1)
    run = tmp_path / "run"
    train(ds, run, config=_cfg())
    copy = tmp_path / "copy"
    shutil.copytree(ds, copy)
    train(copy, run, config=_cfg(iters=3), resume=True)  # a copy of the same dataset is the same dataset
    shutil.rmtree(ds)
    write_synthetic_dataset(ds, n_train=16, n_test=4, patch=24, seed=2)  # other settings, same path
    with pytest.raises(ConfigError, match="is not the one the run trained on"):
        train(ds, run, config=_cfg(iters=4), resume=True)


def test_a_second_train_into_a_busy_run_folder_is_refused(data, tmp_path):
    """Issue 20: two runs into one folder trained over each other, their histories interleaved."""
    from dpedkit.errors import InputError
    from dpedkit.io import folder_lock

    run = tmp_path / "run"
    with folder_lock(run, "train"):  # as a first `dpedkit train` holds it
        with pytest.raises(InputError, match=r"is in use: dpedkit train, pid \d+"):
            train(data, run, config=_cfg())
    assert train(data, run, config=_cfg()).step == 2  # free again


def test_a_dataset_being_trained_on_cannot_be_rebuilt(tmp_path):
    """Issue 20: ``build --overwrite`` replaced the shards a running train was reading."""
    from dpedkit.config import BuildConfig, PatchConfig, TrainConfig
    from dpedkit.dataset.build import build_dataset
    from dpedkit.errors import InputError
    from dpedkit.synth.pairs import synthesize
    from dpedkit.train import train

    synthesize(tmp_path / "raw", n=2, seed=1, phone_mp=0.1, dslr_mp=0.2)
    cfg = BuildConfig(patch=PatchConfig(size=32), test_images=0)
    ds = tmp_path / "ds"
    build_dataset(tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr", ds, config=cfg)
    manifest = (ds / "dataset.json").read_bytes()
    refused = []

    def rebuild_meanwhile(*_: object) -> None:  # called by the running train after each step
        if not refused:
            with pytest.raises(InputError, match="is in use") as exc:
                build_dataset(tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr", ds, config=cfg, overwrite=True)
            refused.append(str(exc.value))

    train_cfg = TrainConfig(model="srcnn", iters=2, batch=2, eval_every=2, device="cpu", samples=0)
    train(ds, tmp_path / "run", config=train_cfg, on_progress=rebuild_meanwhile)
    assert refused and (ds / "dataset.json").read_bytes() == manifest
    build_dataset(tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr", ds, config=cfg, overwrite=True)  # after: ok


def test_a_full_disk_while_saving_latest_pt_is_one_line_and_keeps_the_previous_one(data, tmp_path, monkeypatch):
    """Issue 20: a full disk while writing ``latest.pt`` was a traceback (torch's "unexpected pos" RuntimeError)."""
    import errno

    from click.testing import CliRunner
    from dpedkit_cli.main import cli

    from dpedkit.nn import checkpoint

    run = tmp_path / "run"
    args = ["train", str(data), "-o", str(run), "--model", "srcnn", "--arch", "channels1=8", "--arch",
            "channels2=4", "--batch", "2", "--eval-every", "2", "--device", "cpu", "--data-mode", "memory",
            "--samples", "0"]  # fmt: skip
    assert CliRunner().invoke(cli, [*args, "--iters", "2"]).exit_code == 0
    before = (run / "latest.pt").read_bytes()
    write = checkpoint._WholeWrites.write

    def disk_fills(self, data):  # the lowest write: part of the bytes go, then the disk is full
        if "latest.pt" in self.f.name:
            self.f.write(bytes(memoryview(data)[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)

    monkeypatch.setattr(checkpoint._WholeWrites, "write", disk_fills)
    res = CliRunner().invoke(cli, [*args, "--iters", "4", "--resume"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and f"error: {run / 'latest.pt'}: No space left on device" in out, res.output
    assert "Traceback" not in res.output
    assert (run / "latest.pt").read_bytes() == before  # the previous one, whole
    assert not [p for p in run.iterdir() if p.name.startswith(".latest.pt")]  # no temporary file left
