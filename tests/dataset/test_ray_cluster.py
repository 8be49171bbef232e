"""A real two-node ray cluster on this machine (``ray start`` head + worker) runs ``dpedkit build --backend ray``.

Every process the test starts carries its own temporary folder in its command line; teardown ends exactly those
(SIGTERM, then SIGKILL), whatever happened, so nothing is left behind and no other ray on the machine is touched.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpedkit.dataset.storage import STAMPS, fetch_dataset
from dpedkit.synth.pairs import synthesize
from tests.dataset.test_build import assert_same_dataset, digests
from tests.s3server import client, s3_server

pytestmark = pytest.mark.slow
if os.environ.get("CI"):  # a dev dependency: in CI a missing ray fails (elsewhere the module skips)
    import ray  # noqa: F401
else:
    ray = pytest.importorskip("ray")

SMALL = {"phone_mp": 0.15, "dslr_mp": 0.3}
RAY = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]  # this venv's ray, whatever its shebang
DPEDKIT = [sys.executable, "-c", "from dpedkit_cli.main import cli; cli()"]
START_TIMEOUT = 120  # seconds for each `ray start`
BUILD_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_with(text: str) -> list[int]:
    """The processes whose command line names ``text`` (the test's own temp folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def end_processes(text: str, grace: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every process naming ``text``; returns those left alive."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_with(text):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids_with(text) and time.monotonic() < deadline:
            time.sleep(0.2)
    return pids_with(text)


@pytest.fixture
def s3(tmp_path) -> Iterator[dict[str, str]]:
    """An S3 server on 127.0.0.1 (``tests.s3server``); its environment is set before the cluster starts."""
    with s3_server() as env, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPEDKIT_CACHE", str(tmp_path / "cache"))
        yield env


@pytest.fixture
def ray_cluster(s3, monkeypatch) -> Iterator[tuple[str, str]]:
    """``(address, temp_dir)`` of a head and one worker node, one CPU each, started with the ray CLI.

    The nodes start with the S3 server's environment, as a real cluster's nodes carry their storage configuration.
    """
    if sys.platform != "linux":
        pytest.skip("finds the cluster's processes through /proc")
    # recent ray (2.60 here) turns token authentication on for `ray start --head`; a local test cluster opts out (the
    # driver and the worker node read the same variable). A real cluster keeps it: see docs/architecture.md.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="dpk-ray-", dir="/tmp")  # short: ray's socket paths must fit 107 bytes
    address = f"127.0.0.1:{free_port()}"
    common = ["--disable-usage-stats", f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"]
    try:  # a head without CPUs: every task must run on the worker node, as on a cluster of worker machines
        head = [*RAY, "start", "--head", f"--port={address.split(':')[1]}", "--include-dashboard=false",
                "--num-cpus=0", *common]  # fmt: skip
        worker = [*RAY, "start", f"--address={address}", "--num-cpus=2", *common]
        for cmd in (head, worker):
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        yield address, temp
    finally:
        left = end_processes(temp)
        subprocess.run(["rm", "-rf", temp], check=False)
        assert not left, f"ray processes left running: {left}"


def alive_nodes_and_actor_nodes(address: str) -> tuple[dict[str, float], list[str]]:
    """The cluster's alive nodes (id -> CPUs), and the node of every (finished) pool actor, asked in a subprocess."""
    code = (
        "import json, ray\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        "from ray._private import state\n"  # GCS tables: ray's state API needs the dashboard, turned off here
        "nodes = {n['NodeID']: n['Resources'].get('CPU', 0.0) for n in ray.nodes() if n['Alive']}\n"
        "actors = [a['Address']['NodeID'] for a in state.actors().values() if 'PoolActor' in a['ActorClassName']]\n"
        "print(json.dumps([nodes, actors]))\n"
        "ray.shutdown()\n"
    )
    import json

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    nodes, actors = json.loads(res.stdout.strip().splitlines()[-1])
    return nodes, actors


def test_build_on_a_two_node_ray_cluster_matches_loky(ray_cluster, tmp_path):
    address, temp = ray_cluster
    synthesize(tmp_path / "raw", n=4, seed=0, **SMALL)
    args = ["build", "raw/phone", "raw/dslr", "--test-images", "1", "--quiet"]
    # relative paths, as typed in a shell: the cluster's workers do not share the driver's working directory
    local = subprocess.run([*DPEDKIT, *args, "-o", "loky", "--jobs", "2"], cwd=tmp_path, timeout=BUILD_TIMEOUT)
    assert local.returncode == 0
    on_ray = [*args, "--backend", "ray", "--scheduler", address, "--jobs", "2"]
    for out in ("ray", "s3://bucket/ray/ds"):  # a folder, then object storage (the workers upload their shards)
        cluster = subprocess.run([*DPEDKIT, *on_ray, "-o", out], cwd=tmp_path, capture_output=True, text=True,
                                 timeout=BUILD_TIMEOUT)  # fmt: skip
        assert cluster.returncode == 0, cluster.stderr[-3000:]
    assert_same_dataset(tmp_path / "ray", tmp_path / "loky")
    stored = client().find("bucket/ray/ds")
    assert "bucket/ray/ds/dataset.json" in stored
    fetched = digests(fetch_dataset("s3://bucket/ray/ds"))
    fetched.pop(STAMPS)  # the local copy's own note of what it holds
    assert fetched == digests(tmp_path / "loky")
    nodes, actor_nodes = alive_nodes_and_actor_nodes(address)
    assert len(nodes) == 2
    # the pool's actors ran on the worker node (the head has no CPUs), not in the driver
    worker = [n for n, cpus in nodes.items() if cpus > 0]
    assert len(worker) == 1 and len(actor_nodes) >= 2 and set(actor_nodes) == set(worker), (actor_nodes, nodes)
