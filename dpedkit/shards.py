"""HDF5 patch shards: the schema, a writer (temporary file renamed into place) and validation.

One shard holds the patch pairs of a fixed group of photo pairs and is written by exactly one worker.

Schema (``SCHEMA`` version ``SCHEMA_VERSION``), for ``N`` patch pairs of ``P x P`` pixels:

- ``phone``, ``dslr``: ``(N, P, P, 3)`` uint8 RGB, chunked one patch per chunk, uncompressed by default.
- per-patch columns: ``pair`` (N,) UTF-8 name of the source pair, ``xy`` (N, 2) int32 top-left ``(x, y)`` of the
  phone window in the aligned crop, ``shift`` (N, 2) float32 DSLR window offset in px, ``angle`` (N,) float32
  degrees, ``ncc`` (N,) float32 normalised cross-correlation of the stored pair, ``texture`` (N,) float32.
- file attributes: ``schema``, ``schema_version``, ``dpedkit_version``, ``config`` (resolved build config as
  JSON), ``split``, ``patch_size``.

Files are written deterministically (no timestamps), so two builds of the same pairs have equal checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dpedkit import __version__
from dpedkit.errors import ShardError

SCHEMA = "dpedkit-patches"
SCHEMA_VERSION = 1
IMAGES = ("phone", "dslr")
# column name -> (dtype, trailing shape)
COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "pair": (h5py.string_dtype("utf-8"), ()),
    "xy": (np.int32, (2,)),
    "shift": (np.float32, (2,)),
    "angle": (np.float32, ()),
    "ncc": (np.float32, ()),
    "texture": (np.float32, ()),
}


@dataclass(frozen=True)
class ShardInfo:
    """A finished shard: its path, number of patch pairs and sha256 of the file."""

    path: Path
    rows: int
    sha256: str


def file_sha256(path: str | Path, *, block: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Write one shard: append patch groups, then :meth:`close` renames the temporary file into place.

    Use as a context manager; on an exception the temporary file is removed and nothing appears at ``path``.

    Example:
        >>> with ShardWriter(path, patch_size=100, attrs={"config": cfg}) as w:  # doctest: +SKIP
        ...     w.append("IMG_1", phone=p, dslr=d, xy=xy, shift=s, angle=a, ncc=n, texture=t)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        patch_size: int,
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.patch_size = int(patch_size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self.rows = 0
        # a private temporary file with one writer: no lock needed (locks fail on some network file systems)
        self._file = h5py.File(self._tmp, "w", track_order=False, locking=False)
        self._file.attrs.update(_attrs(attrs or {}, patch_size=self.patch_size))
        p = self.patch_size
        for name in IMAGES:
            self._file.create_dataset(
                name,
                shape=(0, p, p, 3),
                maxshape=(None, p, p, 3),
                dtype=np.uint8,
                chunks=(1, p, p, 3),
                compression=compression,
                track_times=False,
            )
        for name, (dtype, tail) in COLUMNS.items():
            self._file.create_dataset(
                name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=(1024, *tail), track_times=False
            )

    def append(self, pair: str, **arrays: np.ndarray) -> int:
        """Append the ``K`` patch pairs of source pair ``pair``; returns ``K``.

        Args:
            pair: name of the source photo pair (stored in the ``pair`` column for each row).
            **arrays: ``phone``, ``dslr`` ``(K, P, P, 3)`` uint8 and every column of :data:`COLUMNS` but ``pair``.

        Raises:
            ShardError: a field is missing or has the wrong shape.
        """
        k = len(arrays["phone"]) if "phone" in arrays else -1
        want = {n: (self.patch_size, self.patch_size, 3) for n in IMAGES}
        want.update({n: tail for n, (_, tail) in COLUMNS.items() if n != "pair"})
        for name, tail in want.items():
            a = arrays.get(name)
            if a is None or np.shape(a) != (k, *tail):
                raise ShardError(f"append({pair!r}): field {name!r} must have shape {(k, *tail)}, got {np.shape(a)}")
        if k == 0:
            return 0
        arrays = {**arrays, "pair": np.array([pair] * k, dtype=object)}
        for name in (*IMAGES, *COLUMNS):
            ds = self._file[name]
            ds.resize(self.rows + k, axis=0)
            ds[self.rows :] = np.asarray(arrays[name], dtype=ds.dtype if name != "pair" else object)
        self.rows += k
        return k

    def close(self) -> ShardInfo:
        """Flush, rename into place atomically and return the shard's :class:`ShardInfo`."""
        self._file.attrs["rows"] = self.rows
        self._file.close()
        os.chmod(self._tmp, _file_mode())  # mkstemp made it private (0600); a dataset is for sharing
        os.replace(self._tmp, self.path)
        return ShardInfo(self.path, self.rows, file_sha256(self.path))

    def abort(self) -> None:
        """Drop the temporary file."""
        if self._file.id.valid:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._file.id.valid:
            self.close()


