"""``dpedkit train``: the DPED recipe and its baselines.

- the recipes (loss terms per model, discriminator, VGG) live in the model registry, :mod:`dpedkit.nn.registry`;
- :mod:`.data`: where batches come from (device memory or a DataLoader), a pure function of the step;
- :mod:`.setup`: processes, networks, optimisers and the run folder before the loop;
- :mod:`.loop`: :func:`train`, the step functions and evaluation, returning metric dicts;
- :mod:`.resume`: the options a run saved and the rules for resuming it;
- :mod:`.schedule`: learning-rate schedules, the generator's EMA, when a checkpoint is due.

The loop's names are loaded on first use, so ``import dpedkit.train`` (the CLI's help) does not import torch.
"""

from importlib import import_module
from typing import Any

from dpedkit.config import TrainConfig

_LAZY = {
    "TrainResult": "loop",
    "TrainingStopped": "loop",
    "discriminator_step": "loop",
    "generator_step": "loop",
    "train": "loop",
    "validate": "loop",
    "RUN_FILES": "setup",
    "saved_step": "setup",
}

__all__ = ["TrainConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"dpedkit.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dpedkit.train' has no attribute {name!r}")
