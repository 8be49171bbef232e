"""Where a dataset lives: a local folder, or a URL on object storage (``s3://``, ``gs://``...) through fsspec.

Every command works on a local folder (:class:`dpedkit.dataset.format.DatasetDir`); this module is the one place
that moves files between that folder and a URL, so no other module knows about object storage:

- **Writing** (``dpedkit build -o s3://bucket/ds``): each shard is written to a local temporary folder and uploaded
  when complete: its full test images, then the shard, then its record; ``dataset.json`` last. One object is one
  ``PUT``, atomic by name, so a reader never sees half an object, and a record's presence means its shard is
  there (a resumed build skips such shards). The build's own small files live in a local staging folder
  (:func:`staging_dir`) kept in step with the store.
- **One writer** across machines: a build holds the URL with a lock object (:func:`store_lock`), created only
  where none exists (a conditional ``PUT``), refreshed while it runs, removed at the end; a second build is refused
  naming the first, and the lock of a writer that died is taken over once it is stale (or at once on its host).
- **Reading** (``verify``, ``inspect``, ``train``, ``evaluate``, ``compare``, ``export-*`` on a URL):
  :func:`fetch_dataset` mirrors a finished dataset into the local cache, downloading only the objects that
  changed since the last fetch (by size and ETag or modification time); the commands then read the copy,
  checksums and all. :func:`fetch_folder` does the same for a folder of photos (``build s3://.../phone ...``).

Credentials and endpoints come only from fsspec's and the cloud SDK's usual configuration (for S3:
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_ENDPOINT_URL`` or ``~/.aws``; any fsspec option as
``FSSPEC_S3_<OPTION>``); they are never written into a dataset. The cache lies under ``$DPEDKIT_CACHE``
(default ``~/.cache/dpedkit``). Any fsspec protocol works; ``memory://`` is the in-process test double.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, NamedTuple

from dpedkit.dataset.format import MANIFEST, PAIRS, PLAN, inside_name
from dpedkit.dataset.shards import SHARD_SUFFIX
from dpedkit.errors import InputError, ShardError
from dpedkit.io import atomic_path, folder_lock, is_url, write_text

log = logging.getLogger(__name__)

FETCH_WAIT = 120.0  # seconds a fetch waits for another process that holds the local copy
LOCK = ".dpedkit-writer.json"  # at a dataset's URL while a build writes it (hidden: never part of the dataset)
LOCK_BEAT = 30.0  # seconds between a writer's refreshes of its lock object
LOCK_STALE = 600.0  # a lock object not refreshed for this long is a killed writer's: the next writer takes it over
STAMPS = ".dpedkit-remote.json"  # in a cached copy: the stamp of each object it holds
# what a dataset at a URL is made of (relative object names): a fetch copies these, an overwrite removes these
DATASET_PARTS = {
    "train": (f"train/shard-*{SHARD_SUFFIX}", "train/shard-*.json"),
    "test": (f"test/shard-*{SHARD_SUFFIX}", "test/shard-*.json"),
    "test_full": ("test_full/phone/*.png", "test_full/dslr/*.png"),
    "source": ("*_source/*",),  # an import's original files
}  # the parts a reader may fetch alone (evaluate: the test split); the manifest, pairs and plan come with each
DATASET_FILES = (MANIFEST, PAIRS, PLAN, *(pattern for part in DATASET_PARTS.values() for pattern in part))


def cache_root() -> Path:
    """Where copies of remote datasets and photo folders are kept: ``$DPEDKIT_CACHE`` or ``~/.cache/dpedkit``."""
    return Path(os.environ.get("DPEDKIT_CACHE") or Path.home() / ".cache" / "dpedkit").expanduser()


def _cache_dir(url: str, kind: str) -> Path:
    """``CACHE/kind/<scheme>/<bucket>/<key>`` for ``url`` (one folder per URL; no credentials in the name)."""
    scheme, rest = url.split("://", 1)
    parts = [p for p in rest.split("@")[-1].split("/") if p not in ("", ".", "..")]
    if not parts:
        raise InputError(url, "names no bucket or folder")
    return cache_root().joinpath(kind, scheme.lower(), *parts)


def staging_dir(url: str) -> Path:
    """The local folder where a build to ``url`` keeps its plan, records and manifest before uploading them."""
    return _cache_dir(url, "staging")


class Store:
    """A folder at a URL: list, download, upload and remove objects by name relative to the URL.

    Args:
        url: ``scheme://bucket/prefix``; the filesystem comes from ``fsspec.url_to_fs`` and the usual config.

    Raises:
        InputError: no fsspec filesystem for the scheme (e.g. ``s3fs`` not installed: ``pip install s3fs``).
    """

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise InputError(url, f"cannot open this storage ({exc}); s3:// needs s3fs (pip install s3fs)") from None
        self.root = root.rstrip("/")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _key(self, name: str) -> str:
        return f"{self.root}/{inside_name(name, self.url)}"

    def where(self, name: str) -> str:
        """The URL of object ``name`` (for messages)."""
        return f"{self.url}/{name}"

    def objects(self) -> dict[str, Listed]:
        """Every object under the URL, as listed: relative name -> :class:`Listed`."""
        self.fs.invalidate_cache(self.root)  # another process may have written since: list afresh
        try:
            found = self.fs.find(self.root, detail=True) if self.fs.exists(self.root) else {}
        except OSError as exc:
            raise InputError(self.url, f"cannot list it ({exc})") from None
        return {k[len(self.root) + 1 :]: _listed(v) for k, v in found.items() if k.startswith(self.root + "/")}

    def get(self, name: str, local: Path) -> None:
        """Download object ``name`` to ``local`` (a temporary file renamed into place)."""
        with atomic_path(local) as tmp:
            try:
                self.fs.get_file(self._key(name), str(tmp))
            except FileNotFoundError:
                raise ShardError(f"{self.where(name)}: object vanished while being fetched") from None

    def put(self, local: Path, name: str) -> None:
        """Upload ``local`` as object ``name`` (one object: readers see all of it or nothing)."""
        try:
            self.fs.put_file(str(local), self._key(name))
        except OSError as exc:
            raise OSError(exc.errno, f"upload failed ({exc})", self.where(name)) from None

    def remove(self, names: Iterable[str]) -> None:
        """Remove objects ``names`` (those that exist)."""
        keys = [self._key(n) for n in names]
        if keys:
            self.fs.rm(keys)
        self.fs.invalidate_cache(self.root)


class Listed(NamedTuple):
    """An object as its listing describes it.

    ``stamp``: size with ETag, else modification time (what tells two versions apart without reading them);
    ``mtime_ns``: the modification time, None where the storage reports none.
    """

    stamp: str
    mtime_ns: int | None


def _listed(info: dict[str, Any]) -> Listed:
    """The :class:`Listed` of one entry of ``fs.find(detail=True)`` (s3fs: ``LastModified``; others: ``mtime``)."""
    when = info.get("LastModified") or info.get("mtime") or info.get("created")
    tag = info.get("ETag") or info.get("etag") or when
    if isinstance(when, datetime):
        ns = int(when.timestamp() * 1e9)
    else:
        ns = int(float(when) * 1e9) if isinstance(when, int | float) else None
    return Listed(f"{info.get('size')}:{tag}", ns)


def dataset_objects(names: Iterable[str], patterns: Iterable[str] = DATASET_FILES) -> list[str]:
    """The names among ``names`` that belong to a dpedkit dataset (:data:`DATASET_FILES`), sorted."""
    patterns = tuple(patterns)
    return sorted(n for n in names if any(fnmatch(n, pattern) for pattern in patterns) and "/." not in f"/{n}")


# ------------------------------------------------------------------------------------------------ reading


def fetch_dataset(url: str, *, parts: Iterable[str] | None = None,
                  on_file: Callable[[str], None] | None = None) -> Path:  # fmt: skip
    """A local copy of the finished dataset at ``url`` (downloading only what changed); a local path is returned as is.

    Args:
        url: ``scheme://bucket/prefix`` of a dataset written by ``dpedkit build -o URL`` (or uploaded as a folder).
        parts: the parts needed (:data:`DATASET_PARTS`: ``train``, ``test``, ``test_full``, ``source``); default
            all. The manifest, pairs and plan always come. Other parts already in the copy stay while they are
            current; a stale one is removed (the copy never mixes two versions of a dataset).
        on_file: called with each object name as it is downloaded (for progress).

    Raises:
        ShardError: no ``dataset.json`` at the URL (not a finished dataset).
        InputError: the storage cannot be reached, or the cached copy is in use by a writer.
    """
    if not is_url(url):
        return Path(url)
    store, local = Store(url), _cache_dir(url, "datasets")
    objects = store.objects()
    if MANIFEST not in objects:
        raise ShardError(f"{store.url}: not a finished dpedkit dataset ({MANIFEST} is missing; build still running?)")
    present = {n: objects[n] for n in dataset_objects(objects)}
    wanted = dataset_objects(present, _patterns(parts))
    _mirror(store, {n: present[n] for n in wanted}, local, present=present, last=MANIFEST, on_file=on_file)
    return local


def _patterns(parts: Iterable[str] | None) -> tuple[str, ...]:
    if parts is None:
        return DATASET_FILES
    parts = list(parts)
    if unknown := [p for p in parts if p not in DATASET_PARTS]:
        raise ValueError(f"unknown dataset part(s) {unknown}; choose from {', '.join(DATASET_PARTS)}")
    return (MANIFEST, PAIRS, PLAN, *(pattern for part in parts for pattern in DATASET_PARTS[part]))


def local_dataset(path: str | Path, *, parts: Iterable[str] | None = None) -> Path:
    """The local folder of a dataset given as a folder (as is) or a URL (:func:`fetch_dataset` of ``parts``)."""
    return fetch_dataset(str(path), parts=parts) if is_url(path) else Path(path)


def fetch_folder(url: str, *, on_file: Callable[[str], None] | None = None) -> Path:
    """A local copy of a folder of files at ``url`` (its top level; only what changed is downloaded).

    Each copy keeps the object's modification time where the storage reports one, so a build's record of its
    photos (size and time) stays the same from one fetch to the next. A local path is returned as is.
    """
    if not is_url(url):
        return Path(url)
    store, local = Store(url), _cache_dir(url, "folders")
    objects = {n: s for n, s in store.objects().items() if "/" not in n and not n.startswith(".")}
    if not objects:
        raise InputError(url, "no files there (or the folder does not exist)")
    _mirror(store, objects, local, on_file=on_file)
    return local


def fetch_file(url: str) -> Path:
    """A local copy of the one file at ``url`` (downloaded again only when it changed); a local path is returned as is.

    Raises:
        InputError: no such file, or the storage cannot be reached.
    """
    if not is_url(url):
        return Path(url)
    parent, _, name = url.rstrip("/").rpartition("/")
    store = Store(parent)
    key = store._key(name)
    store.fs.invalidate_cache(key)
    try:
        info = store.fs.info(key)
    except FileNotFoundError:
        raise InputError(url, "no such file") from None
    except OSError as exc:
        raise InputError(url, f"cannot read it ({exc})") from None
    if info.get("type") == "directory":
        raise InputError(url, "a folder, not a file")
    local = _cache_dir(url, "files")
    _mirror(store, {name: _listed(info)}, local)
    return local / name


def _mirror(store: Store, objects: dict[str, Listed], local: Path, *, present: dict[str, Listed] | None = None,
            last: str | None = None, on_file: Callable[[str], None] | None = None,
            wait: float | None = None) -> None:  # fmt: skip
    """Make ``local`` hold ``objects`` of ``store``: download new or changed ones, delete vanished ones.

    ``present``: every object of the store that the copy may hold (default: ``objects``); a file of the copy that
    is one of them, current but not asked for, stays.

    A copy already up to date is used as it is, without a lock, so any number of commands (a training run, the
    ranks of a distributed one, an evaluation) read it side by side. Otherwise the copy is taken for writing;
    while another process fetches or reads it, this one waits up to ``wait`` seconds (default
    :data:`FETCH_WAIT`), then the lock's error names the holder. ``last`` (the manifest) is removed first when
    anything changes and downloaded last, so an interrupted fetch never leaves a copy that looks finished.
    """
    deadline = time.monotonic() + (FETCH_WAIT if wait is None else wait)
    present = objects if present is None else present
    while _changes(objects, present, local) is not None:
        try:
            with folder_lock(local, "fetch"):
                _download(store, objects, present, local, last=last, on_file=on_file)
            return
        except InputError:  # held: another fetch (which may bring it up to date) or a reader of the copy
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _changes(objects: dict[str, Listed], present: dict[str, Listed],
             local: Path) -> tuple[list[str], list[str], dict[str, str]] | None:  # fmt: skip
    """``(stale, gone, had)`` of the local copy against ``objects``, or None when it is up to date.

    ``gone``: files of the copy that are not among ``objects`` and not current ``present`` ones either.
    """
    try:
        had = json.loads((local / STAMPS).read_text())
    except (OSError, ValueError):
        had = {}
    stale = [n for n in objects if had.get(n) != objects[n].stamp or not (local / n).is_file()]
    gone = [n for n in had if n not in objects and (n not in present or had[n] != present[n].stamp)]
    return (stale, gone, had) if stale or gone else None


def _download(store: Store, objects: dict[str, Listed], present: dict[str, Listed], local: Path, *,
              last: str | None, on_file: Callable[[str], None] | None) -> None:  # fmt: skip
    """The changes of :func:`_changes`, made under the lock: vanished files deleted, new or changed ones fetched."""
    found = _changes(objects, present, local)
    if found is None:  # another process brought it up to date meanwhile
        return
    stale, gone, had = found
    log.info("fetching %d object(s) of %s into %s", len(stale), store.url, local)
    if last is not None:  # taken away first and fetched again last
        (local / last).unlink(missing_ok=True)
        stale = [*(n for n in stale if n != last), last]
    for name in gone:
        (local / name).unlink(missing_ok=True)
    keep = {n: s for n, s in had.items() if n not in gone and n not in stale}
    for name in stale:
        store.get(name, local / name)
        if (ns := objects[name].mtime_ns) is not None:  # the object's time: a build's photo stamps stay the same
            os.utime(local / name, ns=(ns, ns))
        keep[name] = objects[name].stamp
        write_text(local / STAMPS, json.dumps(keep, sort_keys=True))  # a killed fetch resumes from here
        if on_file is not None:
            on_file(name)


# ------------------------------------------------------------------------------------------------ writing


def pull_state(store: Store, staging: Path) -> None:
    """Make the staging folder hold the store's plan, manifest, pair records and shard records, nothing else.

    A shard record is taken only when its shard object exists too (the record is uploaded after the shard).
    """
    objects = store.objects()
    records = [n for n in objects if fnmatch(n, "*/shard-*.json") and n[: -len(".json")] + SHARD_SUFFIX in objects]
    wanted = {n for n in (MANIFEST, PAIRS, PLAN) if n in objects} | set(records)
    for path in [*staging.glob("*.json*"), *staging.glob("*/shard-*.json"), *staging.glob(f"*/shard-*{SHARD_SUFFIX}")]:
        rel = path.relative_to(staging).as_posix()
        if rel not in wanted:
            path.unlink()
    for name in sorted(wanted):
        store.get(name, staging / name)


def publish(store: Store, local: Path, names: Iterable[str]) -> None:
    """Upload the files ``names`` (relative to ``local``), in the order given."""
    for name in names:
        store.put(local / name, name)


def publish_shard(store: Store, local: Path, shard: str, record: str) -> None:
    """Upload one finished shard written under ``local``: its full test images, the shard, then its record."""
    images = sorted(p.relative_to(local).as_posix() for p in (local / "test_full").rglob("*.png"))
    publish(store, local, [*images, shard, record])


@contextmanager
def store_lock(store: Store, command: str, *, stale: float = LOCK_STALE, beat: float = LOCK_BEAT) -> Iterator[None]:
    """Hold the dataset at ``store`` for one writer, across machines, for the block.

    The lock is the object :data:`LOCK`, created only if absent (``If-None-Match: *`` on S3; stores without
    conditional writes get a check, then a write) and holding the writer's host, PID, command and start time. It is
    refreshed every ``beat`` seconds and removed at the end. A lock of a process that is gone (same host) or not
    refreshed for ``stale`` seconds (a killed writer elsewhere) is taken over with a warning.

    Raises:
        InputError: another writer holds the dataset (named), or the store cannot be written.
    """
    me = {"command": command, "host": socket.gethostname(), "pid": os.getpid(), "since": _now(), "beat": _now()}
    _take(store, me, stale)
    done = threading.Event()
    keeper = threading.Thread(target=_keep, args=(store, me, beat, done), name="dpedkit-store-lock", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()
        if _holder(store) == me:
            store.remove([LOCK])


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _holder(store: Store) -> dict[str, Any] | None:
    """The lock object's content (None: no lock; an unreadable one reads as ``{}``)."""
    try:
        data = store.fs.cat_file(store._key(LOCK))
    except FileNotFoundError:
        return None
    try:
        found = json.loads(data)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _take(store: Store, me: dict[str, Any], stale: float) -> None:
    """Create the lock object as ``me``; take over a dead writer's once; refuse a live one's."""
    for attempt in range(2):
        try:
            store.fs.pipe_file(store._key(LOCK), json.dumps(me).encode(), mode="create")
            store.fs.invalidate_cache(store._key(LOCK))
            if _holder(store) == me:  # a store that ignored the condition: the last writer wins, and knows it
                return
        except FileExistsError:
            pass
        except OSError as exc:
            raise InputError(store.url, f"cannot write there ({exc})") from None
        other = _holder(store) or {}
        why = _dead(other, stale)
        if why is None or attempt:
            raise InputError(store.url, f"is being written by dpedkit {other.get('command', '?')} on "
                                        f"{other.get('host', '?')} (pid {other.get('pid', '?')}, since "
                                        f"{other.get('since', '?')}); wait for it to finish, or stop it. A writer "
                                        f"that died lets go after {stale / 60:g} minutes")  # fmt: skip
        log.warning("%s: taking over the lock of dpedkit %s on %s (pid %s): %s", store.url, other.get("command"),
                    other.get("host"), other.get("pid"), why)  # fmt: skip
        store.remove([LOCK])


