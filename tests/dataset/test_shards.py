import json

import h5py
import numpy as np
import pytest

from dpedkit.dataset.shards import (
    SCHEMA,
    SCHEMA_VERSION,
    ShardWriter,
    file_sha256,
    open_shard,
    read_shard,
    shard_candidates,
)
from dpedkit.errors import ShardError
from dpedkit.testing import random_candidates as candidate_group
from dpedkit.testing import random_patches as patch_group
from dpedkit.testing import write_shard as write
from dpedkit.testing import write_two_pair_shard as write_with_candidates


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
