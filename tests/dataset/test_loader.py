import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dpedkit.dataset.format import DatasetDir
from dpedkit.dataset.loader import PatchDataset, load_baseline, load_split
from dpedkit.dataset.shards import CANDIDATE_COLUMNS, ShardWriter, read_shard, shard_writer, using_store
from dpedkit.errors import ShardError
from dpedkit.nn.device import to_float_chw
from dpedkit.testing import MemoryShards, patch_columns, synthetic_patches, write_patch_dataset


def make_dataset(root, sizes, p=8):
    """A finished dataset folder whose patch i (global order) is filled with value i (phone) and 255 - i (dslr)."""
    entries, start = [], 0
    for k, n in enumerate(sizes):
        rel = f"train/shard-{k:05d}.h5"
        with ShardWriter(root / rel, patch_size=p) as w:
            vals = np.arange(start, start + n, dtype=np.uint8)[:, None, None, None]
            w.append(
                f"pair{k}",
                phone=np.broadcast_to(vals, (n, p, p, 3)),
                dslr=np.broadcast_to(255 - vals, (n, p, p, 3)),
                xy=np.zeros((n, 2), np.int32),
                shift=np.zeros((n, 2), np.float32),
                angle=np.zeros(n, np.float32),
                ncc=np.ones(n, np.float32),
                texture=np.ones(n, np.float32),
            )
        entries.append({"split": "train", "path": rel, "rows": n, "sha256": ""})
        start += n
    manifest = {"schema": "dpedkit-dataset", "schema_version": 1, "shards": entries}
    (root / "dataset.json").write_text(json.dumps(manifest))
    return root


def test_items_are_float_chw_in_order(tmp_path):
    ds = PatchDataset(make_dataset(tmp_path, [3, 0, 4]))
    assert len(ds) == 7
    phone, dslr = ds[5]
    assert phone.shape == (3, 8, 8) and phone.dtype == torch.float32
    assert torch.all(phone == 5 / 255) and torch.all(dslr == 250 / 255)
    assert ds.locate(3) == (2, 0)
    with pytest.raises(IndexError):
        ds[7]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(tmp_path, context):
    ds = PatchDataset(make_dataset(tmp_path, [5, 6]))
    ds[0]  # open a handle in the parent first: workers must not reuse it
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=context)
    phone = torch.cat([b[0] for b in loader])
    assert torch.equal(phone[:, 0, 0, 0] * 255, torch.arange(11, dtype=torch.float32))


def test_load_split_matches_dataset(tmp_path):
    root = make_dataset(tmp_path, [2, 3])
    phone, dslr = load_split(root, "train")
    assert phone.shape == (5, 8, 8, 3) and phone.dtype == np.uint8
    ds = PatchDataset(root)
    assert torch.equal(to_float_chw(phone), torch.stack([ds[i][0] for i in range(5)]))
    t_phone, t_dslr = load_split(root, "train", device="cpu")
    assert t_dslr.dtype == torch.uint8 and torch.equal(t_dslr, torch.from_numpy(dslr))
    empty, _ = load_split(root, "test")
    assert empty.shape[0] == 0


