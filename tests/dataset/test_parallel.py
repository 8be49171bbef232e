import math
import sys

import pytest

from dpedkit.dataset.parallel import run_parallel
from dpedkit.errors import ConfigError


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_results_in_input_order_and_callbacks_in_this_process(n_jobs):
    items = [7, 3, 12, 1, 9, 4]
    seen = []
    out = run_parallel(math.factorial, items, n_jobs=n_jobs, on_result=lambda item, res: seen.append((item, res)))
    assert out == [math.factorial(i) for i in items]
    assert sorted(seen) == sorted(zip(items, out, strict=True))


def test_bad_options():
    with pytest.raises(ConfigError, match="backend must be one of"):
        run_parallel(abs, [1], backend="spark")
    with pytest.raises(ConfigError, match="jobs must be"):
        run_parallel(abs, [1], n_jobs=0)


def test_ray_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed: `import ray` fails
    with pytest.raises(ConfigError, match="pip install"):
        run_parallel(abs, [1, 2], n_jobs=2, backend="ray")


def test_scheduler_needs_a_cluster_backend_and_must_be_reachable(monkeypatch):
    with pytest.raises(ConfigError, match="needs backend 'dask' or 'ray'"):
        run_parallel(abs, [1, 2], n_jobs=2, scheduler="tcp://127.0.0.1:1")
    pytest.importorskip("distributed")
    monkeypatch.setattr("dpedkit.dataset.parallel.CONNECT_TIMEOUT", "1s")
    with pytest.raises(ConfigError, match="cannot reach the dask scheduler"):  # jobs 1 + scheduler: the cluster
        run_parallel(abs, [1, 2], backend="dask", scheduler="tcp://127.0.0.1:1")
    for address in ("http://127.0.0.1:1", "nohost"):  # malformed
        with pytest.raises(ConfigError, match="cannot reach the dask scheduler"):
            run_parallel(abs, [1, 2], backend="dask", scheduler=address)


_ORPHAN_SCRIPT = """
import pathlib, sys, time
from dpedkit.dataset.parallel import run_parallel

out = pathlib.Path(sys.argv[1])

def work(i):
    time.sleep(0.2)
    (out / str(i)).touch()

run_parallel(work, list(range(60)), n_jobs=2)
"""


@pytest.mark.slow
def test_workers_stop_when_the_parent_is_killed(tmp_path):
    """SIGKILL of the calling process: its loky workers exit instead of working through the queue."""
    import subprocess
    import sys
    import time

    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT)
    done = tmp_path / "done"
    done.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(done)])
    deadline = time.monotonic() + 60
    while not any(done.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    at_kill = len(list(done.iterdir()))
    time.sleep(2.0)
    # the two items in flight may still finish; the ones queued to the workers (joblib pre-dispatches) must not
    assert len(list(done.iterdir())) - at_kill <= 2


def test_local_workers_are_capped_by_tasks_and_cores(monkeypatch):
    """Issue 20: ``build --jobs 100000`` started a process per job and exhausted memory."""
    from dpedkit.dataset.parallel import local_workers

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert local_workers(100_000, 10) == 4 and local_workers(3, 2) == 2 and local_workers(-1, 100) == 4
    assert local_workers(2, 0) == 1
    assert run_parallel(abs, [-1, -2, -3], n_jobs=100_000) == [1, 2, 3]
