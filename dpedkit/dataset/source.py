"""Where patch pairs come from: one ``open_source(path)`` for every reader (training, evaluation, compare).

A *source* is a folder of patch pairs, whatever its layout. Two layouts are known:

- a dpedkit dataset (``dataset.json``; :class:`~dpedkit.dataset.format.DatasetDir`): shards checked by sha256
  before they are used, RGB or RAW-to-RGB (its manifest says which), LibRaw's baseline patches for RAW data;
- an official DPED folder (``.../dped`` with a phone name, or ``.../dped/<phone>``;
  :mod:`dpedkit.interop.dped_layout`): JPEG patches without checksums, RGB only.

Every consumer asks the source, never the folder: ``is_raw`` is the one dataset-side "is it RAW" (the model-side one
is :func:`dpedkit.nn.registry.is_raw_model`). Adding a layout means one adapter class here and one line in
:func:`open_source`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dpedkit.dataset.format import DatasetDir
from dpedkit.errors import InputError

log = logging.getLogger(__name__)


class Reader(Protocol):
    """Random access to one split: ``len(reader)`` pairs, ``reader.raw(i) -> (phone, dslr)`` as stored."""

    def __len__(self) -> int:
        """The number of pairs."""
        ...

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The phone and DSLR patches of row ``index``, as stored (uint8/uint16, ``P x P x C``)."""
        ...


class Source(Protocol):
    """A folder of patch pairs, read the same way whatever its layout."""

    path: Path
    is_raw: bool  # phone patches are 1-channel RAW Bayer mosaics (a raw2rgb or ZRR dataset)

    def reader(self, split: str) -> Reader:
        """Random access to ``split`` (checksums checked first where the layout has them)."""
        ...

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(phone, dslr)`` of the whole split, ``N x P x P x C`` as stored; :class:`InputError` when empty."""
        ...

    def baseline(self, split: str) -> np.ndarray | None:
        """RAW data only: the patches the dataset scores in place of the identity (LibRaw's, or a plain ISP's)."""
        ...

    def baseline_name(self) -> str:
        """What :meth:`baseline` is: ``identity`` for RGB data, else ``libraw`` or the import's ``baseline``."""
        ...

    def sensor(self) -> dict[str, Any]:
        """RAW data only: ``{"cfa", "black", "white"}`` of the sensor the networks read."""
        ...


class DatasetSource:
    """A dpedkit dataset folder as a :class:`Source` (its shards' sha256 are checked before they are read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dataset = DatasetDir(path)
        self.is_raw = self.dataset.is_raw()

    def reader(self, split: str) -> Reader:
        """A :class:`~dpedkit.dataset.loader.PatchDataset` of ``split`` (every shard verified first)."""
        from dpedkit.dataset.loader import PatchDataset

        return PatchDataset(self.path, split, verify=True)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in memory (:func:`~dpedkit.dataset.loader.load_split`, checksums checked)."""
        from dpedkit.dataset.loader import load_split

        phone, dslr = load_split(self.path, split, verify=True)  # a damaged shard is refused
        if not len(phone):
            other = "train" if split == "test" else "test"
            raise InputError(
                self.path, f"its {split} split holds no patch pairs, nothing to evaluate (try split {other!r})"
            )
        return np.asarray(phone), np.asarray(dslr)

    def baseline(self, split: str) -> np.ndarray | None:
        """The stored ``baseline`` patches of a RAW dataset's split; None for RGB data."""
        if not self.is_raw:
            return None
        from dpedkit.dataset.loader import load_baseline

        return load_baseline(self.path, split)

    def baseline_name(self) -> str:
        """``identity`` (RGB), ``libraw`` (a raw2rgb build) or the manifest's ``baseline`` (``demosaic``: ZRR)."""
        if not self.is_raw:
            return "identity"
        return str(self.dataset.manifest().config.get("baseline", "libraw"))

    def sensor(self) -> dict[str, Any]:
        """The dataset's sensor (:meth:`DatasetDir.sensor`)."""
        return self.dataset.sensor()


class DpedSource:
    """An official DPED folder as a :class:`Source`: RGB JPEG patches, no checksums, no baseline."""

    is_raw = False

    def __init__(self, path: Path, phone: str | None) -> None:
        from dpedkit.interop.dped_layout import find_dped_folder

        self.path = path
        self.folder = find_dped_folder(path, phone=phone)
        log.info("%s: an official DPED folder of JPEG files has no checksums; its patches are read as they are", path)

    def reader(self, split: str) -> Reader:
        """The split's ``<i>.jpg`` pairs, decoded one at a time."""
        from dpedkit.interop.dped_layout import list_pairs

        return _FileReader(list_pairs(self.folder, split))

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Every pair of the split decoded (:func:`~dpedkit.interop.dped_layout.load_pairs`)."""
        from dpedkit.interop.dped_layout import load_pairs

        return load_pairs(self.folder, split)

    def baseline(self, split: str) -> None:
        """None: RGB data is scored against the identity."""
        return None

    def baseline_name(self) -> str:
        """``identity``."""
        return "identity"

    def sensor(self) -> dict[str, Any]:
        """DPED patches are RGB: no sensor."""
        raise InputError(self.path, "an official DPED folder holds RGB JPEG patches: it has no RAW sensor")


class _FileReader:
    """Random access to ``(phone file, DSLR file)`` pairs, decoded as RGB uint8 on each read.

    Every patch is checked square and of the size of the first pair's phone patch (the file that is not is named).
    """

    def __init__(self, pairs: list[tuple[Path, Path]]) -> None:
        self.pairs = pairs
        self.shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from dpedkit.io import read_rgb

        if self.shape is None:
            self.shape = read_rgb(self.pairs[0][0]).shape
        out = []
        for path in self.pairs[index]:
            img = read_rgb(path)
            if img.shape != self.shape or img.shape[0] != img.shape[1]:
                h, w = self.shape[:2]
                raise InputError(path, f"a {img.shape[1]}x{img.shape[0]} patch, where {self.pairs[0][0]} is {w}x{h}: "
                                       "the patches of a folder are squares of one size")  # fmt: skip
            out.append(img)
        return out[0], out[1]


def open_source(path: str | Path, *, phone: str | None = None) -> Source:
    """The :class:`Source` of a folder of patch pairs: a dpedkit dataset or an official DPED folder.

    Args:
        path: a dataset folder (``dataset.json``), ``.../dped`` (with ``phone``) or ``.../dped/<phone>``.
        phone: the phone of an official DPED tree (``iphone``, ``sony``, ``blackberry``).

    Raises:
        InputError: neither layout (the message names both), or unreadable files.
        ShardError: a damaged dataset.
    """
    from dpedkit.interop.dped_layout import is_dped_folder

    path = Path(path)
    if DatasetDir.is_dataset(path):
        return DatasetSource(path)
    if path.is_dir() and not is_dped_folder(path):
        raise InputError(path, "not a dpedkit dataset (no dataset.json) and not an official DPED folder (no "
                               "<phone>/training_data or <phone>/test_data inside)")  # fmt: skip
    return DpedSource(path, phone)
