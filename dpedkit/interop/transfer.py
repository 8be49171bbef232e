"""Move datasets both ways between a published folder layout of paired patch files and a dpedkit dataset.

A :class:`Layout` says where a layout keeps its files (DPED in :mod:`dpedkit.interop.dped`, Zurich RAW-to-RGB in
:mod:`dpedkit.interop.zrr`): per split a phone folder and a DSLR folder of ``<i><ext>`` files paired by index,
and folders copied as they are (full-size test images). The layouts share one importer and one exporter:

- :func:`import_tree` writes a dpedkit dataset (``train/`` and ``test/`` HDF5 shards of decoded patches,
  ``dataset.json``) and keeps the original file bytes and names beside each shard
  (``<source>_source/<split>/shard-NNNNN.h5``, tied to the shard by its sha256) and the copied folders
  (``<source>_source/<folder name>/``).
- :func:`export_tree` writes the layout from a dpedkit dataset. Rows of an imported dataset whose shard is
  unchanged are written back byte for byte (so import then export round-trips the files exactly); other rows
  are encoded by the layout's encoder and numbered ``0..N-1`` per split.

Both write beside their output and move it into place at the end (:func:`staged`): a failed or interrupted
transfer leaves nothing it created.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpedkit.dataset.format import SPLITS, Counts, DatasetDir, Manifest, ShardEntry, shard_name
from dpedkit.dataset.parallel import run_parallel
from dpedkit.dataset.shards import ShardWriter, check_schema, open_shard, read_originals, write_originals
from dpedkit.errors import InputError, ShardError, check_range
from dpedkit.io import check_apart, check_file_name

log = logging.getLogger(__name__)

INDEX_NAME = re.compile(r"0|[1-9][0-9]*")  # the file stems of the DPED and ZRR layouts (ASCII)
# one row of a layout: (file stem, phone file, DSLR file)
Row = tuple[str, str, str]
# a layout's decoder: rows -> (the arrays ShardWriter.append takes: phone, dslr[, baseline]; ShardWriter options)
Decoder = Callable[[list[Row]], tuple[dict[str, np.ndarray], dict[str, Any]]]
# a layout's encoder for rows that are not byte copies: (phone patch, DSLR patch) -> (phone bytes, DSLR bytes)
Encoder = Callable[[np.ndarray, np.ndarray], tuple[bytes, bytes]]


@dataclass(frozen=True)
class Layout:
    """Where a paired-patch layout keeps its files, relative to its root folder.

    Attributes:
        source: the ``source`` an imported dataset's manifest names (``dped``, ``zrr``); sidecar files go to
            ``<source>_source/``.
        split_dirs: split -> (phone folder, DSLR folder), ``/``-separated paths under the root.
        exts: the phone and DSLR file suffixes (``.jpg``, ``.png``).
        keys: the sidecar datasets holding the original phone and DSLR file bytes.
        extras: folders under the root copied byte for byte both ways (full-size test images).
    """

    source: str
    split_dirs: Mapping[str, tuple[str, str]]
    exts: tuple[str, str]
    keys: tuple[str, str]
    extras: tuple[str, ...] = ()

    @property
    def source_dir(self) -> str:
        """The dataset folder of the sidecar files."""
        return f"{self.source}_source"

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        """``(phone_dir, dslr_dir)`` of ``split`` under ``root``."""
        return tuple(root / d for d in self.split_dirs[split])  # type: ignore[return-value]

    def pairs(self, root: Path, split: str) -> list[tuple[Path, Path]]:
        """``(phone_file, dslr_file)`` of ``split``, paired by index, in index order (see :func:`indexed_pairs`)."""
        return indexed_pairs(*self.dirs(root, split), self.exts, split, f"{self.source.upper()} layout")


@dataclass
class TransferResult:
    """What an import or export wrote.

    Attributes:
        out: the dataset folder (import) or layout folder (export) written.
        phone: the phone name (DPED) or phone folder (ZRR).
        pairs: patch pairs per split.
        shards: shard files read or written.
        copied_pairs: patch pairs (two files each) kept byte for byte (import) or written back byte for byte
            (export).
        encoded_pairs: patch pairs encoded as new files (export only).
        full_size: files of the copied folders (full-size test images).
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