def _dead(holder: dict[str, Any], stale: float) -> str | None:
    """Why the writer of a lock object is gone (None: it may be alive)."""
    if not holder:
        return "its lock object is unreadable"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return "that process is gone"
        except PermissionError:
            pass  # alive, another user's
    try:
        age = (datetime.now().astimezone() - datetime.fromisoformat(str(holder.get("beat")))).total_seconds()
    except (TypeError, ValueError):
        return "its lock object has no time"
    return f"not refreshed for {age / 60:.0f} minutes" if age > stale else None


def _keep(store: Store, me: dict[str, Any], beat: float, done: threading.Event) -> None:
    """Refresh the lock object every ``beat`` seconds while it is ``me``'s (the writer's thread)."""
    while not done.wait(beat):
        try:
            if _holder(store) != me:
                log.error("%s: another writer took the lock over; this build's shards may be replaced", store.url)
                return
            me["beat"] = _now()
            store.fs.pipe_file(store._key(LOCK), json.dumps(me).encode())
        except OSError as exc:  # a network hiccup: try again at the next beat
            log.warning("%s: could not refresh the lock (%s)", store.url, exc)


def clear_store(store: Store) -> list[str]:
    """Remove the objects of a dpedkit dataset at the store (only those: other objects stay); returns them."""
    names = dataset_objects(store.objects())
    store.remove(names)
    return names
