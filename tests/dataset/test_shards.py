import json

import h5py
import numpy as np
import pytest

from dpedkit.dataset.format import Counts, DatasetDir, Manifest, ShardEntry, shard_name
from dpedkit.dataset.shards import (
    SCHEMA,
    SCHEMA_VERSION,
    HDF5Store,
    ShardWriter,
    current_store,
    file_sha256,
    open_reader,
    open_shard,
    read_shard,
    shard_candidates,
    shard_exists,
    shard_sha256,
    shard_writer,
    using_store,
)
from dpedkit.errors import ShardError
from dpedkit.testing import MemoryShards
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


# ------------------------------------------------------------------------------------------- the storage seam


def test_hdf5_reader_keeps_the_checks_of_open_shard(tmp_path, rng):
    """open_reader (HDF5Reader) refuses what open_shard refuses, with the same words, and names the shard."""
    assert isinstance(current_store(), HDF5Store)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["phone"] = np.zeros((1, 8, 8, 3), np.uint8)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    write(tmp_path / "s.h5", [("a", patch_group(rng, 2))])
    with h5py.File(tmp_path / "s.h5", "a") as f:
        del f["ncc"]
    for name, words in [("foreign.h5", "not a dpedkit patch shard"), ("junk.h5", "not a readable HDF5"),
                        ("s.h5", "'ncc' is missing"), ("nope.h5", "shard file is missing")]:  # fmt: skip
        with pytest.raises(ShardError, match=words) as exc:
            open_reader(tmp_path / name)
        assert str(exc.value).startswith(str(tmp_path / name))
    assert shard_exists(tmp_path / "s.h5") and not shard_exists(tmp_path / "nope.h5")


def test_hdf5_reader_reads_what_was_written(tmp_path, rng):
    groups = [("IMG_1", patch_group(rng, 3)), ("IMG_2", patch_group(rng, 2))]
    write(tmp_path / "s.h5", groups)
    with open_reader(tmp_path / "s.h5") as r:
        assert r.rows == 5 and r.attrs["split"] == "train" and int(r.attrs["patch_size"]) == 8
        assert "phone" in r and "baseline" not in r and "candidates" not in r and r.candidates() is None
        phone = r.images("phone")
        assert phone.shape == (5, 8, 8, 3) and phone.dtype == np.uint8 and len(phone) == 5
        np.testing.assert_array_equal(phone[3], groups[1][1]["phone"][0])
        assert r.column("pair").tolist() == ["IMG_1"] * 3 + ["IMG_2"] * 2 and r.column("pair").dtype == object
        out = np.zeros((7, 8, 8, 3), np.uint8)
        r.read_into("dslr", out, 1)
        np.testing.assert_array_equal(out[1:6], np.concatenate([g["dslr"] for _, g in groups]))
        assert not out[0].any() and not out[6].any()
        assert r.checksummed() and r.unreadable() == []
        with pytest.raises(ShardError, match="unknown patch column"):
            r.column("phone")
    assert shard_exists(tmp_path / "s.h5") and shard_sha256(tmp_path / "s.h5") == file_sha256(tmp_path / "s.h5")
    with shard_writer(tmp_path / "u.h5", patch_size=8, checksums=False) as w:
        w.append("IMG_1", **groups[0][1])
    with open_reader(tmp_path / "u.h5") as r:
        assert not r.checksummed() and r.images("phone")[()].shape == (3, 8, 8, 3)


def test_hdf5_reader_names_a_damaged_patch(tmp_path, rng):
    write(tmp_path / "s.h5", [("a", patch_group(rng, 3))])
    with h5py.File(tmp_path / "s.h5") as f:
        offset = f["dslr"].id.get_chunk_info(1).byte_offset
    data = bytearray((tmp_path / "s.h5").read_bytes())
    data[offset + 100] ^= 0xFF
    (tmp_path / "s.h5").write_bytes(bytes(data))
    with open_reader(tmp_path / "s.h5") as r:
        assert r.unreadable() == ["dslr: row 1 cannot be read (its chunk fails its checksum)"]
        r.images("dslr")[0]
        with pytest.raises(ShardError, match="damaged shard data") as exc:
            r.images("dslr")[1]
        assert str(tmp_path / "s.h5") in str(exc.value)
        with pytest.raises(ShardError, match="damaged shard data"):
            r.read_into("dslr", np.zeros((3, 8, 8, 3), np.uint8), 0)


def test_using_store_routes_and_restores():
    memory, other = MemoryShards(), MemoryShards()
    with using_store(memory):
        assert current_store() is memory
        with using_store(other):
            assert current_store() is other
        assert current_store() is memory
    assert isinstance(current_store(), HDF5Store)
    with pytest.raises(RuntimeError), using_store(memory):
        raise RuntimeError
    assert isinstance(current_store(), HDF5Store)


def _seam_dataset(root):
    """A two-shard dataset with candidate windows, written through the current store (the same data every time)."""
    rng = np.random.default_rng(3)
    ds, entries = DatasetDir(root), []
    for split in ("train", "test"):
        rel = shard_name(split, 0)
        write_with_candidates(ds.path(rel), rng)  # 2 patch pairs
        entries.append(ShardEntry(split, rel, 2, shard_sha256(ds.path(rel))))
    ds.write_manifest(Manifest(config={"source": "test"}, counts=Counts.of_patches({"train": 2, "test": 2}),
                               shards=tuple(entries)))  # fmt: skip
    return ds


def test_the_memory_store_answers_as_hdf5(tmp_path):
    """MemoryShards, the test double, gives every dataset reader the answers the HDF5 files give."""

    def answers(ds):
        return {
            "columns": ds.read_columns(),
            "patches": ds.read_patches([3, 0, 2]),
            "candidates": ds.read_candidates(),
            "of a": ds.read_candidates(["a"], columns=["ncc", "row", "split"]),
            "counted": ds.read_candidates(["b"], columns=["shard"]),
            "size": ds.patch_size(),
            "stored": ds.has_candidates(),
            "verified": [(s.rows, s.checksummed, s.problems) for s in ds.verify().shards],
            "shard": {k: v for k, v in read_shard(ds.path(shard_name("test", 0))).items() if k != "attrs"},
            "attrs": read_shard(ds.path(shard_name("test", 0)))["attrs"],
        }

    on_disk = answers(_seam_dataset(tmp_path / "h5"))
    with using_store(MemoryShards()) as store:
        in_memory = answers(_seam_dataset(tmp_path / "mem"))
    assert len(store.shards) == 2 and not list(tmp_path.glob("mem/**/*.h5"))
    assert on_disk.keys() == in_memory.keys()
    for key, a in on_disk.items():
        b = in_memory[key]
        if isinstance(a, dict):
            assert a.keys() == b.keys(), key
            for k in a:
                assert np.array_equal(a[k], b[k]) and np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, (key, k)
        elif isinstance(a, tuple):
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), key
        else:
            assert a == b, key
