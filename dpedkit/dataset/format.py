"""The dataset folder format: the one reader and writer of every file in a dpedkit dataset.

A dataset folder ``ROOT`` (written by ``dpedkit build``, ``import-dped`` or :mod:`dpedkit.testing`) holds:

- ``dataset.json`` (:class:`Manifest`): schema, resolved config, counts and every shard with its rows and
  sha256; written last, so its presence means the dataset is finished.
- ``train/shard-NNNNN.h5``, ``test/shard-NNNNN.h5``: patch shards (file schema in :mod:`dpedkit.dataset.shards`),
  each with its record ``shard-NNNNN.json`` beside it (the pairs it holds, written after the shard by a build).
- ``pairs.jsonl``: one record per input pair, sorted by name (a build's; empty for imported datasets).
- ``build.json``: the plan of a started build, so that a rerun checks it resumes the same job.
- ``test_full/{phone,dslr}/NAME.png``: the full aligned test pairs of a build.
- ``<source>_source/<split>/shard-NNNNN.h5`` (imported datasets): the original files of each shard's rows with
  their sha256 (:func:`dpedkit.dataset.shards.write_originals`); ``<source>_source/<folder>/``: folders copied.

Every module that reads or writes these goes through :class:`DatasetDir`; schema versions and the migration of
older datasets live here and nowhere else. Shard paths read from a manifest are checked to stay inside ``ROOT``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from dpedkit import __version__
from dpedkit.config import SPLITS, BuildConfig, PatchConfig
from dpedkit.dataset.shards import (
    CANDIDATE_COLUMNS,
    CANDIDATES,
    COLUMNS,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    SHARD_SUFFIX,
    ShardInfo,
    candidate_names,
    file_sha256,
    open_reader,
    read_originals,
    shard_exists,
    shard_sha256,
)
from dpedkit.errors import ConfigError, ShardError
from dpedkit.io import LOCK_NAME, dumps, folder_lock, read_jsonl, write_json, write_jsonl, write_text

MANIFEST_SCHEMA = "dpedkit-dataset"
MANIFEST = "dataset.json"
PAIRS = "pairs.jsonl"
PLAN = "build.json"
LOCK = LOCK_NAME  # the writer's lock (dpedkit.io.folder_lock)
TEST_FULL = "test_full"
PATCH_COLUMNS = tuple(COLUMNS)  # the per-patch columns of a shard (dpedkit.dataset.shards owns the list)


def originals_dir(source: str) -> str:
    """The folder of an imported dataset that keeps the original files of the layout ``source`` (``zrr_source``)."""
    return f"{source}_source"


def inside_name(relative: str, root: str | Path) -> PurePosixPath:
    """``relative`` (a ``/``-separated name listed in a dataset) checked to stay inside ``root``, the folder or URL.

    Raises:
        ShardError: an absolute name, one with ``..``, or an empty one.
    """
    p = PurePosixPath(relative)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ShardError(f"{root}: path {relative!r} leaves the dataset folder")
    return p


def shard_name(split: str, index: int) -> str:
    """Relative path of shard ``index`` of ``split``: ``train/shard-00000.h5``."""
    return f"{split}/shard-{index:05d}{SHARD_SUFFIX}"


def check_split(split: str) -> str:
    """``split`` if it is one of :data:`SPLITS`, else :class:`ShardError` naming them."""
    if split not in SPLITS:
        raise ShardError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


# ------------------------------------------------------------------------------------------------ manifest


@dataclass(frozen=True)
class ShardEntry:
    """One shard listed in the manifest: its split, path relative to the dataset, rows and sha256."""

    split: str
    path: str
    rows: int
    sha256: str

    def __post_init__(self) -> None:
        check_split(self.split)
        p = PurePosixPath(self.path)
        if p.is_absolute() or ".." in p.parts or "\\" in self.path or not p.parts:
            raise ShardError(f"shard path {self.path!r} must be a relative path inside the dataset folder")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardEntry:
        """An entry of the manifest's ``shards`` list (keys other than the four are ignored)."""
        return cls(str(data["split"]), str(data["path"]), int(data["rows"]), str(data["sha256"]))


