"""Issue 20, faults round two: each adversarial input (made here in code) is one line, exit 2, or a safe outcome."""

from __future__ import annotations

import math
from functools import partial

import pytest
from click.testing import CliRunner
from dpedkit_cli.main import cli

from dpedkit.config import (
    AlignConfig,
    BuildConfig,
    DemoConfig,
    EnhanceConfig,
    PatchConfig,
    ReportConfig,
    TrainConfig,
)
from dpedkit.errors import ConfigError, InputError

NAN = float("nan")


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (TrainConfig, "grad_clip"),
        (TrainConfig, "lr"),
        (TrainConfig, "ema"),
        (PatchConfig, "ncc_min"),
        (AlignConfig, "work_mp"),
        (EnhanceConfig, "max_memory"),
    ],
)
def test_nan_is_refused_by_every_float_option(cls, field):
    assert math.isnan(NAN) and not (NAN < 0) and not (NAN > 1)  # why a range check alone lets NaN through
    with pytest.raises(ConfigError, match=f"{field} must be a number; got NaN"):
        cls(**{field: NAN})


def test_nan_in_a_config_file_or_a_flag_is_one_line(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[patch]\nncc_min = nan\n")
    res = CliRunner().invoke(cli, ["build", str(tmp_path), str(tmp_path), "-o", str(tmp_path / "o"), "--config",
                                   str(cfg), "--print-config"])  # fmt: skip
    assert res.exit_code == 2 and "ncc_min must be a number; got NaN" in res.output, res.output
    res = CliRunner().invoke(cli, ["train", str(tmp_path), "-o", str(tmp_path / "r"), "--grad-clip", "nan",
                                   "--print-config"])  # fmt: skip
    assert res.exit_code == 2 and "grad_clip must be a number; got NaN" in res.output, res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("make", [partial(TrainConfig, model="srcnn"), BuildConfig, ReportConfig, DemoConfig])
@pytest.mark.parametrize("seed", [-1, 10**23])
def test_every_seed_is_in_range(make, seed):
    with pytest.raises(ConfigError, match=r"seed must be in \[0, 4294967295\]"):
        make(seed=seed)
    assert make(seed=2**32 - 1).seed == 2**32 - 1


def test_infinity_still_means_no_limit_where_a_field_allows_it():
    assert BuildConfig().to_dict() == BuildConfig.from_dict(BuildConfig().to_dict()).to_dict()


@pytest.mark.parametrize("cell", ["../../x.jpg", "/etc/passwd", "sub/a.jpg", ".."])
def test_a_pairs_csv_names_plain_files_inside_the_folders_only(tmp_path, cell):
    from dpedkit.dataset.pairs import read_pairs_csv

    (tmp_path / "p").mkdir()
    (tmp_path / "d").mkdir()
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(f"name,phone,dslr\na,a.jpg,b.jpg\nx,{cell},b.jpg\n")
    with pytest.raises(InputError, match="line 3: phone file .* is not a plain file name"):
        read_pairs_csv(csv_path, phone_dir=tmp_path / "p", dslr_dir=tmp_path / "d")
    res = CliRunner().invoke(cli, ["build", str(tmp_path / "p"), str(tmp_path / "d"), "-o", str(tmp_path / "o"),
                                   "--pairs", str(csv_path)])  # fmt: skip
    assert res.exit_code == 2 and "not a plain file name" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("command", "target"), [
    (["evaluate", "m.pt", "ds"], "dpedkit.evaluate.evaluate"),
    (["import-zrr", "zrr", "-o", "out"], "dpedkit.interop.zrr.import_zrr"),
    (["export-zrr", "ds", "-o", "out"], "dpedkit.interop.zrr.export_zrr"),
])  # fmt: skip
def test_ctrl_c_exits_130_with_one_line(tmp_path, monkeypatch, command, target):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    monkeypatch.chdir(tmp_path)
    for name in ("ds", "zrr"):
        (tmp_path / name).mkdir()
    (tmp_path / "m.pt").write_bytes(b"")
    res = CliRunner().invoke(cli, command)
    assert res.exit_code == 130, res.output
    assert "interrupted (Ctrl-C)" in res.output and "Aborted" not in res.output


