"""``dpedkit align`` and ``dpedkit bench align`` through click's CliRunner: exit codes, files, messages."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner
from dpedkit_cli.main import cli

from dpedkit.io import write_image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    img = cv2.resize(skimage.data.astronaut(), (800, 600), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img += cv2.resize(rng.normal(0, 8, (200, 267)).astype(np.float32), (800, 600))[..., None]
    phone = np.clip(img, 0, 255).astype(np.uint8)
    h = np.array([[1.3, 0.02, 5.0], [-0.02, 1.3, 3.0], [0, 0, 1.0]])
    dslr = cv2.warpPerspective(phone, h, (1000, 750), flags=cv2.INTER_CUBIC)
    write_image(d / "phone.jpg", phone)
    write_image(d / "dslr.jpg", dslr)
    write_image(d / "other.jpg", cv2.resize(skimage.data.coffee(), (800, 600)))
    data = (d / "phone.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 2])
    return d


def test_align_ok_json(files, tmp_path):
    r = CliRunner().invoke(
        cli, ["align", str(files / "phone.jpg"), str(files / "dslr.jpg"), "-o", str(tmp_path), "--json"]
    )
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)
    assert meta["status"] == "ok" and meta == json.loads((tmp_path / "alignment.json").read_text())
    assert (tmp_path / "phone.png").exists() and (tmp_path / "dslr.png").exists()


def test_align_rejected_pair_exits_1(files, tmp_path):
    r = CliRunner().invoke(cli, ["align", str(files / "phone.jpg"), str(files / "other.jpg"), "-o", str(tmp_path)])
    assert r.exit_code == 1, r.output
    meta = json.loads((tmp_path / "alignment.json").read_text())
    assert meta["status"] != "ok" and meta["reason"] and meta["H_phone_to_dslr"] is None
    assert not (tmp_path / "phone.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cut.jpg", "dslr.jpg"], "truncated JPEG"),
        (["missing.jpg", "dslr.jpg"], "no such file"),
        (["phone.jpg", "dslr.jpg", "--ratio", "3"], "ratio must be in"),
    ],
)
def test_align_bad_input_exits_2(files, tmp_path, args, message):
    argv = ["align", *[str(files / a) if a.endswith(".jpg") else a for a in args], "-o", str(tmp_path)]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_bench_align_small(tmp_path):
    r = CliRunner().invoke(cli, ["bench", "align", "--phone-mp", "0.5", "--dslr-mp", "1", "--repeats", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "ok" and out["mce_px"] < 0.5
    assert out["ratio_cpu"] > 1 and out["peak_rss_mb"] > 0


@pytest.mark.slow
def test_bench_align_targets_only_at_the_default_sizes():
    r = CliRunner().invoke(cli, ["bench", "align", "--phone-mp", "0.3", "--dslr-mp", "0.5", "--repeats", "1"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # rich wraps at the test terminal's width
    assert "(target <= 4)" not in text and "set for the default 13 MP + 20 MP pair only" in text


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_align_never_replaces_a_users_own_phone_png(files, tmp_path, extra):
    """Issue 20: a user's phone.png was taken for an earlier alignment, and --overwrite deleted it."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "phone.png").write_bytes(b"my photo")
    r = CliRunner().invoke(cli, ["align", str(files / "phone.jpg"), str(files / "dslr.jpg"), "-o", str(out), *extra])
    assert r.exit_code == 2 and "that no dpedkit alignment wrote" in " ".join(r.output.split()), r.output
    assert (out / "phone.png").read_bytes() == b"my photo" and sorted(p.name for p in out.iterdir()) == ["phone.png"]