@dataclass(frozen=True)
class Counts:
    """What a dataset holds, by pair status and split (``dataset.json``'s ``counts``).

    Attributes:
        pairs: input pairs (photos without a partner included; 0 for datasets not built from photos).
        ok: pairs that gave patches.
        by_reason: failed pairs per failure word.
        pairs_by_split: source pairs per split.
        patches: kept patch pairs per split.
        patches_total: candidate windows examined over all pairs (the kept patches for imported datasets).
    """

    pairs: int = 0
    ok: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    pairs_by_split: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    patches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    patches_total: int = 0

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Counts:
        """Counts of a build's pair records (``pairs.jsonl`` rows)."""
        fails = Counter(r["status"] for r in records if r["status"] != "ok")
        return cls(
            pairs=len(records),
            ok=sum(r["status"] == "ok" for r in records),
            by_reason=dict(sorted(fails.items())),
            pairs_by_split={s: sum(r["split"] == s for r in records) for s in SPLITS},
            patches={s: sum(r["patches_kept"] for r in records if r["split"] == s) for s in SPLITS},
            patches_total=sum(r["patches_total"] for r in records),
        )

    @classmethod
    def of_patches(cls, patches: Mapping[str, int]) -> Counts:
        """Counts of a dataset made of patches only (imported or synthetic): no photo pairs."""
        per_split = {s: int(patches.get(s, 0)) for s in SPLITS}
        return cls(patches=per_split, patches_total=sum(per_split.values()))


_COUNT_KEYS = {f.name for f in fields(Counts)}


