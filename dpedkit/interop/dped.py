"""Move datasets both ways between the official DPED folder layout and a dpedkit dataset.

Official layout (see :mod:`dpedkit.interop.dped_layout`): ``<phone>/training_data/{<phone>,canon}/<i>.jpg`` and
``<phone>/test_data/patches/{<phone>,canon}/<i>.jpg``, paired by index, plus the phone-only
``<phone>/test_data/full_size_test_images/*.jpg``. The transfer itself is :mod:`dpedkit.interop.transfer`'s:

- :func:`import_dped` writes a dpedkit dataset of decoded uint8 patches and keeps the original JPEG bytes and file
  names beside each shard (``dped_source/<split>/shard-NNNNN.h5``) and the full-size test images
  (``dped_source/full_size_test_images/``).
- :func:`export_dped` writes the official layout from a dpedkit dataset: imported rows byte for byte (import then
  export round-trips the files exactly), other rows (datasets built by ``dpedkit build``) encoded as JPEG
  (quality 95 by default) and numbered ``0..N-1`` per split; a built dataset's ``test_full/phone/*.png`` become
  ``full_size_test_images/*.jpg``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dpedkit.dataset.format import DatasetDir, Manifest
from dpedkit.dataset.storage import local_dataset
from dpedkit.errors import ConfigError, check_range
from dpedkit.interop.dped_layout import DSLR_NAME, find_dped_folder
from dpedkit.interop.transfer import Layout, Row, TransferResult, export_tree, import_tree, stack_patches
from dpedkit.io import check_apart, encode_image, read_rgb, to_uint8, write_image

FULL_SIZE = "full_size_test_images"
SOURCE_DIR = "dped_source"


def layout(phone: str) -> Layout:
    """The official DPED layout of one phone's folder ``dped/<phone>``."""
    return Layout(
        source="dped",
        split_dirs={
            "train": (f"training_data/{phone}", f"training_data/{DSLR_NAME}"),
            "test": (f"test_data/patches/{phone}", f"test_data/patches/{DSLR_NAME}"),
        },  # fmt: skip
        exts=(".jpg", ".jpg"),
        keys=("phone_jpeg", "dslr_jpeg"),
        extras=(f"test_data/{FULL_SIZE}",),
    )


def import_dped(
    dped_dir: str | Path,
    out: str | Path,
    *,
    phone: str | None = None,
    **options: Any,
) -> TransferResult:
    """Convert an official DPED folder into a dpedkit dataset.

    Args:
        dped_dir: ``.../dped`` (with ``phone``) or ``.../dped/<phone>``.
        out: dataset folder to write (must be new or empty unless ``overwrite``). It is written beside ``out``
            and moved into place at the end: a failed import leaves nothing it created, and an ``out`` that
            existed is left as it was.
        phone: phone name (``iphone``, ``blackberry``, ``sony``...).
        **options: ``rows_per_shard``, ``jobs``, ``overwrite``, ``on_progress`` of
            :func:`~dpedkit.interop.transfer.import_tree`.

    Returns:
        A :class:`TransferResult`.

    Raises:
        InputError: not an official DPED folder, no patch pairs, unreadable patches, or ``out`` not empty.
    """
    folder = find_dped_folder(dped_dir, phone=phone)
    check_apart(out, [dped_dir], what="dataset folder")  # the tree given, not only the phone's folder in it
    config = {"source": "dped", "dped_dir": str(folder.root), "phone": folder.phone}
    return import_tree(folder.root, layout(folder.phone), out, decode=_decode, config=config, phone=folder.phone,
                       **options)  # fmt: skip


def _decode(rows: list[Row]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Decoder of DPED patches: the phone and DSLR JPEGs as uint8 RGB."""
    phone = stack_patches([read_rgb(p) for _, p, _ in rows], [p for _, p, _ in rows])
    return {"phone": phone, "dslr": stack_patches([read_rgb(d) for *_, d in rows], [d for *_, d in rows])}, {}


def export_dped(
    dataset: str | Path,
    out: str | Path,
    *,
    phone: str | None = None,
    quality: int = 95,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> TransferResult:
    """Write a dpedkit dataset in the official layout ``OUT/<phone>/...``.

    Args:
        dataset: dpedkit dataset folder (``dataset.json``).
        out: the ``dped`` folder to write into; ``OUT/<phone>`` must be new or empty unless ``overwrite``
            (written beside it and moved into place at the end, as in :func:`import_dped`).
        phone: phone folder name (the DSLR folder is always ``canon``); default: the phone an imported
            dataset came from (required for other datasets).
        quality: JPEG quality 1..100 for rows that are not byte copies of imported files.
        overwrite: replace a non-empty ``OUT/<phone>``.
        on_progress: called ``(shards_done, shards_total)``.

    Raises:
        ShardError: not a finished dpedkit dataset, or a damaged shard.
        InputError: ``OUT/<phone>`` not empty.
        ConfigError: no ``phone`` for a dataset not imported from DPED, a bad ``phone`` or ``quality``.
    """
    dataset = local_dataset(dataset)  # a dataset at a URL: its local copy
    check_range("quality", quality, 1, 100)
    if DatasetDir(dataset).is_raw():
        raise ConfigError(f"{dataset} is a RAW-to-RGB dataset (its phone patches are Bayer mosaics): export-zrr "
                          "writes those")  # fmt: skip
    phone = _export_phone(phone, DatasetDir(dataset).manifest())

    def encode(p: np.ndarray, d: np.ndarray) -> tuple[bytes, bytes]:
        return encode_image(to_uint8(p), ".jpg", quality=quality), encode_image(to_uint8(d), ".jpg", quality=quality)

    def full(ds: DatasetDir, dest: Path) -> int:
        pngs = ds.test_full_images("phone")
        for png in pngs:
            write_image(dest / f"{png.stem}.jpg", read_rgb(png), quality=quality)
        return len(pngs)

    return export_tree(dataset, Path(out) / phone, layout(phone), encode=encode, full_from_build=full, phone=phone,
                       what="phone folder",
                       overwrite=overwrite, on_progress=on_progress)  # fmt: skip


def _export_phone(phone: str | None, manifest: Manifest) -> str:
    """The phone folder name: ``phone``, else the phone an imported dataset came from."""
    if phone is None:
        phone = manifest.config.get("phone")
        if phone is None:
            raise ConfigError(
                "--phone is required for datasets that were not imported from DPED: it names the phone "
                "folders to write, OUT/<phone>/training_data/<phone>/ and .../test_data/patches/<phone>/ "
                f"(e.g. iphone; the DSLR folders are always {DSLR_NAME!r})"
            )
    if not phone or "/" in phone or phone in (".", "..", DSLR_NAME):
        raise ConfigError(f"--phone must be a plain folder name other than {DSLR_NAME!r}; got {phone!r}")
    return phone
