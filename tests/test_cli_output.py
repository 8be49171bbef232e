"""What the CLI prints where no terminal reads it (a pipe, a file, CliRunner): every error as one ``error:`` line
with exit status 2 (``cli/render.py`` and the group of ``cli/main.py``)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from dpedkit_cli.main import cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build"], r"Missing argument 'PHONE_DIR'\. \(see cli build --help\)"),
        (["build", "{tmp}", "{tmp}", "-o", "{tmp}/ds", "--jobs", "x"],
         r"Invalid value for '--jobs': 'x' is not a valid integer\. \(see cli build --help\)"),
        (["build", "{tmp}/no", "{tmp}", "-o", "ds"], r"{tmp}/no: no such folder"),
        (["build", "{tmp}", "{tmp}", "-o", "ds", "--bogus"], r"No such option '--bogus'.*\(see cli build --help\)"),
        (["nosuch"], r"No such command 'nosuch'\. \(see cli --help\)"),
        (["--bogus"], r"No such option '--bogus'.*\(see cli --help\)"),
        (["train", "{tmp}", "-o", "{tmp}/run", "--resume", "--overwrite"],
         r"--resume and --overwrite exclude each other \(see cli train --help\)"),
        (["inspect", "{tmp}", "--json"], r"--json goes with --summary .*\(see cli inspect --help\)"),
        (["train", "{tmp}", "-o", "run", "--config", "{tmp}/no.toml"], r"Invalid value for '--config': .*no\.toml.*"),
        (["evaluate", "m.pt", "{tmp}/no", "--lpips", "missing_dir"], r"{tmp}/no: no such folder"),
        (["enhance", "m.pt", "{tmp}/no.jpg", "-o", "{tmp}/out"], r"{tmp}/no\.jpg: no such file or folder"),
    ],
)  # fmt: skip
def test_every_error_is_one_error_line_with_status_2(args, expected, tmp_path):
    res = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert re.fullmatch(f"error: {expected.format(tmp=re.escape(str(tmp_path)))}\n", res.output), res.output


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["build", "--help"], ["train", "-h"]])
def test_help_and_version_still_exit_0(args):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and "error" not in res.output.lower()[:200] and res.output
