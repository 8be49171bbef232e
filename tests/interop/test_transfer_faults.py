"""Issue 20, imports and exports: every adversarial input below is made here in code.

An export over a folder it never wrote, two imports into one folder, damaged originals, killed transfers, patches
of mixed sizes, a full disk: each is one line (exit 2) naming the user's path, or a safe outcome.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from dpedkit_cli.main import cli

from dpedkit.dataset.format import DatasetDir
from dpedkit.errors import InputError, ShardError
from dpedkit.interop.dped import export_dped, import_dped
from dpedkit.interop.transfer import EXPORT_RECORD
from dpedkit.interop.zrr import export_zrr, import_zrr
from dpedkit.io import LOCK_NAME, folder_lock
from dpedkit.testing import write_dped_tree, write_synthetic_dataset, write_zrr_tree


@pytest.fixture
def zrr_ds(tmp_path, rng):
    """A ZRR tree (3 train, 1 test pairs) and its import ``ds``."""
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=3, n_test=1)
    import_zrr(tree, tmp_path / "ds")
    return tree, tmp_path / "ds"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _line(output: str) -> str:
    return " ".join(output.split())


# ------------------------------------------------------------------------ 1. --overwrite and the export record


@pytest.mark.parametrize("layout", ["zrr", "dped"])
def test_export_overwrite_onto_a_folder_dpedkit_never_wrote_is_refused(tmp_path, zrr_ds, layout):
    """The user's own folder in the layout's shape: before, --overwrite deleted every image in its folders."""
    if layout == "zrr":
        ds, out, mine = zrr_ds[1], tmp_path / "out", tmp_path / "out" / "train" / "canon"
        command = ["export-zrr", str(ds), "-o", str(out), "--overwrite"]
    else:
        ds, out = write_synthetic_dataset(tmp_path / "rgb", n_train=2, n_test=1, patch=16), tmp_path / "dped"
        mine = out / "pixel" / "training_data" / "canon"
        command = ["export-dped", str(ds), "-o", str(out), "--phone", "pixel", "--overwrite"]
    mine.mkdir(parents=True)
    for name in ("0.jpg", "1.jpg", "holiday.jpg"):
        (mine / name).write_bytes(b"the user's photo " + name.encode())
    before = _files(out)
    res = CliRunner().invoke(cli, command)
    assert res.exit_code == 2, res.output
    assert f"but no {EXPORT_RECORD}" in _line(res.output) and "--overwrite deletes only files" in _line(res.output)
    assert _files(out) == before  # every file survives
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder, no lock left


def test_an_export_records_its_files_and_overwrite_deletes_only_those(tmp_path, zrr_ds, rng):
    _, ds = zrr_ds
    out = tmp_path / "out"
    export_zrr(ds, out)
    record = json.loads((out / EXPORT_RECORD).read_text())
    assert record["schema"] == "dpedkit-export" and record["layout"] == "zrr"
    assert sorted(record["files"]) == sorted(set(_files(out)) - {EXPORT_RECORD})
    (out / "train" / "canon" / "holiday.jpg").write_bytes(b"mine")  # the user's, in a folder of the export
    (out / "README").write_text("mine too")
    import_zrr(write_zrr_tree(tmp_path / "small", rng, n_train=2, n_test=1), tmp_path / "small_ds")
    export_zrr(tmp_path / "small_ds", out, overwrite=True)
    assert (out / "train" / "canon" / "holiday.jpg").read_bytes() == b"mine" and (out / "README").exists()
    assert not (out / "train" / "canon" / "2.jpg").exists()  # the earlier export's own third row is gone
    assert sorted(json.loads((out / EXPORT_RECORD).read_text())["files"]) == sorted(
        set(_files(out)) - {EXPORT_RECORD, "README", "train/canon/holiday.jpg"}
    )


def test_overwrite_never_replaces_a_file_the_record_does_not_list(tmp_path, zrr_ds, rng):
    _, ds = zrr_ds
    out = tmp_path / "out"
    import_zrr(write_zrr_tree(tmp_path / "small", rng, n_train=1, n_test=1), tmp_path / "small_ds")
    export_zrr(tmp_path / "small_ds", out)  # train/canon/0.jpg only
    (out / "train" / "canon" / "2.jpg").write_bytes(b"mine")  # where the bigger export would write
    before = _files(out)
    with pytest.raises(InputError, match=rf"2\.jpg: exists and is not listed in .*{EXPORT_RECORD}"):
        export_zrr(ds, out, overwrite=True)
    assert _files(out) == before  # nothing was changed, the earlier export included


def test_a_forged_record_deletes_nothing_outside(tmp_path, zrr_ds):
    _, ds = zrr_ds
    out = tmp_path / "out"
    export_zrr(ds, out)
    (tmp_path / "precious.txt").write_text("keep")
    record = json.loads((out / EXPORT_RECORD).read_text())
    (out / EXPORT_RECORD).write_text(json.dumps(record | {"files": ["../precious.txt"]}))
    with pytest.raises(InputError, match=r"lists '\.\./precious\.txt', not a file an export writes"):
        export_zrr(ds, out, overwrite=True)
    assert (tmp_path / "precious.txt").read_text() == "keep"


# ----------------------------------------------------------------------------- 3. two transfers into one folder


def test_a_second_import_into_the_same_folder_is_refused(tmp_path, rng):
    """Before, the second one to finish crashed with a TypeError in staged()."""
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)
    out = tmp_path / "ds"
    seen = []

    def meanwhile(done: int, total: int) -> None:  # a second run starts while the first one writes
        if done == 1:
            with pytest.raises(InputError, match=r"ds: is in use: dpedkit import-zrr, pid \d+") as exc:
                import_zrr(tree, out)
            seen.append(str(exc.value))

    import_zrr(tree, out, rows_per_shard=1, on_progress=meanwhile)
    assert seen and DatasetDir(out).verify().ok  # the first one finished as if alone
    with folder_lock(tmp_path, "import-zrr", name=f".ds{LOCK_NAME}", shown=out):  # as a running import holds it
        res = CliRunner().invoke(cli, ["import-zrr", str(tree), "-o", str(tmp_path / "ds"), "--overwrite"])
    assert res.exit_code == 2 and "is in use: dpedkit import-zrr" in _line(res.output), res.output
    assert "Traceback" not in res.output


def test_an_output_folder_made_meanwhile_by_another_program_is_left_alone(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)
    out = tmp_path / "ds"

    def meanwhile(done: int, total: int) -> None:
        if done == total:
            out.mkdir()
            (out / "theirs.txt").write_text("theirs")

    with pytest.raises(InputError, match="was created by another program while this command ran"):
        import_zrr(tree, out, on_progress=meanwhile)
    assert _files(out) == {"theirs.txt": b"theirs"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "zrr"]


# ------------------------------------------------------------------------ 7. what a killed transfer leaves


def test_a_rerun_sweeps_the_staging_folder_a_killed_transfer_left(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)
    killed = tmp_path / ".ds.0123abcd.tmp"  # what `kill -9` of an import into ds leaves
    (killed / "train").mkdir(parents=True)
    (killed / "train" / "shard-00000.h5").write_bytes(b"\0" * 1000)
    others = [tmp_path / ".ds2.0123abcd.tmp", tmp_path / ".ds.notastage.tmp"]  # not ds's: kept
    for other in others:
        other.mkdir()
    import_zrr(tree, tmp_path / "ds")
    assert not killed.exists() and all(o.is_dir() for o in others)
    export_zrr(tmp_path / "ds", tmp_path / "out")
    (tmp_path / ".out.fedcba98.tmp").mkdir()  # and an export's
    export_zrr(tmp_path / "ds", tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(o.name for o in others)


# --------------------------------------------------------------------------- 8. errors name the user's path


def test_a_full_disk_during_an_import_names_the_dataset_not_the_staging_folder(tmp_path, rng, monkeypatch):
    from dpedkit.dataset import shards

    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)

    def full(path, nbytes, *, name=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(name or path))

    monkeypatch.setattr(shards, "check_room", full)
    res = CliRunner().invoke(cli, ["import-zrr", str(tree), "-o", str(tmp_path / "ds")])
    out = _line(res.output)
    assert res.exit_code == 2 and f"{tmp_path / 'ds' / 'train' / 'shard-00000.h5'}: No space left" in out, out
    assert ".tmp" not in out and not (tmp_path / "ds").exists()


def test_a_full_disk_during_an_export_names_the_output_file(tmp_path, zrr_ds, monkeypatch):
    _, ds = zrr_ds
    real = Path.write_bytes

    def full(self, data):  # the file is opened, then the disk is full (the OS names the file it opened)
        if ".tmp" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    res = CliRunner().invoke(cli, ["export-zrr", str(ds), "-o", str(tmp_path / "out")])
    out = _line(res.output)
    assert res.exit_code == 2 and f"{tmp_path / 'out' / 'train' / 'huawei_raw' / '0.png'}: No space" in out, out
    assert ".tmp" not in out and not (tmp_path / "out").exists()


def test_a_flipped_shard_in_export_dped_names_the_shard(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=2, n_test=1, patch=16)
    shard = ds / "train" / "shard-00000.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    res = CliRunner().invoke(cli, ["export-dped", str(ds), "-o", str(tmp_path / "out"), "--phone", "pixel"])
    assert res.exit_code == 2 and f"{shard}: checksum mismatch" in _line(res.output), res.output


# ------------------------------------------------------------------------ 2. checksums of the kept originals


def _flip_inside(sidecar: Path, original: bytes) -> None:
    """Flip one byte of ``original``'s copy inside ``sidecar`` (a bit rot of the kept file, nothing else)."""
    data = bytearray(sidecar.read_bytes())
    for start in range(len(original) // 2, len(original) - 40):  # scan data of this file's own, found once
        at = data.find(original[start : start + 40])
        if at >= 0 and data.find(original[start : start + 40], at + 1) < 0:
            break
    else:
        raise AssertionError("no part of the original is found once in the sidecar")
    data[at + 5] ^= 0x01
    sidecar.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_kept_original_is_found_by_verify_and_refused_by_export(tmp_path, zrr_ds):
    tree, ds = zrr_ds
    assert DatasetDir(ds).verify().ok
    sidecar = ds / "zrr_source" / "train" / "shard-00000.h5"
    _flip_inside(sidecar, (tree / "train" / "canon" / "1.jpg").read_bytes())
    problems = [p for s in DatasetDir(ds).verify().shards for p in s.problems]
    assert problems == [
        "zrr_source/train/shard-00000.h5: the original file 1 (dslr_jpeg) differs from the sha256 recorded at import "
        "(damaged)"
    ]
    res = CliRunner().invoke(cli, ["verify", str(ds)])
    assert res.exit_code == 1 and "the original file 1 (dslr_jpeg) differs" in _line(res.output), res.output
    with pytest.raises(ShardError, match=r"shard-00000\.h5: the kept original train/canon/1\.jpg is damaged"):
        export_zrr(ds, tmp_path / "out")
    res = CliRunner().invoke(cli, ["export-zrr", str(ds), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "train/canon/1.jpg is damaged" in _line(res.output)
    assert not (tmp_path / "out").exists()


def test_a_flipped_byte_in_a_kept_full_size_image_is_found_and_refused(tmp_path, zrr_ds):
    _, ds = zrr_ds
    kept = ds / "zrr_source" / "huawei_full_resolution" / "0.png"
    data = bytearray(kept.read_bytes())
    data[len(data) // 2] ^= 0x01
    kept.write_bytes(bytes(data))
    assert DatasetDir(ds).verify().problems == [
        "zrr_source/huawei_full_resolution/0.png: differs from the sha256 recorded at import (damaged)"
    ]
    res = CliRunner().invoke(cli, ["export-zrr", str(ds), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and f"{kept}: damaged" in _line(res.output), res.output
    assert not (tmp_path / "out").exists()


def test_renamed_rows_in_a_kept_original_are_found(tmp_path, rng):
    tree = write_dped_tree(tmp_path / "dped", rng, n_train=2, n_test=1)
    import_dped(tree, tmp_path / "ds", phone="sony")
    sidecar = tmp_path / "ds" / "dped_source" / "train" / "shard-00000.h5"
    import h5py

    with h5py.File(sidecar, "a") as f:  # a flip in the names: 1.jpg would be written as 7.jpg
        f["name"][1] = "7"
    assert "its name column differs" in " ".join(p for s in DatasetDir(tmp_path / "ds").verify().shards
                                                for p in s.problems)  # fmt: skip
    with pytest.raises(ShardError, match="the kept original names is damaged"):
        export_dped(tmp_path / "ds", tmp_path / "out")


def test_originals_kept_before_checksums_still_export(tmp_path, zrr_ds):
    import h5py

    tree, ds = zrr_ds
    for sidecar in (ds / "zrr_source").rglob("shard-*.h5"):
        with h5py.File(sidecar, "a") as f:  # as an older dpedkit wrote them
            del f["sha256"]
    assert DatasetDir(ds).verify().ok
    export_zrr(ds, tmp_path / "out")
    kept = tmp_path / "out" / "train" / "canon" / "1.jpg"
    assert kept.read_bytes() == (tree / "train" / "canon" / "1.jpg").read_bytes()


# ----------------------------------------------------------------- 4. patches of mixed sizes, names of the layout


@pytest.mark.parametrize(("edit", "message"), [
    ("smaller dslr", r"canon/1\.jpg: a 16x16 patch, where .*canon/0\.jpg is 32x32"),
    ("oblong phone", r"huawei_raw/1\.png: a 32x16 patch: the patches of a layout are square"),
    ("other shard", r"huawei_raw/2\.png: a 16x16 patch, where .*huawei_raw/0\.png is 32x32"),
])  # fmt: skip
def test_zrr_patches_of_another_size_are_one_line_naming_the_file(tmp_path, rng, edit, message):
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=3, n_test=1)
    train = tree / "train"
    if edit == "smaller dslr":
        cv2.imwrite(str(train / "canon" / "1.jpg"), np.zeros((16, 16, 3), np.uint8))
    elif edit == "oblong phone":
        cv2.imwrite(str(train / "huawei_raw" / "1.png"), np.zeros((16, 32), np.uint16))
    else:  # a whole pair of another size, alone in its shard
        cv2.imwrite(str(train / "huawei_raw" / "2.png"), np.zeros((16, 16), np.uint16))
        cv2.imwrite(str(train / "canon" / "2.jpg"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InputError, match=message):
        import_zrr(tree, tmp_path / "ds", rows_per_shard=2)
    res = CliRunner().invoke(cli, ["import-zrr", str(tree), "-o", str(tmp_path / "ds"), "--rows-per-shard", "2"])
    assert res.exit_code == 2 and "Traceback" not in res.output and not (tmp_path / "ds").exists()


def test_dped_patches_of_another_size_or_layout_names_are_one_line(tmp_path, rng):
    tree = write_dped_tree(tmp_path / "dped", rng, n_train=3, n_test=1)
    folder = tree / "sony" / "training_data"
    cv2.imwrite(str(folder / "sony" / "2.jpg"), np.zeros((24, 24, 3), np.uint8))
    res = CliRunner().invoke(cli, ["import-dped", str(tree), "-o", str(tmp_path / "ds")])
    assert res.exit_code == 2 and "sony/2.jpg: a 24x24 patch, where" in _line(res.output), res.output
    shutil.copy(folder / "sony" / "1.jpg", folder / "sony" / "2.jpg")
    shutil.copy(folder / "canon" / "1.jpg", folder / "canon" / "\u00b2.jpg")
    res = CliRunner().invoke(cli, ["import-dped", str(tree), "-o", str(tmp_path / "ds")])
    assert res.exit_code == 2 and "canon/\u00b2.jpg: not a name of the" in _line(res.output), res.output
    assert not (tmp_path / "ds").exists()


def test_an_official_dped_folder_read_in_place_names_a_patch_of_another_size(tmp_path, rng):
    """Training or evaluating on the folder itself (no import) reads the same check."""
    from dpedkit.dataset.source import open_source

    tree = write_dped_tree(tmp_path / "dped", rng, n_train=3, n_test=2)
    odd = tree / "sony" / "test_data" / "patches" / "canon" / "1.jpg"
    cv2.imwrite(str(odd), np.zeros((24, 24, 3), np.uint8))
    source = open_source(tree, phone="sony")
    with pytest.raises(InputError, match=r"canon/1\.jpg: a 24x24 patch, where .*sony/0\.jpg is 32x32"):
        source.arrays("test")
    reader = source.reader("test")
    assert reader.raw(0)[0].shape == (32, 32, 3)
    with pytest.raises(InputError, match=r"canon/1\.jpg: a 24x24 patch"):
        reader.raw(1)


def test_a_killed_import_into_an_empty_folder_leaves_only_what_a_rerun_sweeps(tmp_path, rng):
    tree = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)
    out = tmp_path / "ds"
    out.mkdir()
    out.chmod(0o750)  # the user's own folder: its mode stays
    killed = out / ".ds.0123abcd.tmp"  # what `kill -9` of an import into the empty ds leaves: nothing outside it
    (killed / "train").mkdir(parents=True)
    (killed / "train" / "shard-00000.h5").write_bytes(b"\0" * 1000)
    import_zrr(tree, out)  # no --overwrite needed: the folder held only the killed run's staging folder
    assert not killed.exists() and (out / "dataset.json").is_file() and (out.stat().st_mode & 0o777) == 0o750
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
