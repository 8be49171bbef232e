"""Data made in code for tests, benchmarks and notebooks: patch sets, whole datasets, photo pairs, photos.

Everything here is deterministic (seeded) and needs no files from elsewhere; the datasets are written through
:class:`~dpedkit.dataset.format.DatasetDir` like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dpedkit.config import SynthConfig
from dpedkit.dataset.format import Counts, DatasetDir, Manifest, ShardEntry, shard_name
from dpedkit.dataset.shards import (
    BASELINE,
    CANDIDATE_COLUMNS,
    CANDIDATES,
    COLUMNS,
    IMAGES,
    HDF5Store,
    ShardInfo,
    ShardSink,
    candidate_names,
    check_fields,
    patch_layout,
    shard_attrs,
    shard_writer,
)
from dpedkit.errors import ShardError


def synthetic_patches(n: int, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` DSLR patches (a random base colour, a gradient, blobs and grain) and their phone twins.

    The phone twin is darker (gamma 1.5), colour cast, slightly blurred and noisy: a mapping a network can learn.

    Returns:
        ``(phone, dslr)``: ``n x patch x patch x 3`` uint8 RGB.
    """
    dslr = np.empty((n, patch, patch, 3), np.uint8)
    phone = np.empty_like(dslr)
    yy, xx = (np.mgrid[0:patch, 0:patch] / patch - 0.5)[..., None]
    for i in range(n):
        img = rng.uniform(0.2, 0.8, 3) + rng.uniform(-0.2, 0.2, 3) * xx + rng.uniform(-0.2, 0.2, 3) * yy
        for sigma, amp in ((patch / 8, 0.08), (1.5, 0.04), (0.6, 0.02)):  # blobs, texture, grain
            noise = cv2.GaussianBlur(rng.standard_normal((patch, patch, 3)).astype(np.float32), (0, 0), sigma)
            img = img + amp * noise / (noise.std() + 1e-6)
        img = np.clip(img, 0, 1).astype(np.float32)
        dslr[i] = np.rint(img * 255)
        low = cv2.GaussianBlur(img**1.5 * np.array([0.9, 1.0, 1.15], np.float32), (0, 0), 0.7)
        phone[i] = np.clip(np.rint((low + rng.normal(0, 0.01, low.shape)) * 255), 0, 255)
    return phone, dslr


def patch_columns(k: int, *, ncc: float = 1.0, texture: float = 1.0) -> dict[str, np.ndarray]:
    """The per-patch columns of ``k`` patch pairs with no refinement: zero ``xy``/``shift``/``angle``."""
    return {
        "xy": np.zeros((k, 2), np.int32),
        "shift": np.zeros((k, 2), np.float32),
        "angle": np.zeros(k, np.float32),
        "ncc": np.full(k, ncc, np.float32),
        "texture": np.full(k, texture, np.float32),
    }


def random_patches(rng: np.random.Generator, k: int, p: int = 8) -> dict[str, np.ndarray]:
    """``k`` random patch pairs of side ``p`` with random per-patch columns: what a shard writer's ``append`` takes."""
    return {
        "phone": rng.integers(0, 256, (k, p, p, 3), dtype=np.uint8),
        "dslr": rng.integers(0, 256, (k, p, p, 3), dtype=np.uint8),
        "xy": rng.integers(0, 500, (k, 2), dtype=np.int32),
        "shift": rng.normal(size=(k, 2)).astype(np.float32),
        "angle": rng.normal(size=k).astype(np.float32),
        "ncc": rng.uniform(0.9, 1, k).astype(np.float32),
        "texture": rng.uniform(0, 1, k).astype(np.float32),
    }


def random_candidates(rng: np.random.Generator, m: int, kept: Sequence[int]) -> dict[str, np.ndarray]:
    """``m`` random candidate windows of a pair, those at indices ``kept`` kept."""
    flags = np.zeros(m, bool)
    flags[list(kept)] = True
    return {
        "xy": rng.integers(0, 500, (m, 2), dtype=np.int32),
        "grid": rng.integers(0, 5, (m, 2), dtype=np.int32),
        "shift": rng.normal(size=(m, 2)).astype(np.float32),
        "angle": rng.normal(size=m).astype(np.float32),
        "ncc": rng.uniform(0, 1, m).astype(np.float32),
        "texture": rng.uniform(0, 1, m).astype(np.float32),
        "kept": flags,
        "at_radius": rng.uniform(size=m) < 0.2,
        "outside": np.zeros(m, bool),
    }


