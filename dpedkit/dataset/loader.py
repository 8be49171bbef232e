"""Reading a dataset back: a PyTorch ``Dataset`` over the shards and an in-memory fast path.

Shards are read through the storage seam of :mod:`dpedkit.dataset.shards` (:func:`~dpedkit.dataset.shards.open_reader`:
HDF5 files unless :func:`~dpedkit.dataset.shards.using_store` says otherwise). ``PatchDataset`` opens each shard
lazily in the process that reads it (every DataLoader worker opens its own read-only reader; nothing open is
pickled), so it works with ``num_workers > 0`` under fork, spawn and forkserver. ``load_split`` reads a whole split
as uint8 into host (or device) memory for training.
"""

from __future__ import annotations

import bisect
import os
import resource
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dpedkit.dataset.format import DatasetDir
from dpedkit.dataset.shards import BASELINE, PatchArray, ShardInfo, ShardReader, ShardStore, current_store
from dpedkit.dataset.storage import local_dataset
from dpedkit.errors import ConfigError, ShardError
from dpedkit.nn.device import check_memory, to_float_chw

Source = str | Path | Sequence[str | Path]


def _resolve(source: Source, split: str, verify: bool, store: ShardStore) -> list[ShardInfo]:
    """Shards of ``split`` from a dataset folder, or the given shard file(s) checked for schema (in ``store``)."""
    if isinstance(source, str | Path):
        source = local_dataset(source, parts=[split])  # a dataset at a URL: its local copy (of this split)
    listed = isinstance(source, str | Path) and Path(source).is_dir()
    if listed:
        infos = DatasetDir(source).shards(split, verify=verify)
    else:
        paths = [source] if isinstance(source, str | Path) else list(source)
        infos = [ShardInfo(Path(p), -1, "") for p in paths]
    out, sizes = [], {}
    for info in infos:  # a cheap check of every shard's attributes and shapes, up front
        with store.reader(info.path) as r:
            rows = r.rows
            sizes.setdefault(int(r.attrs["patch_size"]), info.path)
            stored = r.attrs.get("split")
            if listed and stored is not None and stored != split:  # never train on test rows, or the reverse
                raise ShardError(f"{info.path}: a {stored} shard, listed in the {split} split of the manifest")
        if info.rows >= 0 and rows != info.rows:
            raise ShardError(f"{info.path}: damaged shard, {rows} rows but the manifest says {info.rows}")
        out.append(ShardInfo(info.path, rows, info.sha256))
    if len(sizes) > 1:
        shown = ", ".join(f"{p} px in {path}" for p, path in sizes.items())
        raise ShardError(f"the {split} shards hold patches of different sizes ({shown}): one split trains on one size")
    return out


