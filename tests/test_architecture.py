"""docs/architecture.md names every module of the package, and every module it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def test_every_module_named_exists():
    named = set(re.findall(r"`(dpedkit/[\w/]+(?:\.py|/))`", DOC))
    assert len(named) > 20
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_module_is_named():
    text = DOC.replace("`, `", "` `")
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "dpedkit").rglob("*.py") if p.name != "__init__.py"]
    unnamed = []
    for m in modules:
        folder, stem = m.rsplit("/", 1)
        if f"`{m}`" not in text and not re.search(rf"`{re.escape(folder)}/` \([^)]*`{stem[:-3]}`", text):
            unnamed.append(m)
    assert not unnamed, f"modules missing from docs/architecture.md: {unnamed}"


def test_no_top_level_module_is_a_fragment_of_a_stage_package():
    packages = {p.name for p in (ROOT / "dpedkit").iterdir() if (p / "__init__.py").is_file()}
    fragments = [p.name for p in (ROOT / "dpedkit").glob("*.py") if p.stem.split("_")[0] in packages]
    assert not fragments, fragments
