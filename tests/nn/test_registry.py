"""The model registry is the one list of networks: a new network is one module and one ``register`` call."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from dpedkit.config import ConfigMixin, TrainConfig
from dpedkit.errors import ConfigError
from dpedkit.nn.checkpoint import load_model
from dpedkit.nn.registry import MODELS, ModelSpec, Recipe, is_raw_model, model_spec, register, trainable, unregister
from dpedkit.testing import write_synthetic_dataset


@dataclass(frozen=True)
class ToyConfig(ConfigMixin):
    """A one-layer network.

    Attributes:
        width: hidden channels.
    """

    width: int = 4


class ToyNet(nn.Module):
    """RGB in, RGB out: a residual 3x3 convolution pair."""

    name = "toy"
    config_class = ToyConfig

    def __init__(self, cfg: ToyConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ToyConfig()
        self.a = nn.Conv2d(3, cfg.width, 3, padding=1)
        self.b = nn.Conv2d(cfg.width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(torch.relu(self.a(x)))


@pytest.fixture
def toy():
    spec = register(ModelSpec("toy", f"{__name__}:ToyNet", Recipe("toy", ("mse",), lr=1e-3)))
    yield spec
    unregister("toy")


def test_a_network_registered_in_one_call_trains_checkpoints_and_loads(toy, tmp_path):
    from dpedkit.train import train

    data = write_synthetic_dataset(tmp_path / "ds", n_train=8, n_test=2, patch=16, seed=0)
    cfg = TrainConfig(model="toy", iters=2, batch=2, eval_every=2, device="cpu", data_mode="memory", samples=0,
                      model_config={"width": 6})  # fmt: skip
    assert cfg.with_recipe_defaults().lr == 1e-3 and not cfg.needs_vgg
    result = train(data, tmp_path / "run", config=cfg)
    assert result.step == 2
    net = load_model(tmp_path / "run" / "latest.pt", expect=trainable("rgb"))
    assert isinstance(net, ToyNet) and net.cfg.width == 6 and not is_raw_model("toy")


def test_unknown_and_unregistered_models_are_clear_errors():
    assert "toy" not in MODELS
    with pytest.raises(ConfigError, match="known models: .*dped"):
        model_spec("toy")
    with pytest.raises(ConfigError, match="model"):
        TrainConfig(model="toy")
    with pytest.raises(ValueError, match="registered already"):
        register(ModelSpec("dped", "x:Y"))


def test_the_table():
    assert trainable("rgb") == ("dped", "srcnn", "johnson") and trainable("raw") == ("dped-raw", "sid-unet")
    assert model_spec("dped").recipe.discriminator and model_spec("dped").recipe.vgg
    assert not model_spec("dped-discriminator").enhances and is_raw_model("sid-unet")


def test_train_help_names_every_trainable_model_and_no_internal_name():
    from dpedkit_cli.main import cli

    text = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    model_help = text.split("--model [", 1)[1].split("]", 1)[1].split("--iters", 1)[0].replace("- ", "-")  # wrapped
    assert all(f"{name} (" in model_help for name in trainable()), model_help
    assert "RECIPES" not in text and "registry" not in model_help


def test_the_table_says_which_models_tile_and_each_network_says_how():
    from dpedkit.nn.checkpoint import model_class

    for name, spec in MODELS.items():
        tiling = getattr(model_class(name), "tiling", None)
        assert spec.tiles == (tiling is not None), name
        assert tiling in (None, "stages", "halo"), name
        assert tiling != "stages" or callable(model_class(name).stages), name
