"""Move datasets both ways between a published folder layout of paired patch files and a dpedkit dataset.

A :class:`Layout` says where a layout keeps its files (DPED in :mod:`dpedkit.interop.dped`, Zurich RAW-to-RGB in
:mod:`dpedkit.interop.zrr`): per split a phone folder and a DSLR folder of ``<i><ext>`` files paired by index,
and folders copied as they are (full-size test images). The layouts share one importer and one exporter:

- :func:`import_tree` writes a dpedkit dataset (``train/`` and ``test/`` HDF5 shards of decoded patches,
  ``dataset.json``) and keeps the original file bytes, names and sha256s beside each shard
  (``<source>_source/<split>/shard-NNNNN.h5``, tied to the shard by its sha256) and the copied folders
  (``<source>_source/<folder name>/``, their files' sha256 in the manifest's ``kept``).
- :func:`export_tree` writes the layout from a dpedkit dataset. Rows of an imported dataset whose shard is
  unchanged are written back byte for byte (so import then export round-trips the files exactly; a kept file
  whose sha256 changed is refused); other rows are encoded by the layout's encoder and numbered ``0..N-1`` per
  split. It lists every file it wrote in ``dpedkit-export.json``: all that a later ``--overwrite`` deletes.

Both write beside their output and move it into place at the end (:func:`staged`): a failed or interrupted
transfer leaves nothing it created, one transfer at a time writes a folder, and errors name the user's paths.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from dpedkit import __version__
from dpedkit.dataset.format import MANIFEST, SPLITS, Counts, DatasetDir, Manifest, ShardEntry, originals_dir, shard_name
from dpedkit.dataset.parallel import run_parallel
from dpedkit.dataset.shards import open_reader, read_originals, shard_writer, write_originals
from dpedkit.errors import DpedkitError, InputError, ShardError, check_range
from dpedkit.io import LOCK_NAME, check_apart, check_file_name, folder_lock, write_json

log = logging.getLogger(__name__)

INDEX_NAME = re.compile(r"0|[1-9][0-9]*")  # the file stems of the DPED and ZRR layouts (ASCII)
EXPORT_RECORD = "dpedkit-export.json"  # an export's record of the files it wrote: all that --overwrite may delete
EXPORT_SCHEMA = "dpedkit-export"
_STAGE = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")  # the hidden folder a transfer writes (see staged)
# one row of a layout: (file stem, phone file, DSLR file)
Row = tuple[str, str, str]
# a layout's decoder: rows -> (the arrays a shard writer's append takes: phone, dslr[, baseline]; its options)
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
        return originals_dir(self.source)

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
def staged(
    out: Path,
    overwrite: bool,
    earlier: Callable[[Path], Callable[[Path], None] | None],
    *,
    command: str,
    first: tuple[str, ...] = (),
    last: tuple[str, ...] = (),
) -> Iterator[Path]:
    """Yield the folder to write ``out`` into, so that a failed or interrupted transfer leaves nothing it created.

    A new ``out`` is written as a hidden folder beside it (``.OUT.XXXXXXXX.tmp``) and moved into place on success;
    on failure that folder and any parents of ``out`` that had to be made are removed. An existing empty ``out`` is
    written as such a hidden folder inside it, whose files are moved up on success (the folder itself, its owner,
    mode or mount, stays). An existing non-empty ``out`` is replaced only with
    ``overwrite`` and only when it holds an earlier transfer's output: ``earlier(out)`` returns what removes that
    output (None when ``out`` holds none), called with the completed new folder (it may still refuse, before
    removing anything); the new files are then moved in (``first`` of its top-level names first, ``last`` last),
    and anything else in ``out`` is kept.

    One transfer at a time writes ``out``: it is held by a lock file beside it (``.OUT.dpedkit.lock``, see
    :func:`dpedkit.io.folder_lock`), and a second is refused naming the first. The holder removes the hidden
    folders of earlier transfers to ``out`` that were killed (beside it or inside it), so a ``kill -9`` leaves
    nothing that a rerun refuses. Errors name ``out``, never the hidden folder.

    Raises:
        InputError: ``out`` is a link or a file, is in use, or holds files of no earlier transfer.
    """
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        raise InputError(out, "is a symbolic link: give the folder it points to")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    made = [d for d in (out.parent, *out.parent.parents) if not d.exists()]  # deepest first
    try:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(folder_lock(out.parent, command, name=f".{out.name}{LOCK_NAME}", shown=out))
            except OSError as exc:  # a folder we may not write: name it, not the hidden lock file
                raise OSError(exc.errno, exc.strerror or str(exc), str(out.parent)) from exc
            _sweep_stages(out)
            with _staging(out, overwrite, earlier, first, last) as stage:
                yield stage
    except BaseException:
        for d in made:
            with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                d.rmdir()
        raise


def _sweep_stages(out: Path) -> None:
    """Remove the hidden folders that transfers to ``out`` killed before their end left (the caller holds ``out``)."""
    pattern = f".{glob.escape(out.name)}.*.tmp"
    inside = out.glob(pattern) if out.is_dir() and not out.is_symlink() else []
    for old in [*out.parent.glob(pattern), *inside]:
        m = _STAGE.fullmatch(old.name)
        if m and m["name"] == out.name and old.is_dir() and not old.is_symlink():
            log.warning("%s: removing the unfinished output of a transfer that was stopped", old)
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staging(
    out: Path,
    overwrite: bool,
    earlier: Callable[[Path], Callable[[Path], None] | None],
    first: tuple[str, ...],
    last: tuple[str, ...],
) -> Iterator[Path]:
    """:func:`staged` once ``out`` is held."""
    empty = out.is_dir() and not any(out.iterdir())
    remove_earlier = None
    if out.is_dir() and not empty:
        if not overwrite:
            raise InputError(
                out, "exists and is not empty; pass --overwrite to replace what an earlier run wrote there"
            )
        remove_earlier = earlier(out)
        if remove_earlier is None:
            names = ", ".join(sorted(p.name for p in out.iterdir())[:4])
            raise InputError(out, f"holds files this command did not write ({names}); --overwrite replaces only "
                                  "its own earlier output: choose another folder")  # fmt: skip
    stage = (out if empty else out.parent) / f".{out.name}.{secrets.token_hex(4)}.tmp"
    stage.mkdir()
    try:
        try:
            yield stage
            if empty:
                if any(p != stage for p in out.iterdir()):  # written meanwhile by a program that took no lock
                    raise InputError(out, "was written by another program while this command ran: nothing was "
                                          "written there; run the command again")  # fmt: skip
                _merge(stage, out, first=first, last=last)
                return
            if remove_earlier is None:
                if out.exists():  # made meanwhile by a program that took no lock
                    raise InputError(out, "was created by another program while this command ran: nothing was "
                                          "written there; run the command again")  # fmt: skip
                stage.rename(out)
                return
            remove_earlier(stage)
            _merge(stage, out, first=first, last=last)
        except (DpedkitError, OSError) as exc:
            unstaged = _unstaged(exc, stage, out)
            if unstaged is exc:
                raise
            raise unstaged from exc
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _unstaged(exc: BaseException, stage: Path, out: Path) -> BaseException:
    """``exc`` with the hidden staging folder in its paths and message replaced by ``out`` (the user's path)."""
    hidden, shown = str(stage), str(out)
    if isinstance(exc, InputError):
        if hidden not in str(exc):
            return exc
        path = None if exc.path is None else exc.path.replace(hidden, shown)
        return type(exc)(path, exc.cause.replace(hidden, shown))
    if isinstance(exc, OSError):
        if hidden not in f"{exc.filename} {exc.filename2} {exc}":
            return exc
        if exc.errno is None:
            return OSError(str(exc).replace(hidden, shown))
        first, second = (None if n is None else str(n).replace(hidden, shown) for n in (exc.filename, exc.filename2))
        return OSError(exc.errno, (exc.strerror or str(exc)).replace(hidden, shown), first, None, second)
    if hidden not in str(exc):
        return exc
    try:
        return type(exc)(str(exc).replace(hidden, shown))
    except TypeError:  # an error class built from other arguments: kept as it is
        return exc


def _merge(src: Path, dst: Path, *, first: tuple[str, ...] = (), last: tuple[str, ...] = ()) -> None:
    """Move the tree ``src`` into the existing folder ``dst`` (files replace files), then remove ``src``.

    The top-level names ``first`` move before the others and ``last`` after them (a record that lists the files,
    a manifest that marks them finished): a merge stopped half way is then never read as complete.
    """
    for child in sorted(src.iterdir(), key=lambda c: (c.name not in first, c.name in last, c.name)):
        target = dst / child.name
        if child.is_dir() and target.is_dir() and not target.is_symlink():
            _merge(child, target)
        else:
            os.replace(child, target)
    src.rmdir()


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

    def earlier(path: Path) -> Callable[[Path], None] | None:
        return _earlier_import(path, layout)

    with staged(out, overwrite, earlier, command=f"import-{layout.source}", last=(MANIFEST,)) as stage:
        counts, n_full = _import_into(stage, root, layout, config, tasks, jobs, on_progress)
    return TransferResult(str(out), phone, counts, len(tasks), copied_pairs=sum(counts.values()), full_size=n_full)


def _earlier_import(out: Path, layout: Layout) -> Callable[[Path], None] | None:
    """What removes an earlier import's files from ``out``, or None when ``out`` holds no dataset."""
    ds = DatasetDir(out)
    if not (ds.is_dataset(out) or ds.plan_text() is not None):
        return None

    earlier_source = ds.manifest().source if ds.is_dataset(out) else None

    def remove(_new: Path) -> None:
        ds.clear()
        for source in {layout.source, earlier_source} - {None}:  # an earlier import of another layout's too
            shutil.rmtree(out / originals_dir(source), ignore_errors=True)

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
    first = results[0]
    for r in results:  # each shard holds patches of one size: the layout's too
        if r["patch"] != first["patch"]:
            shown = f"a {_size(r['patch'])} patch, where {first['file']} is {_size(first['patch'])}"
            raise InputError(r["file"], f"{shown}: the patches of one layout are all of one size")
    kept: dict[str, str] = {}
    for extra in layout.extras:
        if (root / extra).is_dir():
            folder = f"{layout.source_dir}/{Path(extra).name}"
            copied = _copy_files(root / extra, out / folder, root)
            kept.update({f"{folder}/{name}": sha for name, sha in copied.items()})
    counts = {s: sum(r["rows"] for r in results if r["split"] == s) for s in SPLITS}
    shards = tuple(ShardEntry(**{k: r[k] for k in ("split", "path", "rows", "sha256")}) for r in results)
    manifest = Manifest(config=config, counts=Counts.of_patches(counts), shards=shards, kept=kept)
    DatasetDir(out).write_manifest(manifest)
    return counts, len(kept)


def _copy_files(
    src: Path, dest: Path, root: Path | None = None, expect: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Copy the files directly in ``src`` to a new ``dest``; returns ``{name: sha256}`` of the copied files.

    Args:
        src: the folder copied.
        dest: the new folder.
        root: each file must lie inside it (no link leads out).
        expect: ``{name: sha256}`` the files must have (a file listed there whose bytes differ is refused).

    Raises:
        ShardError: a file whose sha256 is not the expected one (a damaged kept file).
    """
    dest.mkdir(parents=True)
    out = {}
    for path in sorted(src.iterdir()):
        if path.is_file():
            data = (inside(root, path) if root is not None else path).read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            if expect is not None and expect.get(path.name, sha) != sha:
                raise ShardError(f"{path}: damaged (its sha256 differs from the one recorded at import): nothing "
                                 "was exported; `dpedkit verify` lists the damage")  # fmt: skip
            (dest / path.name).write_bytes(data)
            out[path.name] = sha
    return out


def _import_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: decode one shard's patches into the shard, keep their files' bytes in the sidecar file."""
    out, rows, layout = Path(task["out"]), task["rows"], task["layout"]
    arrays, options = task["decode"](rows)
    phone, dslr = arrays["phone"], arrays["dslr"]
    if phone.shape[:3] != dslr.shape[:3]:
        raise InputError(rows[0][2], f"a {_size(dslr.shape[1:])} DSLR patch beside a {_size(phone.shape[1:])} phone "
                                     f"patch ({rows[0][1]}): the two sides of a pair are of one size")  # fmt: skip
    n = len(rows)
    attrs = {"split": task["split"], "config": {"source": layout.source, "phone": task["phone"]}}
    with shard_writer(out / task["shard"], patch_size=phone.shape[1], attrs=attrs, **options) as w:
        nan = np.full(n, np.nan, np.float32)
        w.append(f"{layout.source}:{task['phone']}/{task['split']}", **arrays, xy=np.zeros((n, 2), np.int32),
                 shift=np.zeros((n, 2), np.float32), angle=np.zeros(n, np.float32), ncc=nan, texture=nan)  # fmt: skip
        info = w.close()
    files = {key: [Path(r[col]) for r in rows] for key, col in zip(layout.keys, (1, 2), strict=True)}
    write_originals(out / layout.source_dir / task["shard"], shard_sha256=info.sha256, source=layout.source,
                    names=[r[0] for r in rows], files=files)  # fmt: skip
    return {"split": task["split"], "path": task["shard"], "rows": info.rows, "sha256": info.sha256,
            "patch": list(phone.shape[1:3]), "file": rows[0][1]}  # fmt: skip


def _size(shape: Sequence[int]) -> str:
    """``WxH`` of an image shape ``(H, W, ...)``."""
    return f"{shape[1]}x{shape[0]}"


def stack_patches(images: Sequence[np.ndarray], files: Sequence[str | Path]) -> np.ndarray:
    """The patches of one side of a layout's rows as one ``N x P x P x C`` array.

    Raises:
        InputError: a patch that is not square, or not of the size and channels of the first, naming its file.
    """
    ref = images[0].shape
    for img, path in zip(images, files, strict=True):
        if img.shape[0] != img.shape[1]:
            raise InputError(path, f"a {_size(img.shape)} patch: the patches of a layout are square")
        if img.shape[:2] != ref[:2]:
            raise InputError(path, f"a {_size(img.shape)} patch, where {files[0]} is {_size(ref)}: the patches of one "
                                   "layout are all of one size")  # fmt: skip
        if img.shape != ref:
            raise InputError(path, f"a patch of shape {img.shape}, where {files[0]} is {ref}: the patches of one "
                                   "layout have the same channels")  # fmt: skip
    return np.stack(images)


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

    def earlier(path: Path) -> Callable[[Path], None] | None:
        return _earlier_export(path, layout)

    with staged(root, overwrite, earlier, command=f"export-{layout.source}", first=(EXPORT_RECORD,)) as stage:
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
        _write_export_record(stage, layout, dataset)
    return result


def _write_export_record(root: Path, layout: Layout, dataset: Path) -> None:
    """Write ``root/dpedkit-export.json``: every file the export wrote under ``root`` (what ``--overwrite`` deletes)."""
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    write_json(root / EXPORT_RECORD, {"schema": EXPORT_SCHEMA, "schema_version": 1, "dpedkit_version": __version__,
                                      "layout": layout.source, "dataset": os.path.abspath(dataset),
                                      "files": [f for f in files if f != EXPORT_RECORD]})  # fmt: skip


def read_export_record(root: Path) -> list[str] | None:
    """The files an earlier export recorded in ``root/dpedkit-export.json`` (relative paths), None without a record.

    Raises:
        InputError: a record that is not one dpedkit writes (unreadable, foreign, or a path leaving ``root``).
    """
    record = root / EXPORT_RECORD
    if not (record.exists() or record.is_symlink()):
        return None
    try:
        data = json.loads(record.read_text())
        files = data["files"] if isinstance(data, dict) and data.get("schema") == EXPORT_SCHEMA else None
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError("not a dpedkit export record")
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(record, f"unreadable record of an earlier export ({exc}): --overwrite cannot tell which "
                                 "files an export wrote; choose another folder") from exc  # fmt: skip
    for f in files:
        parts = PurePosixPath(f).parts
        if not parts or PurePosixPath(f).is_absolute() or ".." in parts or f == EXPORT_RECORD:
            raise InputError(record, f"lists {f!r}, not a file an export writes: --overwrite deletes nothing it "
                                     "lists; choose another folder")  # fmt: skip
    return files


def _earlier_export(root: Path, layout: Layout) -> Callable[[Path], None] | None:
    """What removes an earlier export's files from ``root`` (those its record lists), or None when it holds none.

    Raises:
        InputError: ``root`` holds the layout's folders but no record of an export (a folder dpedkit never wrote,
            or one an older dpedkit wrote): nothing there is deleted.
    """
    files = read_export_record(root)
    if files is None:
        tops = sorted({d.split("/")[0] for s in SPLITS for d in layout.split_dirs[s]} | {e.split("/")[0]
                      for e in layout.extras})  # fmt: skip
        found = [t for t in tops if (root / t).exists()]
        if found:
            raise InputError(root, f"holds {', '.join(f + '/' for f in found)} but no {EXPORT_RECORD} (the record an "
                                   "export writes of its files): --overwrite deletes only files an earlier export "
                                   "recorded; choose another folder or move those away")  # fmt: skip
        return None

    def remove(new: Path) -> None:
        ours = set(files)
        for path in sorted(new.rglob("*")):
            rel = path.relative_to(new).as_posix()
            target = root / rel
            if path.is_file() and rel != EXPORT_RECORD and rel not in ours and (target.exists() or target.is_symlink()):
                raise InputError(target, f"exists and is not listed in {root / EXPORT_RECORD} (not written by an "
                                         "earlier export): nothing was changed; move it away or choose another "
                                         "folder")  # fmt: skip
        real = os.path.realpath(root)
        for rel in files:  # only what the earlier export recorded (other files, also in its folders, are kept)
            path = root / rel
            if not Path(os.path.realpath(path.parent)).is_relative_to(real):
                continue  # a folder replaced by a link leading out of root: nothing outside is deleted
            if path.is_symlink() or path.is_file():
                path.unlink()
        parents = {root.joinpath(*PurePosixPath(rel).parts[:k]) for rel in files
                   for k in range(1, len(PurePosixPath(rel).parts))}  # fmt: skip
        for folder in sorted(parents, key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):  # kept when something else is inside
                folder.rmdir()

    return remove


def _export_shard(
    dataset: DatasetDir, entry: ShardEntry, layout: Layout, dirs: tuple[Path, Path], start: int, encode: Encoder
) -> int:
    """Write one shard's rows into ``dirs`` (phone, DSLR); returns how many were byte copies."""
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    side = dataset.originals_path(entry.path, layout.source)
    if side.is_file():
        kept = read_originals(side, layout.keys)
        if kept.shard_sha256 == entry.sha256 and len(kept.names) == entry.rows:
            names = [check_file_name(n, what="patch name", where=side) for n in kept.names]  # never a path
            if kept.damaged:
                name, key = kept.damaged[0]
                k = layout.keys.index(key) if key in layout.keys else 0
                shown = f"{layout.split_dirs[entry.split][k]}/{name}{layout.exts[k]}" if name is not None else "names"
                raise ShardError(f"{side}: the kept original {shown} is damaged (its sha256 differs from the one "
                                 f"recorded at import; {len(kept.damaged)} damaged in all): nothing was exported; "
                                 f"`dpedkit verify {dataset.root}` lists the damage")  # fmt: skip
            for key, d, ext in zip(layout.keys, dirs, layout.exts, strict=True):
                for name, data in zip(names, kept.files[key], strict=True):
                    (d / f"{name}{ext}").write_bytes(data)
            return entry.rows
        log.warning("%s: shard changed since import, encoding its patches anew", entry.path)
    with open_reader(dataset.path(entry.path)) as r:
        if r.rows != entry.rows:
            raise ShardError(f"{dataset.path(entry.path)}: the manifest says {entry.rows} rows, the shard holds "
                             f"{r.rows}")  # fmt: skip
        phone, dslr = r.images("phone"), r.images("dslr")
        for i in range(entry.rows):
            for data, d, ext in zip(encode(phone[i], dslr[i]), dirs, layout.exts, strict=True):
                (d / f"{start + i}{ext}").write_bytes(data)
    return 0


def _export_extras(
    dataset: DatasetDir, root: Path, layout: Layout, full_from_build: Callable[[DatasetDir, Path], int] | None
) -> int:
    """Copy imported folders back, or write a built dataset's full-size test images; returns how many files."""
    n = 0
    manifest = dataset.manifest()
    imported = manifest.source == layout.source  # not a stale folder left beside a later build
    for extra in layout.extras:
        folder = f"{layout.source_dir}/{Path(extra).name}"
        kept = dataset.root / folder
        if imported and kept.is_dir():
            sums = {rel.rsplit("/", 1)[1]: sha for rel, sha in manifest.kept.items() if rel.startswith(f"{folder}/")}
            n += len(_copy_files(kept, root / extra, expect=sums))
        elif full_from_build is not None:
            n += full_from_build(dataset, root / extra)
    return n
