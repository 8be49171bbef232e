"""Datasets on object storage: builds to ``s3://`` and every reader of one, against a real S3 server on 127.0.0.1.

The server is moto's (``tests.s3server``), reached by s3fs over HTTP through the usual AWS environment variables;
nothing in dpedkit is patched. ``memory://`` (fsspec's in-process filesystem) covers the rules that need no server.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner
from dpedkit_cli.main import cli

from dpedkit.config import BuildConfig, PatchConfig
from dpedkit.dataset.build import build_dataset
from dpedkit.dataset.storage import LOCK, Store, clear_store, dataset_objects, fetch_dataset, store_lock
from dpedkit.errors import InputError, ShardError
from dpedkit.io import is_url
from dpedkit.synth.pairs import synthesize
from tests.s3server import KEY, SECRET, client, s3_server

SMALL = {"phone_mp": 0.15, "dslr_mp": 0.3}
CONFIG = BuildConfig(patch=PatchConfig(size=64), test_images=1, seed=3)
DPEDKIT = [sys.executable, "-c", "from dpedkit_cli.main import cli; cli()"]
BUILD = ["--patch", "64", "--test-images", "1", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The server's environment (set in this process while the module runs), with a cache folder of the module."""
    with s3_server() as env, pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("cache")
        mp.setenv("DPEDKIT_CACHE", str(cache))
        yield env | {"DPEDKIT_CACHE": str(cache)}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synthesize(root, n=4, seed=0, **SMALL)
    return root


@pytest.fixture(scope="module")
def local(raw, tmp_path_factory):
    """The reference: the same pairs built into a local folder."""
    out = tmp_path_factory.mktemp("local") / "ds"
    build_dataset(raw / "phone", raw / "dslr", out, config=CONFIG)
    return out


def digests(files: dict[str, bytes]) -> dict[str, str]:
    """sha256 of each dataset file but the shard records (they hold timings) and the plan (it holds input paths)."""
    return {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())
            if not (k.endswith(".json") and "/shard-" in k) and k != "build.json"}  # fmt: skip


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
            and not p.name.startswith(".")}  # fmt: skip


def stored_files(url: str) -> dict[str, bytes]:
    store = Store(url)
    return {name: store.fs.cat_file(f"{store.root}/{name}") for name in store.objects()}