def _indexed(folder: Path, ext: str, what: str) -> dict[int, Path]:
    """``{i: folder/<i><ext>}``: the layout's names only (ASCII digits, no leading zero), each index once."""
    if not folder.is_dir():
        raise InputError(folder, f"missing folder of the {what}")
    out: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() != ext:
            continue
        if not INDEX_NAME.fullmatch(p.stem):  # 00.png would collide with 0.png; "١" and "²" are digits too
            raise InputError(p, f"not a name of the {what} (<i>{ext} with i = 0, 1, 2, ... without leading zeros)")
        i = int(p.stem)
        if i in out:
            raise InputError(p, f"index {i} appears twice (also {out[i].name})")
        out[i] = p
    return out


def indexed_pairs(
    phone_dir: Path, dslr_dir: Path, exts: tuple[str, str], split: str, what: str = "layout"
) -> list[tuple[Path, Path]]:
    """``(phone_file, dslr_file)`` of the ``<i><ext>`` files of two folders, paired by index, in index order.

    Indices present on one side only are skipped with a warning.

    Raises:
        InputError: a folder is missing or the two hold no common index.
    """
    a, b = _indexed(phone_dir, exts[0], what), _indexed(dslr_dir, exts[1], what)
    common = sorted(a.keys() & b.keys())
    if len(common) != max(len(a), len(b)):
        log.warning("%s: %d phone and %d DSLR patches; using the %d indices present in both",
                    phone_dir.parent, len(a), len(b), len(common))  # fmt: skip
    if not common:
        raise InputError(phone_dir, f"no {split} patch pairs (<i>{exts[0]} in {phone_dir.name}/ and <i>{exts[1]} "
                                    f"in {dslr_dir.name}/)")  # fmt: skip
    return [(a[i], b[i]) for i in common]


def inside(root: Path, path: Path) -> Path:
    """``path`` if it (a link resolved) lies inside ``root``, else :class:`InputError`.

    An import copies what it reads into the dataset: no link may lead it out of the tree it was given.
    """
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        raise InputError(path, f"is a link to {os.path.realpath(path)}, outside {root}: refused")
    return path


# ------------------------------------------------------------------------------------------------ staging


@contextlib.contextmanager
def staged(out: Path, overwrite: bool, earlier: Callable[[Path], Callable[[], None] | None]) -> Iterator[Path]:
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


