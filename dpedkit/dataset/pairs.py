"""Pair phone photos with their DSLR twins: by file stem, by EXIF capture time, or by sorted order.

Time pairing knows that two cameras' clocks differ: the DSLR-minus-phone offset is given, or estimated from the
photos as the mode of all phone-to-DSLR time differences (:func:`estimate_clock_offset`). Photos are paired only
where the pairing is unambiguous: a phone photo and a DSLR photo that are each other's only candidate within
``max_dt``; bursts (several shots of one camera within ``max_dt`` of a shot of the other) are left unpaired with
the reason, never guessed.

A stem with both a RAW and a processed file (``IMG_1.CR2`` + ``IMG_1.JPG``) uses one of them (``prefer``); the
other is set aside and named.

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
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np

from dpedkit.config import MAX_CLOCK_OFFSET, PairBy, PairsConfig, Prefer
from dpedkit.errors import InputError
from dpedkit.io import check_file_name, list_files, read_capture_time, write_text
from dpedkit.io.camera import is_raw

log = logging.getLogger(__name__)

PAIR_BY: tuple[str, ...] = get_args(PairBy)
PREFER: tuple[str, ...] = get_args(Prefer)
CSV_FIELDS = ("name", "phone", "dslr", "dt")
MIN_OFFSET_SUPPORT = 3  # photo pairs that must agree on an estimated clock offset


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
        skipped: files in either folder that are not images dpedkit reads (sidecars, videos...), not paired.
        set_aside: the RAW or processed twin of a stem that has both, not used (see ``prefer``).
        prefer: which twin was used: ``"jpeg"`` or ``"raw"``.
        reasons: why each unpaired photo (path) has no partner, in words.
        clock_offset: DSLR minus phone clock in seconds used by time pairing (None for other rules).
        clock_estimated: the offset was estimated from the photos (``clock_offset = "auto"``).
        clock_spread: robust standard deviation (1.4826 x MAD) in seconds of the pairs' time differences around
            the offset (None with fewer than two pairs or other rules).
        clock_hint: with a given offset, the offset the photos' times agree on when it differs from the given
            one by more than ``max_dt`` (a sign that ``clock_offset="auto"`` is needed); else None.
    """

    pairs: list[PairRecord]
    unpaired_phone: list[str]
    unpaired_dslr: list[str]
    phone_dir: str = ""
    dslr_dir: str = ""
    by: str = "name"
    no_time: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    prefer: str = "jpeg"
    reasons: dict[str, str] = field(default_factory=dict)
    clock_offset: float | None = None
    clock_estimated: bool = False
    clock_spread: float | None = None
    clock_hint: float | None = None

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


def pair_folders(
    phone_dir: str | Path, dslr_dir: str | Path, config: PairsConfig | None = None, **options: Any
) -> Pairing:
    """Pair the images of two folders (files directly inside, by image suffix).

    Args:
        phone_dir: folder of phone photos.
        dslr_dir: folder of DSLR photos.
        config: a :class:`dpedkit.config.PairsConfig`: ``by`` = ``"name"``: same file stem (``IMG_1.jpg`` with
            ``IMG_1.png``; stems compared exactly); ``"time"``: EXIF capture time, after the clock offset, one
            to one where unambiguous (see the module docstring); ``"order"``: the i-th phone image (sorted by
            name) with the i-th DSLR image.
        **options: fields of ``config`` to override (``by="time", max_dt=1.0``).

    Returns:
        A :class:`Pairing`; a pair's name is the phone file's stem.

    Raises:
        ConfigError: an invalid option.
        InputError: a folder is missing or holds no photos; (``by="name"``) two images of one folder share a
            stem; (``clock_offset="auto"``) no offset is shared by enough photo pairs to be estimated.
    """
    cfg = replace(config or PairsConfig(), **options)
    (phones, other_p), (dslrs, other_d) = list_files(phone_dir), list_files(dslr_dir)
    skipped = [str(p) for p in (*other_p, *other_d)]
    for folder, found, others in ((phone_dir, phones, other_p), (dslr_dir, dslrs, other_d)):
        if not found:
            kinds = ", ".join(sorted({p.suffix.lower() or p.name for p in others}))
            raise InputError(folder, "no photos in this folder" + (f" (only {kinds} files)" if kinds else ""))
    (phones, aside_p), (dslrs, aside_d) = choose_twins(phones, cfg.prefer), choose_twins(dslrs, cfg.prefer)
    result = Pairing([], [], [], str(phone_dir), str(dslr_dir), cfg.by, skipped=skipped,
                     set_aside=[str(p) for p in (*aside_p, *aside_d)], prefer=cfg.prefer)  # fmt: skip
    if cfg.by == "name":
        matches = _by_name(phones, dslrs, phone_dir, dslr_dir)
    elif cfg.by == "order":
        matches = [(i, i, None) for i in range(min(len(phones), len(dslrs)))]
    else:
        matches = _by_time(phones, dslrs, cfg, result)
    names = _names([str(phones[i]) for i, _, _ in matches])
    pairs = [PairRecord(n, str(phones[i]), str(dslrs[j]), dt) for n, (i, j, dt) in zip(names, matches, strict=True)]
    used_p, used_d = {i for i, _, _ in matches}, {j for _, j, _ in matches}
    result.pairs = sorted(pairs, key=lambda r: r.name)
    result.unpaired_phone = [str(p) for i, p in enumerate(phones) if i not in used_p]
    result.unpaired_dslr = [str(p) for j, p in enumerate(dslrs) if j not in used_d]
    log.debug("paired %d by %s; unpaired: %d phone, %d DSLR; %d other files skipped", len(pairs), cfg.by,
              len(result.unpaired_phone), len(result.unpaired_dslr), len(skipped))  # fmt: skip
    return result