def dpedkit(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a fresh process that finds the server only through the environment, as a user's shell would."""
    return subprocess.run([*DPEDKIT, *args], env=os.environ | env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_urls_are_told_from_paths():
    assert is_url("s3://bucket/ds") and is_url("gs://b/x") and is_url("memory://b")
    assert not is_url("file:///tmp/ds") and not is_url("data/ds") and not is_url("C:/x") and not is_url(None)


def test_a_build_to_s3_equals_the_local_build_and_resumes(s3, raw, local, tmp_path):
    url = "s3://bucket/runs/ds"
    res = dpedkit("build", str(raw / "phone"), str(raw / "dslr"), "-o", url, "--jobs", "2", *BUILD, "--json",
                  env=s3, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["shards_built"] == 4
    stored = stored_files(url)
    assert digests(stored) == digests(local_files(local))
    assert not any(SECRET.encode() in v or KEY.encode() in v for v in stored.values())  # credentials never stored
    # an interrupted build: one shard's object gone, another's record gone (its upload was cut before the record)
    fs = client()
    fs.rm("bucket/runs/ds/dataset.json")
    fs.rm("bucket/runs/ds/train/shard-00001.h5")
    fs.rm("bucket/runs/ds/test/shard-00000.json")
    res = dpedkit("build", str(raw / "phone"), str(raw / "dslr"), "-o", url, *BUILD, "--json", env=s3, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["shards_built"] == 2  # only those two: the others' object and record exist
    assert digests(stored_files(url)) == digests(local_files(local))
    # finished: left alone, and a plan of other settings is refused as for a folder
    res = dpedkit("build", str(raw / "phone"), str(raw / "dslr"), "-o", url, *BUILD, "--json", env=s3, cwd=tmp_path)
    assert res.returncode == 0 and json.loads(res.stdout)["already_finished"]
    res = dpedkit("build", str(raw / "phone"), str(raw / "dslr"), "-o", url, *BUILD[:-3], "--seed", "4", env=s3,
                  cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2 and "is a finished dataset of other pairs or settings" in res.stderr


def test_commands_read_a_dataset_on_s3(s3, raw, local, tmp_path):
    url = "s3://bucket/readers/ds"
    fs = client()
    fs.put(str(local), "bucket/readers/ds", recursive=True)  # a dataset uploaded as a folder is read as well
    runner = CliRunner()
    res = runner.invoke(cli, ["verify", url, "--json"])
    assert res.exit_code == 0, res.output
    assert all(not s["problems"] for s in json.loads(res.stdout)["shards"])
    res = runner.invoke(cli, ["inspect", url, "--summary", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["pairs"] == 4
    run = tmp_path / "run"
    res = runner.invoke(cli, ["train", url, "-o", str(run), "--model", "srcnn", "--iters", "2", "--batch", "4",
                              "--eval-every", "2", "--vgg", "random", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["evaluate", str(run / "best.pt"), url, "--json"])
    assert res.exit_code == 0, res.output
    # the bytes at the URL change (a flipped byte in one shard): the next read fetches them again and sees it
    key = "bucket/readers/ds/test/shard-00000.h5"
    data = bytearray(fs.cat_file(key))
    data[len(data) // 2] ^= 0xFF
    fs.pipe(key, bytes(data))
    res = runner.invoke(cli, ["verify", url])
    assert res.exit_code == 1 and "checksum" in " ".join(res.output.split()), res.output
    res = runner.invoke(cli, ["evaluate", str(run / "best.pt"), url])  # errors name the URL, not the local copy
    assert res.exit_code == 2 and f"error: {url}/test/shard-00000.h5: checksum mismatch" in " ".join(res.output.split())


def test_a_dask_cluster_build_to_s3_equals_the_local_build(s3, raw, local):
    """The route docs/architecture.md gives for dask: workers reach the store through the same environment."""
    import distributed

    url = "s3://bucket/dask/ds"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:  # fmt: skip
        build_dataset(raw / "phone", raw / "dslr", url, config=CONFIG, jobs=2, backend="dask",
                      scheduler=cluster.scheduler_address)  # fmt: skip
    assert digests(stored_files(url)) == digests(local_files(local))


def test_photos_from_s3_build_the_same_dataset(s3, raw, local, tmp_path):
    fs = client()
    for side in ("phone", "dslr"):
        fs.put(str(raw / side), f"bucket/photos/{side}", recursive=True)
    out = tmp_path / "ds"
    summary = build_dataset("s3://bucket/photos/phone", "s3://bucket/photos/dslr", out, config=CONFIG)
    assert summary.ok == 4
    same = {k: v for k, v in digests(local_files(out)).items() if k != "pairs.jsonl"}  # it names the local copies
    assert same == {k: v for k, v in digests(local_files(local)).items() if k != "pairs.jsonl"}
    # a second run fetches nothing new and finds the photos unchanged (their times are the objects')
    assert build_dataset("s3://bucket/photos/phone", "s3://bucket/photos/dslr", out, config=CONFIG).already_finished
    records = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert all(r["phone"].startswith("s3://bucket/photos/phone/") for r in records)  # the photos' own names
    from dpedkit.inspect.views import recompute_pair

    assert recompute_pair(records[0], out, json.loads((out / "dataset.json").read_text())["config"])["result"].ok
    # the pairing given as a CSV at a URL too (the CLI, in a fresh process): the same dataset
    rows = "".join(f"{Path(n).stem},{n},{n}\n" for n in sorted(p.name for p in (raw / "phone").iterdir()))
    fs.pipe("bucket/photos/pairs.csv", f"name,phone,dslr\n{rows}".encode())
    res = dpedkit("build", "s3://bucket/photos/phone", "s3://bucket/photos/dslr", "-o", str(tmp_path / "csv"),
                  "--pairs", "s3://bucket/photos/pairs.csv", *BUILD, env=s3, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert digests(local_files(tmp_path / "csv")) == digests(local_files(out))
    res = dpedkit("build", "s3://bucket/photos/phone", "s3://bucket/photos/dslr", "-o", str(tmp_path / "none"),
                  "--pairs", "s3://bucket/photos/nothing.csv", *BUILD, env=s3, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2 and "s3://bucket/photos/nothing.csv: no such file" in res.stderr, res.stderr[-2000:]


def test_overwrite_removes_only_the_dataset_objects(raw, tmp_path, monkeypatch):
    monkeypatch.setenv("DPEDKIT_CACHE", str(tmp_path / "cache"))
    url = "memory://overwrite/ds"
    mem = fsspec.filesystem("memory")
    mem.pipe("/overwrite/ds/notes.txt", b"mine")
    mem.pipe("/overwrite/ds/train/my-own.h5", b"also mine")
    build_dataset(raw / "phone", raw / "dslr", url, config=CONFIG)
    assert {"notes.txt", "train/my-own.h5", "dataset.json"} <= set(Store(url).objects())
    removed = clear_store(Store(url))
    assert "dataset.json" in removed and "train/shard-00000.h5" in removed
    assert set(Store(url).objects()) == {"notes.txt", "train/my-own.h5"}
    assert dataset_objects(["a/.shard-1.tmp.h5", "train/shard-00000.h5", "x.txt"]) == ["train/shard-00000.h5"]


def test_an_unfinished_or_missing_dataset_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DPEDKIT_CACHE", str(tmp_path / "cache"))
    fsspec.filesystem("memory").pipe("/unfinished/ds/build.json", b"{}")
    with pytest.raises(ShardError, match="not a finished dpedkit dataset"):
        fetch_dataset("memory://unfinished/ds")
    res = CliRunner().invoke(cli, ["verify", "memory://nothing/here"])
    assert res.exit_code == 2 and "memory://nothing/here: not a finished dpedkit dataset" in res.output


def test_readers_share_an_up_to_date_copy_and_a_fetch_waits_for_them(raw, tmp_path, monkeypatch):
    """A training run holds its copy for readers: others read it alongside; a refresh waits, then names the holder."""
    from dpedkit.dataset import storage
    from dpedkit.errors import InputError
    from dpedkit.io import folder_lock

    monkeypatch.setenv("DPEDKIT_CACHE", str(tmp_path / "cache"))
    url = "memory://shared/ds"
    build_dataset(raw / "phone", raw / "dslr", url, config=CONFIG)
    local = fetch_dataset(url)
    with folder_lock(local, "train", shared=True):  # as `dpedkit train` holds the dataset it reads
        assert fetch_dataset(url) == local  # up to date: read alongside, no lock taken
        fsspec.filesystem("memory").pipe("/shared/ds/pairs.jsonl", b"")  # the dataset changes at the URL
        monkeypatch.setattr(storage, "FETCH_WAIT", 1.0)
        with pytest.raises(InputError, match="is in use: another dpedkit process reads it"):
            fetch_dataset(url)  # never replaces files under a reader
    assert fetch_dataset(url) == local and (local / "pairs.jsonl").read_bytes() == b""


def test_library_readers_take_a_dataset_url(raw, tmp_path, monkeypatch):
    from dpedkit.config import TrainConfig
    from dpedkit.dataset.loader import PatchDataset, load_split
    from dpedkit.inspect.summary import summarize_dataset
    from dpedkit.train import train

    monkeypatch.setenv("DPEDKIT_CACHE", str(tmp_path / "cache"))
    url = "memory://library/ds"
    build_dataset(raw / "phone", raw / "dslr", url, config=CONFIG)
    phone, _ = load_split(url, "train")
    assert len(phone) == len(PatchDataset(url, "train")) > 0
    assert len(summarize_dataset(url).pairs) == 4
    cfg = TrainConfig(model="srcnn", iters=1, batch=2, eval_every=1, device="cpu", samples=0)
    assert train(url, tmp_path / "run", config=cfg).step == 1


def test_a_reader_of_one_split_fetches_that_split_and_the_copy_never_mixes_versions(raw, tmp_path, monkeypatch):
    from dpedkit.dataset.loader import load_split
    from dpedkit.evaluate import load_test_pairs

    monkeypatch.setenv("DPEDKIT_CACHE", str(tmp_path / "cache"))
    url = "memory://parts/ds"
    build_dataset(raw / "phone", raw / "dslr", url, config=CONFIG)
    held = lambda: set(local_files(fetch_dataset(url, parts=[])))  # noqa: E731 - the copy's files (fetches none)
    test_phone, _ = load_test_pairs(url)  # what evaluate reads: the test split alone
    assert held() == {"dataset.json", "pairs.jsonl", "build.json", "test/shard-00000.h5", "test/shard-00000.json"}
    phone, _ = load_split(url, "train")  # the training shards join the copy; the test split stays
    assert {"train/shard-00000.h5", "test/shard-00000.h5"} <= held() and len(phone) > len(test_phone) > 0
    # the dataset at the URL changes (a training shard): a fetch of the test split removes the stale one
    mem = fsspec.filesystem("memory")
    mem.pipe("/parts/ds/train/shard-00001.h5", b"rebuilt")
    assert len(load_test_pairs(url)[0]) == len(test_phone)
    assert "train/shard-00001.h5" not in held() and "train/shard-00000.h5" in held()
    with pytest.raises(ValueError, match="unknown dataset part"):
        fetch_dataset(url, parts=["tests"])


def test_one_writer_at_a_url_across_machines(s3, raw, tmp_path):
    """Two builds to one URL from two machines: the second is refused naming the first; a dead one's lock is taken."""
    url = "s3://bucket/locked/ds"
    store = Store(url)
    elsewhere = {"command": "build", "host": "node-7", "pid": 4242, "since": "2026-01-01T10:00:00+00:00",
                 "beat": datetime.now().astimezone().isoformat()}  # fmt: skip
    client().pipe(f"bucket/locked/ds/{LOCK}", json.dumps(elsewhere).encode())  # a live build on another machine
    res = dpedkit("build", str(raw / "phone"), str(raw / "dslr"), "-o", url, *BUILD, env=s3, cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"{url}: is being written by dpedkit build on node-7 (pid 4242" in " ".join(res.stderr.split())
    assert set(store.objects()) == {LOCK}  # nothing was written
    with pytest.raises(InputError, match="is being written by dpedkit build on node-7"):
        with store_lock(store, "build"):
            pass
    # that build died an hour ago (no refresh since): the next build takes its lock over, and lets go at the end
    elsewhere["beat"] = (datetime.now().astimezone() - timedelta(hours=1)).isoformat()
    client().pipe(f"bucket/locked/ds/{LOCK}", json.dumps(elsewhere).encode())
    assert build_dataset(raw / "phone", raw / "dslr", url, config=CONFIG).ok == 4
    assert LOCK not in store.objects()
    # a build of this machine whose process is gone: taken over at once; a live one (this process) is not
    with store_lock(store, "build"):
        with pytest.raises(InputError, match=f"pid {os.getpid()}"):
            with store_lock(Store(url), "build"):
                pass
        mine = json.loads(client().cat_file(f"bucket/locked/ds/{LOCK}"))
        assert mine["host"] == socket.gethostname() and mine["pid"] == os.getpid()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    client().pipe(f"bucket/locked/ds/{LOCK}", json.dumps(mine | {"pid": int(dead.stdout)}).encode())
    with store_lock(store, "build"):
        assert json.loads(client().cat_file(f"bucket/locked/ds/{LOCK}"))["pid"] == os.getpid()
    assert LOCK not in store.objects()


def test_the_lock_is_refreshed_while_the_writer_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DPEDKIT_CACHE", str(tmp_path / "cache"))
    store = Store("memory://beat/ds")
    with store_lock(store, "build", beat=0.05):
        first = json.loads(store.fs.cat_file(store._key(LOCK)))["beat"]
        deadline = time.monotonic() + 5
        while json.loads(store.fs.cat_file(store._key(LOCK)))["beat"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(store.fs.cat_file(store._key(LOCK)))["beat"] != first
    assert LOCK not in store.objects()
