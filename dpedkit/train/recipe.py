"""The training recipe table: which loss terms each model trains with, and what it needs.

One :class:`Recipe` per model replaces per-model branches: :func:`dpedkit.nn.losses.generator_loss` composes the
terms a recipe names (the one composition that training runs and the tests pin), :mod:`dpedkit.train.setup`
builds a discriminator and loads VGG-19 only where the recipe says so. Weights come from the loss preset
(:data:`dpedkit.nn.losses.PRESETS`) for the DPED terms; ``mse`` has weight 1. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMS = ("content", "texture", "color", "tv", "mse")


@dataclass(frozen=True)
class Recipe:
    """How one model is trained.

    Attributes:
        model: the model name (:data:`dpedkit.config.MODELS`).
        terms: the generator loss terms, in the order they are summed: ``content`` (VGG-19 relu5_4), ``texture``
            (adversarial, needs the discriminator), ``color`` (blurred difference), ``tv`` (total variation),
            ``mse`` (plain mean squared error).
        discriminator: trains the DPED discriminator alongside (one step per iteration).
        lr: the Adam learning rate when the options leave it unset (``TrainConfig.lr`` None).
        ema: the decay of the generator's moving average when the options leave it unset (0: none).
        vgg: needs VGG-19 weights for the content term.
    """

    model: str
    terms: tuple[str, ...]
    discriminator: bool = False
    lr: float = 5e-4
    ema: float = 0.0

    @property
    def vgg(self) -> bool:
        """True when the content term (VGG-19 features) is part of the recipe."""
        return "content" in self.terms

    def __post_init__(self) -> None:
        unknown = sorted(set(self.terms) - set(TERMS))
        if unknown or ("texture" in self.terms) != self.discriminator:
            raise ValueError(f"recipe {self.model}: bad terms {self.terms} (texture goes with the discriminator)")


RECIPES: dict[str, Recipe] = {
    "dped": Recipe("dped", ("content", "texture", "color", "tv"), discriminator=True),  # the paper's: 5e-4, no EMA
    # Chosen by measurement: the shared 100 DPED pairs split 80/20, batch 8, 500 iterations on CPU. At DPED's
    # 5e-4 the raw weights' held-back PSNR zig-zags (15.61 -> 14.52 -> 15.44 -> 14.87 -> 14.47 dB at 150..350);
    # at 2e-4 with a 0.98 moving average the evaluated weights rise at every evaluation (8.4 ... 16.17 dB;
    # identity 12.39).
    "srcnn": Recipe("srcnn", ("mse",), lr=2e-4, ema=0.98),
    "johnson": Recipe("johnson", ("content", "tv")),
    # learned ISPs on raw2rgb datasets (RAW mosaic in, RGB out; the losses are computed on the RGB output)
    "dped-raw": Recipe("dped-raw", ("content", "texture", "color", "tv"), discriminator=True),
    # measured on 4 synthetic DNG pairs (64 px, batch 8, CPU): 1e-3 reached 21.2 dB at 800 iterations, 2e-4 far less
    "sid-unet": Recipe("sid-unet", ("mse",), lr=1e-3),
}
RAW_MODELS = ("dped-raw", "sid-unet")  # the models that take a RAW mosaic (raw2rgb datasets)
