"""The one list of networks: what each is, how it trains, what it reads and whether it tiles.

Every place that needs to know about models reads this table: the config's choices and help
(:mod:`dpedkit.config`), checkpoints (:mod:`dpedkit.nn.checkpoint`), training (:mod:`dpedkit.train`), evaluation
and enhancement. This module imports no torch (the network classes are named, and imported only when built), so
``dpedkit --help`` and the config stay light.

Adding a network: write its module in ``dpedkit/nn/`` (an ``nn.Module`` with ``name``, ``config_class`` and
``cfg``, as :mod:`dpedkit.nn.baselines`) and add one :func:`register` call to :data:`MODELS` below.

A recipe says which loss terms a model trains with: :func:`dpedkit.nn.losses.generator_loss` composes the terms it
names (the one composition that training runs and the tests pin); training builds a discriminator and loads VGG-19
only where it says so. Weights come from the loss preset (:data:`dpedkit.nn.losses.PRESETS`) for the DPED terms;
``mse`` has weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TERMS = ("content", "texture", "color", "tv", "mse")
InputKind = Literal["rgb", "raw"]


@dataclass(frozen=True)
class Recipe:
    """How one model is trained.

    Attributes:
        model: the model name.
        terms: the generator loss terms, in the order they are summed: ``content`` (VGG-19 relu5_4), ``texture``
            (adversarial, needs the discriminator), ``color`` (blurred difference), ``tv`` (total variation),
            ``mse`` (plain mean squared error).
        discriminator: trains the DPED discriminator alongside (one step per iteration).
        lr: the Adam learning rate when the options leave it unset (``TrainConfig.lr`` None).
        ema: the decay of the generator's moving average when the options leave it unset (0: none).
    """

    model: str
    terms: tuple[str, ...]
    discriminator: bool = False
    lr: float = 5e-4
    ema: float = 0.0

    @property
    def vgg(self) -> bool:
        """True when the content term (VGG-19 features) is part of the recipe (VGG-19 weights are needed)."""
        return "content" in self.terms

    def __post_init__(self) -> None:
        unknown = sorted(set(self.terms) - set(TERMS))
        if unknown or ("texture" in self.terms) != self.discriminator:
            raise ValueError(f"recipe {self.model}: bad terms {self.terms} (texture goes with the discriminator)")


@dataclass(frozen=True)
class ModelSpec:
    """One registered network.

    Attributes:
        name: the model name (``--model``, the ``model`` of a checkpoint).
        network: ``"module:Class"`` of the ``nn.Module`` (imported only when a network is built).
        recipe: how it trains; None for a network that is not trained on its own (the discriminator).
        input: ``"rgb"`` (photos, RGB patches) or ``"raw"`` (a RAW Bayer mosaic: a learned ISP, raw2rgb data).
        tiles: the network can run a whole photo in strips with the whole-image result (its class says how, by
            its ``tiling``: ``"stages"`` or ``"halo"``; see :mod:`dpedkit.enhance.strips`).
        summary: one line for help texts.
    """

    name: str
    network: str
    recipe: Recipe | None = None
    input: InputKind = "rgb"
    tiles: bool = False
    summary: str = ""

    @property
    def enhances(self) -> bool:
        """True for a network that maps a photo (or a RAW mosaic) to a photo: trainable, evaluable, enhance."""
        return self.recipe is not None


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to :data:`MODELS` (a name is registered once; :func:`unregister` takes it back)."""
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is registered already")
    if spec.recipe is not None and spec.recipe.model != spec.name:
        raise ValueError(f"model {spec.name!r}: its recipe names {spec.recipe.model!r}")
    MODELS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove ``name`` from :data:`MODELS` (tests that register a toy network)."""
    MODELS.pop(name, None)


def model_spec(name: str) -> ModelSpec:
    """The spec of ``name``; :class:`~dpedkit.errors.ConfigError` naming the known models otherwise."""
    if name not in MODELS:
        from dpedkit.errors import ConfigError

        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def trainable(input: InputKind | None = None) -> tuple[str, ...]:
    """The names of the models that train and enhance (``input``: only those reading it), in registration order."""
    return tuple(n for n, s in MODELS.items() if s.enhances and (input is None or s.input == input))


def is_raw_model(name: str) -> bool:
    """The model-side "is it RAW": True when the network reads a RAW mosaic (``input == "raw"``)."""
    return model_spec(name).input == "raw"


# ---------------------------------------------------------------------------------------------- the table

register(ModelSpec(
    "dped", "dpedkit.nn.generator:Generator",
    Recipe("dped", ("content", "texture", "color", "tv"), discriminator=True),  # the paper's: 5e-4, no EMA
    tiles=True, summary="the DPED generator with its discriminator and the DPED losses",
))  # fmt: skip
# Chosen by measurement: the shared 100 DPED pairs split 80/20, batch 8, 500 iterations on CPU. At DPED's 5e-4 the
# raw weights' held-back PSNR zig-zags (15.61 -> 14.52 -> 15.44 -> 14.87 -> 14.47 dB at 150..350); at 2e-4 with a
# 0.98 moving average the evaluated weights rise at every evaluation (8.4 ... 16.17 dB; identity 12.39). A fresh
# SRCNN starts at the identity (SRCNNConfig.identity_start): on 20 synth pairs, 300 iterations at batch 50 give
# 22.16 dB / MS-SSIM 0.957 against the identity's 21.63 / 0.956 (a random start: 21.88 / 0.914, worse than it).
register(ModelSpec(
    "srcnn", "dpedkit.nn.baselines:SRCNN", Recipe("srcnn", ("mse",), lr=2e-4, ema=0.98),
    summary="SRCNN of Dong et al., MSE loss",
))  # fmt: skip
register(ModelSpec(
    "johnson", "dpedkit.nn.baselines:Johnson", Recipe("johnson", ("content", "tv")),
    summary="the residual network of Johnson et al., VGG content + TV loss",
))  # fmt: skip
# learned ISPs on raw2rgb datasets (RAW mosaic in, RGB out; the losses are computed on the RGB output)
register(ModelSpec(
    "dped-raw", "dpedkit.nn.raw:RawGenerator",
    Recipe("dped-raw", ("content", "texture", "color", "tv"), discriminator=True),
    input="raw", tiles=True, summary="the DPED generator on packed Bayer planes, a learned ISP for raw2rgb datasets",
))  # fmt: skip
# measured on 4 synthetic DNG pairs (64 px, batch 8, CPU): 1e-3 reached 21.2 dB at 800 iterations, 2e-4 far less
register(ModelSpec(
    "sid-unet", "dpedkit.nn.raw:SIDUNet", Recipe("sid-unet", ("mse",), lr=1e-3),
    input="raw", tiles=True, summary="the Learning-to-See-in-the-Dark U-Net, a learned ISP for raw2rgb datasets",
))  # fmt: skip
register(ModelSpec("dped-discriminator", "dpedkit.nn.discriminator:Discriminator"))
