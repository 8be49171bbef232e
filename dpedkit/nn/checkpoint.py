"""Self-describing model checkpoints, and import of the official DPED TensorFlow checkpoints.

Our format is a ``torch.save`` dict holding only tensors and plain Python values, so it is loaded with
``torch.load(weights_only=True)`` (no pickled code runs)::

    {"format": "dpedkit-checkpoint", "version": 1, "model": "dped", "config": {...architecture...},
     "state_dict": {...}, **extra}      # extra: e.g. "step", "train_config", "optimizer", "discriminator"

``model`` names an entry of :data:`dpedkit.nn.registry.MODELS` and ``config`` is that model's config dataclass
as a dict, so :func:`load_model` rebuilds the network from the file alone.  Everywhere a model is taken, an official TF
checkpoint prefix (``.../dped_orig/iphone_orig``, or its ``.index`` file) works too: it is read with
:mod:`dpedkit.interop.tfbundle` and mapped onto :class:`~dpedkit.nn.generator.Generator`.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dpedkit.errors import CheckpointError, ConfigError, DpedkitError, InputError
from dpedkit.interop.tfbundle import TFBundle, bundle_prefix
from dpedkit.io import atomic_path, check_room
from dpedkit.nn.registry import MODELS

log = logging.getLogger(__name__)

FORMAT = "dpedkit-checkpoint"
VERSION = 1
RESERVED_KEYS = ("format", "version", "model", "config", "state_dict")

_WEIGHTS_HELP = (
    "expected a dpedkit checkpoint (.pt, written by `dpedkit train` or `dpedkit convert`) or an official DPED "
    "TensorFlow checkpoint prefix such as models/dped_orig/iphone_orig (the folder must hold "
    "iphone_orig.index and iphone_orig.data-00000-of-00001)"
)


def model_class(name: str) -> type[nn.Module]:
    """The network class registered as ``name`` (:data:`dpedkit.nn.registry.MODELS`)."""
    if name not in MODELS:
        raise CheckpointError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    module, cls = MODELS[name].network.split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """A freshly initialised network ``name`` with architecture ``config`` (a config ``to_dict()``; None = default).

    Raises:
        CheckpointError: unknown model name.
        ConfigError: invalid config.
    """
    cls = model_class(name)
    cfg = cls.config_class.from_dict(config) if config is not None else cls.config_class()
    return cls(cfg)


def _model_name(model: nn.Module) -> str:
    name = getattr(type(model), "name", None)
    if name not in MODELS or model_class(name) is not type(model):
        raise ConfigError(f"cannot checkpoint a {type(model).__name__}: not one of the models {sorted(MODELS)}")
    return name


def save_checkpoint(
    path: str | Path, model: nn.Module, *, config: dict | None = None, extra: dict | None = None
) -> Path:
    """Write ``model`` as a self-describing dpedkit checkpoint (atomically).

    Args:
        path: output file (``.pt`` by convention); parent folders are created.
        model: a registered network (see :data:`dpedkit.nn.registry.MODELS`).
        config: its architecture config as a dict; default ``model.cfg.to_dict()``.  Put training settings in
            ``extra`` instead (``load_model`` rebuilds the network from ``config``).
        extra: more entries (tensors, numbers, strings, lists, dicts only), e.g. ``{"step": 1000}``.

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: unregistered model, or ``extra`` reuses a reserved key.
    """
    name = _model_name(model)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ConfigError(f"extra must not use the reserved keys {clash}")
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model": name,
        "config": dict(config if config is not None else model.cfg.to_dict()),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        **extra,
    }
    path = Path(path)
    with atomic_path(path) as tmp:  # a failed write leaves the file there before as it was
        check_room(tmp, _tensor_bytes(ckpt) + (1 << 20), name=path)
        with open(tmp, "wb", buffering=0) as f:
            out = _WholeWrites(f)
            try:
                torch.save(ckpt, out)
            except RuntimeError:
                if out.error is not None:  # torch reports a failed write as "unexpected pos", naming no file
                    raise out.error from None
                raise
    return path


class _WholeWrites:
    """A file for ``torch.save`` whose ``write`` writes every byte or keeps the ``OSError`` (disk full...).

    ``torch.save`` turns a failed write into a ``RuntimeError`` ("unexpected pos") that names no file and no
    cause; :func:`save_checkpoint` raises the operating system's error instead (kept in ``error``), and
    :func:`dpedkit.io.atomic_path` names the checkpoint in it.
    """

    def __init__(self, f: Any) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                n = self.f.write(view)
                if not n:  # nothing written and no error: report it as the OS would
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                view = view[n:]
        except OSError as exc:
            self.error = self.error or exc
            raise
        return memoryview(data).nbytes

    def flush(self) -> None:
        self.f.flush()


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) checkpoint dict: about what saving it writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def is_tf_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a TensorFlow checkpoint prefix (or its ``.index``/``.data-*`` file)."""
    return bundle_prefix(path) is not None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a dpedkit checkpoint, or convert an official DPED TF checkpoint, into the checkpoint dict.

    Returns:
        ``{"format", "version", "model", "config", "state_dict", ...}`` (CPU tensors).  For a TF checkpoint,
        ``"converted_from": {"format": "tensorflow", "path": prefix}`` is added (and kept by :func:`convert`).

    Raises:
        CheckpointError: missing path, not a checkpoint, damaged, foreign (e.g. a bare state dict), or of a
            newer format version.
    """
    if is_tf_checkpoint(path):
        return _from_tf(path)
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file; {_WEIGHTS_HELP}")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder without a TensorFlow checkpoint; {_WEIGHTS_HELP}")
    kind = _sniff(p)
    if kind is not None:  # torch.load would call any such file a refused pickle
        raise CheckpointError(
            f"{p}: not a dpedkit/PyTorch checkpoint or TF checkpoint prefix ({kind}); {_WEIGHTS_HELP}"
        )
    try:
        with warnings.catch_warnings():  # plain pickles of protocol 3+ make the weights-only reader warn first
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{p}: holds pickled objects other than tensors (refused); {_WEIGHTS_HELP}") from exc
    except Exception as exc:  # torch.load raises many types on foreign bytes (KeyError, RuntimeError, EOFError...)
        raise CheckpointError(
            f"{p}: not a readable checkpoint (damaged or another format: {exc}); {_WEIGHTS_HELP}"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        kind = (
            "a bare state dict"
            if isinstance(ckpt, dict) and all(torch.is_tensor(v) for v in ckpt.values())
            else f"a {type(ckpt).__name__}"
        )
        raise CheckpointError(
            f"{p}: not a dpedkit checkpoint (it is {kind} without format={FORMAT!r}); {_WEIGHTS_HELP}"
        )
    if not isinstance(ckpt.get("version"), int) or ckpt["version"] > VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {ckpt.get('version')!r} is newer than this dpedkit "
            f"reads ({VERSION}); upgrade dpedkit"
        )
    missing = [k for k in RESERVED_KEYS if k not in ckpt]
    if missing or not isinstance(ckpt["state_dict"], dict) or not isinstance(ckpt["config"], dict):
        raise CheckpointError(f"{p}: damaged dpedkit checkpoint (missing or malformed {missing or 'entries'})")
    return ckpt


_MAGIC = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"GIF8": "a GIF image", b"%PDF": "a PDF"}


def _sniff(path: Path) -> str | None:
    """None when ``path`` starts like a ``torch.save`` file (zip archive, or pickle protocol 2+), else what it is."""
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return None
    if not head:
        return "it is empty"
    kind = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
    if kind is None and all(b >= 32 or b in b"\t\n\r" for b in head):
        kind = "a text file"
    return f"it is {kind}" if kind else "neither a zip archive nor a pickle"


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu", expect: str | tuple[str, ...] | None = None
) -> nn.Module:
    """Rebuild the network stored in ``path`` (dpedkit checkpoint or official TF prefix), in eval mode.

    The architecture is checked against the stored tensors before any weight memory is allocated, and weights
    that are not finite (a diverged or damaged model, which would only ever output black) are refused.

    Args:
        path: a ``.pt`` written by :func:`save_checkpoint`, or a TF checkpoint prefix.
        device: where to put the model.
        expect: model name(s) acceptable here (e.g. ``trainable("rgb")`` of :mod:`dpedkit.nn.registry`); None
            accepts any registered model.

    Raises:
        CheckpointError: unreadable/foreign file, unexpected model, weights not matching the architecture, or
            weights holding NaN or infinity.
    """
    ckpt = load_checkpoint(path)
    name = ckpt["model"]
    allowed = (expect,) if isinstance(expect, str) else expect
    if allowed is not None and name not in allowed:
        raise CheckpointError(
            f"{path}: holds a {name!r} network; this needs {' or '.join(repr(a) for a in allowed)} (a network that "
            "enhances photos)"
        )
    check_finite(ckpt["state_dict"], source=path)
    model = _rebuild(ckpt, source=path)
    return model.to(device).eval()


def _rebuild(ckpt: dict[str, Any], *, source: object) -> nn.Module:
    """The network of a checkpoint dict: its architecture checked on the meta device first (no memory), then built."""
    try:
        with torch.device("meta"):  # a crafted config (channels=4096, blocks=64) costs nothing here
            probe = build_model(ckpt["model"], ckpt["config"])
        _check_shapes(probe, ckpt["state_dict"], source)
        model = build_model(ckpt["model"], ckpt["config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: its {ckpt['model']!r} config cannot be rebuilt ({exc})") from exc
    load_state(model, ckpt["state_dict"], source=source)
    return model


def load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: object = "state dict") -> None:
    """``model.load_state_dict(state_dict)`` with a :class:`CheckpointError` that says which tensors disagree.

    Every reader of weights comes here (``load_model``, ``train --init``, ``--resume``): weights holding NaN or
    infinity are refused (:func:`check_finite`).
    """
    _check_shapes(model, state_dict, source)
    check_finite(state_dict, source=source)
    model.load_state_dict(state_dict)


def check_finite(state_dict: dict[str, Any], *, source: object) -> None:
    """:class:`CheckpointError` when a floating-point tensor of ``state_dict`` holds NaN or infinite values."""
    tensors = state_dict.items() if isinstance(state_dict, dict) else ()
    bad = [k for k, v in tensors if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values (first: {bad[0]}): the model "
            "diverged or the file is damaged"
        )


def _check_shapes(model: nn.Module, state_dict: dict[str, Any], source: object) -> None:
    """:class:`CheckpointError` unless ``state_dict`` holds exactly the tensors of ``model``, with their shapes."""
    own = model.state_dict()
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise CheckpointError(f"{source}: damaged checkpoint (its state_dict is not a dict of tensors)")
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or wrong:
        parts = [
            f"{label} {_few(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
            if keys
        ]
        raise CheckpointError(
            f"{source}: weights are for another architecture than {type(model).__name__} ({'; '.join(parts)})"
        )


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- official TensorFlow checkpoints --------------------------------------------------------------------

_TF_NAME = re.compile(r"(W|b)(\d+)|Variable(?:_(\d+))?")


def tf_generator_state_dict(tensors: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict]:
    """Map official DPED generator tensors onto :class:`Generator` names.

    Args:
        tensors: name -> array as stored by TF (``[scope/]W1..W12`` HWIO kernels, ``b1..b12``, and
            ``Variable``, ``Variable_1..15``: for the k-th norm layer, shift ``Variable_{2k}``, scale
            ``Variable_{2k+1}``).  Other tensors (optimizer slots...) are ignored.

    Returns:
        ``(state_dict, generator_config_dict)``.

    Raises:
        CheckpointError: a tensor is missing or has an unexpected shape.
    """
    scopes = {n[: -len("W1")] for n in tensors if n.rsplit("/", 1)[-1] == "W1"}
    if len(scopes) != 1:
        raise CheckpointError(
            f"not a DPED generator checkpoint: found {len(scopes)} tensors named W1 (tensors: {_few(sorted(tensors))})"
        )
    scope = scopes.pop()
    own = {n[len(scope) :]: a for n, a in tensors.items() if n.startswith(scope) and "/" not in n[len(scope) :]}
    n_convs = max(int(m.group(2)) for n in own if (m := _TF_NAME.fullmatch(n)) and m.group(1) == "W")
    blocks = (n_convs - 4) // 2
    if n_convs < 4 or n_convs != 4 + 2 * blocks:
        raise CheckpointError(f"not a DPED generator checkpoint: {n_convs} conv layers")

    def get(name: str) -> np.ndarray:
        if name not in own:
            raise CheckpointError(f"not a DPED generator checkpoint: tensor {scope}{name} is missing")
        return own[name]

    w1 = get("W1")
    if w1.ndim != 4 or min(w1.shape) < 1:
        raise CheckpointError(f"not a DPED generator checkpoint: W1 has shape {w1.shape}, expected a 4-D HWIO kernel")
    channels = w1.shape[3]
    # conv layer i (1-based) -> our module prefix
    targets = {1: "c1", n_convs - 2: "c10", n_convs - 1: "c11", n_convs: "c12"}
    for b in range(blocks):
        targets[2 + 2 * b], targets[3 + 2 * b] = f"blocks.{b}.conv1", f"blocks.{b}.conv2"
    sd: dict[str, torch.Tensor] = {}
    for i, prefix in targets.items():
        w = get(f"W{i}")
        if w.ndim != 4:
            raise CheckpointError(f"W{i} has shape {w.shape}, expected a 4-D HWIO kernel")
        sd[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1), np.float32))
        sd[f"{prefix}.bias"] = torch.from_numpy(np.asarray(get(f"b{i}"), np.float32).reshape(-1))
    for k in range(2 * blocks):
        norm = f"blocks.{k // 2}.norm{k % 2 + 1}"
        shift = get("Variable" if k == 0 else f"Variable_{2 * k}")
        scale = get(f"Variable_{2 * k + 1}")
        sd[f"{norm}.shift"] = torch.from_numpy(np.asarray(shift, np.float32).reshape(-1))
        sd[f"{norm}.scale"] = torch.from_numpy(np.asarray(scale, np.float32).reshape(-1))
    return sd, {"channels": int(channels), "blocks": int(blocks)}


def _from_tf(path: str | Path) -> dict[str, Any]:
    bundle = TFBundle(path)
    try:
        state_dict, cfg = tf_generator_state_dict(bundle.read_all())
    except CheckpointError as exc:
        if str(bundle.prefix) in str(exc):
            raise
        raise CheckpointError(f"{bundle.prefix}: {exc}") from None
    from dpedkit.nn.generator import GeneratorConfig

    config = GeneratorConfig(**cfg).to_dict()
    log.debug("read TF checkpoint %s: %d tensors", bundle.prefix, len(bundle.entries))
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": "dped",
        "config": config,
        "state_dict": state_dict,
        "converted_from": {"format": "tensorflow", "path": str(bundle.prefix)},
    }


# --- conversion (`dpedkit convert`) ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` wrote: ``out`` file, ``model`` name, its ``config``, ``parameters`` count, ``source``."""

    source: str
    out: str
    model: str
    config: dict
    parameters: int
    source_format: str


