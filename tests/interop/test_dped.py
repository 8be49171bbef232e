"""import-dped / export-dped: official layout <-> dpedkit dataset, byte-exact round trips."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest

from dpedkit.dataset.loader import PatchDataset, load_split
from dpedkit.dataset.source import open_source
from dpedkit.errors import ConfigError, InputError, ShardError
from dpedkit.interop.dped import export_dped, import_dped
from dpedkit.io import read_rgb
from dpedkit.nn.device import to_float_chw
from dpedkit.nn.metrics import psnr
from dpedkit.testing import write_dped_tree, write_synthetic_dataset


def _same_tree(a: Path, b: Path) -> None:
    """The files of ``a`` and ``b`` are equal, byte for byte (``b``'s record of an export aside)."""
    from dpedkit.interop.transfer import EXPORT_RECORD

    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != EXPORT_RECORD)
    assert files_a == files_b
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert mismatch == [] and errors == []


def test_import_then_export_round_trips_the_files_exactly(tmp_path, rng):
    tree = write_dped_tree(tmp_path / "dped", rng)
    result = import_dped(tree, tmp_path / "ds", phone="sony", rows_per_shard=3)
    assert result.pairs == {"train": 7, "test": 4} and result.shards == 5 and result.full_size == 1
    assert result.copied_pairs == 11 and set(result.to_dict()) >= {"copied_pairs", "encoded_pairs"}
    # the dataset holds the decoded pixels, in index order, readable by the training/eval readers
    phone, dslr = load_split(tmp_path / "ds", "train")
    assert phone.shape == (7, 32, 32, 3)
    for i in (0, 4, 6):
        assert np.array_equal(phone[i], read_rgb(tree / "sony" / "training_data" / "sony" / f"{i}.jpg"))
        assert np.array_equal(dslr[i], read_rgb(tree / "sony" / "training_data" / "canon" / f"{i}.jpg"))
    out = export_dped(tmp_path / "ds", tmp_path / "back")  # phone defaults to the imported one
    assert out.copied_pairs == 11 and out.encoded_pairs == 0
    _same_tree(tree / "sony", tmp_path / "back" / "sony")


def test_import_accepts_the_phone_folder_and_parallel_jobs(tmp_path, rng):
    tree = write_dped_tree(tmp_path / "dped", rng)
    a = import_dped(tree / "sony", tmp_path / "a", rows_per_shard=2)
    b = import_dped(tree, tmp_path / "b", phone="sony", rows_per_shard=2, jobs=2)
    assert a.pairs == b.pairs
    assert [s.sha256 for s in PatchDataset(tmp_path / "a", "train").shards] == [
        s.sha256 for s in PatchDataset(tmp_path / "b", "train").shards
    ]


def test_export_of_a_built_dataset_encodes_and_numbers_the_rows(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=5, n_test=3, patch=32)
    out = export_dped(ds, tmp_path / "dped", phone="pixel", quality=95)
    assert out.encoded_pairs == 8 and out.copied_pairs == 0 and out.pairs == {"train": 5, "test": 3}
    phone, _ = load_split(ds, "test")
    folder = open_source(tmp_path / "dped", phone="pixel").reader("test")
    assert len(folder) == 3
    back = np.stack([folder.raw(i)[0] for i in range(3)])
    assert float(psnr(to_float_chw(back), to_float_chw(phone)).min()) > 35.0  # JPEG q95 of the stored pixels
    # and the exported tree imports again
    assert import_dped(tmp_path / "dped", tmp_path / "again", phone="pixel").pairs == {"train": 5, "test": 3}


def test_clear_errors(tmp_path, rng):
    with pytest.raises(InputError, match="not an official DPED folder"):
        import_dped(tmp_path, tmp_path / "x")
    tree = write_dped_tree(tmp_path / "dped", rng)
    import_dped(tree, tmp_path / "ds", phone="sony")
    with pytest.raises(InputError, match="not empty"):
        import_dped(tree, tmp_path / "ds", phone="sony")
    with pytest.raises(ConfigError, match="phone"):
        export_dped(tmp_path / "ds", tmp_path / "e", phone="canon")
    with pytest.raises(ShardError, match="not a finished dpedkit dataset"):
        export_dped(tmp_path / "dped", tmp_path / "e", phone="sony")
    export_dped(tmp_path / "ds", tmp_path / "e")
    with pytest.raises(InputError, match="not empty"):
        export_dped(tmp_path / "ds", tmp_path / "e")
    assert export_dped(tmp_path / "ds", tmp_path / "e", overwrite=True).copied_pairs == 11


