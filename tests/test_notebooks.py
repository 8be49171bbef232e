"""The example notebooks: committed without outputs, in sync with their generator, and executable (small settings)."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_build_and_inspect.ipynb", "02_train_and_evaluate.ipynb", "03_enhance_with_official_model.ipynb"]


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_are_stripped_and_match_their_generator(tmp_path):
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    for path in _generator().build(tmp_path):
        assert path.read_text() == (NOTEBOOKS / path.name).read_text(), (
            f"rerun notebooks/make_notebooks.py ({path.name})"
        )
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None


def _execute(name: str, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    monkeypatch.setenv("DPEDKIT_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("DPEDKIT_NOTEBOOK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: one thread per worker, as tests/conftest.py
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # kernel "python3": jupyter_client starts it with this interpreter (sys.executable), so dpedkit is importable
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _images(nb) -> int:
    data = [o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return sum("image/png" in d or "image/jpeg" in d for d in data)


@pytest.mark.slow
def test_notebook_01_build_and_inspect(tmp_path, monkeypatch):
    nb = _execute(NAMES[0], tmp_path, monkeypatch)
    assert _images(nb) >= 3 + 6 + 1  # summary plots, pair view pictures, NCC histogram
    assert (tmp_path / "work" / "report.html").is_file() and "pairs by status" in _text(nb)


@pytest.mark.slow
def test_notebook_02_train_and_evaluate(tmp_path, monkeypatch):
    nb = _execute(NAMES[1], tmp_path, monkeypatch)
    assert (tmp_path / "work" / "run" / "best.pt").is_file()
    assert "DPED PSNR" in str(nb.cells[-3].outputs) and _images(nb) >= 1


@pytest.mark.slow
@pytest.mark.shared
def test_notebook_03_official_model(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("DPEDKIT_SHARED", str(shared("models", "dped_orig").parents[1]))
    nb = _execute(NAMES[2], tmp_path, monkeypatch)
    assert "model: DPED PSNR 19.40 dB" in _text(nb) and _images(nb) == 2
