"""Pair phone photos with their DSLR twins: by file stem, by EXIF capture time, or by sorted order.

A pairs CSV (``name,phone,dslr[,dt]``) records a pairing so that ``dpedkit build --pairs`` can reuse it.
Relative paths in the CSV are relative to the phone and DSLR folders (the same folders ``build`` is given);
:func:`write_pairs_csv` writes them that way when it knows the folders, else absolute.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from dpedkit.errors import ConfigError, InputError, check_choice
from dpedkit.io import list_files, read_capture_time, write_text

log = logging.getLogger(__name__)

PairBy = Literal["name", "time", "order"]
PAIR_BY: tuple[str, ...] = get_args(PairBy)
CSV_FIELDS = ("name", "phone", "dslr", "dt")


@dataclass(frozen=True)
class PairRecord:
    """One phone/DSLR pair (or a photo without a partner, its missing side ``None``).

    Attributes:
        name: pair name, unique in a pairing: the phone file's stem (the file name if stems repeat).
        phone: phone image path, or None.
        dslr: DSLR image path, or None.
        dt: DSLR minus phone capture time in seconds (time pairing only), else None.
    """

    name: str
    phone: str | None
    dslr: str | None
    dt: float | None = None

    @property
    def complete(self) -> bool:
        """Both photos are present."""
        return self.phone is not None and self.dslr is not None


@dataclass
class Pairing:
    """The result of :func:`pair_folders`.

    Iterating yields every record (pairs and unpaired photos, the latter with one side ``None``) sorted by name.

    Attributes:
        pairs: complete pairs, sorted by name.
        unpaired_phone: phone images without a DSLR partner (paths).
        unpaired_dslr: DSLR images without a phone partner (paths).
        phone_dir: the phone folder.
        dslr_dir: the DSLR folder.
        by: the pairing rule used.
        no_time: images without a readable capture time (time pairing only; also listed as unpaired).
        skipped: files in either folder that are not images dpedkit reads (e.g. HEIC, raw), not paired.
    """

    pairs: list[PairRecord]
    unpaired_phone: list[str]
    unpaired_dslr: list[str]
    phone_dir: str = ""
    dslr_dir: str = ""
    by: str = "name"
    no_time: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def records(self) -> list[PairRecord]:
        """Pairs plus unpaired photos as one-sided records, with unique names, sorted by name."""
        recs = list(self.pairs)
        used = {r.name for r in recs}
        for side, paths in (("phone", self.unpaired_phone), ("dslr", self.unpaired_dslr)):
            for name, path in zip(_names(paths), paths, strict=True):
                if name in used:
                    name = f"{side}-{Path(path).name}"
                used.add(name)
                recs.append(PairRecord(name, path, None) if side == "phone" else PairRecord(name, None, path))
        return sorted(recs, key=lambda r: r.name)

    def __iter__(self) -> Iterator[PairRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        return len(self.pairs)


def pair_folders(phone_dir: str | Path, dslr_dir: str | Path, *, by: PairBy = "name", max_dt: float = 2.0) -> Pairing:
    """Pair the images of two folders (files directly inside, by image suffix).

    Args:
        phone_dir: folder of phone photos.
        dslr_dir: folder of DSLR photos.
        by: ``"name"``: same file stem (``IMG_1.jpg`` with ``IMG_1.png``; stems compared exactly);
            ``"time"``: EXIF ``DateTimeOriginal`` + ``SubSecTimeOriginal``, one-to-one, nearest first
            (globally greedy on ``|dt|``, ties broken by names), only within ``max_dt`` seconds; images
            without a capture time stay unpaired; ``"order"``: the i-th phone image (sorted by name) with the
            i-th DSLR image.
        max_dt: largest capture-time difference in seconds for ``by="time"``.

    Returns:
        A :class:`Pairing`; a pair's name is the phone file's stem.

    Raises:
        ConfigError: ``by`` or ``max_dt`` is invalid.
        InputError: a folder is missing or holds no photos, or (``by="name"``) two images of one folder share
            a stem.
    """
    check_choice("by", by, PAIR_BY)
    if not max_dt > 0:
        raise ConfigError(f"max_dt must be > 0 seconds; got {max_dt!r}")
    (phones, other_p), (dslrs, other_d) = list_files(phone_dir), list_files(dslr_dir)
    skipped = [str(p) for p in (*other_p, *other_d)]
    for folder, found, others in ((phone_dir, phones, other_p), (dslr_dir, dslrs, other_d)):
        if not found:
            kinds = ", ".join(sorted({p.suffix.lower() or p.name for p in others}))
            raise InputError(folder, "no photos in this folder" + (f" (only {kinds} files)" if kinds else ""))
    no_time: list[str] = []
    if by == "name":
        matches = _by_name(phones, dslrs, phone_dir, dslr_dir)
    elif by == "order":
        matches = [(i, i, None) for i in range(min(len(phones), len(dslrs)))]
    else:
        matches, no_time = _by_time(phones, dslrs, max_dt)
    names = _names([str(phones[i]) for i, _, _ in matches])
    pairs = [PairRecord(n, str(phones[i]), str(dslrs[j]), dt) for n, (i, j, dt) in zip(names, matches, strict=True)]
    used_p, used_d = {i for i, _, _ in matches}, {j for _, j, _ in matches}
    result = Pairing(
        pairs=sorted(pairs, key=lambda r: r.name),
        unpaired_phone=[str(p) for i, p in enumerate(phones) if i not in used_p],
        unpaired_dslr=[str(p) for j, p in enumerate(dslrs) if j not in used_d],
        phone_dir=str(phone_dir),
        dslr_dir=str(dslr_dir),
        by=by,
        no_time=no_time,
        skipped=skipped,
    )
    log.debug("paired %d by %s; unpaired: %d phone, %d DSLR; %d other files skipped", len(pairs), by,
              len(result.unpaired_phone), len(result.unpaired_dslr), len(skipped))  # fmt: skip
    return result


def skipped_message(skipped: list[str]) -> str:
    """One line naming files that were skipped because dpedkit does not read their format."""
    names = ", ".join(Path(p).name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    return (
        f"{len(skipped)} file(s) skipped, not a format dpedkit reads (JPEG, PNG, TIFF, PPM/PGM, BMP, WebP; convert "
        f"HEIC or raw files first): {names}"
    )


def write_pairs_csv(pairing: Pairing | list[PairRecord], path: str | Path) -> None:
    """Write the complete pairs as a CSV ``name,phone,dslr,dt`` (atomically).

    Paths are written relative to the pairing's phone/DSLR folders when they lie inside them (a
    :class:`Pairing` knows its folders), else absolute, so ``read_pairs_csv(path, phone_dir=..., dslr_dir=...)``
    and ``dpedkit build PHONE DSLR --pairs path`` read them back.

    Args:
        pairing: a :class:`Pairing` or a list of :class:`PairRecord` (incomplete records are skipped).
        path: the CSV file to write.
    """
    pdir = getattr(pairing, "phone_dir", "") or None
    ddir = getattr(pairing, "dslr_dir", "") or None
    recs = pairing.pairs if isinstance(pairing, Pairing) else [r for r in pairing if r.complete]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in recs:
        dt = "" if r.dt is None else f"{r.dt:.3f}"
        writer.writerow([r.name, _relative(r.phone, pdir), _relative(r.dslr, ddir), dt])
    write_text(path, buf.getvalue())


def read_pairs_csv(
    path: str | Path, *, phone_dir: str | Path | None = None, dslr_dir: str | Path | None = None
) -> list[PairRecord]:
    """Read a pairs CSV with header columns ``name,phone,dslr`` (``dt`` optional, extra columns ignored).

    Args:
        path: the CSV file.
        phone_dir: folder that relative phone paths are relative to (default: the CSV's folder).
        dslr_dir: folder that relative DSLR paths are relative to (default: the CSV's folder).

    Returns:
        The pairs in file order; paths resolved to strings (existence is checked later, when they are read).

    Raises:
        InputError: the file is missing or unreadable, lacks a column, has an empty cell or repeats a name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such pairs CSV file")
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [c.strip() for c in next(reader, [])]
            rows = [dict(zip(header, cells, strict=False)) for cells in reader if any(c.strip() for c in cells)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read pairs CSV: {exc}") from exc
    missing = [c for c in ("name", "phone", "dslr") if c not in header]
    if missing:
        raise InputError(path, f"pairs CSV lacks column(s) {missing}; needs a header name,phone,dslr")
    base_p = Path(phone_dir) if phone_dir is not None else path.parent
    base_d = Path(dslr_dir) if dslr_dir is not None else path.parent
    out: list[PairRecord] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        name, phone, dslr = ((row.get(c) or "").strip() for c in ("name", "phone", "dslr"))
        if not (name and phone and dslr):
            raise InputError(path, f"line {line}: empty name, phone or dslr cell")
        if name in seen:
            raise InputError(path, f"line {line}: pair name {name!r} repeated")
        seen.add(name)
        dt = (row.get("dt") or "").strip()
        try:
            dt_s = float(dt) if dt else None
        except ValueError:
            raise InputError(path, f"line {line}: dt must be a number of seconds; got {dt!r}") from None
        out.append(PairRecord(name, str(base_p / phone), str(base_d / dslr), dt_s))
    return out


# ------------------------------------------------------------------------------------------------------ internals


def _names(paths: list[str]) -> list[str]:
    """Stems, or file names where stems repeat."""
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else Path(p).name for s, p in zip(stems, paths, strict=True)]


def _stem_index(files: list[Path], folder: str | Path) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, f in enumerate(files):
        if f.stem in index:
            raise InputError(folder, f"two images share the stem {f.stem!r}: {files[index[f.stem]].name}, {f.name}")
        index[f.stem] = i
    return index


def _by_name(phones: list[Path], dslrs: list[Path], phone_dir, dslr_dir) -> list[tuple[int, int, None]]:
    ip, idd = _stem_index(phones, phone_dir), _stem_index(dslrs, dslr_dir)
    return [(ip[s], idd[s], None) for s in sorted(set(ip) & set(idd))]


def _by_time(phones: list[Path], dslrs: list[Path], max_dt: float) -> tuple[list[tuple[int, int, float]], list[str]]:
    tp = [read_capture_time(p) for p in phones]
    td = [read_capture_time(p) for p in dslrs]
    no_time = [str(p) for p, t in zip(phones + dslrs, tp + td, strict=True) if t is None]
    order = sorted((t, j) for j, t in enumerate(td) if t is not None)
    times = [t for t, _ in order]
    cands = []
    for i, a in enumerate(tp):
        if a is None:
            continue
        for t, j in order[bisect_left(times, a - max_dt) : bisect_right(times, a + max_dt)]:
            cands.append((abs(t - a), i, j, t - a))
    cands.sort()
    used_p: set[int] = set()
    used_d: set[int] = set()
    matches = []
    for _, i, j, dt in cands:  # nearest first: one-to-one, globally greedy on |dt|
        if i not in used_p and j not in used_d:
            used_p.add(i)
            used_d.add(j)
            matches.append((i, j, round(dt, 6)))
    return sorted(matches), no_time


def _relative(path: str, folder: str | None) -> str:
    """``path`` relative to ``folder`` when inside it, else absolute."""
    p = Path(path).resolve()
    if folder is not None:
        base = Path(folder).resolve()
        if p.is_relative_to(base):
            return os.path.relpath(p, base)
    return str(p)
