"""The options a run saved (``config.json``) and the rules for resuming it, or starting it from a model."""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from dpedkit.config import TrainConfig
from dpedkit.config import option_flag as config_flag
from dpedkit.dataset.source import identity
from dpedkit.errors import CheckpointError, ConfigError
from dpedkit.io import write_json

log = logging.getLogger(__name__)

# options that may change when a run is resumed (they do not change what is computed)
RESUMABLE_CHANGES = ("iters", "eval_every", "device", "data_mode", "workers", "save_every", "tensorboard", "compile")


def option_flag(name: str) -> str:
    """The ``dpedkit train`` flag of the :class:`TrainConfig` field ``name`` (``model_config`` is ``--arch``)."""
    return config_flag(TrainConfig, name)


RUN_CONFIG = "config.json"  # the run's resolved options: this module reads and writes it

# resumable options a resume records in config.json: the run's length and evaluation steps (the others are about the
# machine a resume runs on, and stay as the run first saved them)
RECORDED_CHANGES = ("iters", "eval_every")


def write_run_config(run_dir: Path, resolved: dict[str, Any]) -> None:
    """Write ``run_dir/config.json`` (the resolved options, data and versions of a run that starts)."""
    write_json(Path(run_dir) / RUN_CONFIG, resolved, finite=False)


def record_resumed_config(run_dir: Path, config: TrainConfig) -> None:
    """Record in ``run_dir/config.json`` the :data:`RECORDED_CHANGES` a resumed run goes on with.

    A run resumed with a raised ``iters`` and stopped again is then continued by a plain resume up to the raised
    ``iters`` (the resume command printed on Ctrl-C names no ``--iters``). Nothing is written when they are unchanged.
    """
    saved = read_run_config(run_dir)
    if saved is None:
        return
    now = {k: getattr(config, k) for k in RECORDED_CHANGES}
    if any(saved["train"].get(k) != v for k, v in now.items()):
        log.info("%s: config.json records %s", run_dir, ", ".join(f"{option_flag(k)} {v}" for k, v in now.items()))
        write_run_config(run_dir, saved | {"train": saved["train"] | now})


def read_run_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config a run saved in ``run_dir/config.json``, or None when there is none of dpedkit's."""
    try:
        saved = json.loads((Path(run_dir) / RUN_CONFIG).read_text())
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
    unknown = sorted(set(changes) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ConfigError(
            f"unknown TrainConfig option(s) {unknown}; valid: {sorted(f.name for f in fields(TrainConfig))}"
        )
    saved = read_run_config(run_dir)
    if saved is None:
        raise ConfigError(f"{run_dir}: nothing to resume (no config.json of a dpedkit run: it is written once the "
                          "data and networks are set up, before the first evaluation); start a new run without "
                          "--resume")  # fmt: skip
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


TRAINING_STATE = ("step", "opt_g")  # what a latest.pt holds beyond the weights (a best.pt does not)


def read_latest(path: Path) -> dict[str, Any]:
    """The ``latest.pt`` dict of a run, checked to hold the training state a resume needs.

    Raises:
        CheckpointError: unreadable, or not a training checkpoint (e.g. a ``best.pt`` copied over it).
    """
    from dpedkit.nn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    missing = [k for k in TRAINING_STATE if k not in ckpt]
    if missing or (ckpt.get("discriminator") is not None and "opt_d" not in ckpt):
        raise CheckpointError(f"{path}: holds weights but no training state ({', '.join(missing) or 'opt_d'}): it "
                              "is not a latest.pt written by dpedkit train (a copied best.pt?); start the run "
                              "again with --overwrite, or use it with --init")  # fmt: skip
    return ckpt


def _check_same_data(run_dir: Path, saved: dict[str, Any], data: str | Path) -> None:
    """Refuse to resume on another dataset than the run's.

    The dataset is known by its manifest: a dataset rebuilt at the same path with other settings is another
    dataset; a copy whose ``dataset.json`` equals the original's is the same. Runs saved before the manifest's
    hash was recorded compare paths. When the run's dataset is gone (moved to another disk, say) the new path is
    taken, with a warning.
    """
    recorded = saved.get("data", {}).get("manifest_sha256")
    now = identity(data).get("manifest_sha256")
    if recorded is not None and now is not None and recorded != now:
        raise ConfigError(f"cannot resume {run_dir} on another dataset: {data} is not the one the run trained on (its "
                          "dataset.json differs: rebuilt with other settings?); start a new run")  # fmt: skip
    path = saved.get("data", {}).get("path")
    if path is None or Path(path).resolve() == Path(data).resolve():
        return
    if not Path(path).exists():
        log.warning("the run's dataset %s is gone: resuming %s on %s", path, run_dir, data)
        return
    if (recorded is None or now is None) and not (now and identity(path) == identity(data)):  # no hashes to compare
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
