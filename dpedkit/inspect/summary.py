"""What a finished dataset holds, as data for ``dpedkit inspect``: pair records worst first, counts, columns.

A dataset built from photos has a record per pair (alignment numbers, windows, NCC); an imported one (``dpedkit
import-dped``, ``import-zrr``) holds patch pairs only: its summary says where they came from, how many rows each
split has, the patch shapes and, for RAW data, the sensor (:func:`overview`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpedkit.dataset.format import SPLITS, DatasetDir
from dpedkit.dataset.source import require_dataset
from dpedkit.dataset.storage import local_dataset
from dpedkit.errors import ConfigError


@dataclass
class DatasetSummary:
    """What a finished dataset holds, read from ``dataset.json``, ``pairs.jsonl`` and the shard columns.

    Attributes:
        root: the dataset folder.
        config: the resolved build configuration (``dataset.json``'s ``config``).
        pairs: one dict per input pair (``pairs.jsonl`` rows, alignment metrics flattened to the top level),
            sorted worst first (see :func:`worst_first`); each also has ``kept_fraction`` in [0, 1].
        status_counts: pairs per status word (``"ok"`` or a failure reason), most frequent first.
        split_pairs: ok pairs per split; ``split_patches``: kept patch pairs per split.
        columns: per-patch columns of every stored patch (``pair``, ``split``, ``xy``, ``shift``, ``angle``,
            ``ncc``, ``texture``), concatenated over all shards, no images.
        patch_size: ``P``; ``ncc_min``: the keep threshold used by the build.
        stored_candidates: every shard stores its candidate windows (schema 2 ``candidates/`` group, written by
            ``dpedkit build``; read them with :meth:`DatasetDir.read_candidates`). False for an imported or older
            dataset, whose windows must be recomputed from the photos.
        source: ``"build"`` (built from photos) or the layout an import came from (``"dped"``, ``"zrr"``, ...).
        origin: an import's own record of its source (``dataset.json``'s config less ``source``: the folder, the
            phone, the baseline); empty for a build.
        shapes: ``{"phone": ..., "dslr": ...}``: one stored patch's shape and dtype (``"100 x 100 x 3 uint8"``);
            empty when the dataset holds no patch.
        sensor: ``{"cfa", "black", "white"}`` of a RAW-to-RGB dataset's phone sensor; None for RGB data.
    """

    root: Path
    config: dict[str, Any]
    pairs: list[dict[str, Any]]
    status_counts: dict[str, int]
    split_pairs: dict[str, int]
    split_patches: dict[str, int]
    columns: dict[str, np.ndarray]
    patch_size: int
    ncc_min: float
    stored_candidates: bool = False
    source: str = "build"
    origin: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, str] = field(default_factory=dict)
    sensor: dict[str, Any] | None = None

    @property
    def imported(self) -> bool:
        """True for a dataset imported from a layout of patch pairs (no photos, pair records or NCC)."""
        return self.source != "build"

    @property
    def patches_kept(self) -> int:
        """Kept patch pairs in all splits."""
        return int(sum(self.split_patches.values()))

    @property
    def patches_total(self) -> int:
        """Candidate windows over all pairs (as recorded by the build)."""
        return int(sum(int(p.get("patches_total") or 0) for p in self.pairs))


def flatten_pair_record(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A ``pairs.jsonl`` row with nested alignment metrics lifted to the top level and ``kept_fraction`` added."""
    out = dict(rec)
    for key in ("alignment", "metrics", "align"):
        nested = rec.get(key)
        if isinstance(nested, Mapping):
            for k, v in nested.items():
                out.setdefault(k, v)
    out.setdefault("pair", out.get("name", "?"))
    raw = (rec.get("sources") or {}).get("phone") or {}
    if raw.get("cfa"):  # a RAW phone file: its Bayer phase and levels
        out |= {"raw_cfa": raw["cfa"], "raw_black": min(raw.get("black_level") or [0]),
                "raw_white": raw.get("white_level")}  # fmt: skip
    total, kept = int(out.get("patches_total") or 0), int(out.get("patches_kept") or 0)
    out["kept_fraction"] = kept / total if total > 0 else 0.0
    return out