def write_shard(path: str | Path, groups: Sequence[tuple[str, Mapping[str, np.ndarray]]], p: int = 8) -> None:
    """Write a shard of the given ``(pair name, patches)`` groups (no candidates)."""
    with shard_writer(path, patch_size=p, attrs={"config": {"seed": 0}, "split": "train"}) as w:
        for name, g in groups:
            w.append(name, **g)


def write_two_pair_shard(path: str | Path, rng: np.random.Generator, p: int = 8) -> dict[str, dict[str, np.ndarray]]:
    """A shard with candidates of two pairs: ``a`` with 5 windows (2 kept), ``b`` with 3 (none kept)."""
    cands = {"a": random_candidates(rng, 5, [1, 3]), "b": random_candidates(rng, 3, [])}
    with shard_writer(path, patch_size=p, attrs={"pairs": ["a", "b"]}, candidates=True) as w:
        w.append("a", candidates=cands["a"], **random_patches(rng, 2, p))
        w.append("b", candidates=cands["b"], **random_patches(rng, 0, p))
    return cands


def write_patch_dataset(
    out: str | Path,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    config: Mapping[str, Any],
    pair: str = "synthetic",
) -> Path:
    """Write a finished dataset holding the given patch pairs, one shard per split (no photo pairs).

    Args:
        out: the dataset folder.
        splits: split -> ``(phone, dslr)`` ``N x P x P x 3`` uint8 arrays.
        config: the manifest's config (``{"source": ..., ...}``).
        pair: the name stored in every row's ``pair`` column (``"<pair>-<split>"``).

    Returns:
        ``out`` as a Path.
    """
    ds = DatasetDir(out)
    entries, patches = [], {}
    for split, (phone, dslr) in splits.items():
        n, p = len(phone), phone.shape[1]
        with shard_writer(ds.path(shard_name(split, 0)), patch_size=p, attrs={"split": split}) as w:
            w.append(f"{pair}-{split}", phone=phone, dslr=dslr, **patch_columns(n))
            info = w.close()
        entries.append(ShardEntry(split, shard_name(split, 0), info.rows, info.sha256))
        patches[split] = n
    ds.write_manifest(Manifest(config=dict(config), counts=Counts.of_patches(patches), shards=tuple(entries)))
    return ds.root


def write_synthetic_dataset(out: str | Path, *, n_train: int, n_test: int, patch: int = 100, seed: int = 0) -> Path:
    """Write a small dpedkit dataset of :func:`synthetic_patches` (one shard per split) to ``out``."""
    rng = np.random.default_rng(seed)
    splits = {split: synthetic_patches(n, patch, rng) for split, n in (("train", n_train), ("test", n_test))}
    return write_patch_dataset(out, splits, config={"source": "synthetic", "seed": seed})


def synthetic_pairs(
    n: int,
    *,
    seed: int = 0,
    phone_mp: float = SynthConfig.phone_mp,
    dslr_mp: float = SynthConfig.dslr_mp,
    hard: bool = SynthConfig.hard,
) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """Yield ``n`` pairs ``(name, phone, dslr, truth dict)`` made like ``dpedkit synth`` does (bundled photos).

    Pair ``i`` uses ``np.random.default_rng([seed, i])`` and photo ``i mod len(photos)``, as
    :func:`dpedkit.synth.pairs.synthesize`, so the pairs equal the files ``dpedkit synth`` writes.
    """
    from dpedkit.synth.pairs import bundled_photos, make_pair

    photos = list(bundled_photos().items())
    for i in range(n):
        name, rgb = photos[i % len(photos)]
        pair = make_pair(rgb, rng=np.random.default_rng([seed, i]), phone_mp=phone_mp, dslr_mp=dslr_mp, hard=hard)
        yield f"{i:04d}-{name}", pair.phone, pair.dslr, pair.truth