def _file_mode() -> int:
    """0666 minus the process umask: what ``open()`` would have given a new file."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _attrs(attrs: Mapping[str, Any], *, patch_size: int) -> dict[str, Any]:
    out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "dpedkit_version": __version__, "patch_size": patch_size}
    for key, value in attrs.items():
        out[key] = value if isinstance(value, str | int | float) else json.dumps(value, sort_keys=True)
    return out


def open_shard(path: str | Path) -> h5py.File:
    """Open a shard read-only after checking its schema; the caller closes it.

    Raises:
        ShardError: missing, not HDF5, a foreign file (no dpedkit schema), a newer schema version, or damaged
            (missing dataset, inconsistent row counts or shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file is missing")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise ShardError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        check_schema(f, path)
    except BaseException:
        f.close()
        raise
    return f


def check_schema(f: h5py.File, path: str | Path) -> int:
    """Validate an open shard's attributes, datasets and shapes; returns its row count."""
    schema = f.attrs.get("schema")
    if schema != SCHEMA:
        raise ShardError(f"{path}: not a dpedkit patch shard (schema attribute {schema!r}, expected {SCHEMA!r})")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise ShardError(
            f"{path}: shard schema version {version} is not supported (this dpedkit reads {SCHEMA_VERSION})"
        )
    p = int(f.attrs["patch_size"])
    rows = int(f.attrs.get("rows", -1))
    want = {n: (p, p, 3) for n in IMAGES} | {n: tail for n, (_, tail) in COLUMNS.items()}
    for name, tail in want.items():
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise ShardError(f"{path}: damaged shard, dataset {name!r} is missing")
        if f[name].shape != (rows, *tail):
            raise ShardError(f"{path}: damaged shard, {name!r} has shape {f[name].shape}, expected {(rows, *tail)}")
    for name in IMAGES:
        if f[name].dtype != np.uint8:
            raise ShardError(f"{path}: damaged shard, {name!r} is {f[name].dtype}, expected uint8")
    return rows


def read_shard(path: str | Path) -> dict[str, Any]:
    """Read a whole shard into memory: every dataset as a numpy array (``pair`` as ``str``) plus ``attrs``."""
    with open_shard(path) as f:
        out: dict[str, Any] = {n: f[n][()] for n in (*IMAGES, *COLUMNS) if n != "pair"}
        out["pair"] = np.array(f["pair"].asstr()[()], dtype=object)
        out["attrs"] = dict(f.attrs)
    return out


MANIFEST = "dataset.json"
MANIFEST_SCHEMA = "dpedkit-dataset"
SPLITS = ("train", "test")


def shard_name(split: str, index: int) -> str:
    """Relative path of shard ``index`` of ``split``: ``train/shard-00000.h5``."""
    return f"{split}/shard-{index:05d}.h5"


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read and check ``ROOT/dataset.json`` (written last by a finished build).

    Raises:
        ShardError: no manifest (not a dataset, or an unfinished build), unreadable JSON, or a foreign schema.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{root}: not a finished dpedkit dataset ({MANIFEST} is missing; build still running?)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: unreadable dataset manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise ShardError(f"{path}: not a dpedkit dataset manifest (schema {manifest.get('schema')!r})")
    if int(manifest.get("schema_version", -1)) != SCHEMA_VERSION:
        raise ShardError(f"{path}: dataset schema version {manifest.get('schema_version')} is not supported")
    return manifest


def split_shards(root: str | Path, split: str, *, verify: bool = False) -> list[ShardInfo]:
    """The shards of one split of a finished dataset, in order, checked to exist (and, if ``verify``, checksums).

    Raises:
        ShardError: unknown split, missing shard, or (with ``verify``) a checksum mismatch.
    """
    if split not in SPLITS:
        raise ShardError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(root)
    out = []
    for entry in read_manifest(root)["shards"]:
        if entry["split"] != split:
            continue
        path = root / entry["path"]
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in {MANIFEST} is missing")
        if verify and file_sha256(path) != entry["sha256"]:
            raise ShardError(f"{path}: checksum mismatch (damaged or modified shard)")
        out.append(ShardInfo(path, int(entry["rows"]), entry["sha256"]))
    return out