def worst_first(pairs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sort pairs worst first: lowest kept fraction (failed pairs count as 0), then highest inlier RMSE, then name."""

    def key(p: Mapping[str, Any]) -> tuple[float, float, str]:
        rmse = p.get("rmse_px")
        return (float(p.get("kept_fraction", 0.0)), -float(rmse) if is_finite_number(rmse) else 0.0, str(p.get("pair")))

    return sorted((dict(p) for p in pairs), key=key)


def summarize_dataset(root: str | Path) -> DatasetSummary:
    """Read a finished dataset's manifest, pair records and per-patch columns (no images).

    Args:
        root: a dataset folder (written by ``dpedkit build``, or imported).

    Returns:
        A :class:`DatasetSummary`.

    Raises:
        ShardError: not a finished dataset, or a damaged/foreign shard.
    """
    root = local_dataset(root)  # a dataset at a URL: its local copy
    require_dataset(root, "inspect")
    ds = DatasetDir(root)
    manifest = ds.manifest()
    pairs = worst_first([flatten_pair_record(r) for r in ds.pairs()])
    status = Counter(str(p.get("status", "?")) for p in pairs)
    columns = ds.read_columns()
    split_pairs = Counter(str(p.get("split")) for p in pairs if p.get("status") == "ok")
    return DatasetSummary(
        root=ds.root,
        config=manifest.config,
        pairs=pairs,
        status_counts=dict(status.most_common()),
        split_pairs={s: split_pairs.get(s, 0) for s in SPLITS},
        split_patches={s: int(np.count_nonzero(columns["split"] == s)) for s in SPLITS},
        columns=columns,
        patch_size=ds.patch_size(),
        ncc_min=float(manifest.patch_setting("ncc_min")),
        stored_candidates=ds.has_candidates(),
        source=manifest.source,
        origin={k: v for k, v in manifest.config.items() if k != "source"} if manifest.source != "build" else {},
        shapes=_patch_shapes(ds, len(columns["split"])),
        sensor=_sensor(ds),
    )


def _patch_shapes(ds: DatasetDir, rows: int) -> dict[str, str]:
    """One stored patch pair's shapes and dtypes (``"32 x 32 x 1 uint16"``); empty without patches."""
    if not rows:
        return {}
    phone, dslr = ds.read_patches([0])
    return {side: f"{' x '.join(map(str, a.shape[1:]))} {a.dtype}" for side, a in (("phone", phone), ("dslr", dslr))}


def _sensor(ds: DatasetDir) -> dict[str, Any] | None:
    """The phone sensor of RAW-to-RGB data (None for RGB data, or when its pairs disagree on it)."""
    if not ds.is_raw():
        return None
    try:
        return ds.sensor()
    except ConfigError:  # pairs from several sensors: each pair's row of the table shows its own
        return None


def overview(s: DatasetSummary) -> list[tuple[str, Any]]:
    """The dataset's overview as ``(label, value)`` rows, the same in the HTML report and the terminal.

    A build: pairs (ok / failed), candidate windows and kept patches, pairs and patches per split, the NCC
    threshold. An import: where it came from, its patch pairs per split (it has no pair records). Both: the
    patch shapes and, for RAW data, the sensor's CFA and levels.
    """
    rows: list[tuple[str, Any]] = []
    if s.imported:
        where = s.origin.get("zrr_dir") or s.origin.get("dped_dir")
        what = [f"{s.source.upper()} layout", *([str(where)] if where else [])]
        what += [f"{k} {s.origin[k]}" for k in ("phone", "baseline") if s.origin.get(k)]
        rows.append(("imported from", ", ".join(what)))
        rows += [(f"{split} rows", f"{n} patch pairs") for split, n in s.split_patches.items()]
        rows.append(("per-pair records", "none: the layout holds patch pairs only (no photos, alignment or NCC)"))
    else:
        n_ok = s.status_counts.get("ok", 0)
        rows += [("pairs", len(s.pairs)), ("pairs ok / failed", f"{n_ok} / {len(s.pairs) - n_ok}"),
                 ("candidate windows", s.patches_total), ("patches kept", s.patches_kept),
                 ("kept fraction", s.patches_kept / s.patches_total if s.patches_total else float("nan"))]  # fmt: skip
        rows += [(f"{split} split", f"{s.split_pairs.get(split, 0)} pairs, {n} patches")
                 for split, n in s.split_patches.items()]  # fmt: skip
        rows.append(("NCC threshold", s.ncc_min))
    rows.append(("patch size", s.patch_size))
    rows += [(f"{label} patches", s.shapes[side]) for side, label in (("phone", "phone"), ("dslr", "DSLR"))
             if side in s.shapes]  # fmt: skip
    if s.sensor:
        sn = s.sensor
        rows.append(("sensor", f"CFA {sn['cfa']}, black {sn['black']:g}, white {sn['white']:g}"))
    return rows


def is_finite_number(v: Any) -> bool:
    """True for an int or float that is finite (not None, NaN, inf or a string)."""
    return isinstance(v, int | float) and bool(np.isfinite(v))