def test_refuses_foreign_damaged_and_unfinished(tmp_path):
    with pytest.raises(ShardError, match="not a finished"):
        PatchDataset(tmp_path)
    root = make_dataset(tmp_path, [2])
    with h5py.File(root / "train/shard-00000.h5", "a") as f:
        f.attrs["schema"] = "something-else"
    with pytest.raises(ShardError, match="not a dpedkit patch shard"):
        PatchDataset(root)
    (root / "train/shard-00000.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ShardError, match="not a readable HDF5"):
        load_split(root, "train")


@pytest.mark.gpu
def test_load_split_to_gpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    phone, dslr = load_split(make_dataset(tmp_path, [2, 3]), "train", device="cuda")
    assert phone.is_cuda and phone.dtype == torch.uint8 and phone.shape == (5, 8, 8, 3)
    assert torch.equal(phone[:, 0, 0, 0].cpu(), torch.arange(5, dtype=torch.uint8))


def test_open_files_are_bounded(tmp_path):
    ds = PatchDataset(make_dataset(tmp_path, [1] * 6), max_open=2)
    for i in [0, 1, 2, 0, 5, 3, 0]:
        assert torch.all(ds[i][0] == i / 255)
        assert len(ds._handles) <= 2
    assert list(ds._handles) == [3, 0]  # least recently used closed first


@pytest.mark.parametrize("candidates", [False, True])
def test_version_1_and_version_2_shards_load(tmp_path, candidates):
    """Shards written before the candidates/ group (schema 1) and shards with it (schema 2) read the same."""
    root = make_dataset(tmp_path, [2, 3])
    for k in range(2):
        with h5py.File(root / f"train/shard-{k:05d}.h5", "a") as f:
            if candidates:  # a build's group: one window per patch, all kept
                g = f.create_group("candidates")
                g.attrs["rows"] = n = f.attrs["rows"]
                for name, (dtype, tail) in CANDIDATE_COLUMNS.items():
                    g.create_dataset(name, data=np.zeros((n, *tail), "S1" if name == "pair" else dtype))
            else:
                f.attrs["schema_version"] = 1
    phone, _ = load_split(root, "train")
    assert torch.equal(to_float_chw(phone), torch.stack([PatchDataset(root)[i][0] for i in range(5)]))
    assert phone[:, 0, 0, 0].tolist() == list(range(5))


def _write_numbered(paths, sizes, p=8):
    """Shards through the current store whose patch i (global order) is filled with i (phone) and 255 - i (dslr)."""
    start = 0
    for path, n in zip(paths, sizes, strict=True):
        vals = np.arange(start, start + n, dtype=np.uint8)[:, None, None, None]
        with shard_writer(path, patch_size=p, attrs={"split": "train"}) as w:
            w.append(f"pair{start}", phone=np.broadcast_to(vals, (n, p, p, 3)),
                     dslr=np.broadcast_to(255 - vals, (n, p, p, 3)), **patch_columns(n))  # fmt: skip
        start += n


def test_the_loader_reads_through_the_shard_store(tmp_path):
    """The storage seam: with an in-memory store, the loader and read_shard run and no file is touched."""
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    with using_store(MemoryShards()) as store:
        _write_numbered(paths, [3, 2])
        ds = PatchDataset(paths)
        assert [int(ds.raw(i)[0][0, 0, 0]) for i in range(len(ds))] == [0, 1, 2, 3, 4]
        phone, dslr = load_split(paths)
        assert phone[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4] and dslr[:, 0, 0, 0].tolist() == [255, 254, 253, 252, 251]
        t_phone, _ = load_split(paths, device="cpu")
        assert torch.equal(t_phone, torch.from_numpy(phone))
        assert load_baseline(paths) is None
        whole = read_shard(paths[1])
        assert whole["pair"].tolist() == ["pair3", "pair3"] and whole["attrs"]["split"] == "train"
        assert sorted(store.shards) == sorted(paths)
    assert not any(tmp_path.iterdir())
    # a dataset keeps the store it was made under, also when pickled to a worker (spawn)
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[4][1], ds[4][1]) and torch.all(again[4][1] == 251 / 255)
    with pytest.raises(ShardError, match="shard file is missing"):
        PatchDataset(paths)  # outside the block: HDF5 files again, and there are none


def test_a_dataset_folder_reads_through_the_shard_store(tmp_path):
    """DatasetDir, the loader and verify over shards kept in memory: dataset.json is the one file written."""
    rng = np.random.default_rng(0)
    splits = {"train": synthetic_patches(5, 8, rng), "test": synthetic_patches(2, 8, rng)}
    with using_store(MemoryShards()):
        root = write_patch_dataset(tmp_path / "ds", splits, config={"source": "test"})
        assert [p.name for p in root.rglob("*")] == ["dataset.json"]
        ds = DatasetDir(root)
        assert ds.verify().ok and all(s.checksummed for s in ds.verify().shards)
        assert ds.patch_size() == 8 and not ds.has_candidates()
        assert ds.read_columns(["pair"])["pair"].tolist() == ["synthetic-train"] * 5 + ["synthetic-test"] * 2
        phone, dslr = ds.read_patches([6, 0])
        assert np.array_equal(phone, np.stack([splits["test"][0][1], splits["train"][0][0]]))
        phone, dslr = load_split(root, "train", verify=True)
        assert np.array_equal(dslr, splits["train"][1])
        assert torch.equal(PatchDataset(root, "test", verify=True)[1][1], to_float_chw(splits["test"][1][1]))
    assert [p.name for p in root.rglob("*")] == ["dataset.json"]