def choose_twins(files: list[Path], prefer: str) -> tuple[list[Path], list[Path]]:
    """``(used, set aside)``: where a stem has RAW and processed files, only the ``prefer`` kind is used."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_stem[f.stem].append(f)
    aside = set()
    for group in by_stem.values():
        raws = [f for f in group if is_raw(f)]
        if raws and len(raws) < len(group):
            aside.update([f for f in group if not is_raw(f)] if prefer == "raw" else raws)
    return [f for f in files if f not in aside], [f for f in files if f in aside]


def set_aside_message(pairing: Pairing) -> str:
    """One line saying which twin of RAW + processed stems is used, and naming the files set aside."""
    n = len(pairing.set_aside)
    names = ", ".join(Path(p).name for p in pairing.set_aside[:5]) + (", ..." if n > 5 else "")
    used, other = ("the RAW", "--prefer jpeg") if pairing.prefer == "raw" else ("the JPEG/HEIC", "--prefer raw")
    return (
        f"{n} photo(s) have both a RAW and a processed file: {used} is used ({other} uses the other); "
        f"set aside: {names}"
    )


def time_message(pairing: Pairing) -> str:
    """One line on the clock offset of a time pairing (empty for other rules)."""
    if pairing.clock_offset is None:
        return ""
    how = "estimated" if pairing.clock_estimated else "as set (--clock-offset, default 0)"
    spread = "" if pairing.clock_spread is None else f", spread {pairing.clock_spread:.2f} s"
    line = f"clock offset (DSLR - phone) {pairing.clock_offset:+.2f} s {how}{spread} over {len(pairing.pairs)} pair(s)"
    if pairing.clock_hint is not None:
        line += (f"; but the photos' times agree on {pairing.clock_hint:+.2f} s: the two clocks differ, pairs may "
                 "be wrong (--clock-offset auto estimates it)")  # fmt: skip
    return line


def skipped_message(skipped: list[str]) -> str:
    """One line naming files that were skipped because dpedkit does not read their format."""
    names = ", ".join(Path(p).name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    return (
        f"{len(skipped)} file(s) skipped, not a format dpedkit reads (JPEG, PNG, TIFF, PPM/PGM, BMP, WebP, HEIC/HEIF, "
        f"camera RAW): {names}"
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
        phone_dir: the phone folder (``dpedkit build``): every phone cell must then be a plain file name in it (no
            folder, ``..`` or absolute path). Without it, phone paths are relative to the CSV's folder.
        dslr_dir: the same for the DSLR column.

    Returns:
        The pairs in file order; paths resolved to strings (existence is checked later, when they are read).

    Raises:
        InputError: the file is missing or unreadable, lacks a column, has an empty cell, repeats a name, or names
            a file outside a given folder.
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
        for cell, folder, side in ((phone, phone_dir, "phone"), (dslr, dslr_dir, "dslr")):
            if folder is not None:  # inside the folder given, nowhere else
                check_file_name(cell, what=f"line {line}: {side} file", where=path)
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


def _by_time(phones: list[Path], dslrs: list[Path], cfg: PairsConfig, out: Pairing) -> list[tuple[int, int, float]]:
    """Unambiguous one-to-one matches ``(phone index, DSLR index, DSLR - phone seconds)``.

    Fills ``out``'s ``no_time``, ``reasons`` and clock fields.
    """
    tp = [read_capture_time(p) for p in phones]
    td = [read_capture_time(p) for p in dslrs]
    out.no_time = [str(p) for p, t in zip(phones + dslrs, tp + td, strict=True) if t is None]
    out.reasons = {p: "no capture time (EXIF DateTimeOriginal)" for p in out.no_time}
    offset = cfg.offset_seconds
    estimate = estimate_clock_offset([t for t in tp if t is not None], [t for t in td if t is not None], cfg.max_dt)
    if offset is not None and estimate is not None and abs(estimate - offset) > cfg.max_dt:
        out.clock_hint = round(estimate, 3)
    if offset is None:
        offset = estimate
        if offset is None:
            raise InputError(
                out.phone_dir,
                f"cannot estimate the clock offset: no time difference is shared by {MIN_OFFSET_SUPPORT} or more "
                f"phone/DSLR photos (within {cfg.max_dt:g} s); give it with --clock-offset SECONDS",
            )
        matches = _unambiguous(tp, td, offset, cfg.max_dt)[0]
        if matches:  # the median of the pairs' differences is finer than the mode's window
            offset = float(np.median([dt for _, _, dt in matches]))
        out.clock_estimated = True
    matches, reasons = _unambiguous(tp, td, offset, cfg.max_dt)
    names = [str(p) for p in phones] + [str(p) for p in dslrs]
    out.reasons |= {names[k]: why for k, why in reasons.items()}
    out.clock_offset = round(offset, 6)
    if len(matches) >= 2:
        r = np.array([dt for _, _, dt in matches]) - offset
        out.clock_spread = round(float(1.4826 * np.median(np.abs(r - np.median(r)))), 6)
    return matches


def estimate_clock_offset(phone_times: list[float], dslr_times: list[float], window: float) -> float | None:
    """The DSLR-minus-phone clock offset in seconds, or None when too few photos agree on one.

    The median of the ``window``-second interval that holds the most of all pairwise time differences (up to
    :data:`MAX_CLOCK_OFFSET`); None when it holds fewer than :data:`MIN_OFFSET_SUPPORT`. Every true pair
    contributes one difference at the offset; other combinations scatter. The estimate is refined by the caller
    (median of the matched pairs' differences).
    """
    d = np.sort(np.asarray(dslr_times, np.float64))
    diffs = []
    for t in phone_times:  # only differences within the plausible range (memory stays O(matches))
        lo, hi = np.searchsorted(d, [t - MAX_CLOCK_OFFSET, t + MAX_CLOCK_OFFSET])
        diffs.append(d[lo:hi] - t)
    if not diffs:
        return None
    x = np.sort(np.concatenate(diffs))
    ends = np.searchsorted(x, x + window, side="right")  # x[i:ends[i]] lie in [x[i], x[i] + window]
    counts = ends - np.arange(len(x))
    best = int(np.argmax(counts))
    if counts[best] < MIN_OFFSET_SUPPORT:
        return None
    return float(np.median(x[best : ends[best]]))


def _unambiguous(
    tp: list[float | None], td: list[float | None], offset: float, max_dt: float
) -> tuple[list[tuple[int, int, float]], dict[int, str]]:
    """Matches of photos that are each other's only candidate within ``max_dt`` of the offset, and reasons.

    The reasons say why each other photo with a time stays unpaired (keys: phone index, then ``len(tp)`` + DSLR
    index).
    """
    order = sorted((t - offset, j) for j, t in enumerate(td) if t is not None)  # DSLR times on the phone's clock
    times = [t for t, _ in order]
    cand_p: dict[int, list[int]] = {}
    cand_d: dict[int, list[int]] = defaultdict(list)
    for i, a in enumerate(tp):
        if a is None:
            continue
        cand_p[i] = [j for _, j in order[bisect_left(times, a - max_dt) : bisect_right(times, a + max_dt)]]
        for j in cand_p[i]:
            cand_d[j].append(i)
    # connected groups of candidates: a group of one phone and one DSLR photo is a pair, larger ones are bursts
    parent = {("p", i): ("p", i) for i in cand_p} | {("d", j): ("d", j) for j in range(len(td)) if td[j] is not None}

    def root(k: tuple[str, int]) -> tuple[str, int]:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, js in cand_p.items():
        for j in js:
            parent[root(("p", i))] = root(("d", j))
    groups: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for k in parent:
        groups[root(k)].append(k)
    matches, reasons, n = [], {}, len(tp)
    for members in groups.values():
        ps = sorted(i for side, i in members if side == "p")
        ds = sorted(j for side, j in members if side == "d")
        if len(ps) == 1 and len(ds) == 1:
            matches.append((ps[0], ds[0], round(td[ds[0]] - tp[ps[0]], 6)))  # type: ignore[operator]
        elif not ps or not ds:
            other = "DSLR" if ps else "phone"
            for k in members:
                reasons[k[1] if k[0] == "p" else n + k[1]] = f"no {other} photo within {max_dt:g} s"
        else:
            why = (f"ambiguous (burst?): {len(ps)} phone and {len(ds)} DSLR photo(s) within {max_dt:g} s of each "
                   "other; not guessed (a smaller --max-dt or a pairs CSV decides)")  # fmt: skip
            for k in members:
                reasons[k[1] if k[0] == "p" else n + k[1]] = why
    return sorted(matches), reasons


def _relative(path: str, folder: str | None) -> str:
    """``path`` relative to ``folder`` when inside it, else absolute."""
    p = Path(path).resolve()
    if folder is not None:
        base = Path(folder).resolve()
        if p.is_relative_to(base):
            return os.path.relpath(p, base)
    return str(p)
