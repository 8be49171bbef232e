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
        vgg: needs VGG-19 weights for the content term.
    """

    model: str
    terms: tuple[str, ...]
    discriminator: bool = False

    @property
    def vgg(self) -> bool:
        """True when the content term (VGG-19 features) is part of the recipe."""
        return "content" in self.terms

    def __post_init__(self) -> None:
        unknown = sorted(set(self.terms) - set(TERMS))
        if unknown or ("texture" in self.terms) != self.discriminator:
            raise ValueError(f"recipe {self.model}: bad terms {self.terms} (texture goes with the discriminator)")


RECIPES: dict[str, Recipe] = {
    "dped": Recipe("dped", ("content", "texture", "color", "tv"), discriminator=True),
    "srcnn": Recipe("srcnn", ("mse",)),
    "johnson": Recipe("johnson", ("content", "tv")),
}
