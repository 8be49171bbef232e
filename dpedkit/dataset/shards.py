"""HDF5 patch shards: the schema, a writer (temporary file renamed into place) and validation; the storage seam.

One shard holds the patch pairs of a fixed group of photo pairs and is written by exactly one worker.

The storage seam: every other module reads and writes shards through :func:`open_reader` (a :class:`ShardReader`)
and :func:`shard_writer` (a :class:`ShardSink`), and finds and checksums them with :func:`shard_exists` and
:func:`shard_sha256`; these serve the current :class:`ShardStore`. :class:`HDF5Store` (:class:`HDF5Reader`,
:class:`ShardWriter`) is the one implementation; :func:`using_store` routes a process's shard I/O through another
(:class:`dpedkit.testing.MemoryShards`, in memory, for tests). No h5py object leaves this module.

Schema (``SCHEMA`` version ``SCHEMA_VERSION``), for ``N`` patch pairs of ``P x P`` pixels:

- ``phone``, ``dslr``: ``(N, P, P, 3)`` uint8 RGB (``uint16`` in a ``--bit-depth 16`` build), chunked one patch
  per chunk, uncompressed by default. A ``raw2rgb`` build's ``phone`` is ``(N, P, P, 1)`` uint16: the sensor's
  Bayer mosaic as recorded; its ``baseline`` (N, P, P, 3) holds LibRaw's own processing of the same windows
  (camera white balance, sRGB), the baseline a learned ISP must beat.
- per-patch columns: ``pair`` (N,) UTF-8 name of the source pair, ``xy`` (N, 2) int32 top-left ``(x, y)`` of the
  phone window in the aligned crop, ``shift`` (N, 2) float32 DSLR window offset in px, ``angle`` (N,) float32
  degrees, ``ncc`` (N,) float32 normalised cross-correlation of the stored pair, ``texture`` (N,) float32.
- file attributes: ``schema``, ``schema_version``, ``dpedkit_version``, ``config`` (resolved build config as
  JSON), ``split``, ``patch_size``, ``rows``.
- optional group ``candidates/`` (version 2; written by ``dpedkit build``, absent from shards written by
  ``import-dped`` or by version 1): the refinement record of every grid window of the shard's pairs, kept or not,
  one row per window (``M`` rows, attribute ``rows``), pairs in the order they were appended and windows in
  row-major grid order: ``pair`` (M,) UTF-8, ``xy`` (M, 2) int32 window top-left, ``grid`` (M, 2) int32 column
  and row index, ``shift`` (M, 2) float32, ``angle`` (M,) float32, ``ncc`` (M,) float32, ``texture`` (M,)
  float32, ``kept`` (M,) bool, ``at_radius`` (M,) bool, ``outside`` (M,) bool (see
  :class:`dpedkit.dataset.patches.PatchSet`) and ``row`` (M,) int32: the window's patch row in this shard, -1 when
  not kept.

Version 1 shards (no ``candidates/`` group) are still read; readers never require the group.

Files are written deterministically (no timestamps), so two builds of the same pairs have equal checksums.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from dpedkit import __version__
from dpedkit.errors import ShardError
from dpedkit.io import AtomicFile, atomic_path, check_room, dumps

SHARD_SUFFIX = ".h5"  # the file suffix of a shard (format.shard_name, storage's object names read it from here)
SCHEMA = "dpedkit-patches"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 2 added the optional candidates/ group
IMAGES = ("phone", "dslr")
BASELINE = "baseline"  # optional: what the phone's own processing makes of the phone patch (raw2rgb: LibRaw's)
PATCH_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))  # 8-bit (the DPED format) or 16-bit patches
# column name -> (dtype, trailing shape)
COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "pair": (h5py.string_dtype("utf-8"), ()),
    "xy": (np.int32, (2,)),
    "shift": (np.float32, (2,)),
    "angle": (np.float32, ()),
    "ncc": (np.float32, ()),
    "texture": (np.float32, ()),
}
CANDIDATES = "candidates"
MAX_PATCH = 4096  # the largest patch side a shard may hold (PatchConfig.size's bound)
_HEADROOM = 1 << 20  # bytes kept free beyond a write's own size (HDF5 metadata, the candidate columns)
# candidate column name -> (dtype, trailing shape); ``row`` is filled in by the writer
CANDIDATE_COLUMNS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "pair": (h5py.string_dtype("utf-8"), ()),
    "xy": (np.int32, (2,)),
    "grid": (np.int32, (2,)),
    "shift": (np.float32, (2,)),
    "angle": (np.float32, ()),
    "ncc": (np.float32, ()),
    "texture": (np.float32, ()),
    "kept": (np.bool_, ()),
    "at_radius": (np.bool_, ()),
    "outside": (np.bool_, ()),
    "row": (np.int32, ()),
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


def patch_layout(
    dtype: Any, phone_dtype: Any, phone_channels: int, baseline: bool
) -> tuple[dict[str, np.dtype], dict[str, int]]:
    """``(dtypes, channels)`` of a shard's image datasets (phone, dslr and, with ``baseline``, baseline), checked.

    Raises:
        ValueError: a dtype other than uint8/uint16, or a phone of other than 1 or 3 channels.
    """
    dtypes = {"phone": np.dtype(phone_dtype or dtype), "dslr": np.dtype(dtype)}
    if any(d not in PATCH_DTYPES for d in dtypes.values()) or phone_channels not in (1, 3):
        raise ValueError(f"patches must be uint8 or uint16 and the phone's 1 or 3 channels; got {dtypes}, "
                         f"{phone_channels}")  # fmt: skip
    channels = {"phone": phone_channels, "dslr": 3} | ({BASELINE: 3} if baseline else {})
    return dtypes | {BASELINE: dtypes["dslr"]}, channels


class ShardWriter:
    """Write one shard: append patch groups, then :meth:`close` renames the temporary file into place.

    Use as a context manager; on an exception the temporary file is removed and nothing appears at ``path``. The
    HDF5 :class:`ShardSink` (code outside this module writes through :func:`shard_writer`).

    Args:
        path: the shard file to write.
        patch_size: the patch side ``P``.
        attrs: file attributes (``config``, ``split``, ``pairs``...; a value not str or number is stored as JSON).
        compression: an HDF5 filter for the patches (None: uncompressed, the default and the fastest to read).
        candidates: store every candidate window (``candidates/``; see :meth:`append`).
        dtype: the patches' sample type, uint8 or uint16.
        phone_dtype: the phone patches' sample type when it differs (raw2rgb: uint16).
        phone_channels: 3 (RGB), or 1 (a raw2rgb Bayer mosaic).
        baseline: also store ``baseline`` patches (raw2rgb).
        checksums: a Fletcher-32 checksum per chunk (turned off only to measure what they cost).

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
        candidates: bool = False,
        dtype: Any = np.uint8,
        phone_dtype: Any = None,
        phone_channels: int = 3,
        baseline: bool = False,
        checksums: bool = True,
    ) -> None:
        dtypes, self.channels = patch_layout(dtype, phone_dtype, phone_channels, baseline)
        self.path = Path(path)
        self.patch_size = int(patch_size)
        self._atomic = AtomicFile(self.path)
        self.rows = 0
        self.candidate_rows = 0
        self._cand = None
        # a private temporary file with one writer: no lock needed (locks fail on some network file systems)
        self._file = h5py.File(self._atomic.tmp, "w", track_order=False, locking=False)
        with self._writing():
            self._file.attrs.update(shard_attrs(attrs or {}, patch_size=self.patch_size))
            p = self.patch_size
            for name in self.channels:
                c = self.channels[name]
                self._file.create_dataset(
                    name,
                    shape=(0, p, p, c),
                    maxshape=(None, p, p, c),
                    dtype=dtypes[name],
                    chunks=(1, p, p, c),
                    compression=compression,
                    fletcher32=checksums,  # a checksum per chunk (patch): a damaged patch is an error when read
                    track_times=False,
                )
            for name, (dtype, tail) in COLUMNS.items():
                _column(self._file, name, dtype, tail, checksum=checksums)
            if candidates:
                self._cand = self._file.create_group(CANDIDATES, track_order=False)
                for name, (dtype, tail) in CANDIDATE_COLUMNS.items():
                    # gzip: a partly filled chunk is mostly zeros
                    _column(self._cand, name, dtype, tail, compression="gzip", checksum=checksums)

    def append(self, pair: str, *, candidates: Mapping[str, np.ndarray] | None = None, **arrays: np.ndarray) -> int:
        """Append the ``K`` patch pairs of source pair ``pair`` (and its candidate windows); returns ``K``.

        Args:
            pair: name of the source photo pair (stored in the ``pair`` column for each row).
            candidates: every grid window of the pair (:attr:`dpedkit.dataset.patches.PatchSet.candidates`:
                each column of :data:`CANDIDATE_COLUMNS` but ``pair`` and ``row``, ``M`` rows), whose ``K`` kept
                windows are, in order, the patch pairs given; only for a writer opened with ``candidates=True``.
            **arrays: ``phone``, ``dslr`` ``(K, P, P, 3)`` uint8 and every column of :data:`COLUMNS` but ``pair``.

        Raises:
            ShardError: a field is missing or has the wrong shape, or the candidates do not fit the patches.
        """
        k = len(arrays["phone"]) if "phone" in arrays else -1
        want = {n: (self.patch_size, self.patch_size, c) for n, c in self.channels.items()}
        want.update({n: tail for n, (_, tail) in COLUMNS.items() if n != "pair"})
        check_fields(pair, arrays, want, k)
        # room first: HDF5 cannot undo a write that failed half way (see abort)
        nbytes = _HEADROOM + sum(np.asarray(a).nbytes for a in arrays.values()) * 21 // 20
        check_room(self._atomic.tmp, nbytes, name=self.path)
        with self._writing():
            if candidates is not None:
                self._append_candidates(pair, candidates, k)
            if k:
                cols = {**arrays, "pair": np.array([pair] * k, dtype=object)}
                _extend(self._file, cols, (*self.channels, *COLUMNS), self.rows)
                self.rows += k
            # HDF5 places a chunk in the file when its dataset's cache is flushed, and a file flush or close visits
            # the open datasets in an order that depends on the process's history: each dataset is flushed as it
            # is written (``_extend``) and then the file, so the same pairs always give the same bytes
            self._file.flush()
        return k

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn HDF5's write failures (disk full, file too large, I/O error) into an ``OSError`` naming the shard."""
        try:
            yield
        except (OSError, RuntimeError) as exc:
            if not _is_h5_write_error(exc):
                raise
            raise OSError(_errno_of(exc), os.strerror(_errno_of(exc)), str(self.path)) from exc

    def _append_candidates(self, pair: str, cand: Mapping[str, np.ndarray], k: int) -> None:
        if self._cand is None:
            raise ShardError(f"append({pair!r}): candidates given, but the writer was opened with candidates=False")
        m = len(cand["kept"]) if "kept" in cand else -1
        check_fields(pair, cand, {n: tail for n, (_, tail) in CANDIDATE_COLUMNS.items() if n not in ("pair", "row")}, m)
        kept = np.asarray(cand["kept"], bool)
        if int(kept.sum()) != k:
            raise ShardError(f"append({pair!r}): {int(kept.sum())} candidate windows are kept but {k} patches given")
        row = np.full(m, -1, np.int32)
        row[kept] = self.rows + np.arange(k, dtype=np.int32)
        if m:
            cols = {**cand, "pair": np.array([pair] * m, dtype=object), "row": row}
            _extend(self._cand, cols, tuple(CANDIDATE_COLUMNS), self.candidate_rows)
        self.candidate_rows += m

    def close(self) -> ShardInfo:
        """Flush, rename into place atomically and return the shard's :class:`ShardInfo`.

        Raises:
            OSError: the shard could not be written (its temporary file is removed; nothing appears at ``path``).
        """
        try:
            with self._writing():
                self._file.attrs["rows"] = self.rows
                if self._cand is not None:
                    self._cand.attrs["rows"] = self.candidate_rows
                self._file.flush()  # every write happens here: the close below only releases the file
            self._file.close()
            self._atomic.commit()
        except BaseException:
            self.abort()
            raise
        return ShardInfo(self.path, self.rows, file_sha256(self.path))

    def abort(self) -> None:
        """Drop the temporary file, also after a failed write.

        HDF5 cannot close a file whose cached data it failed to write, and a process holding such a file crashes
        when it exits (a segfault after "disk full"): the temporary file is emptied first, which frees the space
        and lets the close succeed; the file is discarded anyway.
        """
        if self._file.id.valid:
            with contextlib.suppress(OSError):
                os.truncate(self._atomic.tmp, 0)
            with contextlib.suppress(OSError, RuntimeError):
                self._file.close()
        self._atomic.discard()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._file.id.valid:
            self.close()


