"""Shared fixtures. Real data comes from the folder named by ``DPEDKIT_SHARED`` (``.ci/run`` sets it).

When the variable is unset, tests that need it are skipped; when it is set and the data is missing, they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# The CLI's console (not a terminal under CliRunner) wraps no message; COLUMNS gives its tables a fixed width, as a
# user's COLUMNS would. tests/test_cli_output.py unsets it to check the default. Set before the CLI is imported.
os.environ["COLUMNS"] = "1000"

# CI sets DPEDKIT_SHARED=../shared: make it absolute once, so tests that change folders, make symlinks or start
# subprocesses and notebook kernels (which inherit the environment) all see the same folder.
if os.environ.get("DPEDKIT_SHARED"):
    os.environ["DPEDKIT_SHARED"] = str(Path(os.environ["DPEDKIT_SHARED"]).resolve())


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks on a shared 2-core machine (``pytest -n auto``: a worker per core): one intra-op thread avoids
    oversubscription stalls. With two threads per worker the raw2rgb U-Net test took 4 to 5 times longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_path(*parts: str) -> Path:
    """Path under the shared data folder; skip if DPEDKIT_SHARED is unset, fail if the path is missing."""
    root = os.environ.get("DPEDKIT_SHARED")
    if not root:
        pytest.skip("DPEDKIT_SHARED is not set")
    path = Path(root).joinpath(*parts)
    if not path.exists():
        pytest.fail(f"DPEDKIT_SHARED={root} but {path} is missing")
    return path


@pytest.fixture
def shared():
    """The ``shared_path`` function as a fixture: ``shared("data", "city100")``."""
    return shared_path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def dped_80_20(shared, tmp_path) -> Path:
    """A dpedkit dataset of the shared 100 DPED iPhone/Canon pairs: the first 80 train, the last 20 test."""
    from dpedkit.interop.dped_layout import find_dped_folder, load_pairs
    from dpedkit.testing import write_patch_dataset

    phone, dslr = load_pairs(find_dped_folder(shared("data", "dped", "iphone")), "test")
    splits = {"train": (phone[:80], dslr[:80]), "test": (phone[80:], dslr[80:])}
    return write_patch_dataset(tmp_path / "dped-80-20", splits, config={"source": "dped 80/20"})
