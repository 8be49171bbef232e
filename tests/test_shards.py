import json

import h5py
import numpy as np
import pytest

from dpedkit.errors import ShardError
from dpedkit.shards import (
    SCHEMA,
    SCHEMA_VERSION,
    ShardWriter,
    dataset_has_candidates,
    file_sha256,
    open_shard,
    read_candidates,
    read_manifest,
    read_shard,
    shard_candidates,
    split_shards,
)


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


def candidate_group(rng, m, kept):
    """``m`` candidate windows of a pair, those at indices ``kept`` kept."""
    flags = np.zeros(m, bool)
    flags[kept] = True
    return {
        "xy": rng.integers(0, 500, (m, 2), dtype=np.int32),
        "grid": rng.integers(0, 5, (m, 2), dtype=np.int32),
        "shift": rng.normal(size=(m, 2)).astype(np.float32),
        "angle": rng.normal(size=m).astype(np.float32),
        "ncc": rng.uniform(0, 1, m).astype(np.float32),
        "texture": rng.uniform(0, 1, m).astype(np.float32),
        "kept": flags,
        "at_radius": rng.uniform(size=m) < 0.2,
        "outside": np.zeros(m, bool),
    }


def write_with_candidates(path, rng, p=8):
    """Two pairs: 'a' with 5 windows (2 kept), 'b' with 3 windows (none kept)."""
    cands = {"a": candidate_group(rng, 5, [1, 3]), "b": candidate_group(rng, 3, [])}
    with ShardWriter(path, patch_size=p, attrs={"pairs": ["a", "b"]}, candidates=True) as w:
        w.append("a", candidates=cands["a"], **patch_group(rng, 2, p))
        w.append("b", candidates=cands["b"], **patch_group(rng, 0, p))
    return cands


def test_candidates_roundtrip_with_patch_rows(tmp_path, rng):
    cands = write_with_candidates(tmp_path / "s.h5", rng)
    d = read_shard(tmp_path / "s.h5")
    assert len(d["phone"]) == 2 and d["attrs"]["schema_version"] == SCHEMA_VERSION == 2
    assert list(d["candidates/pair"]) == ["a"] * 5 + ["b"] * 3
    for key, a in cands["a"].items():
        np.testing.assert_array_equal(d[f"candidates/{key}"], np.concatenate([a, cands["b"][key]]))
    assert d["candidates/kept"].dtype == bool
    np.testing.assert_array_equal(d["candidates/row"], [-1, 0, -1, 1, -1, -1, -1, -1])
    with open_shard(tmp_path / "s.h5") as f:
        only_b = shard_candidates(f, pairs={"b"}, columns=["ncc"])
    assert set(only_b) == {"ncc"} and len(only_b["ncc"]) == 3
    write_with_candidates(tmp_path / "t.h5", np.random.default_rng(5))
    write_with_candidates(tmp_path / "u.h5", np.random.default_rng(5))
    assert file_sha256(tmp_path / "t.h5") == file_sha256(tmp_path / "u.h5")


def test_candidates_must_match_the_patches(tmp_path, rng):
    with pytest.raises(ShardError, match="2 candidate windows are kept but 1 patches"):
        with ShardWriter(tmp_path / "s.h5", patch_size=8, candidates=True) as w:
            w.append("a", candidates=candidate_group(rng, 4, [0, 2]), **patch_group(rng, 1))
    with pytest.raises(ShardError, match="'grid' must have shape"):
        with ShardWriter(tmp_path / "s.h5", patch_size=8, candidates=True) as w:
            c = candidate_group(rng, 4, [0])
            w.append("a", candidates=c | {"grid": c["grid"][:3]}, **patch_group(rng, 1))
    with pytest.raises(ShardError, match="candidates=False"):
        with ShardWriter(tmp_path / "s.h5", patch_size=8) as w:
            w.append("a", candidates=candidate_group(rng, 4, [0]), **patch_group(rng, 1))
    assert list(tmp_path.iterdir()) == []


def test_damaged_candidates_and_newer_versions_are_refused(tmp_path, rng):
    write_with_candidates(tmp_path / "s.h5", rng)
    with h5py.File(tmp_path / "s.h5", "a") as f:
        del f["candidates/ncc"]
    with pytest.raises(ShardError, match="candidates/ncc is missing"):
        open_shard(tmp_path / "s.h5")
    write_with_candidates(tmp_path / "t.h5", rng)
    with h5py.File(tmp_path / "t.h5", "a") as f:
        f["candidates"].attrs["rows"] = 7
    with pytest.raises(ShardError, match="candidates/pair has shape"):
        open_shard(tmp_path / "t.h5")
    write_with_candidates(tmp_path / "v.h5", rng)
    with h5py.File(tmp_path / "v.h5", "a") as f:
        f.attrs["schema_version"] = 3
    with pytest.raises(ShardError, match="version 3 is not supported"):
        open_shard(tmp_path / "v.h5")


def test_version_1_shards_without_candidates_still_read(tmp_path, rng):
    write(tmp_path / "train" / "shard-00000.h5", [("a", patch_group(rng, 2))])
    with h5py.File(tmp_path / "train" / "shard-00000.h5", "a") as f:
        f.attrs["schema_version"] = 1  # what dpedkit wrote before candidates
    entry = {"split": "train", "path": "train/shard-00000.h5", "rows": 2, "sha256": "0" * 64}
    (tmp_path / "dataset.json").write_text(
        json.dumps({"schema": "dpedkit-dataset", "schema_version": 1, "shards": [entry]})
    )
    assert len(read_shard(tmp_path / "train" / "shard-00000.h5")["ncc"]) == 2
    assert not dataset_has_candidates(tmp_path)
    with pytest.raises(ShardError, match="stores no candidate windows"):
        read_candidates(tmp_path)


def test_read_candidates_of_a_dataset(tmp_path, rng):
    entries = []
    for split, seed in (("train", 1), ("test", 2)):
        rel = f"{split}/shard-00000.h5"
        write_with_candidates(tmp_path / rel, np.random.default_rng(seed))
        entries.append({"split": split, "path": rel, "rows": 2, "sha256": file_sha256(tmp_path / rel)})
    (tmp_path / "dataset.json").write_text(
        json.dumps({"schema": "dpedkit-dataset", "schema_version": 2, "shards": entries})
    )
    assert dataset_has_candidates(tmp_path)
    c = read_candidates(tmp_path)
    assert len(c["ncc"]) == 16 and list(c["split"]) == ["train"] * 8 + ["test"] * 8
    assert list(c["shard"][[0, 15]]) == ["train/shard-00000.h5", "test/shard-00000.h5"]
    sub = read_candidates(tmp_path, ["b"], columns=["kept", "split"])
    assert set(sub) == {"kept", "split"} and len(sub["kept"]) == 6 and not sub["kept"].any()
    assert list(sub["split"]) == ["train"] * 3 + ["test"] * 3
    assert (
        list(read_candidates(tmp_path, ["a"], columns=["shard"])["shard"])
        == ["train/shard-00000.h5"] * 5 + ["test/shard-00000.h5"] * 5
    )
    assert len(read_candidates(tmp_path, ["zzz"])["ncc"]) == 0  # listed in no shard: none read
    with pytest.raises(ShardError, match="unknown candidate column"):
        read_candidates(tmp_path, columns=["nope"])
