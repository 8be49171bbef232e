"""Reader for the official DPED folder layout (the archive users of the original dataset have on disk).

Layout, pairing by the integer index in the file name (indices contiguous from 0)::

    dped/<phone>/training_data/<phone>/<i>.jpg          phone patch       (split "train")
    dped/<phone>/training_data/canon/<i>.jpg            DSLR patch, same index
    dped/<phone>/test_data/patches/<phone>/<i>.jpg      (split "test")
    dped/<phone>/test_data/patches/canon/<i>.jpg

``<phone>`` is ``iphone``, ``blackberry`` or ``sony`` in the real archive (any name is accepted here); the DSLR
folder is always ``canon``.  Patches are 100x100x3 JPEG; they load as ``N x P x P x 3`` uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dpedkit.dataset.format import SPLITS
from dpedkit.errors import ConfigError, InputError, check_choice
from dpedkit.interop.transfer import indexed_pairs, stack_patches
from dpedkit.io import read_rgb

DSLR_NAME = "canon"
_SPLIT_DIRS = {"train": ("training_data",), "test": ("test_data", "patches")}


@dataclass(frozen=True)
class DpedFolder:
    """One phone's folder of an official DPED tree, ``.../dped/<phone>``."""

    root: Path
    phone: str

    def split_dirs(self, split: str) -> tuple[Path, Path]:
        """``(phone_dir, dslr_dir)`` of ``split`` (``"train"`` or ``"test"``)."""
        check_choice("split", split, SPLITS)
        base = self.root.joinpath(*_SPLIT_DIRS[split])
        return base / self.phone, base / DSLR_NAME


def _looks_like_phone_dir(path: Path) -> bool:
    return (path / "training_data").is_dir() or (path / "test_data").is_dir()


def is_dped_folder(path: str | Path) -> bool:
    """True when ``path`` is an official ``dped/`` tree or one of its ``<phone>/`` folders."""
    path = Path(path)
    if not path.is_dir():
        return False
    return _looks_like_phone_dir(path) or any(_looks_like_phone_dir(p) for p in path.iterdir() if p.is_dir())


def find_dped_folder(path: str | Path, *, phone: str | None = None) -> DpedFolder:
    """Locate a phone's folder: ``path`` is ``.../dped`` (then ``phone`` picks the sub-folder) or ``.../dped/<phone>``.

    Args:
        path: the ``dped`` folder or a ``<phone>`` folder inside it.
        phone: phone name (``iphone``, ``blackberry``, ``sony``...); may be omitted when ``path`` is the phone
            folder itself or when ``dped/`` holds a single phone.

    Returns:
        A :class:`DpedFolder`.

    Raises:
        InputError: ``path`` is not an official DPED folder.
        ConfigError: ``phone`` does not match, or is needed to choose between several phones.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "not a folder")
    if _looks_like_phone_dir(path):
        if phone not in (None, path.name):
            raise ConfigError(f"phone {phone!r} given, but {path} is the folder of phone {path.name!r}")
        return DpedFolder(path, path.name)
    phones = sorted(p.name for p in path.iterdir() if p.is_dir() and _looks_like_phone_dir(p))
    if not phones:
        raise InputError(path, "not an official DPED folder (no <phone>/training_data or <phone>/test_data inside)")
    if phone is None:
        if len(phones) > 1:
            raise ConfigError(f"{path} holds several phones; choose one with --phone: {', '.join(phones)}")
        phone = phones[0]
    check_choice("phone", phone, tuple(phones))
    return DpedFolder(path / phone, phone)


def list_pairs(folder: DpedFolder, split: str = "test") -> list[tuple[Path, Path]]:
    """``(phone_patch, dslr_patch)`` paths of ``split``, paired by index, in index order.

    Indices present on one side only are skipped with a warning.

    Raises:
        InputError: a split folder is missing or holds no pairs.
    """
    return indexed_pairs(*folder.split_dirs(split), (".jpg", ".jpg"), split, "official DPED layout")


def load_pairs(folder: DpedFolder, split: str = "test", *, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load the patch pairs of ``split`` into memory.

    Args:
        folder: from :func:`find_dped_folder`.
        split: ``"train"`` or ``"test"``.
        limit: load only the first ``limit`` pairs (by index).

    Returns:
        ``(phone, dslr)``: ``N x P x P x 3`` uint8 RGB arrays, row ``i`` of both from the same index.

    Raises:
        InputError: unreadable patches or patches of differing sizes.
    """
    pairs = list_pairs(folder, split)[:limit]
    files = [p for p, _ in pairs] + [d for _, d in pairs]
    both = stack_patches([read_rgb(f) for f in files], files)  # square, one size: else the file is named
    return both[: len(pairs)], both[len(pairs) :]
