import numpy as np

from dpedkit.dataset.format import Counts, DatasetDir, Manifest, ShardEntry, shard_name
from dpedkit.dataset.shards import ShardWriter, read_shard
from dpedkit.inspect import summary as dg


def test_worst_first_orders_by_kept_fraction_then_rmse():
    rows = [
        dg.flatten_pair_record({"pair": "a", "status": "ok", "patches_total": 10, "patches_kept": 9, "rmse_px": 0.5}),
        dg.flatten_pair_record({"pair": "b", "status": "ok", "patches_total": 10, "patches_kept": 3, "rmse_px": 0.5}),
        dg.flatten_pair_record({"pair": "c", "status": "too-few-matches", "patches_total": 0, "patches_kept": 0}),
        dg.flatten_pair_record({"pair": "d", "status": "ok", "patches_total": 10, "patches_kept": 3, "rmse_px": 0.9}),
        dg.flatten_pair_record({"pair": "e", "status": "ok", "alignment": {"rmse_px": 0.1, "inliers": 7}}),
    ]
    assert rows[4]["rmse_px"] == 0.1 and rows[4]["inliers"] == 7 and rows[0]["kept_fraction"] == 0.9
    assert [r["pair"] for r in dg.worst_first(rows)] == ["e", "c", "d", "b", "a"]


def make_fake_dataset(root, rng, *, kept=(("p1", 3, 10), ("p2", 5, 5)), size=20):
    """A finished dataset in the build's layout: shards, pairs.jsonl, dataset.json (written through DatasetDir)."""
    ds, records = DatasetDir(root), []
    with ShardWriter(ds.path(shard_name("train", 0)), patch_size=size) as w:
        for name, k, total in kept:
            w.append(
                name,
                phone=rng.integers(0, 255, (k, size, size, 3), dtype=np.uint8),
                dslr=rng.integers(0, 255, (k, size, size, 3), dtype=np.uint8),
                xy=np.arange(2 * k, dtype=np.int32).reshape(k, 2) * size,
                shift=rng.normal(0, 0.3, (k, 2)).astype(np.float32),
                angle=np.zeros(k, np.float32),
                ncc=np.linspace(0.99, 0.91, k, dtype=np.float32),
                texture=np.ones(k, np.float32),
            )
            records.append({"pair": name, "phone": f"{name}.jpg", "dslr": f"{name}.jpg", "status": "ok", "reason": "",
                            "split": "train", "patches_total": total, "patches_kept": k, "inliers": 100 * k,
                            "rmse_px": 0.5})  # fmt: skip
        info = w.close()
    records.append({"pair": "bad", "phone": None, "dslr": "bad.jpg", "status": "no-partner", "reason": "no phone photo",
                    "split": None, "patches_total": 0, "patches_kept": 0})  # fmt: skip
    ds.write_pairs(records)
    shards = (ShardEntry("train", shard_name("train", 0), info.rows, info.sha256),)
    config = {"patch": {"size": size, "ncc_min": 0.9}}
    ds.write_manifest(Manifest(config=config, counts=Counts.from_records(records), shards=shards))
    return root


def test_summarize_dataset_counts_and_columns(tmp_path, rng):
    s = dg.summarize_dataset(make_fake_dataset(tmp_path, rng))
    assert [p["pair"] for p in s.pairs] == ["bad", "p1", "p2"]
    assert s.status_counts == {"ok": 2, "no-partner": 1}
    assert s.split_pairs == {"train": 2, "test": 0} and s.split_patches == {"train": 8, "test": 0}
    assert s.patches_kept == 8 and s.patches_total == 15 and s.patch_size == 20 and s.ncc_min == 0.9
    assert list(s.columns["pair"]) == ["p1"] * 3 + ["p2"] * 5 and s.columns["shift"].shape == (8, 2)


def test_read_patches_returns_requested_rows(tmp_path, rng):
    root = make_fake_dataset(tmp_path, rng)
    ref = read_shard(root / shard_name("train", 0))
    phone, dslr = DatasetDir(root).read_patches([6, 0, 6])
    assert np.array_equal(phone, ref["phone"][[6, 0, 6]]) and np.array_equal(dslr, ref["dslr"][[6, 0, 6]])
    assert DatasetDir(root).read_patches([])[0].shape[0] == 0
