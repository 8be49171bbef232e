"""Where patch pairs come from: one ``open_source(path)`` for every reader (training, evaluation, compare).

A *source* is a folder of patch pairs, whatever its layout. Three layouts are known:

- a dpedkit dataset (``dataset.json``; :class:`~dpedkit.dataset.format.DatasetDir`): shards checked by sha256
  before they are used, RGB or RAW-to-RGB (its manifest says which), LibRaw's baseline patches for RAW data;
- an official DPED folder (``.../dped`` with a phone name, or ``.../dped/<phone>``;
  :mod:`dpedkit.interop.dped_layout`): JPEG patches without checksums, RGB only;
- a Zurich RAW-to-RGB folder (``train|test/huawei_raw/<i>.png``, ``train|test/canon/<i>.jpg``;
  :mod:`dpedkit.interop.zrr`), read in place: 16-bit mosaics of ZRR's sensor (RGGB, levels 0..1020) and DSLR
  JPEGs, no checksums; its baseline is the plain demosaic ``import-zrr`` stores (grey-world white balance).
  ``dpedkit import-zrr`` makes a checked dataset of it, and takes another sensor (``--cfa/--black/--white``).

Every consumer asks the source, never the folder: ``is_raw`` is the one dataset-side "is it RAW" (the model-side one
is :func:`dpedkit.nn.registry.is_raw_model`). Adding a layout means one adapter class here and one line in
:func:`open_source`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dpedkit.dataset.format import DatasetDir
from dpedkit.errors import InputError
from dpedkit.io import is_url

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

    def test_full(self) -> list[tuple[Path, Path]]:
        """The full-size aligned test pairs ``(phone image, DSLR image)``, by name; empty where the layout has none."""
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

    def test_full(self) -> list[tuple[Path, Path]]:
        """A build's ``test_full/{phone,dslr}/NAME.png`` pairs, by name (a DSLR image missing is an error).

        Raises:
            InputError: a phone image without its DSLR image.
        """
        pairs = []
        for phone in self.dataset.test_full_images("phone"):
            dslr = self.dataset.test_full_path("dslr", phone.stem)
            if not dslr.is_file():
                raise InputError(dslr, f"missing: the DSLR side of the full test pair {phone.name}")
            pairs.append((phone, dslr))
        return pairs


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

    def test_full(self) -> list[tuple[Path, Path]]:
        """None: DPED's ``full_size_test_images/`` are phone photos without aligned DSLR partners."""
        return []


class ZrrSource:
    """A Zurich RAW-to-RGB folder read in place as a :class:`Source`: ZRR's sensor, no checksums."""

    is_raw = True

    def __init__(self, path: Path) -> None:
        from dpedkit.interop.zrr import ZRR_SENSOR

        self.path = path
        self._sensor = dict(ZRR_SENSOR)
        log.info("%s: a ZRR folder of PNG/JPEG files has no checksums; its patches are read as they are", path)

    def reader(self, split: str) -> Reader:
        """The split's ``<i>.png`` mosaics and ``<i>.jpg`` DSLR patches, decoded one pair at a time."""
        from dpedkit.interop.zrr import LAYOUT, read_zrr_pair

        return _FileReader(LAYOUT.pairs(self.path, split), read_zrr_pair)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Every pair of the split decoded: ``N x P x P x 1`` uint16 mosaics and ``N x P x P x 3`` uint8 RGB."""
        reader = self.reader(split)
        pairs = [reader.raw(i) for i in range(len(reader))]
        return np.stack([p for p, _ in pairs]), np.stack([d for _, d in pairs])

    def baseline(self, split: str) -> np.ndarray:
        """The plain demosaic of each phone mosaic with grey-world white balance (what ``import-zrr`` stores)."""
        from dpedkit.io.camera import render_mosaic

        s = self._sensor
        return np.stack([render_mosaic(m, s["cfa"], s["black"], s["white"]) for m in self.arrays(split)[0]])

    def baseline_name(self) -> str:
        """``demosaic``."""
        return "demosaic"

    def sensor(self) -> dict[str, Any]:
        """ZRR's sensor: ``{"cfa": "RGGB", "black": 0.0, "white": 1020.0}``."""
        return dict(self._sensor)

    def test_full(self) -> list[tuple[Path, Path]]:
        """None: ZRR's ``huawei_full_resolution/`` holds phone mosaics without aligned DSLR partners."""
        return []


