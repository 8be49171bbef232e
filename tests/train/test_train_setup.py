"""What training sets up and runs: the recipe table, the loss composition it trains with, the frozen discriminator."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from dpedkit.config import MODELS, TrainConfig
from dpedkit.nn.losses import LossWeights, generator_loss
from dpedkit.nn.registry import Recipe, is_raw_model, model_spec, trainable
from dpedkit.testing import write_synthetic_dataset
from dpedkit.train.data import D_STREAM, G_STREAM
from dpedkit.train.loop import discriminator_step, generator_step
from dpedkit.train.setup import Run, init_distributed, setup_run

TINY = {"channels": 8, "blocks": 1}
RGB_MODELS = [m for m in MODELS if not is_raw_model(m)]  # the RAW ones train on raw2rgb data: test_raw2rgb.py


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("setup") / "ds", n_train=16, n_test=4, patch=24, seed=2)


def _run(data: Path, tmp_path: Path, model: str, **kw) -> Run:
    config = TrainConfig(model=model, iters=2, batch=3, vgg="random", model_config=TINY if model == "dped" else None,
                         device="cpu", data_mode="memory", samples=0, **kw)  # fmt: skip
    return setup_run(data, tmp_path / "run", config, init_distributed("cpu"), start=0)


def test_one_recipe_per_model():
    assert trainable() == MODELS and all(model_spec(m).recipe.model == m for m in MODELS)
    assert (
        model_spec("dped").recipe.terms == ("content", "texture", "color", "tv")
        and model_spec("dped").recipe.discriminator
    )
    assert (
        model_spec("johnson").recipe.vgg
        and not model_spec("johnson").recipe.discriminator
        and not model_spec("srcnn").recipe.vgg
    )
    assert TrainConfig(model="srcnn").needs_vgg is False
    with pytest.raises(ValueError, match="texture goes with the discriminator"):
        Recipe("odd", ("content", "texture"))


@pytest.mark.parametrize("model", RGB_MODELS)
def test_setup_follows_the_recipe(data, tmp_path, model):
    run = _run(data, tmp_path, model)
    recipe = model_spec(model).recipe
    assert run.recipe is recipe and (run.d is not None) == recipe.discriminator and (run.vgg is not None) == recipe.vgg
    assert run.weights == LossWeights.preset("code") and run.resolved["loss_weights"]["mse"] == 1.0


@pytest.mark.parametrize("model", RGB_MODELS)
def test_the_step_trains_the_loss_the_tests_pin(data, tmp_path, model):
    """One generator step's loss is generator_loss on the same tensors, and its gradient is what the step applies."""
    run = _run(data, tmp_path, model, loss_preset="paper")
    batch = run.source.get(0, G_STREAM)
    g_before = copy.deepcopy(run.g_raw)
    with torch.no_grad():
        ref = generator_loss(g_before(batch.phone), batch.dslr, recipe=model, weights=LossWeights.preset("paper"),
                             vgg=run.vgg, discriminator=run.d_raw)  # fmt: skip
    out = generator_step(run, batch)
    assert set(out) == {"g_loss", *(f"g_{t}" for t in model_spec(model).recipe.terms)}
    torch.testing.assert_close(out["g_loss"], ref["total"], rtol=0, atol=0)
    for term in model_spec(model).recipe.terms:
        torch.testing.assert_close(out[f"g_{term}"], ref[term], rtol=0, atol=0)
    # the step applied the gradient of that loss, seen through Adam's first step (lr * sign(grad))
    d = copy.deepcopy(run.d_raw) if run.d_raw is not None else None
    x = g_before(batch.phone)
    weights = LossWeights.preset("paper")
    generator_loss(x, batch.dslr, recipe=model, weights=weights, vgg=run.vgg, discriminator=d)["total"].backward()
    lr = run.config.lr
    for (name, p0), p1 in zip(g_before.named_parameters(), run.g_raw.parameters(), strict=True):
        moved = p1.detach() - p0.detach()
        expect = -lr * torch.sign(p0.grad)
        mask = p0.grad.abs() > 1e-4  # Adam's first step is lr * g / (|g| + eps): the sign where |g| >> eps
        torch.testing.assert_close(moved[mask], expect[mask], rtol=1e-3, atol=1e-7, msg=name)


def test_the_discriminator_gets_no_gradient_in_the_generator_step(data, tmp_path):
    run = _run(data, tmp_path, "dped")
    d_before = copy.deepcopy(run.d_raw.state_dict())
    generator_step(run, run.source.get(0, G_STREAM))
    assert all(p.grad is None for p in run.d_raw.parameters())
    assert all(p.requires_grad for p in run.d_raw.parameters())  # unfrozen again for its own step
    assert all(torch.equal(v, run.d_raw.state_dict()[k]) for k, v in d_before.items())
    discriminator_step(run, run.source.get(0, D_STREAM))
    assert all(p.grad is not None for p in run.d_raw.parameters())


def test_run_is_built_from_keywords():
    with pytest.raises(TypeError):
        Run(TrainConfig(model="srcnn"))  # type: ignore[misc]
