"""Shared behaviour of the frozen config dataclasses: plain-dict round trips with unknown-key checks.

Each stage keeps its own config class in its own module (``AlignConfig`` in :mod:`dpedkit.align`,
``PatchConfig`` in :mod:`dpedkit.dataset.patches`, ...); they all inherit :class:`ConfigMixin`.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Self

from dpedkit.errors import ConfigError


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (JSON-ready)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class ConfigMixin:
    """``to_dict``/``from_dict`` for a (frozen) dataclass; validation stays in its ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields (nested configs as dicts, tuples as lists)."""
        return _plain(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming the valid ones."""
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} option(s) {unknown}; valid: {sorted(known)}")
        data = {
            k: tuple(v) if isinstance(v, list) and str(known[k].type).startswith("tuple") else v
            for k, v in data.items()
        }
        return cls(**cls._nested(data))

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook for configs holding other configs: turn their dicts back into objects."""
        return data
