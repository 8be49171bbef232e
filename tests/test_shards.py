import json

import h5py
import numpy as np
import pytest

from dpedkit.errors import ShardError
from dpedkit.shards import SCHEMA, ShardWriter, file_sha256, open_shard, read_manifest, read_shard, split_shards


def patch_group(rng, k, p=8):
    return {
        "phone": rng.integers(0, 256, (k, p, p, 3), dtype=np.uint8),
        "dslr": rng.integers(0, 256, (k, p, p, 3), dtype=np.uint8),
        "xy": rng.integers(0, 500, (k, 2), dtype=np.int32),
        "shift": rng.normal(size=(k, 2)).astype(np.float32),
        "angle": rng.normal(size=k).astype(np.float32),
        "ncc": rng.uniform(0.9, 1, k).astype(np.float32),
        "texture": rng.uniform(0, 1, k).astype(np.float32),
    }


def write(path, groups, p=8):
    with ShardWriter(path, patch_size=p, attrs={"config": {"seed": 0}, "split": "train"}) as w:
        for name, g in groups:
            w.append(name, **g)
    return w


def test_roundtrip_and_layout(tmp_path, rng):
    groups = [("IMG_1", patch_group(rng, 3)), ("IMG_2", patch_group(rng, 0)), ("IMG_3", patch_group(rng, 4))]
    write(tmp_path / "s.h5", groups)
    d = read_shard(tmp_path / "s.h5")
    assert d["phone"].shape == (7, 8, 8, 3) and d["phone"].dtype == np.uint8
    assert list(d["pair"]) == ["IMG_1"] * 3 + ["IMG_3"] * 4
    for key in ("phone", "dslr", "xy", "shift", "angle", "ncc", "texture"):
        np.testing.assert_array_equal(d[key], np.concatenate([groups[0][1][key], groups[2][1][key]]))
    assert d["attrs"]["schema"] == SCHEMA and json.loads(d["attrs"]["config"]) == {"seed": 0}
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["phone"].chunks == (1, 8, 8, 3) and f["phone"].compression is None


def test_deterministic_bytes_and_no_leftovers(tmp_path):
    g = [("a", patch_group(np.random.default_rng(1), 5))]
    write(tmp_path / "a.h5", g)
    write(tmp_path / "b.h5", g)
    assert file_sha256(tmp_path / "a.h5") == file_sha256(tmp_path / "b.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"]


def test_failed_write_leaves_nothing(tmp_path, rng):
    with pytest.raises(ShardError, match="xy"):
        with ShardWriter(tmp_path / "s.h5", patch_size=8) as w:
            g = patch_group(rng, 2)
            g["xy"] = g["xy"][:1]
            w.append("a", **g)
    assert list(tmp_path.iterdir()) == []


def test_refuses_foreign_and_damaged(tmp_path, rng):
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["phone"] = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ShardError, match="not a dpedkit patch shard"):
        open_shard(tmp_path / "foreign.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ShardError, match="not a readable HDF5"):
        open_shard(tmp_path / "junk.h5")
    write(tmp_path / "s.h5", [("a", patch_group(rng, 2))])
    with h5py.File(tmp_path / "s.h5", "a") as f:
        del f["ncc"]
    with pytest.raises(ShardError, match="'ncc' is missing"):
        open_shard(tmp_path / "s.h5")
    with pytest.raises(ShardError, match="missing"):
        open_shard(tmp_path / "nope.h5")


def test_manifest_checks(tmp_path, rng):
    with pytest.raises(ShardError, match="not a finished"):
        read_manifest(tmp_path)
    write(tmp_path / "train" / "shard-00000.h5", [("a", patch_group(rng, 2))])
    entry = {"split": "train", "path": "train/shard-00000.h5", "rows": 2, "sha256": "0" * 64}
    (tmp_path / "dataset.json").write_text(
        json.dumps({"schema": "dpedkit-dataset", "schema_version": 1, "shards": [entry]})
    )
    assert [s.rows for s in split_shards(tmp_path, "train")] == [2]
    assert split_shards(tmp_path, "test") == []
    with pytest.raises(ShardError, match="checksum mismatch"):
        split_shards(tmp_path, "train", verify=True)
    with pytest.raises(ShardError, match="unknown split"):
        split_shards(tmp_path, "val")
