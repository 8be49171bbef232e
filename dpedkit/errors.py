"""Typed errors and the failure value for expected per-pair failures (one place for all of them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DpedkitError(Exception):
    """Base class of every error dpedkit raises on purpose."""


class ConfigError(DpedkitError, ValueError):
    """A configuration value or command-line option is invalid."""


class InputError(DpedkitError):
    """An input file or array cannot be used (unreadable, truncated, too small, wrong shape...)."""

    def __init__(self, path: str | Path | None, cause: str) -> None:
        self.path = None if path is None else str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}" if self.path else cause)

    def __reduce__(self) -> tuple[type, tuple[str | None, str]]:
        # raised in a worker process and pickled back: rebuild from both arguments
        return type(self), (self.path, self.cause)


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: ``PATH: cause`` (disk full, permission denied, read-only...)."""
    cause = exc.strerror or str(exc)
    return f"{exc.filename}: {cause}" if exc.filename else cause


class ShardError(DpedkitError):
    """A dataset shard or dataset folder is foreign, damaged or of an unsupported schema."""


class CheckpointError(DpedkitError):
    """A model checkpoint is missing, damaged, foreign or of another architecture."""


@dataclass(frozen=True)
class Failure:
    """An expected failure of one pair (e.g. ``too-few-matches``): data, not an exception.

    Falsy, so ``if not result:`` reads naturally.  ``reason`` is a short kebab-case word that is
    counted in summaries; ``detail`` is a human sentence with the numbers that led to it.
    """

    reason: str
    detail: str = ""

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


def check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices`` (named in the message)."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name} must be one of {allowed}; got {value!r}")


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
    """Raise :class:`ConfigError` unless ``lo <= value <= hi`` (either bound may be omitted)."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else repr(lo)
        hi_s = "inf" if hi is None else repr(hi)
        raise ConfigError(f"{name} must be in [{lo_s}, {hi_s}]; got {value!r}")


def check_rgb_uint8(img: Any, name: str = "image", *, min_side: int = 1, deep: bool = False) -> Any:
    """``img`` if it is an ``H x W x 3`` uint8 RGB array with both sides ``>= min_side``, else :class:`InputError`.

    The one check of the pipeline's image convention (see :mod:`dpedkit`), used at every array entry point.
    ``deep``: ``uint16`` (0..65535, a 16-bit build's images) is accepted too.
    """
    import numpy as np  # here, not at the top: `import dpedkit` (and `dpedkit --help`) stays free of numpy

    kinds = (np.uint8, np.uint16) if deep else (np.uint8,)
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype not in kinds:
        desc = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        what = "uint8 or uint16" if deep else "uint8"
        raise InputError(None, f"{name} must be an H x W x 3 {what} RGB array; got {desc}")
    if min(img.shape[:2]) < min_side:
        raise InputError(
            None, f"{name} must be at least {min_side}x{min_side} pixels; got {img.shape[1]}x{img.shape[0]}"
        )
    return img