@dataclass(frozen=True)
class Manifest:
    """``dataset.json``: what a finished dataset is made of.

    Attributes:
        config: the resolved configuration that made it (a build's :class:`~dpedkit.dataset.build.BuildConfig`
            as a dict, or ``{"source": "dped", ...}`` / ``{"source": "synthetic", ...}``).
        counts: :class:`Counts`.
        shards: every shard, train split first, in order.
        schema_version: the dataset schema version (:data:`~dpedkit.dataset.shards.SCHEMA_VERSION` when written).
        dpedkit_version: the dpedkit version that wrote it.
        kept: files an import copied as they were (full-size test images), path relative to the dataset -> sha256
            (written only when there are some; older imports have none and are read unchecked).
    """

    config: dict[str, Any]
    counts: Counts
    shards: tuple[ShardEntry, ...]
    schema_version: int = SCHEMA_VERSION
    dpedkit_version: str = __version__
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """``"build"`` for a dataset built from photos, else the ``source`` its config names (``dped``...)."""
        return str(self.config.get("source", "build"))

    def build_config(self) -> Any:
        """The :class:`~dpedkit.dataset.build.BuildConfig` of a built dataset, or None for other sources."""
        return BuildConfig.from_dict(self.config) if self.source == "build" else None

    def patch_setting(self, name: str) -> Any:
        """A :class:`~dpedkit.dataset.patches.PatchConfig` field as the build used it (its default otherwise)."""
        stored = self.config.get("patch") if self.source == "build" else None
        if isinstance(stored, dict) and name in stored:
            return stored[name]
        return getattr(PatchConfig(), name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``dataset.json``."""
        return {
            "schema": MANIFEST_SCHEMA,
            "schema_version": self.schema_version,
            "dpedkit_version": self.dpedkit_version,
            "config": self.config,
            "counts": asdict(self.counts),
            "shards": [asdict(s) for s in self.shards],
            **({"kept": dict(sorted(self.kept.items()))} if self.kept else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str | Path = MANIFEST) -> Manifest:
        """Check and read a ``dataset.json`` object, migrating older schema versions.

        Raises:
            ShardError: a foreign or damaged manifest, an unsupported version, or a shard path leaving the dataset.
        """
        if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
            schema = data.get("schema") if isinstance(data, dict) else None
            raise ShardError(f"{where}: not a dpedkit dataset manifest (schema {schema!r})")
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ShardError(
                f"{where}: dataset schema version {version} is not supported (this dpedkit reads "
                f"{', '.join(map(str, READABLE_VERSIONS))})"
            )
        try:
            return cls(
                config=dict(data.get("config") or {}),
                counts=Counts(**{k: v for k, v in (data.get("counts") or {}).items() if k in _COUNT_KEYS}),
                shards=tuple(ShardEntry.from_dict(s) for s in data["shards"]),
                schema_version=version,  # version 1 differs only in its shards (no candidates/ group)
                dpedkit_version=str(data.get("dpedkit_version", "?")),
                kept={str(k): str(v) for k, v in (data.get("kept") or {}).items()},
            )
        except (KeyError, TypeError) as exc:
            raise ShardError(f"{where}: damaged dataset manifest ({type(exc).__name__}: {exc})") from exc


# ------------------------------------------------------------------------------------------------ the folder


class DatasetDir:
    """A dataset folder: paths of its files and every read and write of them.

    Args:
        root: the dataset folder (need not exist yet when writing).

    Example:
        >>> d = DatasetDir("dataset")  # doctest: +SKIP
        >>> d.manifest().counts.patches, [s.path for s in d.shards("test")]  # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._manifest: tuple[tuple[int, int], Manifest] | None = None  # (mtime_ns, size) of the file read

    def __repr__(self) -> str:
        return f"DatasetDir({str(self.root)!r})"

    @staticmethod
    def is_dataset(path: str | Path) -> bool:
        """True when ``path`` holds a finished dataset (its ``dataset.json``)."""
        return (Path(path) / MANIFEST).is_file()

    # paths ----------------------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        """``ROOT/dataset.json``."""
        return self.root / MANIFEST

    @property
    def pairs_path(self) -> Path:
        """``ROOT/pairs.jsonl``."""
        return self.root / PAIRS

    @property
    def plan_path(self) -> Path:
        """``ROOT/build.json``."""
        return self.root / PLAN

    def path(self, relative: str) -> Path:
        """``ROOT/relative`` for a path listed in the dataset (a shard), refused if it would leave ``ROOT``."""
        return self.root.joinpath(*inside_name(relative, self.root).parts)

    def originals_path(self, shard: str, source: str | None = None) -> Path:
        """The sidecar of ``shard`` keeping its rows' original files (``zrr_source/train/shard-00000.h5``).

        ``source``: the layout (default: the one the manifest says the dataset was imported from).
        """
        return self.path(f"{originals_dir(source or self.manifest().source)}/{shard}")

    def record_path(self, shard: str) -> Path:
        """The record file written beside shard ``shard`` (``train/shard-00000.json``)."""
        return self.path(shard).with_suffix(".json")

    def test_full_path(self, side: str, name: str) -> Path:
        """Where a build writes the full aligned test image of pair ``name`` (``side``: phone or dslr)."""
        return self.root / TEST_FULL / side / f"{name}.png"

    def test_full_images(self, side: str) -> list[Path]:
        """The full aligned test images of one side, sorted by name."""
        return sorted((self.root / TEST_FULL / side).glob("*.png"))

    # the manifest ---------------------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """Read and check ``dataset.json``.

        Raises:
            ShardError: no manifest (not a dataset, or an unfinished build), unreadable, or foreign.
        """
        try:
            st = self.manifest_path.stat()
        except OSError:
            raise ShardError(
                f"{self.root}: not a finished dpedkit dataset ({MANIFEST} is missing; build still running?)"
            ) from None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._manifest is not None and self._manifest[0] == stamp:  # read once while it does not change
            return self._manifest[1]
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ShardError(f"{self.manifest_path}: unreadable dataset manifest ({exc})") from exc
        manifest = Manifest.from_dict(data, where=self.manifest_path)
        self._manifest = (stamp, manifest)
        return manifest

    def write_manifest(self, manifest: Manifest) -> None:
        """Write ``dataset.json`` atomically (the last file of a dataset: it marks it finished)."""
        write_json(self.manifest_path, manifest.to_dict(), finite=False)  # a config may hold inf: "inf"

    def same_content(self, other: str | Path | DatasetDir) -> bool:
        """Whether ``other`` is this dataset or a copy of it (equal manifests: the same shards and checksums)."""
        other = other if isinstance(other, DatasetDir) else DatasetDir(other)
        try:
            return self.manifest_path.read_text() == other.manifest_path.read_text()
        except OSError:
            return False

    # pair records ---------------------------------------------------------------------------------------

    def pairs(self) -> list[dict[str, Any]]:
        """The pair records of ``pairs.jsonl`` (empty for a dataset not built from photos)."""
        return read_jsonl(self.pairs_path)

    def write_pairs(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write ``pairs.jsonl``, sorted by pair name."""
        write_jsonl(self.pairs_path, sorted(records, key=lambda r: r["pair"]))

    # the build plan and shard records -------------------------------------------------------------------

    def plan_text(self) -> str | None:
        """The stored plan of a started build, or None."""
        return self.plan_path.read_text() if self.plan_path.is_file() else None

    def write_plan(self, plan: Mapping[str, Any]) -> None:
        """Store the plan of a build that starts."""
        write_text(self.plan_path, plan_text(plan))

    def plan_matches(self, plan: Mapping[str, Any]) -> bool:
        """Whether the stored plan is ``plan``, after migrating it (see :meth:`stored_plan`)."""
        stored = self.stored_plan()
        if stored is None:
            return False
        if "inputs" not in stored:  # written before photo stamps existed: compared without them
            plan = {k: v for k, v in plan.items() if k != "inputs"}
        return stored == _migrated(dict(plan))

    def stored_plan(self) -> dict[str, Any] | None:
        """The stored plan as a dict, migrated to this version (None when absent or unreadable).

        Options added since the plan was written take their defaults (a build started by an older dpedkit
        resumes), the only migration plans need.
        """
        try:
            stored = json.loads(self.plan_text() or "")
        except ValueError:
            return None
        return _migrated(stored) if isinstance(stored, dict) else None

    def plan_change(self, plan: Mapping[str, Any]) -> str:
        """What differs between the stored plan and ``plan``, in words (each changed setting with both values)."""
        old = self.stored_plan()
        if old is None:
            return "an unreadable plan"
        plan = _migrated(dict(plan))
        if old.get("config") != plan["config"]:
            diff = _differences(old.get("config") or {}, plan["config"])
            shown = "; ".join(f"{k}: {a!r} in the dataset, {b!r} now" for k, a, b in diff[:4])
            return f"other settings: {shown}" + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
        if old.get("pairs") != plan["pairs"]:
            return "other pairs"
        changed = sorted(n for n, st in plan["inputs"].items() if old.get("inputs", {}).get(n) != st)
        if changed:
            more = ", ..." if len(changed) > 5 else ""
            return f"photos changed since (size or time): {', '.join(changed[:5])}{more}"
        return "another version of the plan"

    def shard_record(self, shard: str, *, check: bool = True) -> dict[str, Any] | None:
        """The record a build wrote beside ``shard`` if both exist (and, if ``check``, the shard's sha256 matches)."""
        path = self.path(shard)
        record = self.read_record(shard) if shard_exists(path) else None
        if record is None or (check and shard_sha256(path) != record.get("sha256")):
            return None
        return record

    def read_record(self, shard: str) -> dict[str, Any] | None:
        """The record file beside ``shard`` as written (None when absent or unreadable); the shard is not looked at."""
        try:
            record = json.loads(self.record_path(shard).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def write_shard_record(self, shard: str, record: Mapping[str, Any]) -> None:
        """Write the record of a finished shard beside it (after the shard, so its presence means done)."""
        write_text(self.record_path(shard), dumps(record, indent=1, sort_keys=False))

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the folder for one writer: an exclusive lock on ``ROOT/.dpedkit.lock`` for the block.

        A second writer is refused at once, with the holder's command, PID and start time. The lock is the
        operating system's (``flock``): it goes with its process, also when that is killed. A folder the lock had
        to create is removed again when nothing else was written into it.

        Raises:
            InputError: another process holds the folder.
        """
        with folder_lock(self.root, command):
            yield

    def own_entries(self) -> list[Path]:
        """The files and folders a build writes here (whether present or not)."""
        return [
            *(self.root / name for name in (*SPLITS, TEST_FULL)),
            self.manifest_path,
            self.pairs_path,
            self.plan_path,
        ]

    def clear(self) -> None:
        """Remove what a build writes here: shards and their records, full test images, the dataset's JSON files.

        Other files, also inside ``train/``, ``test/`` or ``test_full/``, are kept (and so are those folders then).
        """
        for split in SPLITS:
            for pattern in (f"shard-*{SHARD_SUFFIX}", "shard-*.json", ".shard-*.tmp*"):
                for path in (self.root / split).glob(pattern):
                    path.unlink()
        for side in ("phone", "dslr"):
            for path in self.test_full_images(side):
                path.unlink()
        for path in (self.manifest_path, self.pairs_path, self.plan_path):
            path.unlink(missing_ok=True)
        for folder in (
            *(self.root / TEST_FULL / s for s in ("phone", "dslr")),
            *(self.root / n for n in (TEST_FULL, *SPLITS)),
        ):
            with contextlib.suppress(OSError):  # kept when something else is inside
                folder.rmdir()

    def remove_temp_files(self) -> None:
        """Remove the temporary files of writers that were killed (``.NAME.*.tmp*``)."""
        for tmp in self.root.glob(".*.tmp*"):
            tmp.unlink(missing_ok=True)
        for name in (*SPLITS, TEST_FULL):
            for tmp in (self.root / name).rglob(".*.tmp*"):
                tmp.unlink(missing_ok=True)

    # shards ---------------------------------------------------------------------------------------------

    def shards(self, split: str | None = None, *, verify: bool = False) -> list[ShardInfo]:
        """The shards of one split (or all, train first) of a finished dataset, in order, checked to exist.

        Args:
            split: ``"train"``, ``"test"`` or None for both.
            verify: also check each shard's sha256 against the manifest (reads every byte).

        Raises:
            ShardError: not a finished dataset, unknown split, a missing shard, or (``verify``) a checksum mismatch.
        """
        out = []
        for entry in self._entries(split):
            path = self.path(entry.path)
            if not shard_exists(path):
                raise ShardError(f"{path}: shard listed in {MANIFEST} is missing")
            if verify and shard_sha256(path) != entry.sha256:
                raise ShardError(
                    f"{path}: checksum mismatch (damaged or modified shard; `dpedkit verify {self.root}` lists the "
                    "damaged shards)"
                )
            out.append(ShardInfo(path, entry.rows, entry.sha256))
        return out

    def _entries(self, split: str | None) -> list[ShardEntry]:
        """The manifest's shards of ``split`` (None: all), in split order (train first) and then as listed.

        Raises:
            ShardError: the manifest lists a shard twice (its rows would be read twice, maybe in both splits).
        """
        entries = self.manifest().shards
        seen: dict[str, str] = {}
        for e in entries:
            key = os.path.normpath(e.path)
            if key in seen:
                raise ShardError(f"{self.manifest_path}: lists the shard {e.path} twice ({seen[key]} and {e.split}): "
                                 "a damaged or edited manifest")  # fmt: skip
            seen[key] = e.split
        return [e for s in ((check_split(split),) if split else SPLITS) for e in entries if e.split == s]

    def verify(self, *, on_shard: Callable[[ShardCheck], None] | None = None) -> Verification:
        """Check every shard: its sha256 against the manifest, its schema and rows, every chunk readable.

        The original files an import kept beside a shard are checked too, each against its sha256.

        Reads every byte once. A chunk whose per-chunk checksum fails is reported with its rows.

        Args:
            on_shard: called with each shard's :class:`ShardCheck` as it is done.

        Raises:
            ShardError: not a finished dataset, or an unreadable manifest (nothing to check against).
        """
        result = Verification(str(self.root))
        sizes = set()
        for entry in self._entries(None):
            check = ShardCheck(entry.path, entry.split, entry.rows)
            sizes |= self._verify_shard(entry, check)
            self._verify_originals(entry, check)
            result.shards.append(check)
            if on_shard:
                on_shard(check)
        if len(sizes) > 1:
            result.problems.append(f"shards hold patches of different sizes: {sorted(sizes)}")
        for rel, sha in self.manifest().kept.items():  # the files an import copied as they were
            path = self.path(rel)
            if not path.is_file():
                result.problems.append(f"{rel}: missing (a file the import kept)")
            elif file_sha256(path) != sha:
                result.problems.append(f"{rel}: differs from the sha256 recorded at import (damaged)")
        return result

    def _verify_originals(self, entry: ShardEntry, check: ShardCheck) -> None:
        """Add to ``check`` the damaged original files kept beside an imported shard (none kept: nothing to do)."""
        path = self.originals_path(entry.path)
        if not path.is_file():
            return
        shown = path.relative_to(self.root).as_posix()
        try:
            kept = read_originals(path)
        except ShardError as exc:
            check.problems.append(str(exc).replace(str(path), shown))
            return
        for name, key in kept.damaged:
            what = f"the original file {name} ({key})" if name is not None else f"its {key} column"
            check.problems.append(f"{shown}: {what} differs from the sha256 recorded at import (damaged)")

    def _verify_shard(self, entry: ShardEntry, check: ShardCheck) -> set[int]:
        """Fill ``check`` for one shard; returns its patch size (as a set, empty when unreadable)."""
        path = self.path(entry.path)
        if not shard_exists(path):
            check.problems.append("missing")
            return set()
        if shard_sha256(path) != entry.sha256:
            check.problems.append("sha256 differs from the manifest (the file changed since it was written)")
        try:
            with open_reader(path) as r:
                if r.rows != entry.rows:
                    check.problems.append(f"{r.rows} rows, the manifest says {entry.rows}")
                check.checksummed = r.checksummed()
                stored = r.attrs.get("split")
                if stored is not None and stored != entry.split:  # test rows listed for training, or the reverse
                    check.problems.append(f"a {stored} shard, listed in the {entry.split} split of the manifest")
                check.problems += r.unreadable()
                return {int(r.attrs["patch_size"])}
        except ShardError as exc:
            check.problems.append(str(exc).removeprefix(f"{path}: "))
            return set()

    def has_candidates(self) -> bool:
        """True when every shard stores its candidate windows (and there is at least one shard)."""
        infos = self.shards()
        for info in infos:
            with open_reader(info.path) as r:
                if CANDIDATES not in r:
                    return False
        return bool(infos)

    def patch_size(self) -> int:
        """The patch side ``P`` of the stored patches (the build's setting when there is no shard)."""
        infos = self.shards()
        if not infos:
            return int(self.manifest().patch_setting("size"))
        with open_reader(infos[0].path) as r:
            return int(r.attrs["patch_size"])

    def is_raw(self) -> bool:
        """True for a RAW-to-RGB dataset (1-channel Bayer mosaic phone patches), as its manifest records it.

        The one dataset-side "is it RAW": a ``raw2rgb`` build records ``mode``, a RAW import (ZRR) its ``sensor``.
        """
        config = self.manifest().config
        return config.get("mode") == "raw2rgb" or "sensor" in config

    def sensor(self) -> dict[str, Any]:
        """``{"cfa", "black", "white"}`` of a RAW dataset's sensor (one per dataset).

        The manifest's ``sensor`` (imported RAW-to-RGB layouts), else the RAW files of the pairs of a ``raw2rgb``
        build (``pairs.jsonl``).

        Raises:
            ConfigError: no sensor, or pairs from several sensors.
        """
        stored = self.manifest().config.get("sensor")
        if isinstance(stored, dict):
            return {"cfa": str(stored["cfa"]), "black": float(stored["black"]), "white": float(stored["white"])}
        seen = set()
        for rec in self.pairs():
            raw = (rec.get("sources") or {}).get("phone") or {}
            if rec.get("status") == "ok" and raw.get("cfa"):
                seen.add((raw["cfa"], float(min(raw["black_level"])), float(raw["white_level"])))
        if len(seen) != 1:
            raise ConfigError(f"{self.root}: a RAW dataset has one sensor (CFA and levels); found {sorted(seen)}")
        cfa, black, white = seen.pop()
        return {"cfa": cfa, "black": black, "white": white}

    def read_columns(self, columns: Sequence[str] = PATCH_COLUMNS) -> dict[str, np.ndarray]:
        """Per-patch columns of every stored patch pair (no images), train split first, plus ``split``.

        Args:
            columns: names among :data:`PATCH_COLUMNS`.

        Returns:
            Column -> array over all shards in order (``pair`` and ``split`` as object arrays of ``str``).
        """
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*columns, "split")}
        for split in SPLITS:
            for info in self.shards(split):
                with open_reader(info.path) as r:
                    parts["split"].append(np.full(r.rows, split, object))
                    for k in columns:
                        parts[k].append(r.column(k))
        empty = {"xy": (0, 2), "shift": (0, 2)}
        return {k: np.concatenate(v) if v else np.zeros(empty.get(k, (0,))) for k, v in parts.items()}

    def read_patches(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Phone and DSLR patches at global rows ``indices`` (the order of :meth:`read_columns`), as stored.

        Returns:
            ``(phone, dslr)``, each ``len(indices) x P x P x 3`` uint8 (uint16 for a 16-bit build), in the order
            of ``indices``.
        """
        want = np.asarray(indices, np.int64)
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        start = 0
        for info in self.shards():
            local = want[(want >= start) & (want < start + info.rows)]
            if len(local):
                with open_reader(info.path) as r:
                    phone, dslr = r.images("phone"), r.images("dslr")
                    for g in np.unique(local):
                        found[int(g)] = (phone[g - start], dslr[g - start])
            start += info.rows
        if not len(want):
            return np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 1, 1, 3), np.uint8)
        return np.stack([found[int(g)][0] for g in want]), np.stack([found[int(g)][1] for g in want])

    def read_candidates(
        self, pairs: Collection[str] | None = None, *, columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Every stored candidate window (kept or not), concatenated over the shards.

        Args:
            pairs: only the windows of these pair names; None: every pair. Shards whose ``pairs`` attribute
                lists none of them are not read.
            columns: names of :data:`~dpedkit.dataset.shards.CANDIDATE_COLUMNS`, ``"split"`` and ``"shard"``;
                None: all. Ask for what you need: ``pair`` is a string column, much slower to read.

        Returns:
            Column -> array, rows ordered by split (train, test), shard and then as stored (each pair's windows in
            row-major grid order). ``split``, ``shard`` (relative path) and ``pair`` are object arrays of ``str``.

        Raises:
            ShardError: not a finished dataset, a damaged shard, an unknown column, or a shard without candidate
                windows (written by ``import-dped`` or by dpedkit before schema version 2).
        """
        names = candidate_names(columns, ("split", "shard"))
        stored = [c for c in names if c in CANDIDATE_COLUMNS]
        want = None if pairs is None else {str(p) for p in pairs}
        parts: list[dict[str, np.ndarray]] = []
        for entry in self._entries(None):
            path = self.path(entry.path)
            with open_reader(path) as r:
                if CANDIDATES not in r:
                    raise ShardError(f"{path}: the shard stores no candidate windows (only kept patches)")
                listed = r.attrs.get("pairs")
                if want is not None and listed is not None and not want & set(json.loads(listed)):
                    continue
                # only split and shard asked for: the smallest column counts the windows
                cand = r.candidates(want, columns=stored or ["kept"])
            n = len(cand[stored[0] if stored else "kept"])
            cand = {c: cand[c] for c in stored}
            parts.append(cand | {"split": np.full(n, entry.split, object), "shard": np.full(n, entry.path, object)})
        out: dict[str, np.ndarray] = {}
        for name in names:
            if parts:
                out[name] = np.concatenate([p[name] for p in parts])
            else:
                dtype, tail = CANDIDATE_COLUMNS.get(name, (object, ()))
                out[name] = np.zeros((0, *tail), object if name == "pair" else dtype)
        return out


@dataclass
class ShardCheck:
    """What :meth:`DatasetDir.verify` found in one shard.

    Attributes:
        path: the shard, relative to the dataset.
        split: its split.
        rows: patch pairs the manifest lists for it.
        checksummed: its data carries per-chunk checksums (shards written before this was added do not; their
            damaged patches can only be found through the whole-file sha256).
        problems: what is wrong (empty when the shard is intact).
    """

    path: str
    split: str
    rows: int
    checksummed: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class Verification:
    """The result of :meth:`DatasetDir.verify`: ``ok`` when every shard is intact and the manifest holds."""

    root: str
    shards: list[ShardCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is wrong."""
        return not self.problems and not any(s.problems for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``--json`` output)."""
        return {"ok": self.ok, **asdict(self)}


def _migrated(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan with its build config completed by the defaults of options it lacks, in canonical JSON form."""
    config = plan.get("config")
    if isinstance(config, dict) and config.get("source", "build") == "build":
        try:
            plan = plan | {"config": BuildConfig.from_dict(config).to_dict()}
        except ConfigError:
            pass  # options since removed or renamed (or a partial config): compared as stored
    return json.loads(plan_text(plan))


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every leaf that differs between two nested dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def plan_text(plan: Mapping[str, Any]) -> str:
    """A build plan as stored in ``build.json`` (canonical: sorted keys)."""
    return dumps(plan, indent=1, finite=False)