class PatchDataset(Dataset):
    """Patch pairs of one split as float tensors.

    Each item is ``(phone, dslr)``: ``3 x P x P`` float32 tensors in [0, 1], RGB (``transform`` may change that).

    Args:
        source: a dataset folder (holding ``dataset.json``), one shard file, or a list of shard files.
        split: ``"train"`` or ``"test"`` (used with a dataset folder).
        verify: check each shard's sha256 against the manifest first (reads every byte once).
        transform: optional ``f(phone, dslr) -> (phone, dslr)`` applied to the tensors.
        max_open: shard files each process keeps open at once (least recently used ones are closed), so a
            dataset of thousands of shards stays under the open-file limit; default: a quarter of that limit
            (256 for the usual 1024).

    Raises:
        ShardError: a foreign, damaged or missing shard, or an unfinished dataset.

    The dataset reads through the shard store current when it is made (:func:`~dpedkit.dataset.shards.using_store`),
    in this process and in the workers it is pickled to.
    """

    def __init__(
        self,
        source: Source,
        split: str = "train",
        *,
        verify: bool = False,
        transform: Callable | None = None,
        max_open: int | None = None,
    ) -> None:
        if max_open is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            max_open = max(16, (1 << 16 if soft < 0 else min(soft, 1 << 16)) // 4)  # RLIM_INFINITY is -1
        if max_open < 1:
            raise ConfigError(f"max_open must be >= 1; got {max_open}")
        self.store = current_store()
        self.shards = _resolve(source, split, verify, self.store)
        self.split = split
        self.transform = transform
        self._ends = np.cumsum([s.rows for s in self.shards]).tolist()
        self.max_open = max_open
        self._handles: OrderedDict[int, tuple[ShardReader, PatchArray, PatchArray]] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def locate(self, index: int) -> tuple[int, int]:
        """``(shard number, row in shard)`` of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patch pairs")
        k = bisect.bisect_right(self._ends, index)
        return k, index - (self._ends[k - 1] if k else 0)

    def _datasets(self, k: int) -> tuple[PatchArray, PatchArray]:
        if self._pid != os.getpid():  # forked after opening: never reuse the parent's handles
            self._handles, self._pid = OrderedDict(), os.getpid()
        if k in self._handles:
            self._handles.move_to_end(k)
        else:
            if len(self._handles) >= self.max_open:
                self._handles.popitem(last=False)[1][0].close()
            r = self.store.reader(self.shards[k].path)
            self._handles[k] = (r, r.images("phone"), r.images("dslr"))  # looked up once: re-resolving is 10x slower
        return self._handles[k][1:]

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored ``P x P x 3`` uint8 RGB phone and DSLR patches of ``index``.

        Raises:
            ShardError: the patch's data fails its checksum (a damaged shard).
        """
        k, row = self.locate(index)
        phone, dslr = self._datasets(k)
        return phone[row], dslr[row]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        phone, dslr = (to_float_chw(a) for a in self.raw(int(index)))
        return self.transform(phone, dslr) if self.transform else (phone, dslr)

    def close(self) -> None:
        """Close the shard readers this process opened."""
        for r, *_ in self._handles.values():
            r.close()
        self._handles = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()  # open readers (h5py files) cannot (and must not) be pickled
        return state


def load_baseline(source: Source, split: str = "test") -> np.ndarray | None:
    """The ``baseline`` patches of a split (raw2rgb: LibRaw's processing of each phone window), or None.

    ``N x P x P x 3``, in the order of :func:`load_split`; None when the split's shards hold none.
    """
    store = current_store()
    parts = []
    for s in _resolve(source, split, False, store):
        with store.reader(s.path) as r:
            if BASELINE not in r:
                return None
            parts.append(r.images(BASELINE)[()])
    return np.concatenate(parts) if parts else None


def load_split(
    source: Source, split: str = "train", *, device: str | torch.device | None = None, verify: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split into memory as stored (uint8, or uint16 for a 16-bit build), for a loader-free loop.

    Args:
        source: a dataset folder, one shard file or a list of shard files (see :class:`PatchDataset`).
        split: ``"train"`` or ``"test"``.
        device: ``None`` for numpy arrays in host memory, else torch tensors on that device (e.g. ``"cuda"``),
            filled shard by shard (host memory then holds one shard at a time).
        verify: check shard checksums against the manifest first.

    Returns:
        ``(phone, dslr)``: ``N x P x P x 3`` uint8 RGB each (numpy, or torch on ``device``); use
        :func:`dpedkit.nn.device.to_float_chw` per batch.

    Raises:
        ShardError: as :class:`PatchDataset`.
    """
    store = current_store()
    shards = _resolve(source, split, verify, store)
    n = sum(s.rows for s in shards)
    p, kinds = 0, {name: ((3,), np.dtype(np.uint8)) for name in ("phone", "dslr")}
    if shards:
        with store.reader(shards[0].path) as r:
            p = int(r.attrs["patch_size"])
            kinds = {name: _kind(r.images(name)) for name in kinds}  # raw2rgb: a 1-channel uint16 phone
    size = n * p * p * sum(int(np.prod(c)) * d.itemsize for c, d in kinds.values())
    check_memory(size, torch.device(device or "cpu"), what=f"the {n} patch pairs of the {split} split")
    if device is None:
        out = {name: np.empty((n, p, p, *c), d) for name, (c, d) in kinds.items()}
    else:  # fill the device tensors shard by shard: host memory holds one shard at a time, not the split
        out = {name: torch.empty((n, p, p, *c), dtype=torch.from_numpy(np.zeros(0, d)).dtype, device=device)
               for name, (c, d) in kinds.items()}  # fmt: skip
    start = 0
    for s in shards:
        with store.reader(s.path) as r:
            if int(r.attrs["patch_size"]) != p:
                raise ShardError(f"{s.path}: patch size {r.attrs['patch_size']} differs from the other shards' {p}")
            if any(_kind(r.images(name)) != kind for name, kind in kinds.items()):
                raise ShardError(f"{s.path}: its patches differ in channels or sample type from the other shards'")
            for name, arr in out.items():
                if not s.rows:
                    continue
                if isinstance(arr, np.ndarray):
                    r.read_into(name, arr, start)
                else:
                    arr[start : start + s.rows].copy_(torch.from_numpy(np.asarray(r.images(name)[()])))
        start += s.rows
    return out["phone"], out["dslr"]


def _kind(patches: PatchArray) -> tuple[tuple[int, ...], np.dtype]:
    """The channels (as a shape tail) and sample type of a shard's patches."""
    return tuple(patches.shape[3:]), np.dtype(patches.dtype)
