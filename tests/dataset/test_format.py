"""The dataset format's one owner: DatasetDir and Manifest (dataset.json, pairs.jsonl, build.json, records)."""

import json

import h5py
import numpy as np
import pytest

from dpedkit.dataset.format import (
    MANIFEST,
    SPLITS,
    Counts,
    DatasetDir,
    Manifest,
    ShardEntry,
    shard_name,
)
from dpedkit.dataset.shards import file_sha256, read_shard
from dpedkit.errors import ShardError
from dpedkit.testing import random_patches as patch_group
from dpedkit.testing import write_shard as write
from dpedkit.testing import write_synthetic_dataset
from dpedkit.testing import write_two_pair_shard as write_with_candidates


def write_manifest_json(root, entries, version=2, **extra):
    (root / MANIFEST).write_text(
        json.dumps({"schema": "dpedkit-dataset", "schema_version": version, "shards": entries, **extra})
    )


def test_manifest_checks(tmp_path, rng):
    ds = DatasetDir(tmp_path)
    with pytest.raises(ShardError, match="not a finished"):
        ds.manifest()
    write(tmp_path / "train" / "shard-00000.h5", [("a", patch_group(rng, 2))])
    write_manifest_json(tmp_path, [{"split": "train", "path": "train/shard-00000.h5", "rows": 2, "sha256": "0" * 64}])
    assert [s.rows for s in ds.shards("train")] == [2]
    assert ds.shards("test") == []
    with pytest.raises(ShardError, match="checksum mismatch"):
        ds.shards("train", verify=True)
    with pytest.raises(ShardError, match="unknown split"):
        ds.shards("val")
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ShardError, match="unreadable dataset manifest"):
        ds.manifest()
    write_manifest_json(tmp_path, [], version=9)
    with pytest.raises(ShardError, match="version 9 is not supported"):
        ds.manifest()
    (tmp_path / MANIFEST).write_text(json.dumps({"schema": "someone-else"}))
    with pytest.raises(ShardError, match="not a dpedkit dataset manifest"):
        ds.manifest()


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside/shard-00000.h5", "train/../../x.h5", ""])
def test_shard_paths_that_leave_the_dataset_are_refused(tmp_path, path):
    write_manifest_json(tmp_path, [{"split": "train", "path": path, "rows": 0, "sha256": ""}])
    with pytest.raises(ShardError, match="relative path inside the dataset folder"):
        DatasetDir(tmp_path).manifest()
    with pytest.raises(ShardError, match="leaves the dataset folder"):
        DatasetDir(tmp_path).path("../x")


def test_version_1_datasets_still_read(tmp_path, rng):
    """A dataset written before schema 2 (no candidates/, a manifest without counts or config) still reads."""
    write(tmp_path / "train" / "shard-00000.h5", [("a", patch_group(rng, 2))])
    with h5py.File(tmp_path / "train" / "shard-00000.h5", "a") as f:
        f.attrs["schema_version"] = 1  # what dpedkit wrote before candidates
    write_manifest_json(
        tmp_path, [{"split": "train", "path": "train/shard-00000.h5", "rows": 2, "sha256": "0" * 64}], version=1
    )
    ds = DatasetDir(tmp_path)
    m = ds.manifest()
    assert m.schema_version == 1 and m.counts == Counts() and m.source == "build" and m.patch_setting("size") == 100
    assert len(read_shard(tmp_path / "train" / "shard-00000.h5")["ncc"]) == 2
    assert not ds.has_candidates() and ds.patch_size() == 8
    with pytest.raises(ShardError, match="stores no candidate windows"):
        ds.read_candidates()


def test_read_candidates_of_a_dataset(tmp_path):
    entries = []
    for split, seed in (("test", 2), ("train", 1)):  # listed test first: read in split order all the same
        rel = f"{split}/shard-00000.h5"
        write_with_candidates(tmp_path / rel, np.random.default_rng(seed))
        entries.append({"split": split, "path": rel, "rows": 2, "sha256": file_sha256(tmp_path / rel)})
    write_manifest_json(tmp_path, entries)
    ds = DatasetDir(tmp_path)
    assert ds.has_candidates()
    c = ds.read_candidates()
    assert len(c["ncc"]) == 16 and list(c["split"]) == ["train"] * 8 + ["test"] * 8
    assert list(c["shard"][[0, 15]]) == ["train/shard-00000.h5", "test/shard-00000.h5"]
    sub = ds.read_candidates(["b"], columns=["kept", "split"])
    assert set(sub) == {"kept", "split"} and len(sub["kept"]) == 6 and not sub["kept"].any()
    assert list(sub["split"]) == ["train"] * 3 + ["test"] * 3
    assert (
        list(ds.read_candidates(["a"], columns=["shard"])["shard"])
        == ["train/shard-00000.h5"] * 5 + ["test/shard-00000.h5"] * 5
    )
    assert len(ds.read_candidates(["zzz"])["ncc"]) == 0  # listed in no shard: none read
    with pytest.raises(ShardError, match="unknown candidate column"):
        ds.read_candidates(columns=["nope"])


