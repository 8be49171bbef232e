"""Files every stage writes: atomic replacement, one file-mode policy, strict JSON and JSON lines.

Policy: a file dpedkit writes appears complete or not at all (written to a temporary name beside it, then
renamed into place) and gets the permissions ``open()`` would have given it (``0666`` minus the umask), so a
dataset or a model is as shareable as any other file the user makes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask: read from ``/proc`` where it is shown, else set and restored once (then cached)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """``0666`` minus the process umask: the mode ``open()`` gives a new file (the mode of every file written)."""
    return 0o666 & ~_umask()


class AtomicFile:
    """A temporary file beside ``path`` that becomes ``path`` on :meth:`commit` (atomic on one file system).

    The temporary name is hidden (``.NAME.XXXX.tmp.SUFFIX``; a build sweeps such leftovers of killed workers) and
    keeps the suffix, so format-sniffing writers still work. :meth:`discard` removes it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        """Give the temporary file the usual permissions (mkstemp makes it 0600) and rename it onto ``path``."""
        os.chmod(self.tmp, file_mode())
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Remove the temporary file (nothing appears at ``path``)."""
        self.tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on an exception removed."""
    f = AtomicFile(path)
    try:
        yield f.tmp
        f.commit()
    finally:
        f.discard()


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_safe(obj: Any) -> Any:
    """``obj`` ready for strict JSON: the one JSON-ready walker of the package.

    Mappings, lists, tuples and numpy arrays are walked (the last two become lists); non-finite floats (numpy ones
    too) become None; numpy scalars become Python ones; anything else is returned as it is.
    """
    np = sys.modules.get("numpy")  # numpy values exist only once numpy is imported: this module never imports it
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple) or (np is not None and isinstance(obj, np.ndarray)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) or (np is not None and isinstance(obj, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if np is not None and isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1, sort_keys: bool = True) -> None:
    """Write ``obj`` as strict JSON (see :func:`json_safe`), atomically."""
    write_text(path, json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, allow_nan=False))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (blank lines skipped); an empty list when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line (keys sorted), atomically."""
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
