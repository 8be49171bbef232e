"""``dpedkit train``: the DPED recipe and its baselines (see :mod:`dpedkit.train.loop`)."""

from dpedkit.train.config import TrainConfig
from dpedkit.train.loop import TrainResult, discriminator_step, generator_step, train, validate
from dpedkit.train.setup import RUN_FILES, saved_step

__all__ = [
    "RUN_FILES",
    "TrainConfig",
    "TrainResult",
    "discriminator_step",
    "generator_step",
    "saved_step",
    "train",
    "validate",
]