def sample_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A ``height x width x 3`` uint8 RGB photo: a real image resized, plus mild noise (deterministic)."""
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img += np.random.default_rng(seed).normal(0, 4, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_dped_tree(root: str | Path, rng: np.random.Generator, *, n_train: int = 7, n_test: int = 4) -> Path:
    """A small official DPED tree ``root/sony/...`` of 32 x 32 JPEG patches and one full-size test image."""
    from dpedkit.io import write_image

    base = Path(root) / "sony"
    for parts, n in ((("training_data",), n_train), (("test_data", "patches"), n_test)):
        phone, dslr = synthetic_patches(n, 32, rng)
        for i in range(n):
            write_image(base.joinpath(*parts, "sony", f"{i}.jpg"), phone[i])
            write_image(base.joinpath(*parts, "canon", f"{i}.jpg"), dslr[i])
    write_image(base / "test_data" / "full_size_test_images" / "photo.jpg", synthetic_patches(1, 64, rng)[0][0])
    return Path(root)


def write_zrr_tree(root: str | Path, rng: np.random.Generator, *, n_train: int = 5, n_test: int = 3) -> Path:
    """A small Zurich RAW-to-RGB tree ``root/{train,test}/{huawei_raw,canon}/<i>.{png,jpg}`` of 32 x 32 patches.

    Each phone file is the RGGB mosaic (16-bit PNG, black 0, white 1020) of a darker, colour-cast twin of its DSLR
    patch (as :func:`synthetic_patches`), so the mapping is learnable; one 64 x 64 mosaic lies in
    ``test/huawei_full_resolution/``.
    """
    from dpedkit.io import write_image

    def mosaic(rgb: np.ndarray) -> np.ndarray:
        lin = rgb.astype(np.float32) / 255.0
        m = np.empty(rgb.shape[:2], np.float32)
        m[0::2, 0::2], m[0::2, 1::2] = lin[0::2, 0::2, 0], lin[0::2, 1::2, 1]
        m[1::2, 0::2], m[1::2, 1::2] = lin[1::2, 0::2, 1], lin[1::2, 1::2, 2]
        return np.rint(m * 1020).astype(np.uint16)

    base = Path(root)
    for split, n in (("train", n_train), ("test", n_test)):
        phone, dslr = synthetic_patches(n, 32, rng)
        for i in range(n):
            (base / split / "huawei_raw").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(base / split / "huawei_raw" / f"{i}.png"), mosaic(phone[i]))
            write_image(base / split / "canon" / f"{i}.jpg", dslr[i])
    (base / "test" / "huawei_full_resolution").mkdir()
    cv2.imwrite(str(base / "test" / "huawei_full_resolution" / "0.png"), mosaic(synthetic_patches(1, 64, rng)[0][0]))
    return base


def die_on(item: Any) -> Any:
    """``item``, unless it is ``"die"``: then the process kills itself with SIGKILL (a worker the OOM killer took)."""
    if item == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return item


def png_claiming(width: int, height: int) -> bytes:
    """A valid 8 x 8 PNG whose header says ``width x height`` pixels (a decompression bomb's header, tiny file)."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


# --------------------------------------------------------------------------------------- shard stores for tests


class MarkingStore(HDF5Store):
    """HDF5 shards, each with a ``.mark`` file beside it naming the process that wrote it (which process writes)."""

    def __repr__(self) -> str:
        return "MarkingStore()"

    def writer(self, path: str | Path, *, patch_size: int, **options: Any) -> ShardSink:
        """:class:`HDF5Store`'s writer, after writing ``PATH.mark`` (this process's PID)."""
        sink = super().writer(path, patch_size=patch_size, **options)
        Path(f"{path}.mark").write_text(str(os.getpid()))
        return sink


@dataclass(frozen=True)
class MemoryShard:
    """One shard of :class:`MemoryShards`: what an HDF5 shard holds, as numpy arrays.

    Attributes:
        attrs: its attributes (as :func:`~dpedkit.dataset.shards.shard_attrs` stores them, plus ``rows``).
        arrays: ``phone``, ``dslr`` (``baseline``) and every column of :data:`~dpedkit.dataset.shards.COLUMNS`.
        candidates: every column of :data:`~dpedkit.dataset.shards.CANDIDATE_COLUMNS`, or None.
        checksummed: written with checksums (the default).
        sha256: a digest of all of the above (what a manifest records).
    """

    attrs: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]
    candidates: Mapping[str, np.ndarray] | None
    checksummed: bool
    sha256: str