class _FileReader:
    """Random access to ``(phone file, DSLR file)`` pairs, decoded on each read (RGB uint8 unless ``read`` says).

    Every patch is checked square and of the side of the first pair's phone patch (the file that is not is named).
    """

    def __init__(self, pairs: list[tuple[Path, Path]], read: Callable[[Path, Path], tuple[np.ndarray, np.ndarray]]
                 | None = None) -> None:  # fmt: skip
        self.pairs = pairs
        self.read = read
        self.side: int | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def _decode(self, phone: Path, dslr: Path) -> tuple[np.ndarray, np.ndarray]:
        from dpedkit.io import read_rgb

        return self.read(phone, dslr) if self.read is not None else (read_rgb(phone), read_rgb(dslr))

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        out = self._decode(*self.pairs[index])
        if self.side is None:  # the first pair's phone patch sets the side (decoded once when it is the one asked)
            self.side = (out if index == 0 else self._decode(*self.pairs[0]))[0].shape[0]
        for path, img in zip(self.pairs[index], out, strict=True):
            if img.shape[:2] != (self.side, self.side):
                first, side = self.pairs[0][0], f"{self.side}x{self.side}"
                raise InputError(path, f"a {img.shape[1]}x{img.shape[0]} patch, where {first} is {side}: the patches "
                                       "of a folder are squares of one size")  # fmt: skip
        return out


def held(path: str | Path, command: str) -> AbstractContextManager[None]:
    """A reader's hold on the source at ``path`` for a block.

    A dpedkit dataset's shared lock (``build --overwrite`` is refused meanwhile); nothing for a folder of files
    (DPED, ZRR) that no dpedkit command rewrites.
    """
    from dpedkit.io import folder_lock

    return folder_lock(path, command, shared=True) if DatasetDir.is_dataset(path) else nullcontext()


def identity(path: str | Path) -> dict[str, str]:
    """What tells the source at ``path`` from another one (a resumed run checks it).

    ``{"manifest_sha256": ...}`` of a dpedkit dataset (a copy has the same, a rebuild with other settings not);
    ``{}`` for a folder of files, which has no such record.
    """
    if not DatasetDir.is_dataset(path):
        return {}
    return {"manifest_sha256": hashlib.sha256(DatasetDir(path).manifest_path.read_bytes()).hexdigest()}


def _layout(path: str | Path) -> str | None:
    """The layout of the folder at ``path``: ``dataset``, ``zrr`` or ``dped``; None for none of them."""
    from dpedkit.interop.dped_layout import is_dped_folder
    from dpedkit.interop.zrr import is_zrr_folder

    if DatasetDir.is_dataset(path):
        return "dataset"
    return "zrr" if is_zrr_folder(path) else "dped" if is_dped_folder(path) else None


def require_dataset(path: str | Path, command: str) -> None:
    """Refuse a DPED or ZRR folder where only a dpedkit dataset will do, naming the import that makes one.

    Raises:
        InputError: ``path`` is a folder of another layout (a folder of no known layout passes: the caller's own
            error names what it needs).
    """
    layout = _layout(path)
    if layout in ("zrr", "dped"):
        kind = "a Zurich RAW-to-RGB folder" if layout == "zrr" else "an official DPED folder"
        raise InputError(path, f"{kind}: {command} reads a dpedkit dataset (its alignment records and shards); "
                               f"`dpedkit import-{layout} {path} -o DATASET` makes one (train, evaluate and compare "
                               "read this folder in place)")  # fmt: skip


def open_source(path: str | Path, *, phone: str | None = None, parts: Collection[str] | None = None) -> Source:
    """The :class:`Source` of a folder of patch pairs: a dpedkit dataset, an official DPED folder or a ZRR folder.

    Args:
        path: a dataset folder (``dataset.json``), ``.../dped`` (with ``phone``), ``.../dped/<phone>``, or a ZRR
            folder (``train|test/huawei_raw``); a URL (``s3://...``) of a dataset is fetched into the local cache
            (:func:`dpedkit.dataset.storage.fetch_dataset`).
        phone: the phone of an official DPED tree (``iphone``, ``sony``, ``blackberry``).
        parts: of a dataset at a URL, the parts fetched (``train``, ``test``, ``test_full``; default all): a
            reader of the test split alone does not download the training shards.

    Raises:
        InputError: neither layout (the message names both), or unreadable files.
        ShardError: a damaged dataset.
    """
    from dpedkit.dataset.storage import fetch_dataset

    path = fetch_dataset(str(path), parts=parts) if is_url(path) else Path(path)
    layout = _layout(path)
    if layout == "dataset":
        return DatasetSource(path)
    if layout == "zrr":
        return ZrrSource(path)
    if layout is None and path.is_dir():
        raise InputError(path, "not a dpedkit dataset (no dataset.json), not an official DPED folder (no "
                               "<phone>/training_data or <phone>/test_data inside) and not a ZRR folder (no "
                               "train/huawei_raw or test/huawei_raw inside)")  # fmt: skip
    return DpedSource(path, phone)