def test_export_of_a_built_dataset_needs_a_phone_name(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=2, n_test=1, patch=32)
    with pytest.raises(ConfigError, match="--phone is required for datasets that were not imported from DPED"):
        export_dped(ds, tmp_path / "dped")
    assert not (tmp_path / "dped").exists()


@pytest.mark.parametrize("quality", [0, 101])
def test_export_quality_is_1_to_100(tmp_path, quality):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=2, n_test=1, patch=32)
    with pytest.raises(ConfigError, match=r"quality must be in \[1, 100\]"):
        export_dped(ds, tmp_path / "dped", phone="pixel", quality=quality)


def _listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"/" for p in root.rglob("*")}


def test_failed_import_leaves_nothing_it_created(tmp_path, rng):
    tree = write_dped_tree(tmp_path / "dped", rng)
    (tree / "sony" / "training_data" / "sony" / "5.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="5.jpg"):  # a new folder (and a new parent): both gone
        import_dped(tree, tmp_path / "new" / "ds", phone="sony", rows_per_shard=2)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()  # an existing empty folder stays, empty
    with pytest.raises(InputError, match="5.jpg"):
        import_dped(tree, tmp_path / "empty", phone="sony", rows_per_shard=2)
    assert list((tmp_path / "empty").iterdir()) == []
    good = write_dped_tree(tmp_path / "good", rng)  # an existing dataset survives a failed --overwrite
    import_dped(good, tmp_path / "ds", phone="sony")
    before = _listing(tmp_path / "ds")
    with pytest.raises(InputError, match="5.jpg"):
        import_dped(tree, tmp_path / "ds", phone="sony", rows_per_shard=2, overwrite=True)
    assert _listing(tmp_path / "ds") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dped", "ds", "empty", "good"]  # no staging folder left


def test_overwrite_replaces_only_an_earlier_import(tmp_path, rng):
    tree = write_dped_tree(tmp_path / "dped", rng, n_train=3, n_test=2)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="did not write"):  # not a dataset: --overwrite never deletes it
        import_dped(tree, tmp_path / "ds", phone="sony", overwrite=True)
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["notes.txt"]
    import_dped(tree, tmp_path / "first", phone="sony")
    (tmp_path / "first" / "notes.txt").write_text("mine")
    (tmp_path / "first" / "train" / "readme.txt").write_text("mine too")
    small = write_dped_tree(tmp_path / "small", rng, n_train=2, n_test=1)
    result = import_dped(small, tmp_path / "first", phone="sony", overwrite=True)
    assert result.out == str(tmp_path / "first") and len(PatchDataset(tmp_path / "first", "train")) == 2
    assert (tmp_path / "first" / "notes.txt").read_text() == "mine"  # files it did not write are kept
    assert (tmp_path / "first" / "train" / "readme.txt").read_text() == "mine too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dped", "ds", "first", "small"]


@pytest.mark.shared
def test_round_trip_of_the_real_dped_test_pairs(shared, tmp_path):
    dped = shared("data", "dped")
    result = import_dped(dped, tmp_path / "ds", phone="iphone", rows_per_shard=30)
    assert result.pairs == {"train": 0, "test": 100} and result.shards == 4
    export_dped(tmp_path / "ds", tmp_path / "back", phone="iphone")
    _same_tree(dped / "iphone", tmp_path / "back" / "iphone")


def test_a_symlinked_output_folder_is_refused_and_nothing_is_left(tmp_path, rng):
    good = write_dped_tree(tmp_path / "good", rng)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(InputError, match="symbolic link"):
        import_dped(good, tmp_path / "link", phone="sony", overwrite=True)
    assert (tmp_path / "real" / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "link", "real"]  # no staging folder left
