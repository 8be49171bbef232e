"""Issue 20: the DPED and ZRR layouts pair files by their exact names ``<i>.<ext>``; anything else is refused."""

from __future__ import annotations

import shutil

import pytest

from dpedkit.errors import InputError
from dpedkit.interop.dped import import_dped
from dpedkit.interop.zrr import import_zrr
from dpedkit.testing import write_dped_tree, write_zrr_tree


@pytest.mark.parametrize(("name", "message"), [
    ("00.png", "not a name of the"),  # would collide with 0.png
    ("\u0661.png", "not a name of the"),  # Arabic-Indic one: str.isdigit() and int() take it
    ("\u00b2.png", "not a name of the"),  # superscript two: isdigit() but int() fails (was a traceback)
    ("0.PNG", "index 0 appears twice"),
])  # fmt: skip
def test_zrr_names_must_be_the_layouts_own(tmp_path, rng, name, message):
    src = write_zrr_tree(tmp_path / "zrr", rng, n_train=2, n_test=1)
    shutil.copy(src / "train" / "huawei_raw" / "1.png", src / "train" / "huawei_raw" / name)
    with pytest.raises(InputError, match=message):
        import_zrr(src, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_dped_names_must_be_the_layouts_own(tmp_path, rng):
    src = write_dped_tree(tmp_path / "dped", rng, n_train=2, n_test=1)
    folder = src / "sony" / "training_data" / "canon"
    shutil.copy(folder / "1.jpg", folder / "01.jpg")
    with pytest.raises(InputError, match=r"01\.jpg: not a name of the"):
        import_dped(src, tmp_path / "ds", phone="sony")
    (folder / "01.jpg").unlink()
    import_dped(src, tmp_path / "ds", phone="sony")  # the layout's own names import as before
