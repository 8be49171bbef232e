"""Learning-rate schedules, the EMA of the generator and the checkpoint clock.

Training state that is a function of the step (a resumed run is exact without extra state) or that is saved with
the checkpoint (the EMA weights):

- :func:`lr_factor`: the multiplier of ``config.lr`` for an iteration: linear warm-up, then ``constant`` (DPED),
  ``step`` or ``cosine``. It depends on the step alone: nothing to save, nothing to restore.
- :class:`Ema`: an exponential moving average of the generator's weights (``ema`` decay), updated after every
  generator step; its weights go into ``latest.pt`` and are evaluated beside the raw ones.
- :class:`SaveClock`: when ``save_every`` (iterations or minutes) asks for a ``latest.pt`` between evaluations.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn

from dpedkit.config import TrainConfig


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` for the iteration that starts at ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup`` for the first ``warmup`` iterations. Then, with ``t`` iterations since the
    warm-up and ``T = iters - warmup``: ``constant`` 1; ``step`` ``lr_gamma ** (t // lr_step)`` (``lr_step`` 0:
    ``T / 3``); ``cosine`` ``(1 + cos(pi t / T)) / 2``.
    """
    if step < config.warmup:
        return (step + 1) / config.warmup
    t, total = step - config.warmup, max(config.iters - config.warmup, 1)
    if config.lr_schedule == "step":
        every = config.lr_step or max(total // 3, 1)
        return config.lr_gamma ** (t // every)
    if config.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
    return 1.0


def set_lr(optimizers: list[torch.optim.Optimizer | None], lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizers`` (None entries are skipped)."""
    for opt in optimizers:
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = lr


class Ema:
    """Exponential moving average of a module's weights: ``avg = decay * avg + (1 - decay) * weights``.

    Buffers (none in the bundled generators, but a BatchNorm's would be) are copied as they are.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards ``module``'s current weights."""
        params = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(list(self.module.parameters()), params, 1.0 - self.decay)
        for mine, theirs in zip(self.module.buffers(), module.buffers(), strict=True):
            mine.copy_(theirs)


class SaveClock:
    """Whether a checkpoint is due after a step: every ``n`` iterations or every ``seconds`` of wall time."""

    def __init__(self, config: TrainConfig) -> None:
        self.every, self.seconds = config.save_interval()
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        """True when ``save_every`` asks for ``latest.pt`` after ``step`` completed iterations."""
        if self.every:
            return step % self.every == 0
        return bool(self.seconds) and time.monotonic() - self.last >= self.seconds

    def saved(self) -> None:
        """A checkpoint was written (at an evaluation too): the time interval starts again."""
        self.last = time.monotonic()