def convert(source: str | Path, out: str | Path, *, overwrite: bool = False) -> ConvertResult:
    """Convert a model (official TF checkpoint prefix, or a dpedkit checkpoint) into a dpedkit checkpoint.

    The weights are checked by rebuilding the network and loading them before anything is written.

    Args:
        source: TF checkpoint prefix (``.../iphone_orig``) or ``.pt`` file.
        out: output ``.pt`` path.
        overwrite: replace ``out`` if it exists.

    Raises:
        CheckpointError: unreadable or foreign source.
        InputError: ``out`` exists and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(out, "exists; pass --overwrite to replace it")
    source_format = "tensorflow" if is_tf_checkpoint(source) else FORMAT
    ckpt = load_checkpoint(source)
    model = _rebuild(ckpt, source=source)
    extra = {k: v for k, v in ckpt.items() if k not in RESERVED_KEYS}
    save_checkpoint(out, model, config=ckpt["config"], extra=extra)
    return ConvertResult(str(source), str(out), ckpt["model"], ckpt["config"], count_parameters(model), source_format)


__all__ = [
    "CheckpointError",
    "ConvertResult",
    "DpedkitError",
    "build_model",
    "convert",
    "count_parameters",
    "is_tf_checkpoint",
    "load_checkpoint",
    "load_model",
    "load_state",
    "save_checkpoint",
    "tf_generator_state_dict",
]
