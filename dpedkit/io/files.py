"""Files every stage writes: atomic replacement, one file-mode policy, strict JSON and JSON lines.

Policy: a file dpedkit writes appears complete or not at all (written to a temporary name beside it, then
renamed into place) and gets the permissions ``open()`` would have given it (``0666`` minus the umask), so a
dataset or a model is as shareable as any other file the user makes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import resource
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask: read from ``/proc`` where it is shown, else set and restored once (then cached)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """``0666`` minus the process umask: the mode ``open()`` gives a new file (the mode of every file written)."""
    return 0o666 & ~_umask()


class AtomicFile:
    """A temporary file beside ``path`` that becomes ``path`` on :meth:`commit` (atomic on one file system).

    The temporary name is hidden (``.NAME.XXXX.tmp.SUFFIX``; a build sweeps such leftovers of killed workers) and
    keeps the suffix, so format-sniffing writers still work. :meth:`discard` removes it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def __repr__(self) -> str:
        return f"AtomicFile({str(self.path)!r})"

    def commit(self) -> None:
        """Give the temporary file the usual permissions (mkstemp makes it 0600) and rename it onto ``path``."""
        os.chmod(self.tmp, file_mode())
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Remove the temporary file (nothing appears at ``path``)."""
        self.tmp.unlink(missing_ok=True)


def check_room(path: str | Path, nbytes: int, *, name: str | Path | None = None) -> None:
    """Refuse to grow ``path`` by ``nbytes`` when the disk or the process's file-size limit has no room for it.

    Writers whose failures mid-write are hard to undo (HDF5) call this first, so that a full disk is an
    ``OSError`` before anything is half written.

    Args:
        path: the file about to grow (it need not exist).
        nbytes: how many bytes it is about to grow by.
        name: the path the error names (default ``path``; e.g. the final name of a temporary file).

    Raises:
        OSError: ``ENOSPC`` (the file system of ``path`` has less than ``nbytes`` free for this user) or ``EFBIG``
            (the file would pass the process's ``RLIMIT_FSIZE``).
    """
    path = Path(path)
    shown = str(name if name is not None else path)
    st = os.statvfs(path.parent)
    if nbytes > st.f_bavail * st.f_frsize:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), shown)
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    size = path.stat().st_size if path.exists() else 0
    if soft != resource.RLIM_INFINITY and size + nbytes > soft:
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), shown)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on an exception removed.

    Raises:
        OSError: writing failed (disk full, permission denied...); it names ``path`` when the error named no file.
    """
    f = AtomicFile(path)
    try:
        yield f.tmp
        f.commit()
    except OSError as exc:
        if exc.filename is None or exc.filename == str(f.tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), str(f.path)) from exc
        raise
    finally:
        f.discard()


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_safe(obj: Any, *, finite: bool = True, as_text: bool = False) -> Any:
    """``obj`` ready for JSON: the one JSON-ready walker of the package.

    Mappings, lists, tuples and numpy arrays are walked (the last two become lists); numpy scalars become Python
    ones; anything else is returned as it is. Non-finite floats: with ``finite`` (a metric that failed) None;
    without it (a config, which may say ``inf``) kept as floats, or with ``as_text`` written as the strings
    ``"inf"``, ``"-inf"``, ``"nan"`` (strict JSON; :mod:`dpedkit.config` reads them back as floats).
    """
    np = sys.modules.get("numpy")  # numpy values exist only once numpy is imported: this module never imports it
    if isinstance(obj, Mapping):
        return {k: json_safe(v, finite=finite, as_text=as_text) for k, v in obj.items()}
    if isinstance(obj, list | tuple) or (np is not None and isinstance(obj, np.ndarray)):
        return [json_safe(v, finite=finite, as_text=as_text) for v in obj]
    if isinstance(obj, float) or (np is not None and isinstance(obj, np.floating)):
        if math.isfinite(obj) or not (finite or as_text):
            return float(obj)
        return None if finite else ("nan" if math.isnan(obj) else "inf" if obj > 0 else "-inf")
    if np is not None and isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def write_json(
    path: str | Path, obj: Any, *, indent: int | None = 1, sort_keys: bool = True, finite: bool = True
) -> None:
    """Write ``obj`` as strict JSON (non-finite floats as :func:`json_safe` says), atomically."""
    write_text(path, dumps(obj, indent=indent, sort_keys=sort_keys, finite=finite))


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = True, finite: bool = True) -> str:
    """``obj`` as strict JSON text (no bare ``NaN``/``Infinity``): the one JSON encoder of every file written."""
    return json.dumps(json_safe(obj, finite=finite, as_text=True), indent=indent, sort_keys=sort_keys, allow_nan=False)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (blank lines skipped); an empty list when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line (keys sorted), atomically."""
    write_text(path, "".join(dumps(r) + "\n" for r in rows))


def check_file_name(name: str, *, what: str = "name", where: str | Path | None = None) -> str:
    """``name`` if it is a plain file name, else :class:`~dpedkit.errors.InputError`.

    Every name read from a dataset, a manifest or a CSV and used to make a path goes through here: no separator,
    not ``.`` or ``..``, not empty, not absolute, no NUL, so that no input can make dpedkit write elsewhere.

    Args:
        name: the name to check.
        what: what it is, for the message (``"pair name"``).
        where: the file it was read from, for the message.
    """
    from dpedkit.errors import InputError

    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(where, f"{what} {name!r} is not a plain file name (no folders, '..' or separators allowed)")
    return name


def check_apart(output: str | Path, inputs: Iterable[str | Path | None], *, what: str = "output folder") -> None:
    """Refuse an output folder that is, contains or lies inside one of the inputs (files or folders).

    Called before anything is written or deleted, so that ``--overwrite`` can never remove an input.

    Raises:
        InputError: naming both paths.
    """
    from dpedkit.errors import InputError

    out = Path(os.path.realpath(output))
    for given in inputs:
        if given is None or is_url(given):  # object storage is never a local output's input
            continue
        src = Path(os.path.realpath(given))
        if out == src or src.is_relative_to(out) or out.is_relative_to(src):
            relation = "is" if out == src else "contains" if src.is_relative_to(out) else "lies inside"
            raise InputError(output, f"the {what} {relation} the input {given}: choose a folder apart from the inputs")


_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def is_url(path: str | Path | None) -> bool:
    """Whether ``path`` names object storage (``scheme://``, :mod:`dpedkit.dataset.storage`); ``file://`` is local."""
    m = _URL.match(str(path)) if path is not None else None
    return bool(m) and m.group(1).lower() != "file"


LOCK_NAME = ".dpedkit.lock"  # the lock file of a folder dpedkit writes (a dataset, a run)


@contextmanager
def folder_lock(
    root: str | Path, command: str, *, shared: bool = False, name: str = LOCK_NAME, shown: str | Path | None = None
) -> Iterator[None]:
    """Hold ``root`` for the block: exclusively (one writer), or ``shared`` (readers, while no writer holds it).

    The lock is the operating system's (``flock`` on ``ROOT/.dpedkit.lock``): it goes with its process, also when
    that is killed. A writer is refused at once while anyone holds the folder, a reader while a writer does, with
    the writer's command, PID and start time. A writer removes the lock file when it is done (one a killed writer
    left is taken over), and a folder the lock had to create when nothing else was written into it. A reader of a
    folder it may not write (read-only media) reads it unlocked.

    Args:
        root: the folder held.
        command: what holds it, shown to a process that is refused (``build``, ``train``).
        shared: a reader's lock (many at once) instead of a writer's.
        name: the lock file's name in ``root`` (another name holds something else in ``root``: an import or
            export holds its output folder by a lock file beside it, in its parent).
        shown: the path a refusal names (default ``root``).

    Raises:
        InputError: the folder is held (by a writer, or for a writer, by anyone).
    """
    import fcntl
    import time

    from dpedkit.errors import InputError

    root = Path(root)
    created = not root.exists()
    if not shared:
        root.mkdir(parents=True, exist_ok=True)
    path = root / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError as exc:
        if not shared or exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        yield  # a read-only dataset: nobody can rebuild it under us
        return
    writer = False
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another dpedkit process reads it"
            raise InputError(shown or root, f"is in use: {holder}; wait for it to finish (or stop it), or choose "
                                            "another folder") from None  # fmt: skip
        writer = not shared
        if writer:
            since = time.strftime("%Y-%m-%d %H:%M:%S")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"dpedkit {command}, pid {os.getpid()}, running since {since}\n".encode(), 0)
        yield
    finally:
        if writer:  # released, also by an exception: the lock file goes (nobody else can hold it: the writer did)
            path.unlink(missing_ok=True)
        os.close(fd)
        if created and {p.name for p in root.iterdir()} <= {name}:  # nothing but the lock was written
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                root.rmdir()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def owned_tempdir(prefix: str, *, dir: str | Path | None = None) -> Iterator[Path]:  # noqa: A002 (tempfile's name)
    """A temporary folder ``DIR/<prefix><pid>-XXXXXXXX`` for the block, removed after it.

    A process killed with ``kill -9`` cannot remove its folder: each call first sweeps the folders of this
    ``prefix`` in ``dir`` whose process is gone. A folder is swept only when the PID in its name runs no process and
    nobody holds the ``flock`` its owner keeps on it while in use (a PID reused, or seen from another PID namespace,
    keeps it), and only this user's.

    Args:
        prefix: the folder names' start (``dpedkit-running-``).
        dir: where (default: the system's temporary folder).
    """
    import fcntl
    import glob
    import re
    import shutil

    base = Path(dir) if dir is not None else Path(tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(\d+)-\w+")
    for old in base.glob(glob.escape(prefix) + "*"):
        m = pattern.fullmatch(old.name)
        try:
            if not m or old.is_symlink() or not old.is_dir() or old.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if _alive(int(m.group(1))):
            continue
        try:
            fd = os.open(old, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(old, ignore_errors=True)
        except BlockingIOError:
            pass  # in use (a PID of another namespace)
        finally:
            os.close(fd)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)
