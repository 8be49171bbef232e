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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Literal, TypeVar

from dpedkit.errors import ConfigError, check_choice

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Backend = Literal["loky", "dask", "ray"]
BACKENDS = ("loky", "dask", "ray")


def _call(fn: Callable[[T], R], index: int, item: T) -> tuple[int, R]:
    """Worker side: pin OpenCV to one thread (joblib limits BLAS/OpenMP, not OpenCV's pool), run ``fn``."""
    import cv2

    cv2.setNumThreads(1)
    return index, fn(item)


def run_parallel(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    n_jobs: int = 1,
    backend: Backend = "loky",
    scheduler: str | None = None,
    on_result: Callable[[T, R], None] | None = None,
) -> list[R]:
    """Apply ``fn`` to every item, in parallel when ``n_jobs != 1``.

    Args:
        fn: a module-level (picklable) function of one item.
        items: plain, picklable inputs (paths, dicts).
        n_jobs: worker processes (``-1``: all cores, or all workers of a dask cluster); ``1`` runs a plain loop
            here, whatever the backend.
        backend: ``"loky"`` (local processes), ``"dask"`` (a ``distributed`` cluster) or ``"ray"``.
        scheduler: dask scheduler address (``tcp://host:8786``); without it a local dask cluster of
            ``n_jobs`` single-threaded worker processes is started for the call. Ignored by other backends.
        on_result: called in this process as ``on_result(item, result)`` as each item completes.

    Returns:
        The results, in the order of ``items``.

    Raises:
        ConfigError: unknown backend, bad ``n_jobs``, or the backend's package is not installed.
    """
    check_options(n_jobs, backend)
    results: list[Any] = [None] * len(items)
    if n_jobs == 1 or len(items) <= 1 and backend == "loky":
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

            pool = stack.enter_context(Pool(processes=None if n_jobs == -1 else n_jobs))
            tasks = [(fn, i, item) for i, item in enumerate(items)]
            _drain(pool.imap_unordered(_call_task, tasks), items, results, on_result)
            return results
        stack.enter_context(parallel_config(backend=backend))
        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        _drain(parallel(delayed(_call)(fn, i, item) for i, item in enumerate(items)), items, results, on_result)
    return results


def _call_task(task: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, Any]:
    """:func:`_call` on one ``(fn, index, item)`` tuple (ray's pool passes one argument)."""
    return _call(*task)


def check_options(n_jobs: int, backend: str) -> None:
    """Raise :class:`ConfigError` for an unknown backend or a worker count other than -1 or >= 1."""
    check_choice("backend", backend, BACKENDS)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ConfigError(f"jobs must be a positive number of workers or -1 (all cores); got {n_jobs!r}")


def _drain(stream: Iterator[tuple[int, Any]], items: Sequence, results: list, on_result: Callable | None) -> None:
    for index, result in stream:
        results[index] = result
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
            client = Client(scheduler)
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
            ray.init(address=scheduler, log_to_driver=False)
        try:
            yield
        finally:
            if started:
                ray.shutdown()
    else:
        yield