class MemoryShards:
    """An in-memory :class:`~dpedkit.dataset.shards.ShardStore`, a test double: no file is read or written.

    Shards are :class:`MemoryShard` values in :attr:`shards`, keyed by absolute path. Writers check what
    :class:`~dpedkit.dataset.shards.ShardWriter` checks of the fields given and keep nothing until closed; readers
    answer as :class:`~dpedkit.dataset.shards.HDF5Reader` does. Route dpedkit's shard reads and writes through it
    with :func:`~dpedkit.dataset.shards.using_store`.

    Example:
        >>> with using_store(MemoryShards()) as store:  # doctest: +SKIP
        ...     write_patch_dataset(tmp_path / "ds", {"train": (phone, dslr)}, config={"source": "test"})
        ...     phone, dslr = load_split(tmp_path / "ds")  # dataset.json on disk, the shards in ``store``
    """

    def __init__(self) -> None:
        self.shards: dict[Path, MemoryShard] = {}

    def __repr__(self) -> str:
        return f"MemoryShards({len(self.shards)} shards)"

    def _get(self, path: str | Path) -> MemoryShard:
        shard = self.shards.get(_key(path))
        if shard is None:
            raise ShardError(f"{path}: shard file is missing")
        return shard

    def reader(self, path: str | Path) -> MemoryReader:
        """See :class:`~dpedkit.dataset.shards.ShardStore`."""
        return MemoryReader(Path(path), self._get(path))

    def writer(self, path: str | Path, *, patch_size: int, **options: Any) -> MemoryWriter:
        """See :class:`~dpedkit.dataset.shards.ShardStore` (the options of ``ShardWriter``)."""
        return MemoryWriter(self, Path(path), patch_size=patch_size, **options)

    def exists(self, path: str | Path) -> bool:
        """See :class:`~dpedkit.dataset.shards.ShardStore`."""
        return _key(path) in self.shards

    def sha256(self, path: str | Path) -> str:
        """See :class:`~dpedkit.dataset.shards.ShardStore`."""
        return self._get(path).sha256


