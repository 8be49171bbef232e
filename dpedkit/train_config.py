"""Options of ``dpedkit train`` (:class:`TrainConfig`) and the rules for resuming a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpedkit.config import ConfigMixin
from dpedkit.errors import ConfigError, check_choice, check_range

MODELS = ("dped", "srcnn", "johnson")
LOSS_PRESETS = ("code", "paper")
DATA_MODES = ("auto", "memory", "loader")
# options that may change when a run is resumed (they do not change what is computed)
RESUMABLE_CHANGES = ("iters", "eval_every", "device", "data_mode", "workers")


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """Options of :func:`dpedkit.train.train`; defaults are the DPED paper's recipe.

    Attributes:
        model: ``"dped"`` (generator + discriminator, the DPED losses), ``"srcnn"`` (Dong et al., MSE) or
            ``"johnson"`` (Johnson et al. residual network, VGG content + TV loss).
        iters: training iterations (20,000).
        batch: patch pairs per batch and per process (50).
        lr: Adam learning rate of both optimisers (5e-4; betas 0.9/0.999, eps 1e-8).
        loss_preset: ``"code"`` (10 content / 1 texture / 0.5 color / 2000 TV, as the official code and
            checkpoints) or ``"paper"`` (1 / 0.4 / 0.1 / 400).
        vgg: VGG-19 weights for the content loss: a ``.mat`` / torchvision ``.pth`` path, or ``"random"``
            (untrained; tests and smoke runs). Required by ``dped`` and ``johnson``.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        amp: bfloat16 autocast for the forward passes (weights and optimiser stay float32).
        eval_every: evaluate, save samples and checkpoints every this many iterations (1,000), and at the end.
        seed: seed of the weight initialisation, the batch order and the discriminator's swaps.
        init: start the generator from this model (dpedkit checkpoint or official TF checkpoint prefix).
        phone: phone folder of an official DPED tree (``iphone``...); ignored for dpedkit datasets.
        model_config: architecture overrides for the generator (e.g. ``{"channels": 16, "blocks": 1}``).
        data_mode: ``"memory"`` (uint8 patches in device memory, batches gathered there), ``"loader"``
            (DataLoader with ``workers`` processes) or ``"auto"`` (memory when it fits in half the free memory).
        workers: DataLoader worker processes of the loader path.
        eval_batch: patches per batch of the DPED evaluation protocol (50).
        samples: test patches shown in each sample grid.
    """

    model: str = "dped"
    iters: int = 20000
    batch: int = 50
    lr: float = 5e-4
    loss_preset: str = "code"
    vgg: str | None = None
    device: str = "auto"
    amp: bool = False
    eval_every: int = 1000
    seed: int = 0
    init: str | None = None
    phone: str | None = None
    model_config: dict[str, Any] | None = None
    data_mode: str = "auto"
    workers: int = 2
    eval_batch: int = 50
    samples: int = 6

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_choice("loss_preset", self.loss_preset, LOSS_PRESETS)
        check_choice("data_mode", self.data_mode, DATA_MODES)
        for name, lo in (("iters", 0), ("batch", 1), ("eval_every", 1), ("seed", 0), ("workers", 0),
                         ("eval_batch", 1), ("samples", 0)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer; got {value!r}")
            check_range(name, value, lo)
        check_range("lr", self.lr, 0.0, 1.0)
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive; got {self.lr!r}")
        if self.model_config is not None and not isinstance(self.model_config, dict):
            raise ConfigError(f"model_config must be a dict of architecture options; got {self.model_config!r}")
        if self.needs_vgg and not self.vgg:
            from dpedkit.models.vgg import WEIGHTS_HELP

            raise ConfigError(f"the {self.model!r} model trains with a VGG content loss. {WEIGHTS_HELP} "
                              "(the srcnn model needs no VGG)")  # fmt: skip

    @property
    def needs_vgg(self) -> bool:
        """True for the models trained with the VGG content loss."""
        return self.model in ("dped", "johnson")


def resolve_resume(run_dir: Path, config: TrainConfig) -> TrainConfig:
    """Check that ``config`` may continue the run in ``run_dir``; returns it.

    Raises:
        ConfigError: no resumable run there, or an option other than :data:`RESUMABLE_CHANGES` differs.
    """
    path = run_dir / "config.json"
    if not (path.is_file() and (run_dir / "latest.pt").is_file()):
        raise ConfigError(f"{run_dir}: nothing to resume (config.json and latest.pt are written at the first "
                          "evaluation); start a new run without --resume")  # fmt: skip
    saved = json.loads(path.read_text())["train"]
    ours = config.to_dict()
    differ = sorted(k for k in ours if k not in RESUMABLE_CHANGES and saved.get(k) != ours[k])
    if differ:
        detail = "; ".join(f"{k}: run has {saved.get(k)!r}, given {ours[k]!r}" for k in differ)
        raise ConfigError(f"cannot resume {run_dir} with other options ({detail}); only "
                          f"{', '.join(RESUMABLE_CHANGES)} may change")  # fmt: skip
    return config
