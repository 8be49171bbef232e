"""What the CLI prints where no terminal reads it (a pipe, a file, CliRunner): lines neither wrapped nor cut,
ISO log times, progress lines, and every error as one ``error:`` line with exit status 2 (``cli/render.py`` and the
group of ``cli/main.py``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from dpedkit_cli import render
from dpedkit_cli.main import cli

ISO = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def dpedkit(*args: str) -> subprocess.CompletedProcess:
    """``dpedkit ARGS`` in a fresh process, its output in pipes and COLUMNS unset: as ``dpedkit ... 2>&1 | cat``."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    cmd = [sys.executable, "-m", "dpedkit_cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_piped_synth_output_is_neither_wrapped_nor_cut_nor_padded(tmp_path):
    out = tmp_path / ("a-folder-with-a-long-name-" * 4) / "pairs"
    res = dpedkit("synth", str(out), "--n", "1")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert [line for line in lines if line != line.rstrip()] == []  # no padding, in log lines or tables
    assert re.fullmatch(rf"{ISO} INFO wrote 1 synthetic pairs to {re.escape(str(out))}", lines[0])
    assert f"1 synthetic pairs in {out}" in lines  # the table's title on one line
    header = next(line for line in lines if "┃ name" in line)
    assert "rotation_deg" in header and "phone_jpeg" in header and "…" not in res.stderr
    assert max(len(line) for line in lines if line[0] in "┏┃┡│└") < 120  # as wide as its content, not the console
    assert re.fullmatch(r"pairs 1/1 0000 from \w+ 0:00:\d\d elapsed, 0:00:00 left", lines[1])


def test_piped_error_with_urls_is_one_line(tmp_path):
    res = dpedkit("train", str(tmp_path), "-o", str(tmp_path / "run"), "--model", "dped")  # no VGG weights given
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("error: the 'dped' model")
    assert "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat)" in res.stderr
    assert "(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth)" in res.stderr


def test_piped_click_error_is_one_line(tmp_path):
    phone = tmp_path / ("a-folder-with-a-long-name-" * 4) / "phone"
    res = dpedkit("build", str(phone), str(tmp_path), "-o", str(tmp_path / "ds"))
    assert (res.returncode, res.stderr) == (2, f"error: {phone}: no such folder\n")


def test_a_table_cell_is_not_cut(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS")
    cell = "s3://bucket/" + "/".join(["folder"] * 200) + "/dataset"  # wider than any terminal
    render.console.print(render.table("t", ["", "value"], [["source", cell], ["pairs", 3]]))
    lines = capsys.readouterr().err.splitlines()
    assert any(cell in line for line in lines) and "…" not in "".join(lines)
    assert len({len(line) for line in lines[1:]}) == 1 and len(lines[1]) < len(cell) + 20  # not expanded


def test_log_lines_are_plain_with_an_iso_time(tmp_path):
    res = CliRunner().invoke(cli, ["synth", str(tmp_path / "pairs"), "--n", "1"])
    assert res.exit_code == 0, res.output
    line = res.stderr.splitlines()[0]
    assert re.fullmatch(rf"{ISO} INFO wrote 1 synthetic pairs to {re.escape(str(tmp_path / 'pairs'))}", line)


def test_plain_progress_lines_every_period_and_at_the_end(capsys, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(render, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(render, "PLAIN_EVERY", 30.0)
    with render.progress("train srcnn", 300) as advance:
        for t, n, info in [(10, 50, "loss 0.5"), (31, 50, "loss 0.4"), (40, 100, "loss 0.3"), (70, 50, "loss 0.2")]:
            now[0] = t
            advance(n, info=info)
        now[0] = 75
        advance(50, info="loss 0.1")
    assert capsys.readouterr().err.splitlines() == [
        "train srcnn 100/300 loss 0.4 0:00:31 elapsed, 0:01:02 left",
        "train srcnn 250/300 loss 0.2 0:01:10 elapsed, 0:00:14 left",
        "train srcnn 300/300 loss 0.1 0:01:15 elapsed, 0:00:00 left",
    ]
    with render.progress("inspect", None) as advance:  # the total unknown at first
        now[0] = 200
        advance(2, info="pairs", total=4)
        advance(2, info="pairs")
    assert capsys.readouterr().err.splitlines() == [
        "inspect 2/4 pairs 0:02:05 elapsed, 0:02:05 left",
        "inspect 4/4 pairs 0:02:05 elapsed, 0:00:00 left",
    ]
    with render.progress("quiet", 3, quiet=True) as advance:
        now[0] = 400
        advance(3)
    with render.progress("no work", 3):
        pass
    assert capsys.readouterr().err == ""


def test_piped_progress_of_a_command(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "PLAIN_EVERY", 0.0)  # a line at each pair
    res = CliRunner().invoke(cli, ["-q", "synth", str(tmp_path / "pairs"), "--n", "2"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("pairs ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]


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
        (["train", "{tmp}", "-o", "run", "--config", "{tmp}/no.toml"], r"{tmp}/no\.toml: no such file"),
        (["train", "{tmp}", "-o", "run", "--config", "{tmp}"], r"{tmp}: a folder, not a file"),
        (["pairs", "{tmp}/no", "{tmp}"], r"{tmp}/no: no such folder"),
        (["import-dped", "{tmp}/no", "-o", "{tmp}/ds"], r"{tmp}/no: no such folder"),
        (["synth", "{tmp}/out", "--source", "{tmp}/no"], r"{tmp}/no: no such folder"),
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