def _column(
    group: h5py.Group,
    name: str,
    dtype: Any,
    tail: tuple[int, ...],
    compression: str | None = None,
    checksum: bool = True,
) -> None:
    """An empty resizable per-row dataset ``name`` of ``group`` (checksummed chunks; HDF5 cannot checksum strings)."""
    group.create_dataset(
        name,
        shape=(0, *tail),
        maxshape=(None, *tail),
        dtype=dtype,
        chunks=(1024, *tail),
        compression=compression,
        fletcher32=checksum and h5py.check_string_dtype(np.dtype(dtype)) is None,
        track_times=False,
    )


def _is_h5_write_error(exc: BaseException) -> bool:
    """Whether an h5py exception reports a failed write to the file (rather than a bad call)."""
    text = str(exc)
    return "write failed" in text or "errno =" in text or isinstance(exc, OSError) and exc.errno is not None


def _errno_of(exc: BaseException) -> int:
    """The errno an h5py exception carries (``errno = 28`` in its message), else EIO."""
    m = re.search(r"errno = (\d+)", str(exc))
    if m:
        return int(m.group(1))
    return exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO


def check_fields(pair: str, arrays: Mapping[str, Any], want: Mapping[str, tuple[int, ...]], n: int) -> None:
    """Every field of ``want`` is in ``arrays`` with shape ``(n, *tail)``, else ShardError."""
    for name, tail in want.items():
        a = arrays.get(name)
        if a is None or np.shape(a) != (n, *tail):
            raise ShardError(f"append({pair!r}): field {name!r} must have shape {(n, *tail)}, got {np.shape(a)}")


