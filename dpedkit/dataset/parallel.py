"""Run one function over many items in parallel: joblib with loky (local) or dask (a cluster), or ray's pool.

Ray's joblib backend cannot stream results (it returns them all at the end), so ray runs through its own
``ray.util.multiprocessing.Pool.imap_unordered``: the same worker function, still no scheduler of ours.

``n_jobs=1`` is a plain loop in this process. Otherwise results stream back unordered (joblib's
``return_as="generator_unordered"``, ray's ``imap_unordered``) so ``on_result`` runs in the calling process as
each item finishes (the CLI drives its progress bar from it); the returned list is in input order whatever the
completion order.
Workers get plain data and should return small results; OpenCV is pinned to one thread in each worker.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from dpedkit.errors import ConfigError, check_choice
from dpedkit.io.files import owned_tempdir

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Backend = Literal["loky", "dask", "ray"]
CONNECT_TIMEOUT = "20s"  # how long to try reaching a dask scheduler
BACKENDS: tuple[str, ...] = get_args(Backend)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (1e6 bytes), its own only.

    Linux's ``VmHWM``: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a worker spawned by a process that held
    2 GB would report 2 GB however little it used. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def _call(
    fn: Callable[[T], R], index: int, item: T, parent: int | None = None, running: str | None = None
) -> tuple[int, R]:
    """Worker side: pin OpenCV to one thread (joblib limits BLAS/OpenMP, not OpenCV's pool), run ``fn``.

    ``parent``: the pid of the process that started this (local) worker. When it is gone (killed with
    SIGKILL, say) the worker exits instead of working through the queue unseen, racing a rerun.
    ``running``: a folder where the item's index is marked while it runs, so that the items a dead worker
    was running can be told from the others.
    """
    import cv2

    if parent is not None and os.getppid() != parent:
        log.warning("the build process %d is gone: worker %d exits", parent, os.getpid())
        os._exit(1)
    cv2.setNumThreads(1)
    marker = Path(running) / str(index) if running else None
    if marker is not None:
        marker.write_text(str(os.getpid()))
    result = fn(item)
    if marker is not None:
        marker.unlink(missing_ok=True)
    return index, result


def run_parallel(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    n_jobs: int = 1,
    backend: Backend = "loky",
    scheduler: str | None = None,
    on_result: Callable[[T, R], None] | None = None,
    on_crash: Callable[[T, str], R] | None = None,
) -> list[R]:
    """Apply ``fn`` to every item, in parallel when ``n_jobs != 1``.

    Args:
        fn: a module-level (picklable) function of one item.
        items: plain, picklable inputs (paths, dicts).
        n_jobs: worker processes (``-1``: all cores, or all workers of a cluster); ``1`` runs a plain loop
            here, unless a ``scheduler`` is named: then it means all the cluster's workers.
        backend: ``"loky"`` (local processes), ``"dask"`` (a ``distributed`` cluster) or ``"ray"``.
        scheduler: dask scheduler address (``tcp://host:8786``) or ray cluster address; without it a local
            cluster of ``n_jobs`` single-threaded worker processes is started for the call. Refused with loky.
        on_result: called in this process as ``on_result(item, result)`` as each item completes.
        on_crash: with loky, what a worker process that dies (the OOM killer, ``kill -9``) means for the items it
            was running: each is run once more, alone in a fresh process; an item that kills that one too gets
            ``on_crash(item, reason)`` as its result (``reason``: e.g. ``"worker died (signal 9; out of
            memory?)"``), and the other items go on. Without it, a dead worker stops the run.

    Returns:
        The results, in the order of ``items``.

    Raises:
        ConfigError: unknown backend, bad ``n_jobs``, a scheduler with loky, an unreachable scheduler, or the
            backend's package is not installed.
    """
    check_options(n_jobs, backend, scheduler)
    results: list[Any] = [None] * len(items)
    if scheduler is not None and n_jobs == 1:
        n_jobs = -1  # a cluster was named: all its workers
    elif n_jobs == 1 or len(items) <= 1 and backend == "loky":
        import cv2

        threads = cv2.getNumThreads()
        try:
            _drain((_call(fn, i, item) for i, item in enumerate(items)), items, results, on_result)
        finally:
            cv2.setNumThreads(threads)  # the loop ran here: give the caller its OpenCV threads back
        return results
    from joblib import Parallel, delayed, parallel_config

    with ExitStack() as stack:
        stack.enter_context(_backend(backend, scheduler, n_jobs))
        if backend == "ray":  # ray's joblib backend returns nothing until all is done: ray's own pool streams
            from ray.util.multiprocessing import Pool

            # each worker holds a CPU, so ray spreads them over the nodes that have CPUs (its pool's actors hold
            # none by default, and could all start on one node, the head included)
            processes = None if n_jobs == -1 else n_jobs
            pool = stack.enter_context(Pool(processes=processes, ray_remote_args={"num_cpus": 1}))
            tasks = [(fn, i, item) for i, item in enumerate(items)]
            _drain(pool.imap_unordered(_call_task, tasks), items, results, on_result)
            return results
        stack.enter_context(parallel_config(backend=backend))
        if backend == "loky":
            _run_loky(fn, items, local_workers(n_jobs, len(items)), results, on_result, on_crash)
            return results
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        _drain(parallel(delayed(_call)(fn, i, item) for i, item in enumerate(items)), items, results, on_result)
    return results


def local_workers(n_jobs: int, n_items: int) -> int:
    """Local worker processes for ``n_items`` tasks: ``n_jobs`` (``-1``: every core), capped at the tasks and cores.

    ``--jobs 100000`` once started 100,000 processes and exhausted memory.
    """
    cores = os.cpu_count() or 1
    wanted = cores if n_jobs == -1 else n_jobs
    return max(1, min(wanted, n_items, cores))


def _run_loky(fn: Callable, items: Sequence, n_jobs: int, results: list, on_result, on_crash) -> None:  # noqa: ANN001
    """Local worker processes; a worker's death is survived when ``on_crash`` is given (see :func:`run_parallel`)."""
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    parent, todo, done = os.getpid(), list(range(len(items))), set()  # loky workers are this process's children
    while todo:
        with owned_tempdir("dpedkit-running-") as marks:  # a killed run's folder is swept by the next one
            running = str(marks)
            calls = (delayed(_call)(fn, i, items[i], parent, running) for i in todo)
            try:
                _drain(Parallel(n_jobs=n_jobs, return_as="generator_unordered")(calls), items, results, on_result, done)
                return
            except TerminatedWorkerError as exc:
                if on_crash is None:
                    raise
                reason = _death(exc)
                inflight = sorted(int(p.name) for p in Path(running).iterdir() if int(p.name) not in done)
        log.warning("a %s while running %d item(s): each is run again, alone", reason, len(inflight))
        for i in inflight:
            result = _alone(fn, i, items[i], parent)
            if result is None:
                log.warning("item %d killed its worker again: recorded as failed (%s)", i, reason)
                result = on_crash(items[i], reason)
            _drain(iter([(i, result)]), items, results, on_result, done)
        todo = [i for i in todo if i not in done]


def _alone(fn: Callable, index: int, item: Any, parent: int) -> Any | None:
    """``fn(item)`` in a fresh single worker process; None when that process dies too."""
    from joblib.externals.loky import ProcessPoolExecutor
    from joblib.externals.loky.process_executor import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(_call, fn, index, item, parent).result()[1]
        except BrokenProcessPool:
            return None


def _death(exc: BaseException) -> str:
    """Why a worker died, in words, from joblib's message (``... exit codes of the workers are {SIGKILL(-9)}``)."""
    signals = [int(s) for s in re.findall(r"SIG\w+\((-\d+)\)", str(exc))]
    if signals:
        return f"worker died (signal {-signals[0]}{'; out of memory?' if -signals[0] == 9 else ''})"
    codes = re.findall(r"\{(-?\d+)\}", str(exc))
    return f"worker died (exit status {codes[0]})" if codes else "worker died"


def _call_task(task: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, Any]:
    """:func:`_call` on one ``(fn, index, item)`` tuple (ray's pool passes one argument)."""
    return _call(*task)


def check_options(n_jobs: int, backend: str, scheduler: str | None = None) -> None:
    """Raise :class:`ConfigError` for a bad backend, worker count (not -1 or >= 1) or scheduler use.

    A scheduler address with the local loky backend is refused: it would be ignored.
    """
    check_choice("backend", backend, BACKENDS)
    if scheduler is not None and backend == "loky":
        raise ConfigError(f"a scheduler address ({scheduler}) needs backend 'dask' or 'ray' (--backend)")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ConfigError(f"jobs must be a positive number of workers or -1 (all cores); got {n_jobs!r}")


def _drain(
    stream: Iterator[tuple[int, Any]],
    items: Sequence,
    results: list,
    on_result: Callable | None,
    done: set | None = None,
) -> None:
    for index, result in stream:
        results[index] = result
        if done is not None:
            done.add(index)
        if on_result is not None:
            on_result(items[index], result)


@contextmanager
def _backend(backend: str, scheduler: str | None, n_jobs: int) -> Iterator[None]:
    """Connect to (or start) the cluster a joblib backend needs; loky needs nothing."""
    if backend == "dask":
        try:
            from distributed import Client
        except ImportError as exc:
            raise ConfigError("backend 'dask' needs dask.distributed: pip install 'dpedkit[cluster]'") from exc
        if scheduler:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a malformed address
                raise ConfigError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from exc
        else:
            workers = n_jobs if n_jobs > 0 else None
            client = Client(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        log.info("dask cluster %s with %d workers", client.scheduler.address, len(client.scheduler_info()["workers"]))
        with client:
            yield
    elif backend == "ray":
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("backend 'ray' needs ray: pip install 'dpedkit[ray]'") from exc
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=scheduler, log_to_driver=False)
            except (ConnectionError, OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(f"cannot reach the ray cluster at {scheduler}: {exc}") from exc
        try:
            yield
        finally:
            if started:
                ray.shutdown()
    else:
        yield
