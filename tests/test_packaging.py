import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner
from dpedkit_cli.main import COMMANDS, cli

import dpedkit

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dpedkit").rglob("__init__.py")}
    found |= {
        "dpedkit_cli." + ".".join(p.parent.relative_to(ROOT / "cli").parts) for p in (ROOT / "cli").rglob("__init__.py")
    }
    found = {f.rstrip(".") for f in found}
    assert found == listed


def test_version_and_help_list_every_command():
    runner = CliRunner()
    out = runner.invoke(cli, ["--version"])
    assert out.exit_code == 0 and dpedkit.__version__ in out.output
    out = runner.invoke(cli, ["--help"])
    assert out.exit_code == 0
    for name, (_, short) in COMMANDS.items():
        assert name in out.output and short[:30] in out.output


def test_every_registered_command_imports():
    for name in COMMANDS:
        assert cli.get_command(None, name) is not None, name


def test_help_does_not_import_torch():
    code = (
        "import sys; from dpedkit_cli.main import cli; "
        "cli(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def _imported(code: str) -> set[str]:
    """Top-level packages imported by running ``code`` in a fresh interpreter."""
    probe = f"import sys; {code}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_dataset_path_is_torch_free():
    """A build worker (dask/ray) and `dpedkit build --help` import neither torch nor matplotlib."""
    worker = (
        "import dpedkit.dataset.build as b; from dpedkit.dataset import patches, pairs, format, parallel; "
        "from dpedkit.align import pipeline"
    )
    for code in (worker, "from dpedkit_cli.main import cli; cli(['build', '--help'], standalone_mode=False)"):
        assert not {"torch", "matplotlib"} & _imported(code), code
    for command in ("train", "evaluate", "enhance", "align"):  # generated options: help stays light
        code = f"from dpedkit_cli.main import cli; cli(['{command}', '--help'], standalone_mode=False)"
        assert "torch" not in _imported(code), command


def test_logging_goes_to_stderr_so_json_stdout_stays_clean():
    import logging

    @cli.command("_log_probe", hidden=True)
    def probe():
        logging.getLogger("dpedkit.test").info("hello from the library")

    try:
        result = CliRunner().invoke(cli, ["_log_probe"])
    finally:
        cli.commands.pop("_log_probe")
    assert result.exit_code == 0
    assert "hello from the library" not in result.stdout
    assert "hello from the library" in result.stderr


def test_every_test_folder_is_collected():
    """pytest skips some folder names by default (``build``!): each folder of tests/ must be collected."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", str(root)], capture_output=True, text=True
    ).stdout
    folders = {p.parent.relative_to(root) for p in root.rglob("test_*.py")}
    collected = {Path(line.split("::")[0]).parent.relative_to("tests") for line in out.splitlines() if "::" in line}
    assert folders <= collected, f"not collected: {sorted(map(str, folders - collected))}"


def test_json_output_is_strict():
    """``--json`` output parses with strict JSON parsers: NaN and infinities are written as null."""
    import json

    import numpy as np

    from dpedkit.io import json_safe

    obj = {"a": float("nan"), "b": [np.float32("inf"), 1.5, np.int64(3)], "c": {"d": np.bool_(True)}}
    text = json.dumps(json_safe(obj), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [None, 1.5, 3], "c": {"d": True}}
