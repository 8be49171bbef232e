"""The dataset folder format: the one reader and writer of every file in a dpedkit dataset.

A dataset folder ``ROOT`` (written by ``dpedkit build``, ``import-dped`` or :mod:`dpedkit.testing`) holds:

- ``dataset.json`` (:class:`Manifest`): schema, resolved config, counts and every shard with its rows and
  sha256; written last, so its presence means the dataset is finished.
- ``train/shard-NNNNN.h5``, ``test/shard-NNNNN.h5``: patch shards (file schema in :mod:`dpedkit.dataset.shards`),
  each with its record ``shard-NNNNN.json`` beside it (the pairs it holds, written after the shard by a build).
- ``pairs.jsonl``: one record per input pair, sorted by name (a build's; empty for imported datasets).
- ``build.json``: the plan of a started build, so that a rerun checks it resumes the same job.
- ``test_full/{phone,dslr}/NAME.png``: the full aligned test pairs of a build.

Every module that reads or writes these goes through :class:`DatasetDir`; schema versions and the migration of
older datasets live here and nowhere else. Shard paths read from a manifest are checked to stay inside ``ROOT``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from dpedkit import __version__
from dpedkit.config import SPLITS
from dpedkit.dataset.shards import (
    CANDIDATE_COLUMNS,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    ShardInfo,
    candidate_names,
    file_sha256,
    has_candidates,
    open_shard,
    shard_candidates,
)
from dpedkit.errors import ShardError
from dpedkit.io import read_jsonl, write_json, write_jsonl, write_text

MANIFEST_SCHEMA = "dpedkit-dataset"
MANIFEST = "dataset.json"
PAIRS = "pairs.jsonl"
PLAN = "build.json"
TEST_FULL = "test_full"
PATCH_COLUMNS = ("pair", "xy", "shift", "angle", "ncc", "texture")


def shard_name(split: str, index: int) -> str:
    """Relative path of shard ``index`` of ``split``: ``train/shard-00000.h5``."""
    return f"{split}/shard-{index:05d}.h5"


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
        if p.is_absolute() or ".." in p.parts or "\\" in self.path or not p.parts or p.parts[0] != self.split:
            raise ShardError(f"shard path {self.path!r} must be a relative path inside the {self.split}/ folder")


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
    """

    config: dict[str, Any]
    counts: Counts
    shards: tuple[ShardEntry, ...]
    schema_version: int = SCHEMA_VERSION
    dpedkit_version: str = __version__

    @property
    def source(self) -> str:
        """``"build"`` for a dataset built from photos, else the ``source`` its config names (``dped``...)."""
        return str(self.config.get("source", "build"))

    def build_config(self) -> Any:
        """The :class:`~dpedkit.dataset.build.BuildConfig` of a built dataset, or None for other sources."""
        from dpedkit.dataset.build import BuildConfig

        return BuildConfig.from_dict(self.config) if self.source == "build" else None

    def patch_setting(self, name: str) -> Any:
        """A :class:`~dpedkit.dataset.patches.PatchConfig` field as the build used it (its default otherwise)."""
        from dpedkit.dataset.patches import PatchConfig

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
                counts=Counts(**data.get("counts", {})),
                shards=tuple(ShardEntry(**s) for s in data["shards"]),
                schema_version=version,  # version 1 differs only in its shards (no candidates/ group)
                dpedkit_version=str(data.get("dpedkit_version", "?")),
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
        p = PurePosixPath(relative)
        if p.is_absolute() or ".." in p.parts or not p.parts:
            raise ShardError(f"{self.root}: path {relative!r} leaves the dataset folder")
        return self.root.joinpath(*p.parts)

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
        if not self.manifest_path.is_file():
            raise ShardError(
                f"{self.root}: not a finished dpedkit dataset ({MANIFEST} is missing; build still running?)"
            )
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ShardError(f"{self.manifest_path}: unreadable dataset manifest ({exc})") from exc
        return Manifest.from_dict(data, where=self.manifest_path)

    def write_manifest(self, manifest: Manifest) -> None:
        """Write ``dataset.json`` atomically (the last file of a dataset: it marks it finished)."""
        write_json(self.manifest_path, manifest.to_dict())

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
        """Whether the stored plan is ``plan`` (one written before photo stamps existed is compared without them)."""
        stored_text = self.plan_text()
        if stored_text is None or stored_text == plan_text(plan):
            return stored_text is not None
        try:
            stored = json.loads(stored_text)
        except ValueError:
            return False
        if not isinstance(stored, dict) or "inputs" in stored:
            return False
        return stored == json.loads(plan_text({k: v for k, v in plan.items() if k != "inputs"}))

    def plan_change(self, plan: Mapping[str, Any]) -> str:
        """What differs between the stored plan and ``plan``, in words."""
        try:
            old = json.loads(self.plan_text() or "")
        except ValueError:
            return "an unreadable plan"
        if old.get("config") != plan["config"]:
            return "other settings"
        if old.get("pairs") != plan["pairs"]:
            return "other pairs"
        changed = sorted(n for n, st in plan["inputs"].items() if old.get("inputs", {}).get(n) != st)
        if changed:
            more = ", ..." if len(changed) > 5 else ""
            return f"photos changed since (size or time): {', '.join(changed[:5])}{more}"
        return "another version of the plan"

    def shard_record(self, shard: str, *, check: bool = True) -> dict[str, Any] | None:
        """The record a build wrote beside ``shard`` if both files exist (and, if ``check``, the checksum matches)."""
        rec, path = self.record_path(shard), self.path(shard)
        if not (rec.is_file() and path.is_file()):
            return None
        try:
            record = json.loads(rec.read_text())
        except ValueError:
            return None
        if not isinstance(record, dict) or (check and file_sha256(path) != record.get("sha256")):
            return None
        return record

    def write_shard_record(self, shard: str, record: Mapping[str, Any]) -> None:
        """Write the record of a finished shard beside it (after the shard, so its presence means done)."""
        write_text(self.record_path(shard), json.dumps(record, indent=1))

    def clear(self) -> None:
        """Remove everything a build or import writes here (nothing else)."""
        for name in (*SPLITS, TEST_FULL):
            if (self.root / name).is_dir():
                shutil.rmtree(self.root / name)
        for path in (self.manifest_path, self.pairs_path, self.plan_path):
            path.unlink(missing_ok=True)

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
            if not path.is_file():
                raise ShardError(f"{path}: shard listed in {MANIFEST} is missing")
            if verify and file_sha256(path) != entry.sha256:
                raise ShardError(f"{path}: checksum mismatch (damaged or modified shard)")
            out.append(ShardInfo(path, entry.rows, entry.sha256))
        return out

    def _entries(self, split: str | None) -> list[ShardEntry]:
        """The manifest's shards of ``split`` (None: all), in split order (train first) and then as listed."""
        entries = self.manifest().shards
        return [e for s in ((check_split(split),) if split else SPLITS) for e in entries if e.split == s]

    def has_candidates(self) -> bool:
        """True when every shard stores its candidate windows (and there is at least one shard)."""
        infos = self.shards()
        for info in infos:
            with open_shard(info.path) as f:
                if not has_candidates(f):
                    return False
        return bool(infos)

    def patch_size(self) -> int:
        """The patch side ``P`` of the stored patches (the build's setting when there is no shard)."""
        infos = self.shards()
        if not infos:
            return int(self.manifest().patch_setting("size"))
        with open_shard(infos[0].path) as f:
            return int(f.attrs["patch_size"])

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
                with open_shard(info.path) as f:
                    n = int(f["ncc"].shape[0])
                    parts["split"].append(np.full(n, split, object))
                    for k in columns:
                        parts[k].append(np.array(f[k].asstr()[()], object) if k == "pair" else f[k][()])
        empty = {"xy": (0, 2), "shift": (0, 2)}
        return {k: np.concatenate(v) if v else np.zeros(empty.get(k, (0,))) for k, v in parts.items()}

    def read_patches(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Phone and DSLR patches at global rows ``indices`` (the order of :meth:`read_columns`), uint8.

        Returns:
            ``(phone, dslr)``, each ``len(indices) x P x P x 3`` uint8, in the order of ``indices``.
        """
        want = np.asarray(indices, np.int64)
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        start = 0
        for info in self.shards():
            local = want[(want >= start) & (want < start + info.rows)]
            if len(local):
                with open_shard(info.path) as f:
                    for g in np.unique(local):
                        found[int(g)] = (f["phone"][g - start], f["dslr"][g - start])
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
            with open_shard(path) as f:
                if not has_candidates(f):
                    raise ShardError(f"{path}: the shard stores no candidate windows (only kept patches)")
                listed = f.attrs.get("pairs")
                if want is not None and listed is not None and not want & set(json.loads(listed)):
                    continue
                cand = shard_candidates(f, pairs=want, columns=stored)
                n = len(next(iter(cand.values()))) if cand else int(np.count_nonzero(_pair_mask(f, want)))
            parts.append(cand | {"split": np.full(n, entry.split, object), "shard": np.full(n, entry.path, object)})
        out: dict[str, np.ndarray] = {}
        for name in names:
            if parts:
                out[name] = np.concatenate([p[name] for p in parts])
            else:
                dtype, tail = CANDIDATE_COLUMNS.get(name, (object, ()))
                out[name] = np.zeros((0, *tail), object if name == "pair" else dtype)
        return out


def plan_text(plan: Mapping[str, Any]) -> str:
    """A build plan as stored in ``build.json`` (canonical: sorted keys)."""
    return json.dumps(plan, indent=1, sort_keys=True)


def _pair_mask(f: Any, want: set[str] | None) -> np.ndarray:
    """Which candidate rows of an open shard belong to pairs ``want`` (all when None)."""
    group = f["candidates"]
    if want is None:
        return np.ones(int(group.attrs["rows"]), bool)
    return np.isin(np.array(group["pair"].asstr()[()], dtype=object), np.array(sorted(want), dtype=object))