def _remove_contents(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- import


def import_tree(
    root: Path,
    layout: Layout,
    out: str | Path,
    *,
    decode: Decoder,
    config: dict[str, Any],
    phone: str,
    rows_per_shard: int = 10_000,
    jobs: int = 1,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> TransferResult:
    """Convert the layout folder ``root`` into a dpedkit dataset ``out`` (see the module docstring).

    Args:
        root: the layout's root folder.
        layout: where its files are.
        out: dataset folder to write (new or empty unless ``overwrite``).
        decode: the layout's decoder (a module-level function: workers receive it pickled).
        config: the manifest's ``config`` (``source`` first).
        phone: the phone name recorded in the result.
        rows_per_shard: patch pairs per shard file.
        jobs: worker processes (one shard per task).
        overwrite: replace an earlier import in a non-empty ``out``.
        on_progress: called ``(shards_done, shards_total)``.

    Raises:
        InputError: no patch pairs, unreadable patches, or ``out`` not empty.
    """
    check_range("rows_per_shard", rows_per_shard, 1)
    out = Path(out)
    check_apart(out, [root], what="dataset folder")
    tasks = []
    for split in SPLITS:
        if not layout.dirs(root, split)[0].parent.is_dir():
            continue
        rows = [(p.stem, str(inside(root, p)), str(inside(root, d))) for p, d in layout.pairs(root, split)]
        for k in range(0, len(rows), rows_per_shard):
            tasks.append({"split": split, "shard": shard_name(split, k // rows_per_shard), "layout": layout,
                          "rows": rows[k : k + rows_per_shard], "decode": decode, "phone": phone})  # fmt: skip
    if not tasks:
        folders = " or ".join(f"{layout.split_dirs[s][0].rsplit('/', 1)[0]}/" for s in SPLITS)
        raise InputError(root, f"no {folders} folder with patch pairs")

    def earlier(path: Path) -> Callable[[], None] | None:
        return _earlier_import(path, layout)

    with staged(out, overwrite, earlier) as stage:
        counts, n_full = _import_into(stage, root, layout, config, tasks, jobs, on_progress)
    return TransferResult(str(out), phone, counts, len(tasks), copied_pairs=sum(counts.values()), full_size=n_full)


def _earlier_import(out: Path, layout: Layout) -> Callable[[], None] | None:
    """What removes an earlier import's files from ``out``, or None when ``out`` holds no dataset."""
    ds = DatasetDir(out)
    if not (ds.is_dataset(out) or ds.plan_text() is not None):
        return None

    earlier_source = ds.manifest().source if ds.is_dataset(out) else None

    def remove() -> None:
        ds.clear()
        for source in {layout.source, earlier_source} - {None}:  # an earlier import of another layout's too
            shutil.rmtree(out / f"{source}_source", ignore_errors=True)

    return remove


def _import_into(
    out: Path,
    root: Path,
    layout: Layout,
    config: dict[str, Any],
    tasks: list[dict[str, Any]],
    jobs: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, int], int]:
    """Write the shards of ``tasks``, the copied folders and the manifest; returns (pairs per split, files copied)."""
    done = [0]

    def tick(_task: dict, _res: dict) -> None:
        done[0] += 1
        if on_progress:
            on_progress(done[0], len(tasks))

    results = run_parallel(_import_shard, [{**t, "out": str(out)} for t in tasks], n_jobs=jobs, on_result=tick)
    n_full = 0
    for extra in layout.extras:
        if (root / extra).is_dir():
            n_full += _copy_files(root / extra, out / layout.source_dir / Path(extra).name, root)
    counts = {s: sum(r["rows"] for r in results if r["split"] == s) for s in SPLITS}
    shards = tuple(ShardEntry(**{k: r[k] for k in ("split", "path", "rows", "sha256")}) for r in results)
    DatasetDir(out).write_manifest(Manifest(config=config, counts=Counts.of_patches(counts), shards=shards))
    return counts, n_full


def _copy_files(src: Path, dest: Path, root: Path | None = None) -> int:
    """Copy the files directly in ``src`` to a new ``dest`` (each checked to lie inside ``root``); returns how many."""
    dest.mkdir(parents=True)
    n = 0
    for path in sorted(src.iterdir()):
        if path.is_file():
            shutil.copyfile(inside(root, path) if root is not None else path, dest / path.name)
            n += 1
    return n


def _import_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: decode one shard's patches into the shard, keep their files' bytes in the sidecar file."""
    out, rows, layout = Path(task["out"]), task["rows"], task["layout"]
    arrays, options = task["decode"](rows)
    phone, dslr = arrays["phone"], arrays["dslr"]
    if phone.shape[:3] != dslr.shape[:3] or phone.shape[1] != phone.shape[2]:
        raise InputError(rows[0][1], f"patches must be square and equal in size; got {phone.shape} / {dslr.shape}")
    n = len(rows)
    attrs = {"split": task["split"], "config": {"source": layout.source, "phone": task["phone"]}}
    with ShardWriter(out / task["shard"], patch_size=phone.shape[1], attrs=attrs, **options) as w:
        nan = np.full(n, np.nan, np.float32)
        w.append(f"{layout.source}:{task['phone']}/{task['split']}", **arrays, xy=np.zeros((n, 2), np.int32),
                 shift=np.zeros((n, 2), np.float32), angle=np.zeros(n, np.float32), ncc=nan, texture=nan)  # fmt: skip
        info = w.close()
    files = {key: [Path(r[col]) for r in rows] for key, col in zip(layout.keys, (1, 2), strict=True)}
    write_originals(out / layout.source_dir / task["shard"], shard_sha256=info.sha256, source=layout.source,
                    names=[r[0] for r in rows], files=files)  # fmt: skip
    return {"split": task["split"], "path": task["shard"], "rows": info.rows, "sha256": info.sha256}


# ------------------------------------------------------------------------------------------------- export


def export_tree(
    dataset: str | Path,
    root: Path,
    layout: Layout,
    *,
    encode: Encoder,
    full_from_build: Callable[[DatasetDir, Path], int] | None = None,
    phone: str,
    what: str = "output folder",
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> TransferResult:
    """Write the dpedkit dataset ``dataset`` in ``layout`` at ``root`` (see the module docstring).

    Args:
        dataset: dpedkit dataset folder (``dataset.json``).
        root: the layout's root folder to write (new or empty unless ``overwrite``).
        layout: where its files go.
        encode: the layout's encoder for rows that are not byte copies of imported files.
        full_from_build: writes a built dataset's full-size test images into the given folder (returns how
            many); None: a built dataset has none in this layout.
        phone: the phone name recorded in the result.
        what: what ``root`` is called in errors.
        overwrite: replace an earlier export in a non-empty ``root``.
        on_progress: called ``(shards_done, shards_total)``.

    Raises:
        ShardError: not a finished dpedkit dataset, or a damaged shard.
        InputError: ``root`` not empty.
    """
    dataset = Path(dataset)
    ds = DatasetDir(dataset)
    shards = ds.manifest().shards
    check_apart(root, [dataset], what=what)
    ds.shards(verify=True)  # as train and evaluate: a damaged or edited shard is refused before anything is written

    def earlier(path: Path) -> Callable[[], None] | None:
        return _earlier_export(path, layout)

    with staged(root, overwrite, earlier) as stage:
        result = TransferResult(str(root), phone)
        for k, entry in enumerate(shards):
            start = result.pairs.get(entry.split, 0)
            copied = _export_shard(ds, entry, layout, layout.dirs(stage, entry.split), start, encode)
            result.pairs[entry.split] = start + entry.rows
            result.copied_pairs += copied
            result.encoded_pairs += entry.rows - copied
            if on_progress:
                on_progress(k + 1, len(shards))
        result.shards = len(shards)
        result.full_size = _export_extras(ds, stage, layout, full_from_build)
    return result


def _earlier_export(root: Path, layout: Layout) -> Callable[[], None] | None:
    """What removes an earlier export's files from ``root``, or None when it holds no folders of the layout."""
    patch_dirs = [root / d for s in SPLITS for d in layout.split_dirs[s]]
    if not any(f.is_dir() for f in patch_dirs):
        return None

    def remove() -> None:
        for folder in patch_dirs:  # the patch files (other files there are kept)
            for path in folder.glob("*") if folder.is_dir() else ():
                if path.is_file() and path.suffix.lower() in layout.exts:
                    path.unlink()
        for extra in layout.extras:  # the copied folders' files of the layout's kinds
            for path in (root / extra).glob("*") if (root / extra).is_dir() else ():
                if path.is_file() and path.suffix.lower() in layout.exts:
                    path.unlink()

    return remove


def _export_shard(
    dataset: DatasetDir, entry: ShardEntry, layout: Layout, dirs: tuple[Path, Path], start: int, encode: Encoder
) -> int:
    """Write one shard's rows into ``dirs`` (phone, DSLR); returns how many were byte copies."""
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    side = dataset.path(f"{layout.source_dir}/{entry.path}")
    if side.is_file():
        sha, names, originals = read_originals(side, layout.keys)
        if sha == entry.sha256 and len(names) == entry.rows:
            names = [check_file_name(n, what="patch name", where=side) for n in names]
            for key, d, ext in zip(layout.keys, dirs, layout.exts, strict=True):
                for name, data in zip(names, originals[key], strict=True):
                    (d / f"{name}{ext}").write_bytes(data)
            return entry.rows
        log.warning("%s: shard changed since import, encoding its patches anew", entry.path)
    with open_shard(dataset.path(entry.path)) as f:
        if check_schema(f, dataset.path(entry.path)) != entry.rows:
            raise ShardError(f"{dataset.path(entry.path)}: the manifest says {entry.rows} rows, the shard holds "
                             f"{len(f['phone'])}")  # fmt: skip
        phone, dslr = f["phone"], f["dslr"]
        for i in range(entry.rows):
            for data, d, ext in zip(encode(phone[i], dslr[i]), dirs, layout.exts, strict=True):
                (d / f"{start + i}{ext}").write_bytes(data)
    return 0


def _export_extras(
    dataset: DatasetDir, root: Path, layout: Layout, full_from_build: Callable[[DatasetDir, Path], int] | None
) -> int:
    """Copy imported folders back, or write a built dataset's full-size test images; returns how many files."""
    n = 0
    imported = dataset.manifest().source == layout.source  # not a stale folder left beside a later build
    for extra in layout.extras:
        kept = dataset.root / layout.source_dir / Path(extra).name
        if imported and kept.is_dir():
            n += _copy_files(kept, root / extra)
        elif full_from_build is not None:
            n += full_from_build(dataset, root / extra)
    return n