def _extend(group: h5py.Group, arrays: Mapping[str, Any], names: tuple[str, ...], start: int) -> None:
    """Write ``arrays[name]`` at rows ``start:`` of each dataset ``name`` of ``group`` (growing it)."""
    for name in names:
        ds = group[name]
        a = np.asarray(arrays[name], dtype=object if name == "pair" else ds.dtype)
        ds.resize(start + len(a), axis=0)
        ds[start:] = a
        ds.flush()  # place its chunks now, in this fixed order (see ShardWriter.append)


def shard_attrs(attrs: Mapping[str, Any], *, patch_size: int) -> dict[str, Any]:
    """A shard's attributes as stored: the schema's own, then ``attrs`` (a value not str or number as JSON)."""
    out = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "dpedkit_version": __version__, "patch_size": patch_size}
    for key, value in attrs.items():
        out[key] = value if isinstance(value, str | int | float) else dumps(value, finite=False)
    return out


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn an HDF5 read failure (a chunk failing its checksum, a truncated file) into a :class:`ShardError`."""
    try:
        yield
    except OSError as exc:
        raise read_error(path, exc) from exc


def read_error(path: str | Path, exc: OSError) -> ShardError:
    """The :class:`ShardError` of a failed read of shard ``path`` (for hot paths that cannot afford a ``with``)."""
    cause = str(exc).split(" (")[-1].rstrip(")") if "(" in str(exc) else str(exc)
    return ShardError(f"{path}: damaged shard data ({cause}); `dpedkit verify` tells which shards are damaged")


def open_shard(path: str | Path) -> h5py.File:
    """Open an HDF5 shard read-only after checking its schema; the caller closes it.

    Code outside this module reads shards through :func:`open_reader` (any :class:`ShardStore`).

    Raises:
        ShardError: missing, not HDF5, a foreign file (no dpedkit schema), a newer schema version, or damaged
            (missing dataset, inconsistent row counts or shapes).
    """
    return _open_checked(Path(path))[0]


def _open_checked(path: Path) -> tuple[h5py.File, int]:
    """:func:`open_shard` and the shard's row count."""
    if not path.is_file():
        raise ShardError(f"{path}: shard file is missing")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise ShardError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        rows = check_schema(f, path)
    except BaseException:
        f.close()
        raise
    return f, rows


