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