def test_manifest_round_trip_and_bytes(tmp_path):
    root = write_synthetic_dataset(tmp_path / "ds", n_train=3, n_test=2, patch=8)
    ds = DatasetDir(root)
    m = ds.manifest()
    assert m.source == "synthetic" and m.build_config() is None and m.counts.patches == {"train": 3, "test": 2}
    assert [(s.split, s.path, s.rows) for s in m.shards] == [
        ("train", shard_name("train", 0), 3),
        ("test", shard_name("test", 0), 2),
    ]
    assert Manifest.from_dict(m.to_dict()) == m
    text = ds.manifest_path.read_text()
    ds.write_manifest(m)  # the same manifest gives the same bytes (sorted keys, indent 1)
    assert ds.manifest_path.read_text() == text and json.loads(text)["schema"] == "dpedkit-dataset"
    assert ds.same_content(root) and not ds.same_content(tmp_path)
    cols = ds.read_columns()
    assert list(cols["split"]) == ["train"] * 3 + ["test"] * 2 and cols["xy"].shape == (5, 2)
    phone, dslr = ds.read_patches([4, 0])
    assert phone.shape == (2, 8, 8, 3) and np.array_equal(phone[1], read_shard(ds.path(m.shards[0].path))["phone"][0])


def test_counts_from_records():
    records = [
        {"pair": "a", "status": "ok", "split": "train", "patches_kept": 3, "patches_total": 5},
        {"pair": "b", "status": "too-few-matches", "split": "test", "patches_kept": 0, "patches_total": 0},
        {"pair": "c", "status": "no-partner", "split": None, "patches_kept": 0, "patches_total": 0},
    ]
    c = Counts.from_records(records)
    assert (c.pairs, c.ok, c.patches_total) == (3, 1, 5)
    assert c.by_reason == {"no-partner": 1, "too-few-matches": 1}
    assert c.pairs_by_split == {"train": 1, "test": 1} and c.patches == {"train": 3, "test": 0}
    assert Counts.of_patches({"train": 4}).patches == dict(zip(SPLITS, (4, 0), strict=True))


def test_plan_and_records(tmp_path):
    ds = DatasetDir(tmp_path)
    plan = {"config": {"seed": 0}, "pairs": [["a", "p", "d"]], "inputs": {"a": [1, 2, 3, 4]}}
    assert ds.plan_text() is None and not ds.plan_matches(plan)
    ds.write_plan(plan)
    assert ds.plan_matches(plan)
    assert ds.plan_change(plan | {"config": {"seed": 1}}) == "other settings: seed: 0 in the dataset, 1 now"
    assert ds.plan_change(plan | {"inputs": {"a": [9, 2, 3, 4]}}).startswith("photos changed since")
    # a plan stored before photo stamps existed is the same job as one with stamps
    ds.plan_path.write_text(json.dumps({k: v for k, v in plan.items() if k != "inputs"}))
    assert ds.plan_matches(plan)
    shard = shard_name("train", 0)
    write(ds.path(shard), [])
    assert ds.shard_record(shard) is None
    ds.write_shard_record(shard, {"sha256": file_sha256(ds.path(shard)), "pairs": []})
    assert ds.shard_record(shard)["pairs"] == []
    ds.write_shard_record(shard, {"sha256": "0" * 64})
    assert ds.shard_record(shard) is None and ds.shard_record(shard, check=False) == {"sha256": "0" * 64}
    (tmp_path / "keep.txt").write_text("not ours")
    ds.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_shard_entry_is_checked():
    with pytest.raises(ShardError, match="unknown split"):
        ShardEntry("val", "val/shard-00000.h5", 1, "")
