"""Move datasets both ways between the official DPED folder layout and a dpedkit dataset.

Official layout (see :mod:`dpedkit.interop.dped_layout`): ``<phone>/training_data/{<phone>,canon}/<i>.jpg`` and
``<phone>/test_data/patches/{<phone>,canon}/<i>.jpg``, paired by index, plus the phone-only
``<phone>/test_data/full_size_test_images/*.jpg``.

- :func:`import_dped` writes a dpedkit dataset (``train/`` and ``test/`` HDF5 shards of decoded uint8 patches,
  ``dataset.json``) and keeps the original JPEG bytes and file names beside each shard
  (``dped_source/<split>/shard-NNNNN.h5``, tied to the shard by its sha256) and the full-size test images
  (``dped_source/full_size_test_images/``).
- :func:`export_dped` writes the official layout from a dpedkit dataset. Rows of an imported dataset whose shard
  is unchanged are written back byte for byte (so import then export round-trips the files exactly); other
  rows (datasets built by ``dpedkit build``) are encoded as JPEG (quality 95 by default) and numbered
  ``0..N-1`` per split; a built dataset's ``test_full/phone/*.png`` become ``full_size_test_images/*.jpg``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dpedkit.dataset.format import SPLITS, Counts, DatasetDir, Manifest, ShardEntry, shard_name
from dpedkit.dataset.parallel import run_parallel
from dpedkit.dataset.shards import ShardWriter, open_shard
from dpedkit.errors import ConfigError, InputError, check_range
from dpedkit.interop.dped_layout import DSLR_NAME, find_dped_folder, inside, list_pairs
from dpedkit.io import atomic_path, check_apart, check_file_name, encode_image, read_rgb, write_image

log = logging.getLogger(__name__)

SOURCE_DIR = "dped_source"
FULL_SIZE = "full_size_test_images"
_SPLIT_PARTS = {"train": ("training_data",), "test": ("test_data", "patches")}


class FolderReader:
    """Random access to one split of an official DPED folder: ``raw(i) -> (phone, dslr)`` uint8 ``P x P x 3``.

    Args:
        data: ``.../dped`` (with ``phone``) or ``.../dped/<phone>``.
        phone: phone name of an official tree.
        split: ``"train"`` or ``"test"``.
    """

    def __init__(self, data: str | Path, *, phone: str | None = None, split: str = "train") -> None:
        self.pairs = list_pairs(find_dped_folder(data, phone=phone), split)

    def __len__(self) -> int:
        return len(self.pairs)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded phone and DSLR patches of row ``index`` (RGB uint8)."""
        phone, dslr = self.pairs[index]
        return read_rgb(phone), read_rgb(dslr)


@dataclass
class TransferResult:
    """What an import or export wrote.

    Attributes:
        out: the dataset folder (import) or ``OUT/<phone>`` folder (export) written.
        phone: the phone name.
        pairs: patch pairs per split.
        shards: shard files read or written.
        copied_pairs: patch pairs (two JPEG files each) kept byte for byte (import) or written back byte for
            byte (export).
        encoded_pairs: patch pairs encoded as new JPEG files (export only).
        full_size: full-size test images.
    """

    out: str
    phone: str
    pairs: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    copied_pairs: int = 0
    encoded_pairs: int = 0
    full_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@contextlib.contextmanager
