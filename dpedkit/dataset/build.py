"""Build a DPED-style patch dataset: pair -> align -> patches -> HDF5 shards, in parallel, resumable.

Output folder ``OUT``:

- ``train/shard-NNNNN.h5``, ``test/shard-NNNNN.h5``: patch shards (schema in :mod:`dpedkit.dataset.shards`): the kept
  patch pairs and, in the ``candidates/`` group, every grid window of each ok pair (kept or not: shift, angle,
  NCC, texture, flags) for ``dpedkit inspect``; each with ``shard-NNNNN.json`` beside it: the records of its
  pairs, its row count and checksum (written after the shard).
- ``test_full/{phone,dslr}/NAME.png``: the full aligned crops of the test pairs, for full-image evaluation.
- ``pairs.jsonl``: one line per input pair, sorted by pair name: ``pair``, ``phone``, ``dslr``, ``status`` ("ok"
  or a failure word: ``unreadable``, ``no-partner``, ``no-patches``, ``error`` or an alignment failure such as
  ``too-few-matches``), ``reason``, ``split`` (null for a photo without partner), the alignment metrics
  (``H_phone_to_dslr``, ``crop``, ``matches``, ``inliers``, ``rmse_px``, ``scale``, ...), ``patches_total``
  (grid windows), ``patches_kept``, ``patches_at_radius``, ``ncc_median`` and ``shift_median_px``.
- ``dataset.json``: schema, resolved config, counts and the list of shards with rows and sha256; written last,
  so its presence means the build finished.
- ``build.json``: the plan (config and pairs) of a started build, so a rerun can check it resumes the same job.

Design (img2dataset's): the split is drawn per source pair by a seeded permutation of pair names; each split's
pairs, sorted by name, are cut into fixed groups of ``pairs_per_shard``; one group is one task, one shard,
written by exactly one worker to a temporary name and renamed into place. A rerun skips tasks whose shard and
record exist with a matching checksum, so an interrupted build (Ctrl-C, kill -9) finishes without redoing
work, and the result does not depend on the number of workers or the completion order.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from dpedkit.config import AlignConfig, BuildConfig, PairsConfig
from dpedkit.dataset.format import (
    MANIFEST,
    MANIFEST_SCHEMA,
    PAIRS,
    PLAN,
    SPLITS,
    Counts,
    DatasetDir,
    Manifest,
    ShardEntry,
    shard_name,
)
from dpedkit.dataset.parallel import Backend, check_options, peak_rss_mb, run_parallel
from dpedkit.dataset.shards import (
    BASELINE,
    CANDIDATE_COLUMNS,
    COLUMNS,
    IMAGES,
    SCHEMA_VERSION,
    HDF5Store,
    ShardSink,
    current_store,
    shard_writer,
    using_store,
)
from dpedkit.dataset.storage import (
    Store,
    clear_store,
    fetch_file,
    fetch_folder,
    publish,
    publish_shard,
    pull_state,
    staging_dir,
    store_lock,
)
from dpedkit.errors import ConfigError, InputError
from dpedkit.io import check_apart, check_file_name, is_url, owned_tempdir, write_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardResult:
    """What one task produced (passed to ``on_result`` as each shard finishes or is found done).

    ``seconds`` (wall), ``cpu_seconds`` (CPU time of the process that ran it, all its threads) and
    ``peak_rss_mb`` (that process's peak resident memory so far) are measurements, kept out of the
    deterministic dataset files.
    """

    shard: str
    split: str
    rows: int
    sha256: str
    pairs: list[dict[str, Any]]
    seconds: float
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    resumed: bool = False


@dataclass
class BuildSummary:
    """Counts of a build (``to_dict`` is the ``--json`` output).

    Attributes:
        out_dir: the dataset folder.
        pairs: input pairs (including photos without a partner).
        ok: pairs that gave at least one kept patch pair.
        by_reason: failed pairs counted by failure word.
        pairs_by_split: ``{"train": n, "test": n}`` source pairs (failed ones included).
        patches: kept patch pairs per split.
        patches_total: candidate windows examined (all splits).
        shards: shard files; ``shards_built`` of them in this run, the rest found finished (resume).
        already_finished: the dataset was complete and left alone (no ``overwrite``).
        seconds: wall time of this run.
        warnings: problems a user must know about although the build succeeded (a split without patches).
    """

    out_dir: str
    pairs: int = 0
    ok: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    pairs_by_split: dict[str, int] = field(default_factory=dict)
    patches: dict[str, int] = field(default_factory=dict)
    patches_total: int = 0
    shards: int = 0
    shards_built: int = 0
    already_finished: bool = False
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Pairs that failed (any reason)."""
        return self.pairs - self.ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with ``failed`` added."""
        return asdict(self) | {"failed": self.failed}


# ------------------------------------------------------------------------------------------------ entry point


def build_dataset(
    phone_dir: str | Path,
    dslr_dir: str | Path,
    out_dir: str | Path,
    *,
    config: BuildConfig = BuildConfig(),
    pairs_csv: str | Path | None = None,
    jobs: int = 1,
    backend: Backend = "loky",
    scheduler: str | None = None,
    overwrite: bool = False,
    allow_swapped: bool = False,
    on_result: Callable[[ShardResult], None] | None = None,
) -> BuildSummary:
    """Build (or finish building) a patch dataset from a folder of phone photos and one of DSLR photos.

    Args:
        phone_dir: folder of phone photos.
        dslr_dir: folder of DSLR photos (paired by file name unless ``pairs_csv`` is given).
        out_dir: dataset folder (created; see the module docstring for its layout).
        config: a :class:`BuildConfig`.
        pairs_csv: explicit pairing (see :func:`dpedkit.dataset.pairs.read_pairs_csv`), paths relative to the folders.
        jobs: worker processes (1: a plain loop here; -1: all cores / all cluster workers).
        backend: ``"loky"``, ``"dask"`` (a ``distributed`` cluster at ``scheduler``) or ``"ray"``.
        scheduler: dask scheduler address (or ray address); without it dask starts a local cluster. Remote
            workers write the shards themselves: ``out_dir`` must be on storage they and this process share.
        overwrite: delete an existing dataset (finished or not) in ``out_dir`` first.
        allow_swapped: build even when most pairs look like PHONE and DSLR were given the wrong way round
            (:func:`check_swapped`, run before a new build writes anything).
        on_result: called in this process with a :class:`ShardResult` for each shard (resumed ones first).

    Returns:
        A :class:`BuildSummary`. A finished dataset is left alone (``already_finished``) unless ``overwrite``.

    Raises:
        ConfigError: bad options, ``out_dir`` holds an unfinished build of other pairs or settings, or the
            folders look swapped.
        InputError: a folder or the pairs CSV is missing or unreadable, a folder holds no photos, or no photo
            has a partner.
    """
    t0 = time.perf_counter()
    check_options(jobs, backend, scheduler)
    url = str(out_dir) if is_url(out_dir) else None
    store = None if url is None else Store(url)
    given = {str(d): str(fetch_folder(str(d))) for d in (phone_dir, dslr_dir)}  # a URL's local copy; a folder as is
    fetched = {local: url for url, local in given.items() if is_url(url)}  # local copy -> URL
    phone_dir, dslr_dir = given[str(phone_dir)], given[str(dslr_dir)]
    if store is None:
        check_apart(out_dir, [phone_dir, dslr_dir, pairs_csv], what="dataset folder")
    # a dataset at a URL: its plan, records and manifest are kept in a local staging folder in step with the store
    ds = DatasetDir(out_dir if store is None else staging_dir(url))
    with ds.lock("build"), store_lock(store, "build") if store is not None else nullcontext():
        if store is not None:  # one writer on this machine (the staging folder's lock), and across machines
            pull_state(store, ds.root)
        finished = ds.is_dataset(ds.root) and not overwrite
        # checked before anything is written
        records, unpaired = _pair_records(phone_dir, dslr_dir, pairs_csv, config.pairs, report=not finished)
        plan = make_plan(records, config, unpaired)
        if finished:
            if ds.plan_text() is not None:
                _check_plan(ds, plan, "is a finished dataset", "to rebuild it, or choose another output folder")
            log.info("%s is a finished dataset: left alone (--overwrite rebuilds it)", out_dir)
            summary = summarize(out_dir, ds.manifest())
            summary.already_finished = True
            return summary
        if not allow_swapped and (overwrite or ds.plan_text() is None):  # a new build: nothing written yet
            check_swapped(records, config.align, phone_dir, dslr_dir)
        if overwrite:
            ds.clear()
            if store is not None:
                clear_store(store)
        target = _Target(ds, store, fetched)
        return _build(target, plan, len(records), jobs, backend, scheduler, on_result, t0)


@dataclass(frozen=True)
class _Target:
    """Where a build writes: the local dataset folder, or (``store``) the staging folder of a dataset at a URL.

    ``fetched`` maps the local copies of photo folders read from URLs to their URLs (a remote worker fetches a
    photo it does not have).
    """

    ds: DatasetDir
    store: Store | None = None
    fetched: Mapping[str, str] = field(default_factory=dict)

    @property
    def out(self) -> str:
        """The dataset as workers and messages name it: the URL, or the absolute folder (for a cluster's workers)."""
        return self.store.url if self.store is not None else os.path.abspath(self.ds.root)

    def publish(self, *names: str) -> None:
        """Upload the staging folder's files ``names`` to the store (nothing for a local dataset)."""
        if self.store is not None:
            publish(self.store, self.ds.root, names)


def _build(target: _Target, plan: dict[str, Any], n_pairs: int, jobs: int, backend: Backend, scheduler: str | None,
           on_result: Callable[[ShardResult], None] | None, t0: float) -> BuildSummary:  # fmt: skip
    """Run (or resume) the planned build into the locked ``target``."""
    ds = target.ds
    if _start(ds, plan):
        target.publish(PLAN)
    remote = ({"store": target.store.url} if target.store is not None else {}) | (
        {"fetched": dict(target.fetched)} if target.fetched else {}
    )
    store = current_store()  # a backend chosen with using_store goes to the workers with their tasks (pickled)
    if type(store) is not HDF5Store:
        remote["shard_store"] = store
    tasks = [dict(t, out=target.out, config=plan["config"], **remote) for t in plan["tasks"]]
    done = {t["shard"]: r for t in tasks if (r := _finished(ds, t, stored=target.store is not None)) is not None}
    log.info("%d pairs in %d shards; %d shards already done", n_pairs, len(tasks), len(done))
    for r in done.values():
        if on_result is not None:
            on_result(r)
    todo = [t for t in tasks if t["shard"] not in done]
    try:
        results = run_parallel(
            build_shard,
            todo,
            n_jobs=jobs,
            backend=backend,
            scheduler=scheduler,
            on_result=None if on_result is None else lambda _t, r: on_result(ShardResult(**r)),
            on_crash=crashed_shard,
        )
    finally:  # the workers are done (or were stopped): a killed one's temporary file goes
        if backend == "loky":
            ds.remove_temp_files()
    by_shard = done | {r["shard"]: ShardResult(**r) for r in results}
    manifest = _finish(ds, plan, [by_shard[t["shard"]] for t in tasks], target.fetched)
    target.publish(PAIRS, MANIFEST)  # the manifest last: its presence at the URL means the dataset is finished
    summary = summarize(target.out, manifest)
    summary.shards_built = len(todo)
    summary.seconds = time.perf_counter() - t0
    for warning in summary.warnings:
        log.warning("%s", warning)
    log.info("built %s: %d/%d pairs ok, %s patches", target.out, summary.ok, summary.pairs, summary.patches)
    return summary


# ------------------------------------------------------------------------------------------------ the plan


def _pair_records(
    phone_dir: str | Path,
    dslr_dir: str | Path,
    pairs_csv: str | Path | None,
    config: PairsConfig,
    *,
    report: bool = False,
) -> tuple[list[list[Any]], dict[str, str]]:
    """``[name, phone_path | None, dslr_path | None]`` for every input pair, sorted by name, and the reasons.

    The reasons say why each unpaired photo (by record name) has no partner, where the pairing knows.

    ``report``: log what the pairing decided (files skipped or set aside, the clock offset), and refuse input
    without a single pair.
    """
    from dpedkit.dataset.pairs import pair_folders

    reasons: dict[str, str] = {}
    if pairs_csv is not None:
        found = _read_pairs(pairs_csv, phone_dir, dslr_dir)
        if report and not found:
            raise InputError(pairs_csv, "the pairs CSV lists no pair (only its header, or nothing)")
    else:
        found = pair_folders(phone_dir, dslr_dir, config)
        reasons = found.reasons
        if report:
            _report_pairing(found)
        if report and not found.pairs:
            raise InputError(
                phone_dir, f"no phone photo here has a DSLR partner in {dslr_dir} by {config.by} (see `dpedkit pairs`)"
            )
    rows, unpaired = [], {}
    for r in found:
        name = check_file_name(r.name, what="pair name", where=pairs_csv)
        rows.append([name, *(None if p is None else str(Path(p).resolve()) for p in (r.phone, r.dslr))])
        if not r.complete and reasons.get(r.phone or r.dslr or ""):
            unpaired[name] = reasons[r.phone or r.dslr or ""]
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        raise ConfigError(f"pair names must be unique; repeated: {dup[:5]}")
    return sorted(rows), unpaired


def _read_pairs(pairs_csv: str | Path, phone_dir: str | Path, dslr_dir: str | Path) -> list[Any]:
    """:func:`~dpedkit.dataset.pairs.read_pairs_csv`; a CSV at a URL is fetched first (errors name the URL)."""
    from dpedkit.dataset.pairs import read_pairs_csv

    if not is_url(pairs_csv):
        return read_pairs_csv(pairs_csv, phone_dir=phone_dir, dslr_dir=dslr_dir)
    try:
        return read_pairs_csv(fetch_file(str(pairs_csv)), phone_dir=phone_dir, dslr_dir=dslr_dir)
    except InputError as exc:
        raise InputError(pairs_csv, exc.cause) from None


def _report_pairing(found: Any) -> None:
    """Log what a folder pairing decided: files skipped (a warning), twins set aside and the clock offset."""
    from dpedkit.dataset.pairs import set_aside_message, skipped_message, time_message

    if found.skipped:
        log.warning("%s", skipped_message(found.skipped))
    if found.set_aside:
        log.info("%s", set_aside_message(found))
    if found.clock_offset is not None:
        (log.warning if found.clock_hint is not None else log.info)("%s", time_message(found))


SWAP_SAMPLE = 3  # pairs aligned before a new build to tell whether PHONE and DSLR were given the wrong way round


def check_swapped(
    records: list[list[Any]], config: AlignConfig, phone_dir: str | Path, dslr_dir: str | Path, *,
    sample: int = SWAP_SAMPLE,
) -> None:  # fmt: skip
    """Raise ConfigError when most of ``sample`` pairs (spread over the sorted records) look swapped.

    A pair looks swapped when its DSLR photo has fewer pixels per scene unit than the phone photo and looks
    softer on the phone's grid (:attr:`dpedkit.align.AlignResult.looks_swapped`). Only pairs that align count;
    the check stops as soon as the majority cannot be swapped (usually after two pairs).
    """
    from dpedkit.align import align_files

    complete = [r for r in records if r[1] is not None and r[2] is not None]
    if not complete:
        return
    picks = sorted({round(k * (len(complete) - 1) / max(sample - 1, 1)) for k in range(sample)})
    swapped, seen = [], 0
    for k in picks:
        try:
            res = align_files(complete[k][1], complete[k][2], config=config)
        except InputError:
            continue  # reported when the pair is processed
        if not res.ok:
            continue
        seen += 1
        if res.looks_swapped:
            swapped.append(res)
        if seen - len(swapped) > len(picks) // 2:
            return
    if swapped and len(swapped) > seen / 2:
        scale = float(np.median([r.scale for r in swapped]))
        sharp = float(np.median([r.sharpness_ratio for r in swapped]))
        raise ConfigError(
            f"PHONE and DSLR look swapped: in {len(swapped)} of {seen} sampled pairs the photos of {dslr_dir} have "
            f"fewer pixels per scene unit ({scale:.2f} of the other camera's) and look softer (sharpness "
            f"{sharp:.2f} of theirs) than those of {phone_dir}: {dslr_dir} looks like the phone, {phone_dir} like "
            "the DSLR. Give the phone folder first; --allow-swapped builds as given"
        )


def count_pairs(
    phone_dir: str | Path, dslr_dir: str | Path, pairs_csv: str | Path | None = None, config: BuildConfig | None = None
) -> int:
    """Number of complete pairs a build of these folders would process (for a progress bar's total).

    A folder at a URL is fetched into the local cache first (:func:`dpedkit.dataset.storage.fetch_folder`).
    """
    pairs = (config or BuildConfig()).pairs
    phone_dir, dslr_dir = fetch_folder(str(phone_dir)), fetch_folder(str(dslr_dir))
    return sum(r[1] is not None and r[2] is not None for r in _pair_records(phone_dir, dslr_dir, pairs_csv, pairs)[0])


def split_pairs(names: list[str], config: BuildConfig) -> dict[str, str]:
    """Assign each pair name to ``"train"`` or ``"test"``: a seeded permutation of the sorted names."""
    names = sorted(names)
    n = len(names)
    if config.test_images is not None:
        n_test = min(config.test_images, n)
    else:
        n_test = int(round(config.test_fraction * n))
        if config.test_fraction > 0 and n >= 2:
            n_test = max(n_test, 1)
    order = np.random.default_rng(config.seed).permutation(n)
    test = {names[i] for i in order[:n_test]}
    return {name: "test" if name in test else "train" for name in names}


def make_plan(
    records: list[list[Any]], config: BuildConfig, unpaired: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The deterministic job: complete pairs split and grouped into shard tasks; incomplete ones listed.

    ``unpaired`` (record name -> reason) says why a photo has no partner, where the pairing knows.
    """
    complete = [r for r in records if r[1] is not None and r[2] is not None]
    split = split_pairs([r[0] for r in complete], config)
    tasks = []
    for s in SPLITS:
        group = [r for r in complete if split[r[0]] == s]
        k = config.pairs_per_shard
        for i in range(math.ceil(len(group) / k)):
            tasks.append({"split": s, "shard": shard_name(s, i), "pairs": group[i * k : (i + 1) * k]})
    return {
        "schema": MANIFEST_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "pairs": records,
        "tasks": tasks,
        "inputs": {r[0]: [*_stamp(r[1]), *_stamp(r[2])] for r in complete},
    } | ({"unpaired": dict(sorted(unpaired.items()))} if unpaired else {})


def _stamp(path: str) -> list[int]:
    """``[size, mtime_ns]`` of a photo: a rerun notices a photo replaced under the same name."""
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]  # unreadable: the pair fails as "unreadable" when processed
    return [st.st_size, st.st_mtime_ns]


def _check_plan(ds: DatasetDir, plan: dict[str, Any], state: str, remedy: str) -> None:
    """Raise ConfigError, saying what differs, unless the dataset's stored plan is ``plan``."""
    if not ds.plan_matches(plan):
        raise ConfigError(
            f"{ds.root} {state} of other pairs or settings ({ds.plan_change(plan)}); pass --overwrite {remedy}"
        )


def _start(ds: DatasetDir, plan: dict[str, Any]) -> bool:
    """Write the plan (returns True), or check that an unfinished build in ``ds`` has the same one (False)."""
    if ds.plan_text() is not None:
        _check_plan(ds, plan, "holds an unfinished build", "to start again; the same command resumes it")
        ds.remove_temp_files()  # of a killed worker
        return False
    ds.write_plan(plan)
    return True


def _finished(ds: DatasetDir, task: dict[str, Any], *, stored: bool = False) -> ShardResult | None:
    """The result of a task done by an earlier run (shard + record present, checksum valid), else None.

    ``stored``: the shards are at a URL and ``ds`` is the staging folder, which holds a record only when the store
    holds both it and its shard (:func:`dpedkit.dataset.storage.pull_state`); the upload was checked then.
    """
    r = ds.read_record(task["shard"]) if stored else ds.shard_record(task["shard"])
    if r is None or [p["pair"] for p in r.get("pairs", [])] != [p[0] for p in task["pairs"]]:
        if ds.record_path(task["shard"]).is_file():
            log.warning("%s: record or checksum does not match, rebuilding it", ds.path(task["shard"]))
        return None
    keep = {f.name for f in fields(ShardResult)}
    return ShardResult(**{k: v for k, v in r.items() if k in keep}, resumed=True)


# ------------------------------------------------------------------------------------------------ worker side


def build_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: process one task's pairs into one shard (temp file + rename), then write its record file.

    Args:
        task: ``{"split", "shard", "pairs": [[name, phone, dslr], ...], "out", "config"}`` (plain data), and
            ``"shard_store"``: the driver's :class:`~dpedkit.dataset.shards.ShardStore` when it is not HDF5's.

    Returns:
        A :class:`ShardResult` as a dict (small: no arrays).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    config = BuildConfig.from_dict(task["config"])
    # one core per worker (jobs is the parallelism knob): decode the two photos one after the other
    config = replace(config, align=replace(config.align, threads=1))
    with using_store(task["shard_store"]) if "shard_store" in task else nullcontext(), _output(task) as ds:
        return _write_shard(ds, task, config, t0, c0)


def _write_shard(ds: DatasetDir, task: dict[str, Any], config: BuildConfig, t0: float, c0: float) -> dict[str, Any]:
    """:func:`build_shard` into the folder ``ds``."""
    records, timings = [], {}
    with _shard_writer(ds, task, config.patch.size) as writer:
        for name, phone, dslr in task["pairs"]:
            phone, dslr = (_photo(p, task, ds.root) for p in (phone, dslr))
            times = timings[name] = {}
            record, patches = process_pair(
                name, phone, dslr, config=config, split=task["split"], out_dir=ds.root, timings=times
            )
            t1 = time.perf_counter()
            if patches is not None:  # every window's record too, so `dpedkit inspect` needs no re-refinement
                arrays = {k: getattr(patches, k) for k in (*IMAGES, *COLUMNS) if k != "pair"}
                if patches.baseline is not None:
                    arrays[BASELINE] = patches.baseline
                writer.append(name, candidates=_candidates(patches), **arrays)
            records.append(record)
            times["write"] = time.perf_counter() - t1
            timings[name] = {k: round(v, 4) for k, v in times.items()}
        info = writer.close()
    result = {
        "shard": task["shard"],
        "split": task["split"],
        "rows": info.rows,
        "sha256": info.sha256,
        "pairs": records,
        "seconds": round(time.perf_counter() - t0, 4),
        "cpu_seconds": round(time.process_time() - c0, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    ds.write_shard_record(task["shard"], result | {"timings": timings})
    return result


@contextmanager
def _output(task: dict[str, Any]) -> Iterator[DatasetDir]:
    """The folder a task writes its shard, record and full test images into.

    A local dataset: the dataset folder itself. A dataset at a URL (``task["store"]``): a temporary folder of this
    worker, uploaded when the shard is complete (images, shard, then the record that marks it done) and removed.
    """
    if not task.get("store"):
        yield DatasetDir(task["out"])
        return
    with owned_tempdir("dpedkit-shard-") as tmp:  # a killed worker's folder is swept by a later one
        ds = DatasetDir(tmp)
        yield ds
        record = ds.record_path(task["shard"]).relative_to(tmp).as_posix()
        publish_shard(Store(task["store"]), tmp, task["shard"], record)


def _photo(path: str, task: dict[str, Any], scratch: Path) -> str:
    """``path``, or, on a worker without the build machine's copy of a photo folder read from a URL, a fresh copy."""
    folder, name = os.path.split(path)
    url = task.get("fetched", {}).get(folder)
    if url is None or os.path.exists(path):
        return path
    local = scratch / ".inputs" / name
    Store(url).get(name, local)
    return str(local)


def _shard_writer(ds: DatasetDir, task: dict[str, Any], patch_size: int) -> ShardSink:
    attrs = {"config": task["config"], "split": task["split"], "pairs": [p[0] for p in task["pairs"]]}
    dtype = np.uint16 if task["config"].get("bit_depth", 8) == 16 else np.uint8
    # raw2rgb: the phone side is the 1-channel uint16 Bayer mosaic, with LibRaw's processing as the baseline
    raw = task["config"].get("mode", "rgb") == "raw2rgb"
    kinds = {"phone_dtype": np.uint16, "phone_channels": 1, "baseline": True} if raw else {}
    return shard_writer(ds.path(task["shard"]), patch_size=patch_size, attrs=attrs, candidates=True, dtype=dtype,
                        **kinds)  # fmt: skip


def crashed_shard(task: dict[str, Any], reason: str) -> dict[str, Any]:
    """The result of a task whose worker process died twice: an empty shard, every pair recorded as ``error``.

    Written by the build process itself, so the dataset stays complete and the other pairs go on.
    """
    with _output(task) as ds:
        with _shard_writer(ds, task, BuildConfig.from_dict(task["config"]).patch.size) as writer:
            info = writer.close()
        records = [_record(name, phone, dslr, task["split"]) | {"status": "error", "reason": reason}
                   for name, phone, dslr in task["pairs"]]  # fmt: skip
        result = {"shard": task["shard"], "split": task["split"], "rows": info.rows, "sha256": info.sha256,
                  "pairs": records, "seconds": 0.0}  # fmt: skip
        ds.write_shard_record(task["shard"], result | {"timings": {}})
    return result


def _record(name: str, phone: str | None, dslr: str | None, split: str | None) -> dict[str, Any]:
    """A ``pairs.jsonl`` record before the pair is processed (status ok, nothing kept)."""
    return {"pair": name, "phone": phone, "dslr": dslr, "split": split, "status": "ok", "reason": "",
            "patches_total": 0, "patches_kept": 0}  # fmt: skip


def process_pair(
    name: str,
    phone: str,
    dslr: str,
    *,
    config: BuildConfig,
    split: str,
    out_dir: Path | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Align one pair and cut its patches; failures are returned in the record, never raised.

    ``timings``, when given, receives wall seconds per stage (``decode``, ``align`` without decode,
    ``patches``, ``test_full``) and per step of the alignment (``align_features``, ``align_match``...) and of the
    patches (``patches_search``, ``patches_refine``, ``patches_resample``...: :func:`extract_patches`).

    Returns:
        ``(record, patches)``: the ``pairs.jsonl`` record and a :class:`dpedkit.dataset.patches.PatchSet` (None when
        the pair failed before patch extraction).
    """
    import cv2

    from dpedkit.align import align_files
    from dpedkit.dataset.patches import extract_patches

    cv2.setRNGSeed(config.seed)  # results must not depend on what this worker processed before
    times = timings if timings is not None else {}
    record = _record(name, phone, dslr, split)
    try:
        result = align_files(phone, dslr, config=config.align, keep_16bit=config.bit_depth == 16)
        times["decode"] = result.timings.get("decode", 0.0)
        times["align"] = result.timings.get("total", 0.0) - times["decode"]
        times |= {f"align_{k}": v for k, v in result.timings.items() if k not in ("decode", "total")}
        record |= _align_metrics(result)
        if not result.ok:
            return record | {"status": result.status, "reason": result.reason}, None
        t0 = time.perf_counter()
        if config.mode == "raw2rgb":
            failure, patches = raw_patches(phone, result, config, record)
            if failure:
                return record | failure, None
        else:
            patches = extract_patches(result.phone, result.dslr, config=config.patch)
        times["patches"] = time.perf_counter() - t0
        times |= {f"patches_{k}": v for k, v in patches.timings.items()}
    except InputError as exc:
        return record | {"status": "unreadable", "reason": str(exc)}, None
    except Exception as exc:
        if config.on_error == "raise":
            raise
        log.exception("pair %s failed unexpectedly", name)
        return record | {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}, None
    record |= _patch_metrics(patches)
    if not len(patches):
        record |= {"status": "no-patches", "reason": f"no window reached NCC >= {config.patch.ncc_min}"}
    if split == "test" and config.keep_test_full and out_dir is not None and record["status"] == "ok":
        t0 = time.perf_counter()
        for side, img in (("phone", result.phone), ("dslr", result.dslr)):
            write_image(DatasetDir(out_dir).test_full_path(side, name), img)
        times["test_full"] = time.perf_counter() - t0
    log.debug("pair %s: %s, %d patches", name, record["status"], record["patches_kept"])
    return record, patches


def raw_patches(phone: str, result: Any, config: BuildConfig, record: dict[str, Any]) -> tuple[dict | None, Any]:
    """The ``raw2rgb`` patches of an aligned pair: ``(failure or None, PatchSet)``.

    The crop moves to even sensor coordinates (every patch then starts on the file's Bayer phase); the DSLR window
    of each grid window is refined and resampled against the demosaiced proxy (``patch.moving = "dslr"``), and the
    phone patch is the RAW mosaic cut at the window, untouched. A file stored turned (orientation other than 1)
    is turned upright as LibRaw turns the proxy, a permutation of its pixels, and cut on the quads that read the
    file's CFA. ``record`` gets the moved ``crop`` (upright coordinates).
    """
    from dpedkit.dataset.patches import extract_patches
    from dpedkit.io.camera import is_raw, read_mosaic, upright_mosaic

    if not is_raw(phone):
        return {"status": "not-raw", "reason": "mode raw2rgb needs the phone's RAW file (DNG, ...)"}, None
    mosaic, meta = read_mosaic(phone)
    mosaic, (px, py) = upright_mosaic(mosaic, meta["cfa"], meta["orientation"])  # as LibRaw turned the proxy
    x0, y0, x1, y1 = result.crop
    dx, dy = (x0 - px) % 2, (y0 - py) % 2  # to the file's Bayer phase (even sensor coordinates when upright)
    proxy, dslr = result.phone[dy:, dx:], result.dslr[dy:, dx:]
    x0, y0 = x0 + dx, y0 + dy
    if mosaic.shape != (result.phone_size[1], result.phone_size[0]):
        return {"status": "unsupported", "reason": f"mosaic {mosaic.shape[::-1]} and LibRaw's image "
                f"{tuple(result.phone_size)} differ in size"}, None  # fmt: skip
    patches = extract_patches(proxy, dslr, config=config.patch)  # moving "dslr": BuildConfig sets it for raw2rgb
    p = config.patch.size
    raw = np.empty((len(patches), p, p, 1), np.uint16)
    baseline = np.empty((len(patches), p, p, 3), proxy.dtype)
    for k, (x, y) in enumerate(patches.xy):
        raw[k, :, :, 0] = mosaic[y0 + y : y0 + y + p, x0 + x : x0 + x + p]
        baseline[k] = proxy[y : y + p, x : x + p]  # LibRaw's processing of the same window
    record["crop"] = [int(x0), int(y0), int(x1), int(y1)]
    return None, replace(patches, phone=raw, baseline=baseline)


def _align_metrics(result: Any) -> dict[str, Any]:
    """Alignment metrics of an AlignResult for pairs.jsonl (timings dropped: they differ from run to run)."""
    drop = ("status", "reason", "timings", "ok", "config")  # the build's config is in dataset.json
    metrics = {k: v for k, v in result.to_json().items() if k not in drop}
    if result.H_phone_to_dslr is not None:
        metrics["H_phone_to_dslr"] = np.asarray(result.H_phone_to_dslr, float).round(12).tolist()
    if result.crop is not None:
        metrics["crop"] = [int(v) for v in result.crop]
    return metrics


def _candidates(patches: Any) -> dict[str, np.ndarray]:
    """The shard's candidate columns of a PatchSet (flags an older PatchSet lacks are stored as False)."""
    cand = dict(patches.candidates)
    m = len(cand["kept"])
    for name in ("at_radius", "outside"):
        cand.setdefault(name, np.zeros(m, bool))
    return {k: cand[k] for k in CANDIDATE_COLUMNS if k not in ("pair", "row")}


def _patch_metrics(patches: Any) -> dict[str, Any]:
    cand = patches.candidates
    out = {"patches_total": int(len(cand["kept"])), "patches_kept": len(patches)}
    if "at_radius" in cand:  # best shift on the search border: the true one may lie beyond the radius
        out["patches_at_radius"] = int(np.count_nonzero(cand["at_radius"]))
    if len(patches):
        out["ncc_median"] = round(float(np.median(patches.ncc)), 6)
        out["shift_median_px"] = round(float(np.median(np.hypot(*patches.shift.T))), 6)
    return out


# ------------------------------------------------------------------------------------------------ the end


def _finish(ds: DatasetDir, plan: dict[str, Any], results: list[ShardResult],
            fetched: Mapping[str, str] | None = None) -> Manifest:  # fmt: skip
    """Write pairs.jsonl and then dataset.json (the finished mark); returns the manifest.

    ``fetched`` (local copy -> URL of photo folders read from URLs): the records name the photos by URL.
    """
    records = [p for r in results for p in r.pairs]
    why = plan.get("unpaired", {})
    for name, phone, dslr in plan["pairs"]:
        if phone is None or dslr is None:
            reason = why.get(name) or f"no {'phone' if phone is None else 'DSLR'} photo to pair it with"
            records.append(_record(name, phone, dslr, None) | {"status": "no-partner", "reason": reason})
    if fetched:
        records = [r | {k: _as_url(r.get(k), fetched) for k in ("phone", "dslr")} for r in records]
    ds.write_pairs(records)
    shards = tuple(ShardEntry(r.split, r.shard, r.rows, r.sha256) for r in results)
    manifest = Manifest(config=plan["config"], counts=Counts.from_records(records), shards=shards)
    ds.write_manifest(manifest)
    return manifest


def _as_url(path: str | None, fetched: Mapping[str, str]) -> str | None:
    """``path`` of a photo in the local copy of a folder read from a URL as that URL's object; others as they are."""
    if path is None:
        return None
    folder, name = os.path.split(path)
    return f"{fetched[folder].rstrip('/')}/{name}" if folder in fetched else path


def summarize(out: Path, manifest: Manifest) -> BuildSummary:
    """A :class:`BuildSummary` from a dataset manifest."""
    c = manifest.counts
    return BuildSummary(
        out_dir=str(out),
        pairs=c.pairs,
        ok=c.ok,
        by_reason=c.by_reason,
        pairs_by_split=c.pairs_by_split,
        patches=c.patches,
        patches_total=c.patches_total,
        shards=len(manifest.shards),
        warnings=split_warnings(c),
    )


def split_warnings(counts: Counts) -> list[str]:
    """Warnings for a split that ended up without patches although the build as a whole kept some.

    The split is planned before any pair is processed (so it is deterministic and resumable): when every pair
    drawn for a split fails, that split is empty.
    """
    if not sum(counts.patches.values()):
        return []
    out = []
    for split in SPLITS:
        n = counts.pairs_by_split.get(split, 0)
        if n and not counts.patches.get(split, 0):
            out.append(
                f"the {split} split has no patches: its {n} pair(s) all failed (see pairs.jsonl); rebuild with "
                "another --seed, --test-images or --pairs to draw other pairs"
            )
        elif split == "train" and not n:
            out.append("the train split has no pairs: --test-images/--test-fraction took every pair")
    return out
