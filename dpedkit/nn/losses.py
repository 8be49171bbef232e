"""DPED losses as in the official code: content (VGG-19 relu5_4), color (blur), texture (adversarial), TV.

All functions take float tensors ``(N, 3, H, W)`` in [0, 1] (RGB) unless stated, and return a 0-d tensor.
Reductions follow the official code exactly (some are sums, not means), so the loss weights of the official
models apply unchanged:

- content: mean squared difference of VGG-19 ``relu5_4`` features over all N x C x h x w elements;
- color: per-channel blur by a fixed 21x21 kernel (zero padding), sum of squared differences / (2N);
- texture: ``+ sum log p_fake`` over the batch (saturating form; negative values are expected);
- discriminator: ``- sum target * log(clip(p, 1e-10, 1))`` over the batch (a sum, not a mean);
- TV: mean squared vertical difference + mean squared horizontal difference.

Presets: ``code`` (10 / 1 / 0.5 / 2000 for content / texture / color / TV; the default, matching the official
checkpoints) and ``paper`` (1 / 0.4 / 0.1 / 400, as written in the paper); ``mse`` (the SRCNN baseline) has
weight 1 in both.

:func:`generator_loss` is the one composition of these terms: the training step runs it with the model's
recipe (:mod:`dpedkit.nn.registry`) and the tests pin it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING, get_args

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from dpedkit.nn.registry import Recipe

from dpedkit.config import ConfigMixin, LossPreset
from dpedkit.errors import ConfigError, InputError, check_choice, check_range

PROB_FLOOR = 1e-10


@dataclass(frozen=True)
class LossWeights(ConfigMixin):
    """Weights of the generator loss terms (defaults: the ``code`` preset)."""

    content: float = 10.0
    texture: float = 1.0
    color: float = 0.5
    tv: float = 2000.0
    mse: float = 1.0

    def _validate(self) -> None:
        for f in fields(self):
            check_range(f.name, getattr(self, f.name), 0.0)

    @classmethod
    def preset(cls, name: str) -> LossWeights:
        """The named preset: ``code`` (official models) or ``paper``."""
        check_choice("loss preset", name, get_args(LossPreset))
        return PRESETS[name]


PRESETS: dict[str, LossWeights] = {
    "code": LossWeights(content=10.0, texture=1.0, color=0.5, tv=2000.0),
    "paper": LossWeights(content=1.0, texture=0.4, color=0.1, tv=400.0),
}


# --- color --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def color_kernel(size: int = 21, nsig: float = 3.0) -> np.ndarray:
    """The official blur kernel: ``sqrt(outer(g, g))`` renormalised, ``g`` a 1-D Gaussian over +-``nsig`` sigma.

    ``g`` holds the Gaussian's probability mass in ``size`` equal bins spanning +-(nsig + half a bin) sigma.
    One bin is 0.30 sigma, so sigma is 3.3 px; the square root widens it to 4.7 px (4.34 px after the
    truncation to 21 taps), where the paper says sigma = 3.

    Returns:
        ``size x size`` float64 array summing to 1 (read-only; cached).
    """
    interval = (2 * nsig + 1.0) / size
    x = np.linspace(-nsig - interval / 2.0, nsig + interval / 2.0, size + 1)
    cdf = np.array([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])
    g = np.diff(cdf)
    raw = np.sqrt(np.outer(g, g))
    kernel = raw / raw.sum()
    kernel.setflags(write=False)
    return kernel


def color_blur(x: torch.Tensor) -> torch.Tensor:
    """Blur each channel of ``x`` (N, C, H, W) with :func:`color_kernel`, zero padding, same size."""
    k = torch.tensor(color_kernel(), dtype=x.dtype, device=x.device)
    c = x.shape[1]
    weight = k.expand(c, 1, *k.shape)
    return F.conv2d(x, weight, padding=k.shape[-1] // 2, groups=c)


def color_loss(enhanced: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences of the blurred images divided by ``2 N`` (not by the pixel count)."""
    _check_pair(enhanced, target)
    diff = color_blur(enhanced) - color_blur(target)
    return diff.square().sum() / (2 * enhanced.shape[0])


# --- content, TV --------------------------------------------------------------------------------------