def _staged(out: Path, overwrite: bool, earlier: Callable[[Path], Callable[[], None] | None]) -> Iterator[Path]:
    """Yield the folder to write ``out`` into, so that a failed or interrupted transfer leaves nothing it created.

    A new ``out`` is written as a hidden folder beside it and moved into place on success; on failure that folder
    and any parents of ``out`` that had to be made are removed. An existing empty ``out`` is written in place and
    emptied again on failure. An existing non-empty ``out`` is replaced only with ``overwrite`` and only when it
    holds an earlier transfer's output: ``earlier(out)`` returns what removes that output (None when ``out`` holds
    none), called once the new files are complete; they are then moved in, and anything else in ``out`` is kept.
    """
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        raise InputError(out, "is a symbolic link: give the folder it points to")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if out.is_dir() and not any(out.iterdir()):
        try:
            yield out
        except BaseException:
            _remove_contents(out)
            raise
        return
    remove_earlier = None
    if out.is_dir():
        if not overwrite:
            raise InputError(
                out, "exists and is not empty; pass --overwrite to replace what an earlier run wrote there"
            )
        remove_earlier = earlier(out)
        if remove_earlier is None:
            names = ", ".join(sorted(p.name for p in out.iterdir())[:4])
            raise InputError(out, f"holds files this command did not write ({names}); --overwrite replaces only "
                                  "its own earlier output: choose another folder")  # fmt: skip
    made = [d for d in (out.parent, *out.parent.parents) if not d.exists()]  # deepest first
    stage = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for d in made:
            with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                d.rmdir()
        raise
    try:
        if not out.exists():
            stage.rename(out)
            return
        remove_earlier()
        _merge(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _merge(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into the existing folder ``dst`` (files replace files), then remove ``src``."""
    for child in src.iterdir():
        target = dst / child.name
        if child.is_dir() and target.is_dir() and not target.is_symlink():
            _merge(child, target)
        else:
            os.replace(child, target)
    src.rmdir()


def _earlier_import(out: Path) -> Callable[[], None] | None:
    """What removes an earlier import's files from ``out``, or None when ``out`` holds no dataset."""
    ds = DatasetDir(out)
    if not (ds.is_dataset(out) or ds.plan_text() is not None):
        return None

    def remove() -> None:
        ds.clear()
        shutil.rmtree(out / SOURCE_DIR, ignore_errors=True)

    return remove


def _earlier_export(root: Path) -> Callable[[], None] | None:
    """What removes an earlier export's pictures from ``OUT/<phone>``, or None when it holds no DPED folders."""
    folders = [root / "training_data", root / "test_data" / "patches", root / "test_data" / FULL_SIZE]
    if not any(f.is_dir() for f in folders[:2]):
        return None

    def remove() -> None:
        for folder in folders:
            for jpg in folder.rglob("*.jpg"):
                jpg.unlink()

    return remove


def _remove_contents(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def import_dped(
    dped_dir: str | Path,
    out: str | Path,
    *,
    phone: str | None = None,
    rows_per_shard: int = 10_000,
    jobs: int = 1,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> TransferResult:
    """Convert an official DPED folder into a dpedkit dataset.

    Args:
        dped_dir: ``.../dped`` (with ``phone``) or ``.../dped/<phone>``.
        out: dataset folder to write (must be new or empty unless ``overwrite``). It is written beside ``out``
            and moved into place at the end: a failed import leaves nothing it created, and an ``out`` that
            existed is left as it was.
        phone: phone name (``iphone``, ``blackberry``, ``sony``...).
        rows_per_shard: patch pairs per shard file.
        jobs: worker processes (one shard per task).
        overwrite: replace a non-empty ``out``.
        on_progress: called ``(shards_done, shards_total)``.

    Returns:
        A :class:`TransferResult`.

    Raises:
        InputError: not an official DPED folder, no patch pairs, unreadable patches, or ``out`` not empty.
    """
    check_range("rows_per_shard", rows_per_shard, 1)
    folder = find_dped_folder(dped_dir, phone=phone)
    out = Path(out)
    check_apart(out, [dped_dir], what="dataset folder")
    tasks = []
    for split in SPLITS:
        if not folder.root.joinpath(*_SPLIT_PARTS[split]).is_dir():
            continue
        pairs = [
            (p.stem, str(inside(folder.root, p)), str(inside(folder.root, d))) for p, d in list_pairs(folder, split)
        ]
        for k in range(0, len(pairs), rows_per_shard):
            tasks.append({"split": split, "shard": shard_name(split, k // rows_per_shard),
                          "rows": pairs[k : k + rows_per_shard], "phone": folder.phone})  # fmt: skip
    if not tasks:
        raise InputError(folder.root, "no training_data or test_data/patches folder with patch pairs")
    with _staged(out, overwrite, _earlier_import) as stage:
        counts, n_full = _import_into(stage, folder.root, folder.phone, tasks, jobs, on_progress)
    return TransferResult(
        str(out), folder.phone, counts, len(tasks), copied_pairs=sum(counts.values()), full_size=n_full
    )


def _import_into(
    out: Path,
    root: Path,
    phone: str,
    tasks: list[dict[str, Any]],
    jobs: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, int], int]:
    """Write the shards of ``tasks``, the full-size test images and the manifest; returns (pairs per split, images)."""
    done = [0]

    def tick(_task: dict, _res: dict) -> None:
        done[0] += 1
        if on_progress:
            on_progress(done[0], len(tasks))

    results = run_parallel(_import_shard, [{**t, "out": str(out)} for t in tasks], n_jobs=jobs, on_result=tick)
    full = root / "test_data" / FULL_SIZE
    n_full = 0
    if full.is_dir():
        dest = out / SOURCE_DIR / FULL_SIZE
        dest.mkdir(parents=True)
        for path in sorted(full.iterdir()):
            if path.is_file():
                shutil.copyfile(inside(root, path), dest / path.name)
                n_full += 1
    counts = {s: sum(r["rows"] for r in results if r["split"] == s) for s in SPLITS}
    shards = tuple(ShardEntry(**{k: r[k] for k in ("split", "path", "rows", "sha256")}) for r in results)
    config = {"source": "dped", "dped_dir": str(root), "phone": phone}
    DatasetDir(out).write_manifest(Manifest(config=config, counts=Counts.of_patches(counts), shards=shards))
    return counts, n_full


def _import_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: decode one shard's patches into the shard, keep their JPEG bytes in the sidecar file."""
    out, rows = Path(task["out"]), task["rows"]
    phone = np.stack([read_rgb(p) for _, p, _ in rows])
    dslr = np.stack([read_rgb(d) for _, _, d in rows])
    if phone.shape != dslr.shape or phone.shape[1] != phone.shape[2]:
        raise InputError(rows[0][1], f"patches must be square and equal in size; got {phone.shape} / {dslr.shape}")
    n = len(rows)
    attrs = {"split": task["split"], "config": {"source": "dped", "phone": task["phone"]}}
    with ShardWriter(out / task["shard"], patch_size=phone.shape[1], attrs=attrs) as w:
        nan = np.full(n, np.nan, np.float32)
        w.append(f"dped:{task['phone']}/{task['split']}", phone=phone, dslr=dslr, xy=np.zeros((n, 2), np.int32),
                 shift=np.zeros((n, 2), np.float32), angle=np.zeros(n, np.float32), ncc=nan, texture=nan)  # fmt: skip
        info = w.close()
    with atomic_path(out / SOURCE_DIR / task["shard"]) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["shard_sha256"] = info.sha256
        f.attrs["phone"] = task["phone"]
        f.create_dataset("name", data=np.array([r[0] for r in rows], dtype=object), dtype=h5py.string_dtype())
        for key, col in (("phone_jpeg", 1), ("dslr_jpeg", 2)):
            ds = f.create_dataset(key, (n,), dtype=h5py.vlen_dtype(np.uint8))
            for i, r in enumerate(rows):
                ds[i] = np.frombuffer(Path(r[col]).read_bytes(), np.uint8)
    return {"split": task["split"], "path": task["shard"], "rows": info.rows, "sha256": info.sha256}


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
    check_range("quality", quality, 1, 100)
    dataset = Path(dataset)
    manifest = DatasetDir(dataset).manifest()
    phone = _export_phone(phone, manifest)
    root = Path(out) / phone
    check_apart(root, [dataset], what="phone folder")
    with _staged(root, overwrite, _earlier_export) as stage:
        result = _export_into(stage, DatasetDir(dataset), manifest.shards, phone, quality, on_progress)
    result.out = str(root)
    return result


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


def _export_into(
    root: Path,
    dataset: DatasetDir,
    shards: tuple[ShardEntry, ...],
    phone: str,
    quality: int,
    on_progress: Callable[[int, int], None] | None,
) -> TransferResult:
    """Write every shard's rows and the full-size test images into ``root`` (the ``<phone>`` folder)."""
    result = TransferResult(str(root), phone)
    for k, entry in enumerate(shards):
        dirs = [root.joinpath(*_SPLIT_PARTS[entry.split], name) for name in (phone, DSLR_NAME)]
        start = result.pairs.get(entry.split, 0)
        copied = _export_shard(dataset, entry, dirs, start, quality)
        result.pairs[entry.split] = start + entry.rows
        result.copied_pairs += copied
        result.encoded_pairs += entry.rows - copied
        if on_progress:
            on_progress(k + 1, len(shards))
    result.shards = len(shards)
    result.full_size = _export_full_size(dataset, root / "test_data" / FULL_SIZE, quality)
    return result


def _export_shard(dataset: DatasetDir, entry: ShardEntry, dirs: list[Path], start: int, quality: int) -> int:
    """Write one shard's rows into ``dirs`` (phone, DSLR); returns how many were byte copies."""
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    side = dataset.path(f"{SOURCE_DIR}/{entry.path}")
    if side.is_file():
        with h5py.File(side, "r") as f:
            if f.attrs.get("shard_sha256") == entry.sha256 and len(f["name"]) == entry.rows:
                names = [check_file_name(n, what="patch name", where=side) for n in f["name"].asstr()[()]]
                for key, d in zip(("phone_jpeg", "dslr_jpeg"), dirs, strict=True):
                    for name, data in zip(names, f[key], strict=True):
                        (d / f"{name}.jpg").write_bytes(data.tobytes())
                return entry.rows
            log.warning("%s: shard changed since import, re-encoding its patches", entry.path)
    with open_shard(dataset.path(entry.path)) as f:
        for key, d in zip(("phone", "dslr"), dirs, strict=True):
            ds = f[key]
            for i in range(entry.rows):
                (d / f"{start + i}.jpg").write_bytes(encode_image(ds[i], ".jpg", quality=quality))
    return 0


def _export_full_size(dataset: DatasetDir, dest: Path, quality: int) -> int:
    """Copy imported full-size test images back, or convert a built dataset's full phone test images."""
    kept = dataset.root / SOURCE_DIR / FULL_SIZE
    if kept.is_dir():
        shutil.copytree(kept, dest)
        return sum(1 for p in dest.iterdir() if p.is_file())
    pngs = dataset.test_full_images("phone")
    for png in pngs:
        write_image(dest / f"{png.stem}.jpg", read_rgb(png), quality=quality)
    return len(pngs)