def check_schema(f: h5py.File, path: str | Path) -> int:
    """Validate an open shard's attributes, datasets and shapes; returns its row count."""
    schema = f.attrs.get("schema")
    if schema != SCHEMA:
        raise ShardError(f"{path}: not a dpedkit patch shard (schema attribute {schema!r}, expected {SCHEMA!r})")
    version = int(f.attrs.get("schema_version", -1))
    if version not in READABLE_VERSIONS:
        raise ShardError(
            f"{path}: shard schema version {version} is not supported (this dpedkit reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    p = int(f.attrs["patch_size"])
    if not 1 <= p <= MAX_PATCH:
        raise ShardError(f"{path}: damaged shard, patch size {p} (dpedkit writes 8 to {MAX_PATCH})")
    rows = int(f.attrs.get("rows", -1))
    channels = {"phone": f["phone"].shape[-1] if "phone" in f and f["phone"].ndim == 4 else 3, "dslr": 3}
    if channels["phone"] not in (1, 3):
        channels["phone"] = 3  # reported as a shape error below
    want = {n: (p, p, channels[n]) for n in IMAGES} | {n: tail for n, (_, tail) in COLUMNS.items()}
    if BASELINE in f:
        want[BASELINE] = (p, p, 3)
    for name, tail in want.items():
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise ShardError(f"{path}: damaged shard, dataset {name!r} is missing")
        if f[name].shape != (rows, *tail):
            raise ShardError(f"{path}: damaged shard, {name!r} has shape {f[name].shape}, expected {(rows, *tail)}")
    for name in IMAGES:
        if f[name].dtype not in PATCH_DTYPES:
            raise ShardError(f"{path}: damaged shard, {name!r} is {f[name].dtype}, expected uint8 or uint16")
    for name in (n for n in (*IMAGES, BASELINE) if n in f):
        _check_stored(f[name], path, p)
    if CANDIDATES in f:
        _check_candidates(f[CANDIDATES], path)
    return rows


def _check_stored(ds: h5py.Dataset, path: str | Path, p: int) -> None:
    """Refuse patch data whose file does not hold the bytes its shape declares (before any reader allocates them).

    HDF5 lets a dataset declare any shape and store nothing: a 78 kB shard can claim 3000 x 3000 patches that read
    as zeros, and a reader that trusts the shape allocates gigabytes. dpedkit writes every patch, uncompressed, one
    chunk each: the stored bytes cover the declared ones (compressed data: every chunk is stored).
    """
    rows = ds.shape[0]
    if not rows:
        return
    declared = ds.size * ds.dtype.itemsize
    if ds.compression is None:
        stored = ds.id.get_storage_size()
        ok = stored >= declared
    else:
        chunks = ds.chunks or ds.shape
        stored = ds.id.get_num_chunks() if ds.chunks else 1
        ok = stored >= int(np.prod([-(-n // c) for n, c in zip(ds.shape, chunks, strict=True)]))
    if not ok:
        raise ShardError(f"{path}: damaged shard, {ds.name.lstrip('/')!r} declares {rows} patches of {p}x{p} "
                         f"({declared / 1e6:.1f} MB) that the file does not hold ({_file_size(path) / 1e6:.1f} MB): "
                         "nothing was read")  # fmt: skip


def _file_size(path: str | Path) -> int:
    """The size of a file in bytes (0 when it cannot be read)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _check_candidates(group: Any, path: str | Path) -> int:
    """Validate a shard's ``candidates/`` group; returns its row count."""
    if not isinstance(group, h5py.Group):
        raise ShardError(f"{path}: damaged shard, {CANDIDATES!r} is not a group")
    m = int(group.attrs.get("rows", -1))
    for name, (dtype, tail) in CANDIDATE_COLUMNS.items():
        ds = group.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise ShardError(f"{path}: damaged shard, dataset {CANDIDATES}/{name} is missing")
        if ds.shape != (m, *tail):
            raise ShardError(f"{path}: damaged shard, {CANDIDATES}/{name} has shape {ds.shape}, expected {(m, *tail)}")
        if name != "pair" and ds.dtype != np.dtype(dtype):
            raise ShardError(f"{path}: damaged shard, {CANDIDATES}/{name} is {ds.dtype}, expected {np.dtype(dtype)}")
    return m


def has_candidates(f: h5py.File) -> bool:
    """True when an open (checked) shard stores its candidate windows (a ``candidates/`` group)."""
    return CANDIDATES in f


def shard_candidates(
    f: h5py.File, *, pairs: Collection[str] | None = None, columns: Sequence[str] | None = None
) -> dict[str, np.ndarray] | None:
    """The candidate windows of an open (checked) shard, or None when it stores none.

    Args:
        f: a shard from :func:`open_shard`.
        pairs: keep only the windows of these pair names (a collection of ``str``); None: all.
        columns: columns of :data:`CANDIDATE_COLUMNS` to read; None: all. (``pair`` is a variable-length string
            column, by far the slowest to read: leave it out when counting windows.)

    Returns:
        Column name -> array with ``M`` rows (``pair`` as an object array of ``str``), or None.

    Raises:
        ShardError: an unknown column name.
    """
    if CANDIDATES not in f:
        return None
    group = f[CANDIDATES]
    names = candidate_names(columns)
    pair = np.array(group["pair"].asstr()[()], dtype=object) if pairs is not None or "pair" in names else None
    mask = slice(None) if pairs is None else np.isin(pair, np.array(sorted(set(pairs)), dtype=object))
    return {c: pair[mask] if c == "pair" else group[c][()][mask] for c in names}


def candidate_names(columns: Sequence[str] | None, extra: tuple[str, ...] = ()) -> list[str]:
    """The requested candidate column names (all when None), checked against the schema plus ``extra``."""
    names = list(CANDIDATE_COLUMNS) + list(extra) if columns is None else list(dict.fromkeys(columns))
    unknown = [c for c in names if c not in CANDIDATE_COLUMNS and c not in extra]
    if unknown:
        choices = ", ".join((*CANDIDATE_COLUMNS, *extra))
        raise ShardError(f"unknown candidate column(s) {unknown}; choose from {choices}")
    return names


def read_shard(path: str | Path) -> dict[str, Any]:
    """Read a whole shard into memory: every dataset as a numpy array (``pair`` as ``str``) plus ``attrs``.

    Read through :func:`open_reader` (any :class:`ShardStore`). Candidate windows, when stored, appear under keys
    ``"candidates/<column>"``.
    """
    with open_reader(path) as r:
        out: dict[str, Any] = {n: r.images(n)[()] for n in IMAGES}
        out.update({n: r.column(n) for n in COLUMNS if n != "pair"})
        out["pair"] = r.column("pair")
        out["attrs"] = dict(r.attrs)
        cand = r.candidates()
        if cand is not None:
            out.update({f"{CANDIDATES}/{k}": v for k, v in cand.items()})
    return out


# ------------------------------------------------------------------------------------------- the storage seam
# Every shard read and write outside this module goes through the current ShardStore: open_reader, shard_writer,
# shard_exists, shard_sha256. HDF5Store is the one implementation; dpedkit.testing.MemoryShards is an in-memory
# double for tests. A new backend is one ShardStore (a reader class, a writer class) routed with using_store.


class PatchArray(Protocol):
    """The patches of a shard, read lazily: ``a[row]`` is one ``P x P x C`` patch, ``a[()]`` all of them."""

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, P, P, C)``."""
        ...

    @property
    def dtype(self) -> np.dtype:
        """uint8 or uint16."""
        ...

    def __getitem__(self, index: Any) -> np.ndarray: ...

    def __len__(self) -> int: ...


class ShardReader(Protocol):
    """A shard opened for reading, its schema checked: all that dataset code may ask of any shard backend.

    Every read error is a :class:`~dpedkit.errors.ShardError` naming the shard.

    Attributes:
        path: the shard.
        rows: its patch pairs ``N``.
    """

    path: Path
    rows: int

    @property
    def attrs(self) -> Mapping[str, Any]:
        """The shard's attributes (``patch_size``, ``split``, ``config`` and ``pairs`` as JSON text, ...)."""
        ...

    def __contains__(self, name: str) -> bool:
        """Whether the shard stores ``name`` (``baseline``, ``candidates``: both optional)."""
        ...

    def images(self, name: str) -> PatchArray:
        """The patches ``name`` (``phone``, ``dslr`` or ``baseline``), read lazily."""
        ...

    def column(self, name: str) -> np.ndarray:
        """A whole per-patch column of :data:`COLUMNS` (``pair`` as an object array of ``str``)."""
        ...

    def read_into(self, name: str, out: np.ndarray, start: int) -> None:
        """Copy all the patches ``name`` into ``out[start : start + rows]`` (a C-contiguous array)."""
        ...

    def candidates(
        self, pairs: Collection[str] | None = None, *, columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray] | None:
        """The stored candidate windows (see :func:`shard_candidates`), or None when the shard stores none."""
        ...

    def checksummed(self) -> bool:
        """Whether the patches carry checksums (a damaged patch is an error when read)."""
        ...

    def unreadable(self) -> list[str]:
        """Read every byte: one problem per stored array whose data cannot be read, naming its first bad row."""
        ...

    def close(self) -> None:
        """Release the shard."""
        ...

    def __enter__(self) -> ShardReader: ...

    def __exit__(self, *exc: object) -> None: ...


class ShardSink(Protocol):
    """A shard being written, all or nothing (:class:`ShardWriter` for HDF5): append pairs' patches, then close.

    Attributes:
        path: where the shard appears when closed.
    """

    path: Path

    def append(self, pair: str, *, candidates: Mapping[str, np.ndarray] | None = None, **arrays: np.ndarray) -> int:
        """Append one pair's patches and columns (see :meth:`ShardWriter.append`); returns how many."""
        ...

    def close(self) -> ShardInfo:
        """Finish the shard and make it appear at its path."""
        ...

    def abort(self) -> None:
        """Drop the unfinished shard: nothing appears at its path."""
        ...

    def __enter__(self) -> ShardSink: ...

    def __exit__(self, *exc: Any) -> None: ...


class ShardStore(Protocol):
    """A shard backend: shards by path, read, written, found and checksummed (one place to add a backend)."""

    def reader(self, path: str | Path) -> ShardReader:
        """Open shard ``path`` after checking its schema.

        Raises:
            ShardError: missing, foreign, of a schema version this dpedkit cannot read, or damaged; naming it.
        """
        ...

    def writer(self, path: str | Path, *, patch_size: int, **options: Any) -> ShardSink:
        """A writer of a new shard at ``path`` (``options``: those of :class:`ShardWriter`)."""
        ...

    def exists(self, path: str | Path) -> bool:
        """Whether a finished shard is at ``path``."""
        ...

    def sha256(self, path: str | Path) -> str:
        """The hex sha256 of the shard at ``path`` as stored (what a manifest records)."""
        ...


class _H5Patches:
    """An HDF5 patch dataset as a :class:`PatchArray`: reads that fail (a checksum) are ShardErrors naming the shard."""

    __slots__ = ("_ds", "_path", "dtype", "shape")

    def __init__(self, ds: h5py.Dataset, path: Path) -> None:
        self._ds, self._path, self.shape, self.dtype = ds, path, ds.shape, ds.dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        try:  # a try, not `with reading(...)`: this is the hot path of every loader
            return self._ds[index]
        except OSError as exc:
            raise read_error(self._path, exc) from exc

    def __len__(self) -> int:
        return self.shape[0]


class HDF5Reader:
    """The :class:`ShardReader` of an HDF5 shard: :func:`open_shard`'s checks, read errors as ShardErrors.

    Args:
        path: the shard file.

    Raises:
        ShardError: see :func:`open_shard`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f, self.rows = _open_checked(self.path)
        self._attrs: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"HDF5Reader({str(self.path)!r})"

    @property
    def attrs(self) -> Mapping[str, Any]:
        """See :class:`ShardReader`."""
        if self._attrs is None:
            with reading(self.path):
                self._attrs = dict(self._f.attrs)
        return self._attrs

    def __contains__(self, name: str) -> bool:
        return name in self._f

    def images(self, name: str) -> PatchArray:
        """See :class:`ShardReader`."""
        if name not in (*IMAGES, BASELINE) or name not in self._f:
            raise ShardError(f"{self.path}: no patches {name!r} in the shard")
        return _H5Patches(self._f[name], self.path)

    def column(self, name: str) -> np.ndarray:
        """See :class:`ShardReader`."""
        if name not in COLUMNS:
            raise ShardError(f"unknown patch column {name!r}; choose from {', '.join(COLUMNS)}")
        with reading(self.path):
            return np.array(self._f[name].asstr()[()], object) if name == "pair" else self._f[name][()]

    def read_into(self, name: str, out: np.ndarray, start: int) -> None:
        """See :class:`ShardReader`."""
        if self.rows:
            with reading(self.path):
                self._f[name].read_direct(out, dest_sel=np.s_[start : start + self.rows])

    def candidates(
        self, pairs: Collection[str] | None = None, *, columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray] | None:
        """See :class:`ShardReader`."""
        with reading(self.path):
            return shard_candidates(self._f, pairs=pairs, columns=columns)

    def checksummed(self) -> bool:
        """See :class:`ShardReader` (Fletcher-32 per chunk)."""
        return bool(self._f["phone"].fletcher32)

    def unreadable(self, block: int = 256) -> list[str]:
        """See :class:`ShardReader`; every dataset is read in blocks of ``block`` rows."""
        out = []
        datasets: list[h5py.Dataset] = []
        self._f.visititems(lambda _name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        for ds in datasets:
            n = ds.shape[0] if ds.shape else 0
            for start in range(0, n, block):
                try:
                    ds[start : start + block]
                except OSError:
                    bad = next(i for i in range(start, min(start + block, n)) if not _row_reads(ds, i))
                    out.append(f"{ds.name.lstrip('/')}: row {bad} cannot be read (its chunk fails its checksum)")
                    break
        return out

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    def __enter__(self) -> HDF5Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _row_reads(ds: h5py.Dataset, i: int) -> bool:
    try:
        ds[i]
    except OSError:
        return False
    return True


class HDF5Store:
    """The HDF5 :class:`ShardStore`: :class:`HDF5Reader` and :class:`ShardWriter` over files."""

    def __repr__(self) -> str:
        return "HDF5Store()"

    def reader(self, path: str | Path) -> HDF5Reader:
        """See :class:`ShardStore`."""
        return HDF5Reader(path)

    def writer(self, path: str | Path, *, patch_size: int, **options: Any) -> ShardWriter:
        """See :class:`ShardStore`."""
        return ShardWriter(path, patch_size=patch_size, **options)

    def exists(self, path: str | Path) -> bool:
        """See :class:`ShardStore`."""
        return Path(path).is_file()

    def sha256(self, path: str | Path) -> str:
        """See :class:`ShardStore` (the file's bytes)."""
        return file_sha256(path)


_STORES: list[ShardStore] = [HDF5Store()]  # the last one serves this process (see using_store)


def current_store() -> ShardStore:
    """The :class:`ShardStore` this process reads and writes shards through (:class:`HDF5Store` by default)."""
    return _STORES[-1]


@contextmanager
def using_store(store: ShardStore) -> Iterator[ShardStore]:
    """Route this process's shard reads and writes (:func:`open_reader`, :func:`shard_writer`...) through ``store``.

    Example:
        >>> with using_store(MemoryShards()) as store:  # doctest: +SKIP
        ...     load_split([Path("a.h5")])  # read from memory: no file is opened
    """
    _STORES.append(store)
    try:
        yield store
    finally:
        _STORES.remove(store)


def open_reader(path: str | Path) -> ShardReader:
    """Open shard ``path`` for reading through the current :class:`ShardStore`; close it (or use ``with``).

    Raises:
        ShardError: missing, not a shard, of a newer schema version, or damaged, naming ``path``.
    """
    return current_store().reader(path)


def shard_writer(path: str | Path, *, patch_size: int, **options: Any) -> ShardSink:
    """A writer of a new shard at ``path`` through the current :class:`ShardStore` (options: :class:`ShardWriter`'s).

    Example:
        >>> with shard_writer(path, patch_size=100, attrs={"split": "train"}) as w:  # doctest: +SKIP
        ...     w.append("IMG_1", phone=p, dslr=d, xy=xy, shift=s, angle=a, ncc=n, texture=t)
    """
    return current_store().writer(path, patch_size=patch_size, **options)


def shard_exists(path: str | Path) -> bool:
    """Whether a finished shard is at ``path`` in the current :class:`ShardStore`."""
    return current_store().exists(path)


def shard_sha256(path: str | Path) -> str:
    """The sha256 of the shard at ``path`` in the current :class:`ShardStore` (as a manifest records it)."""
    return current_store().sha256(path)


# ------------------------------------------------------------------------------ originals kept beside shards


ORIGINAL_SUMS = "sha256"  # group of a sidecar: per column, each row's original file sha256 (hex); attr "name"


def write_originals(
    path: str | Path, *, shard_sha256: str, source: str, names: Sequence[str], files: Mapping[str, Sequence[Path]]
) -> None:
    """Keep the original files of an imported shard's rows, byte for byte, in one HDF5 file (atomically).

    Each file's sha256 is kept beside its bytes (group ``sha256``, one column per key; its attribute ``name``: the
    sha256 of the row names), so that :func:`read_originals` finds a damaged original.

    Args:
        path: the sidecar file (``DATASET/<layout>_source/<split>/shard-NNNNN.h5``).
        shard_sha256: the sha256 of the shard the rows were imported into (an export trusts the sidecar only while
            the shard still has it).
        source: the layout's name (``dped``, ``zrr``).
        names: the rows' file stems, in row order.
        files: column name (``phone_jpeg``...) -> the rows' original files, in row order.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["shard_sha256"] = shard_sha256
        f.attrs["source"] = source
        f.create_dataset("name", data=np.array(list(names), dtype=object), dtype=h5py.string_dtype())
        sums = f.create_group(ORIGINAL_SUMS)
        sums.attrs["name"] = _names_sha256(names)
        for key, paths in files.items():
            ds = f.create_dataset(key, (len(paths),), dtype=h5py.vlen_dtype(np.uint8))
            digests = []
            for i, p in enumerate(paths):
                data = Path(p).read_bytes()
                ds[i] = np.frombuffer(data, np.uint8)
                digests.append(hashlib.sha256(data).hexdigest())
            sums.create_dataset(key, data=np.array(digests, dtype=object), dtype=h5py.string_dtype())


@dataclass(frozen=True)
class Originals:
    """The original files kept beside an imported shard (:func:`read_originals`).

    Attributes:
        shard_sha256: the sha256 of the shard they were imported into.
        names: the rows' file stems, in row order.
        files: column name -> each row's file bytes.
        damaged: ``(row name, column)`` of every file whose bytes differ from the sha256 kept at import (row name
            None: the names themselves changed).
        checked: the sidecar holds sha256s (sidecars written before dpedkit kept them are read unchecked).
    """

    shard_sha256: str | None
    names: list[str]
    files: dict[str, list[bytes]]
    damaged: list[tuple[str | None, str]]
    checked: bool


def read_originals(path: str | Path, keys: Sequence[str] | None = None) -> Originals:
    """Read (and check against their sha256) the original files a sidecar written by :func:`write_originals` keeps.

    Args:
        path: the sidecar file.
        keys: the columns to read (None: every column with sha256s).

    Raises:
        ShardError: the sidecar cannot be read (damaged HDF5), naming it.
    """
    try:
        with h5py.File(path, "r") as f:
            sums = f.get(ORIGINAL_SUMS)
            if keys is None:
                keys = list(sums) if isinstance(sums, h5py.Group) else []
            names = list(f["name"].asstr()[()])
            files = {key: [row.tobytes() for row in f[key]] for key in keys}
            damaged: list[tuple[str | None, str]] = []
            checked = isinstance(sums, h5py.Group)
            if checked:
                if sums.attrs.get("name") != _names_sha256(names):
                    damaged.append((None, "name"))
                for key, rows in files.items():
                    recorded = list(sums[key].asstr()[()]) if key in sums else []
                    if len(recorded) != len(rows):
                        damaged.append((None, key))
                        continue
                    damaged += [(n, key) for n, data, sha in zip(names, rows, recorded, strict=False)
                                if hashlib.sha256(data).hexdigest() != sha]  # fmt: skip
            return Originals(f.attrs.get("shard_sha256"), names, files, damaged, checked)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ShardError(f"{path}: damaged file of imported originals ({type(exc).__name__}: {exc})") from exc


def _names_sha256(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()