def content_loss(enhanced: torch.Tensor, target: torch.Tensor, *, vgg: torch.nn.Module) -> torch.Tensor:
    """Mean squared difference of ``vgg`` features (``relu5_4``) of the two images.

    Args:
        enhanced: generator output (N, 3, H, W) in [0, 1]; gradients flow through it.
        target: DSLR images, same shape (no gradient is taken through them).
        vgg: a :class:`dpedkit.nn.vgg.VGG19Features` (it does its own preprocessing).
    """
    _check_pair(enhanced, target)
    with torch.no_grad():
        target_features = vgg(target)
    return (vgg(enhanced) - target_features).square().mean()


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation: mean of squared vertical + mean of squared horizontal neighbour differences of (N, C, H, W)."""
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    return dy.square().mean() + dx.square().mean()


# --- adversarial --------------------------------------------------------------------------------------


def discriminator_target(adv: torch.Tensor) -> torch.Tensor:
    """One-hot targets ``[adv, 1 - adv]`` (N, 2) from per-sample flags (1 = DSLR/real image shown)."""
    adv = adv.reshape(-1).to(torch.float32)
    return torch.stack([adv, 1.0 - adv], dim=1)


def discriminator_loss(probs: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """``- sum target * log(clip(p, 1e-10, 1))`` over the batch (a sum).

    Args:
        probs: discriminator softmax outputs (N, 2), class 0 = DSLR/real.
        adv: flags (N,), 1 where the discriminator was shown the DSLR image, 0 for an enhanced one.
    """
    target = discriminator_target(adv).to(probs)
    return -(target * probs.clamp(PROB_FLOOR, 1.0).log()).sum()


def texture_loss(probs_fake: torch.Tensor) -> torch.Tensor:
    """Generator adversarial term: ``+ sum log p(enhanced)`` of D outputs (N, 2) on enhanced images only.

    The official saturating form (``-discriminator_loss`` with all flags 0); values are <= 0.
    """
    return probs_fake[:, 1].clamp(PROB_FLOOR, 1.0).log().sum()


def discriminator_accuracy(probs: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose argmax class matches the target (0-d float tensor)."""
    predicted_real = probs.argmax(dim=1) == 0
    return (predicted_real == (adv.reshape(-1) > 0.5).to(probs.device)).float().mean()


def discriminator_input(enhanced: torch.Tensor, dslr: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """What the discriminator sees: ``gray(enhanced) * (1 - adv) + gray(dslr) * adv`` per sample (N, 1, H, W).

    Args:
        enhanced: generator outputs (N, 3, H, W) in [0, 1].
        dslr: DSLR patches, same shape.
        adv: per-sample flags (N,), 1 to show the DSLR patch (real), 0 the enhanced one.
    """
    from dpedkit.nn.discriminator import to_gray

    a = adv.view(-1, 1, 1, 1).to(enhanced.dtype)
    return to_gray(enhanced) * (1 - a) + to_gray(dslr).to(enhanced.dtype) * a


def generator_loss(
    enhanced: torch.Tensor,
    target: torch.Tensor,
    *,
    recipe: Recipe | str = "dped",
    weights: LossWeights | None = None,
    vgg: torch.nn.Module | None = None,
    discriminator: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """The generator loss terms of ``recipe`` and their weighted ``total``: the one composition training runs.

    Args:
        enhanced: generator output (N, 3, H, W) in [0, 1]; gradients flow through it.
        target: DSLR patches, same shape.
        recipe: a :class:`~dpedkit.nn.registry.Recipe` or model name (``dped``: content, texture, color, TV;
            ``johnson``: content, TV; ``srcnn``: MSE).
        weights: term weights (default: the ``code`` preset).
        vgg: feature extractor for the content term (recipes with ``content``).
        discriminator: :class:`dpedkit.nn.discriminator.Discriminator` for the texture term; it sees only the
            enhanced images (recipes with ``texture``).

    Returns:
        The recipe's terms (0-d tensors, unweighted) and ``total`` (weighted sum, in recipe order; it carries the
        gradient).

    Raises:
        ConfigError: the recipe needs a ``vgg`` or ``discriminator`` that was not given.
    """
    from dpedkit.nn.discriminator import to_gray
    from dpedkit.nn.registry import model_spec

    recipe = model_spec(recipe).recipe if isinstance(recipe, str) else recipe
    w = weights or PRESETS["code"]
    need = {"content": vgg, "texture": discriminator}
    missing = sorted(k for k in recipe.terms if k in need and need[k] is None)
    if missing:
        raise ConfigError(f"the {recipe.model} loss needs {' and '.join(missing)} (vgg=, discriminator=)")
    compute = {
        "content": lambda: content_loss(enhanced, target, vgg=vgg),
        "texture": lambda: texture_loss(discriminator(to_gray(enhanced))),
        "color": lambda: color_loss(enhanced, target),
        "tv": lambda: tv_loss(enhanced),
        "mse": lambda: F.mse_loss(enhanced.float(), target),
    }
    terms = {name: compute[name]() for name in recipe.terms}
    terms["total"] = sum(getattr(w, name) * terms[name] for name in recipe.terms)
    return terms


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise InputError(
            None,
            f"loss inputs must be two (N, C, H, W) tensors of one shape; got {tuple(a.shape)} and {tuple(b.shape)}",
        )
