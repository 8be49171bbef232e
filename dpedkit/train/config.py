"""Options of ``dpedkit train`` (:class:`TrainConfig`) and the rules for resuming a run."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpedkit.config import ConfigMixin
from dpedkit.errors import ConfigError, check_choice, check_range

log = logging.getLogger(__name__)

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
            from dpedkit.nn.vgg import WEIGHTS_HELP

            raise ConfigError(f"the {self.model!r} model trains with a VGG content loss. {WEIGHTS_HELP} "
                              "(the srcnn model needs no VGG)")  # fmt: skip

    @property
    def needs_vgg(self) -> bool:
        """True for the models trained with the VGG content loss."""
        return self.model in ("dped", "johnson")


def option_flag(name: str) -> str:
    """The ``dpedkit train`` option of the :class:`TrainConfig` field ``name`` (``model_config`` is ``--arch``)."""
    return "--arch" if name == "model_config" else "--" + name.replace("_", "-")


def read_run_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config a run saved in ``run_dir/config.json``, or None when there is none of dpedkit's."""
    try:
        saved = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    ours = isinstance(saved, dict) and isinstance(saved.get("train"), dict) and "dpedkit_version" in saved
    return saved if ours else None


def resume_config(run_dir: Path, data: str | Path, changes: dict[str, Any]) -> TrainConfig:
    """The options of the run in ``run_dir`` (its ``config.json``), with ``changes`` applied where allowed.

    Only the fields in :data:`RESUMABLE_CHANGES` may take a new value; any other field of ``changes`` must
    equal the run's (for ``model_config``: each key given must match the architecture the run trains).

    Args:
        run_dir: the run folder.
        data: the dataset the caller would train on; it must be the run's dataset.
        changes: :class:`TrainConfig` fields the caller set explicitly (e.g. the options typed on the command line).

    Raises:
        ConfigError: nothing to resume in ``run_dir``, another dataset, or options that differ from the run's.
    """
    saved = read_run_config(run_dir)
    if saved is None:
        raise ConfigError(f"{run_dir}: nothing to resume (no config.json of a dpedkit run: it is written once the "
                          "data and networks are set up, before the first evaluation); start a new run without "
                          "resume (--resume)")  # fmt: skip
    _check_same_data(run_dir, saved, data)
    run = saved["train"]
    differ = sorted(k for k, v in changes.items() if k not in RESUMABLE_CHANGES and not _same(k, run, v))
    if differ:
        detail = "; ".join(f"{option_flag(k)}: run has {run.get(k)!r}, given {changes[k]!r}" for k in differ)
        allowed = ", ".join(option_flag(k) for k in RESUMABLE_CHANGES)
        raise ConfigError(f"cannot resume {run_dir} with other options ({detail}); a resumed run keeps the options "
                          f"saved in its config.json, only {allowed} may change")  # fmt: skip
    return TrainConfig.from_dict(run | {k: v for k, v in changes.items() if k in RESUMABLE_CHANGES})


def resolve_resume(run_dir: Path, config: TrainConfig, data: str | Path) -> TrainConfig:
    """The config that continues the run in ``run_dir`` when the caller asks for ``config``.

    ``config`` must match the run's saved options except :data:`RESUMABLE_CHANGES` (see :func:`resume_config`);
    the result is the saved config with those changes applied.

    Raises:
        ConfigError: no run to resume in ``run_dir``, another dataset, or an option that differs.
    """
    return resume_config(run_dir, data, config.to_dict())


def _check_same_data(run_dir: Path, saved: dict[str, Any], data: str | Path) -> None:
    """Refuse to resume on another dataset than the run's.

    The same path (resolved) is the same dataset; so is a copy whose ``dataset.json`` equals the original's. When
    the run's dataset is gone (moved to another disk, say) the new path is taken, with a warning.
    """
    path = saved.get("data", {}).get("path")
    if path is None or Path(path).resolve() == Path(data).resolve():
        return
    if not Path(path).exists():
        log.warning("the run's dataset %s is gone: resuming %s on %s", path, run_dir, data)
        return
    from dpedkit.dataset.format import DatasetDir

    if not DatasetDir(path).same_content(data):
        raise ConfigError(f"cannot resume {run_dir} on another dataset: the run trains on {path}, given {data}")


def _same(name: str, run: dict[str, Any], value: Any) -> bool:
    """Whether the given ``value`` of field ``name`` agrees with the run's saved options ``run``."""
    if name != "model_config":
        return run.get(name) == value
    try:
        return not arch_conflicts(run["model"], run.get(name), value)
    except ConfigError:  # e.g. options of another model
        return False


def arch_conflicts(model: str, arch: dict[str, Any] | None, overrides: dict[str, Any] | None) -> list[str]:
    """The keys of ``overrides`` whose value differs from the architecture ``arch`` of ``model`` (defaults filled).

    ``overrides=None`` conflicts with nothing.

    Raises:
        ConfigError: an unknown or invalid architecture option.
    """
    if not overrides:
        return []
    full, given = arch_dict(model, arch), arch_dict(model, overrides)
    return sorted(k for k in overrides if full[k] != given[k])


def arch_dict(model: str, model_config: dict[str, Any] | None) -> dict[str, Any]:
    """The complete generator architecture of ``model`` with the overrides ``model_config`` (defaults filled in).

    Raises:
        ConfigError: an unknown or invalid architecture option.
    """
    from dpedkit.nn.checkpoint import model_class

    return model_class(model).config_class.from_dict(model_config or {}).to_dict()