def _key(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


class MemoryWriter:
    """The :class:`~dpedkit.dataset.shards.ShardSink` of :class:`MemoryShards` (all or nothing, at :meth:`close`)."""

    def __init__(
        self,
        store: MemoryShards,
        path: Path,
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
        del compression  # nothing to compress in memory
        self.store, self.path, self.patch_size, self.checksums = store, path, int(patch_size), checksums
        self.attrs = shard_attrs(attrs or {}, patch_size=self.patch_size)
        self.dtypes, self.channels = patch_layout(dtype, phone_dtype, phone_channels, baseline)
        self.parts: list[dict[str, np.ndarray]] = []
        self.cand_parts: list[dict[str, np.ndarray]] | None = [] if candidates else None
        self.rows = 0
        self.done = False

    def append(self, pair: str, *, candidates: Mapping[str, np.ndarray] | None = None, **arrays: np.ndarray) -> int:
        """See :meth:`dpedkit.dataset.shards.ShardWriter.append`."""
        k = len(arrays["phone"]) if "phone" in arrays else -1
        p = self.patch_size
        want = {n: (p, p, c) for n, c in self.channels.items()}
        check_fields(pair, arrays, want | {n: t for n, (_, t) in COLUMNS.items() if n != "pair"}, k)
        if candidates is not None:
            self._append_candidates(pair, candidates, k)
        part = {n: np.array(arrays[n], self.dtypes[n]) for n in self.channels}
        part |= {n: np.asarray(arrays[n], dt) for n, (dt, _) in COLUMNS.items() if n != "pair"}
        self.parts.append(part | {"pair": np.array([pair] * k, object)})
        self.rows += k
        return k

    def _append_candidates(self, pair: str, cand: Mapping[str, np.ndarray], k: int) -> None:
        if self.cand_parts is None:
            raise ShardError(f"append({pair!r}): candidates given, but the writer was opened with candidates=False")
        given = {n: (dt, t) for n, (dt, t) in CANDIDATE_COLUMNS.items() if n not in ("pair", "row")}
        m = len(cand["kept"]) if "kept" in cand else -1
        check_fields(pair, cand, {n: t for n, (_, t) in given.items()}, m)
        kept = np.asarray(cand["kept"], bool)
        if int(kept.sum()) != k:
            raise ShardError(f"append({pair!r}): {int(kept.sum())} candidate windows are kept but {k} patches given")
        row = np.full(m, -1, np.int32)
        row[kept] = self.rows + np.arange(k, dtype=np.int32)
        cols = {n: np.asarray(cand[n], dt) for n, (dt, _) in given.items()}
        self.cand_parts.append(cols | {"pair": np.array([pair] * m, object), "row": row})

    def close(self) -> ShardInfo:
        """Store the shard (see :class:`~dpedkit.dataset.shards.ShardSink`)."""
        p = self.patch_size
        empty = {n: np.zeros((0, p, p, c), self.dtypes[n]) for n, c in self.channels.items()}
        empty |= {n: np.zeros((0, *t), object if n == "pair" else dt) for n, (dt, t) in COLUMNS.items()}
        arrays = {n: np.concatenate([e, *(part[n] for part in self.parts)]) for n, e in empty.items()}
        cand = None
        if self.cand_parts is not None:
            cand = {n: np.concatenate([np.zeros((0, *t), object if n == "pair" else dt),
                                       *(part[n] for part in self.cand_parts)])
                    for n, (dt, t) in CANDIDATE_COLUMNS.items()}  # fmt: skip
        attrs = dict(self.attrs, rows=self.rows)
        digest = hashlib.sha256(json.dumps(attrs, sort_keys=True, default=str).encode())
        for name, a in sorted(arrays.items()) + sorted((cand or {}).items()):
            digest.update(f"{name}{a.dtype}{a.shape}".encode())
            digest.update("\n".join(a).encode() if a.dtype == object else np.ascontiguousarray(a).tobytes())
        shard = MemoryShard(attrs, arrays, cand, self.checksums, digest.hexdigest())
        self.store.shards[_key(self.path)] = shard
        self.done = True
        return ShardInfo(self.path, self.rows, shard.sha256)

    def abort(self) -> None:
        """Drop what was appended: nothing is stored."""
        self.parts, self.done = [], True

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.done:
            self.close()


class MemoryReader:
    """The :class:`~dpedkit.dataset.shards.ShardReader` of a :class:`MemoryShard`."""

    def __init__(self, path: Path, shard: MemoryShard) -> None:
        self.path, self.shard = path, shard
        self.rows = int(shard.attrs["rows"])

    @property
    def attrs(self) -> Mapping[str, Any]:
        """See :class:`~dpedkit.dataset.shards.ShardReader`."""
        return self.shard.attrs

    def __contains__(self, name: str) -> bool:
        return name in self.shard.arrays or (name == CANDIDATES and self.shard.candidates is not None)

    def images(self, name: str) -> np.ndarray:
        """See :class:`~dpedkit.dataset.shards.ShardReader`."""
        if name not in (*IMAGES, BASELINE) or name not in self.shard.arrays:
            raise ShardError(f"{self.path}: no patches {name!r} in the shard")
        return self.shard.arrays[name]

    def column(self, name: str) -> np.ndarray:
        """See :class:`~dpedkit.dataset.shards.ShardReader`."""
        if name not in COLUMNS:
            raise ShardError(f"unknown patch column {name!r}; choose from {', '.join(COLUMNS)}")
        return self.shard.arrays[name].copy()

    def read_into(self, name: str, out: np.ndarray, start: int) -> None:
        """See :class:`~dpedkit.dataset.shards.ShardReader`."""
        out[start : start + self.rows] = self.images(name)

    def candidates(
        self, pairs: Collection[str] | None = None, *, columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray] | None:
        """See :class:`~dpedkit.dataset.shards.ShardReader`."""
        cand = self.shard.candidates
        if cand is None:
            return None
        mask = slice(None) if pairs is None else np.isin(cand["pair"], np.array(sorted(set(pairs)), dtype=object))
        return {c: cand[c][mask] for c in candidate_names(columns)}

    def checksummed(self) -> bool:
        """See :class:`~dpedkit.dataset.shards.ShardReader`."""
        return self.shard.checksummed

    def unreadable(self) -> list[str]:
        """Nothing in memory is damaged."""
        return []

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> MemoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