def test_an_image_name_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    import os

    from dpedkit.io import list_images

    for side in ("p", "d"):
        (tmp_path / side).mkdir()
        os.close(os.open(os.path.join(os.fsencode(tmp_path / side), b"\xff0.jpg"), os.O_CREAT | os.O_WRONLY))
    with pytest.raises(InputError, match=r"\\xff0\.jpg: file name is not valid UTF-8"):
        list_images(tmp_path / "p")
    res = CliRunner().invoke(cli, ["build", str(tmp_path / "p"), str(tmp_path / "d"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not valid UTF-8" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("edit", ["twice", "wrong split"])
def test_a_manifest_listing_a_shard_twice_or_in_the_wrong_split_is_refused(tmp_path, edit):
    """Issue 20: ``verify`` said intact, and training read the test rows, for such a manifest."""
    import json

    from dpedkit.dataset.format import DatasetDir
    from dpedkit.dataset.loader import load_split
    from dpedkit.errors import ShardError
    from dpedkit.testing import write_synthetic_dataset

    ds = write_synthetic_dataset(tmp_path / "ds", n_train=4, n_test=2, patch=16)
    manifest = json.loads((ds / "dataset.json").read_text())
    test_entry = next(e for e in manifest["shards"] if e["split"] == "test")
    if edit == "twice":
        manifest["shards"].append(dict(test_entry, split="train"))
    else:
        test_entry["split"] = "train"
    (ds / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="twice" if edit == "twice" else "a test shard, listed in the train split"):
        load_split(ds, "train", verify=True)
    if edit == "wrong split":
        problems = [p for s in DatasetDir(ds).verify().shards for p in s.problems]
        assert problems == ["a test shard, listed in the train split of the manifest"]
    res = CliRunner().invoke(cli, ["verify", str(ds)])
    assert res.exit_code in (1, 2) and "Traceback" not in res.output


@pytest.mark.parametrize("damage", ["flipped byte", "rows"])
def test_export_dped_refuses_a_damaged_shard_before_writing(tmp_path, damage):
    """Issue 20: export-dped exported shards whose sha256 no longer matched, and trusted the manifest's rows."""
    import json

    from dpedkit.errors import ShardError
    from dpedkit.interop.dped import export_dped
    from dpedkit.testing import write_synthetic_dataset

    ds = write_synthetic_dataset(tmp_path / "ds", n_train=4, n_test=2, patch=16)
    if damage == "flipped byte":
        shard = ds / "train" / "shard-00000.h5"
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
        match = "checksum mismatch"
    else:
        manifest = json.loads((ds / "dataset.json").read_text())
        manifest["shards"][0]["rows"] = 10**12
        (ds / "dataset.json").write_text(json.dumps(manifest))
        match = "rows"
    with pytest.raises(ShardError, match=match):
        export_dped(ds, tmp_path / "out", phone="pixel")
    assert not (tmp_path / "out").exists()


def test_temporary_folders_of_killed_runs_are_swept_by_the_next_run(tmp_path):
    """Issue 20: ``kill -9`` of ``build --jobs 2`` left ``/tmp/dpedkit-running-*`` that nothing removed."""
    import fcntl
    import os
    import signal
    import subprocess
    import sys

    from dpedkit.io import owned_tempdir

    script = ("import os, signal, sys; from dpedkit.io import owned_tempdir\n"
              "with owned_tempdir('dpedkit-running-', dir=sys.argv[1]) as d:\n"
              "    (d / '3').write_text(str(os.getpid())); os.kill(os.getpid(), signal.SIGKILL)\n")  # fmt: skip
    killed = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    assert killed.wait() == -signal.SIGKILL
    [left] = list(tmp_path.iterdir())  # what the killed run left
    assert left.name.startswith(f"dpedkit-running-{killed.pid}-") and (left / "3").is_file()
    mine = tmp_path / f"dpedkit-running-{os.getpid()}-alive"  # a live process's: kept
    held = tmp_path / f"dpedkit-running-{killed.pid}-held"  # its PID is gone, but someone holds its lock: kept
    other = tmp_path / "dpedkit-enhance-1-x"  # another prefix: kept
    for d in (mine, held, other):
        d.mkdir()
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with owned_tempdir("dpedkit-running-", dir=tmp_path) as now:
            assert not left.exists() and now.is_dir() and now.name.startswith(f"dpedkit-running-{os.getpid()}-")
        assert not now.exists()
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(d.name for d in (mine, held, other))


def test_a_parallel_run_sweeps_what_a_killed_one_left(tmp_path, monkeypatch):
    import tempfile

    from dpedkit.dataset.parallel import run_parallel

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "dpedkit-running-999999999-abc").mkdir()  # no such PID
    assert run_parallel(abs, [-1, -2], n_jobs=2, on_crash=lambda item, why: None) == [1, 2]
    assert list(tmp_path.iterdir()) == []


def test_a_shard_declaring_huge_patches_it_does_not_hold_is_refused_before_any_allocation(tmp_path, monkeypatch):
    """Issue 20: a 78 kB shard declaring 3000x3000 patches made `evaluate` allocate gigabytes before failing."""
    import json

    import h5py
    import numpy as np

    from dpedkit.dataset.shards import file_sha256
    from dpedkit.testing import write_synthetic_dataset

    ds = write_synthetic_dataset(tmp_path / "ds", n_train=2, n_test=2, patch=16)
    shard = ds / "test" / "shard-00000.h5"
    with h5py.File(shard, "a") as f:  # the shape says 2 x 3000 x 3000 x 3; no byte of it is stored
        for name in ("phone", "dslr"):
            del f[name]
            f.create_dataset(name, shape=(2, 3000, 3000, 3), dtype=np.uint8, chunks=(1, 3000, 3000, 3), fletcher32=True)
        f.attrs["patch_size"] = 3000
    manifest = json.loads((ds / "dataset.json").read_text())
    manifest["shards"][1]["sha256"] = file_sha256(shard)  # a consistent manifest: only the shapes lie
    (ds / "dataset.json").write_text(json.dumps(manifest))

    def never(*args, **kwargs):
        raise AssertionError("the patches were read and the model loaded")

    monkeypatch.setattr("dpedkit.evaluate.patches._load_model", never)
    (tmp_path / "m.pt").write_bytes(b"")
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "m.pt"), str(ds), "--device", "cpu"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"{shard}: damaged shard, 'phone' declares 2 patches of 3000x3000 (54.0 MB) that the file does not" in out
    res = CliRunner().invoke(cli, ["verify", str(ds)])
    assert res.exit_code == 1 and "declares 2 patches of 3000x3000" in " ".join(res.output.split())


def _strict(text: str) -> object:
    """JSON parsed as the standard says: a bare NaN or Infinity is an error."""
    import json

    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_every_json_a_build_writes_is_strict_and_an_infinite_option_survives(tmp_path):
    """A config may say inf (a bound turned off): dataset.json, build.json, records and pairs stay strict JSON."""
    import json

    from dpedkit.dataset.build import build_dataset
    from dpedkit.dataset.format import DatasetDir
    from dpedkit.synth.pairs import synthesize

    synthesize(tmp_path / "raw", n=2, seed=0, phone_mp=0.15, dslr_mp=0.3)
    config = BuildConfig(align=AlignConfig(max_rmse_px=math.inf), patch=PatchConfig(size=64), test_images=1)
    out = tmp_path / "ds"
    build_dataset(tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr", out, config=config)
    files = [*out.glob("*.json"), *out.glob("*/shard-*.json")]
    assert len(files) == 4  # dataset.json, build.json and the records of the train and the test shard
    for path in files:
        _strict(path.read_text())
    for line in (out / "pairs.jsonl").read_text().splitlines():
        _strict(line)
    assert json.loads((out / "dataset.json").read_text())["config"]["align"]["max_rmse_px"] == "inf"
    assert BuildConfig.from_dict(DatasetDir(out).manifest().config) == config  # read back as the float
    again = build_dataset(tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr", out, config=config)
    assert again.already_finished  # the stored plan still matches the same command


def test_a_dng_whose_cfa_pattern_names_no_bayer_quad_is_read_as_libraw_renders_it_and_refused_by_an_isp(tmp_path):
    """A DNG's CFAPattern naming a colour twice and one not at all (RGGG): align and build read LibRaw's picture of it;
    a learned ISP, which needs the Bayer quad, records that photo's failure in one line naming it (exit 1)."""
    import struct

    from dpedkit.io import read_rgb
    from dpedkit.io.camera_write import encode_dng
    from dpedkit.nn.checkpoint import save_checkpoint
    from dpedkit.nn.raw import SIDUNet, SIDUNetConfig
    from dpedkit.synth.pairs import synthesize

    synthesize(tmp_path / "raw", n=1, seed=0, phone_mp=0.15, dslr_mp=0.3)
    rgb = read_rgb(next((tmp_path / "raw" / "phone").iterdir()))
    data = bytearray(encode_dng(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]))
    tag = struct.pack("<HHI", 33422, 1, 4) + bytes([0, 1, 1, 2])  # CFAPattern, 4 bytes inline: R G G B
    at = data.find(tag)
    assert at > 0
    data[at + 8 : at + 12] = bytes([0, 1, 1, 1])  # R G G G: no blue
    bad = tmp_path / "bad.dng"
    bad.write_bytes(bytes(data))
    dslr = next((tmp_path / "raw" / "dslr").iterdir())
    res = CliRunner().invoke(cli, ["align", str(bad), str(dslr), "-o", str(tmp_path / "al")])
    crashed = res.exception is not None and not isinstance(res.exception, SystemExit)  # a traceback
    assert res.exit_code in (0, 1) and not crashed, res.output
    save_checkpoint(tmp_path / "isp.pt", SIDUNet(SIDUNetConfig(channels=4, levels=2)))
    res = CliRunner().invoke(cli, ["enhance", str(tmp_path / "isp.pt"), str(bad), "-o", str(tmp_path / "out")])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and f"{bad}: not a Bayer mosaic (CFA 'RGGG')" in text and "Traceback" not in text
