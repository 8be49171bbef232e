"""Faults and attacks: no input writes outside the output, nothing is lost, every failure is one line (exit 2).

One test (or more) per case an adversarial run reproduced; every adversarial input is made here, in code.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dpedkit.config import BuildConfig, EvalConfig, PatchConfig
from dpedkit.dataset.build import build_dataset
from dpedkit.dataset.format import DatasetDir
from dpedkit.dataset.parallel import run_parallel
from dpedkit.errors import CheckpointError, ConfigError, InputError, ShardError
from dpedkit.interop.dped import SOURCE_DIR, export_dped, import_dped
from dpedkit.io import write_image
from dpedkit.nn.checkpoint import save_checkpoint, tf_generator_state_dict
from dpedkit.nn.generator import Generator, GeneratorConfig
from dpedkit.synth.pairs import synthesize
from dpedkit.testing import die_on, png_claiming, write_dped_tree, write_synthetic_dataset

CONFIG = BuildConfig(patch=PatchConfig(size=64), test_images=1, seed=3)
# the process's peak resident memory in MB (VmHWM: unlike ru_maxrss, not inherited from the forking pytest)
PEAK_MB = "print([int(x.split()[1]) // 1024 for x in open('/proc/self/status') if x.startswith('VmHWM')][0])"
TINY = {"channels": 4, "blocks": 1}


def run(*args: str, quiet: bool = True, **kw) -> subprocess.CompletedProcess:
    """``dpedkit [-q] ARGS`` in a fresh process (a crash, a signal or a traceback shows as it would to a user)."""
    env = os.environ | {"COLUMNS": "1000"}  # one line per message: nothing wrapped inside a path
    cmd = [sys.executable, "-m", "dpedkit_cli.main", *(["-q"] if quiet else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, **kw)


def one_clean_line(res: subprocess.CompletedProcess, code: int = 2) -> str:
    """The run ended with ``code`` and an ``error:`` line, no traceback; returns stderr folded to one line."""
    err = " ".join(res.stderr.split())
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "error:" in err, res.stderr[-2000:]
    return err


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("shard-") or p.suffix == ".h5"}  # fmt: skip


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synthesize(root, n=4, seed=0, phone_mp=0.15, dslr_mp=0.3)
    return root


@pytest.fixture(scope="module")
def clean(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "ds"
    build_dataset(raw / "phone", raw / "dslr", out, config=CONFIG)
    return out


def _build_args(raw: Path, out: Path, *extra: str) -> list[str]:
    return ["build", str(raw / "phone"), str(raw / "dslr"), "-o", str(out), "--patch", "64", "--test-images", "1",
            "--seed", "3", "--quiet", *extra]  # fmt: skip


# ------------------------------------------------------------------------------------ 1. path traversal


def test_names_read_from_a_dataset_cannot_leave_the_output(tmp_path, rng):
    ds = tmp_path / "ds"
    import_dped(write_dped_tree(tmp_path / "dped", rng, n_train=2, n_test=1), ds, phone="sony")
    side = next((ds / SOURCE_DIR / "train").glob("*.h5"))
    with h5py.File(side, "a") as f:
        del f["name"]
        f.create_dataset("name", data=np.array(["../../../evil", "1"], dtype=object), dtype=h5py.string_dtype())
    err = one_clean_line(run("export-dped", str(ds), "-o", str(tmp_path / "out")))
    assert "'../../../evil' is not a plain file name" in err
    assert not list(tmp_path.rglob("evil*")) and not (tmp_path / "out").exists()


def test_a_manifest_shard_path_outside_the_dataset_is_refused(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=3, n_test=2, patch=16)
    manifest = json.loads((ds / "dataset.json").read_text())
    manifest["shards"][1]["path"] = "/etc/hostname"
    (ds / "dataset.json").write_text(json.dumps(manifest))
    err = one_clean_line(run("verify", str(ds)))
    assert "'/etc/hostname' must be a relative path inside the dataset folder" in err


def test_import_follows_no_link_out_of_the_source_tree(tmp_path, rng):
    tree = write_dped_tree(tmp_path / "dped", rng, n_train=2, n_test=1)
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (tree / "sony" / "test_data" / "full_size_test_images" / "leak.jpg").symlink_to(secret)
    err = one_clean_line(run("import-dped", str(tree), "-o", str(tmp_path / "ds")))
    assert "leak.jpg: is a link to" in err and "outside" in err
    assert not (tmp_path / "ds").exists()


def test_a_pair_name_from_a_csv_must_be_a_plain_name(raw, tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("name,phone,dslr\n../escape,0000-coffee.jpg,0000-coffee.jpg\n")
    err = one_clean_line(run(*_build_args(raw, tmp_path / "ds"), "--pairs", str(csv)))
    assert "'../escape' is not a plain file name" in err and not (tmp_path / "ds").exists()


# ------------------------------------------------------------------------------- 2. output over input


def test_an_output_over_an_input_is_refused_before_anything_is_deleted(tmp_path, rng):
    ds = write_synthetic_dataset(tmp_path / "D", n_train=3, n_test=2, patch=16)
    before = digest(ds)
    err = one_clean_line(run("export-dped", str(ds), "-o", str(ds), "--phone", "train", "--overwrite"))
    assert "the phone folder lies inside the input" in err and digest(ds) == before
    tree = write_dped_tree(tmp_path / "dped", rng, n_train=2, n_test=1)
    listing = sorted(p.relative_to(tree) for p in tree.rglob("*"))
    err = one_clean_line(run("import-dped", str(tree / "sony"), "-o", str(tree), "--overwrite"))
    assert "the dataset folder contains the input" in err
    assert sorted(p.relative_to(tree) for p in tree.rglob("*")) == listing


def test_overwrite_deletes_only_what_the_command_wrote(raw, clean, tmp_path):
    out = tmp_path / "ds"
    assert run(*_build_args(raw, out)).returncode == 0
    (out / "notes.txt").write_text("mine")
    (out / "train" / "readme.txt").write_text("mine too")
    assert run(*_build_args(raw, out), "--overwrite").returncode == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "train" / "readme.txt").read_text() == "mine too"
    mine = {"notes.txt", "train/readme.txt"}
    assert {k: v for k, v in digest(out).items() if k not in mine} == digest(clean)


# ------------------------------------------------------------------------------- 3. silent corruption


def _flip_a_patch_byte(shard: Path, row: int = 1) -> None:
    with h5py.File(shard) as f:
        offset = f["dslr"].id.get_chunk_info(row).byte_offset
    data = bytearray(shard.read_bytes())
    data[offset + 100] ^= 0xFF
    shard.write_bytes(bytes(data))


def test_a_flipped_byte_is_found_and_refused(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=4, n_test=3, patch=16)
    model = tmp_path / "m.pt"
    save_checkpoint(model, Generator(GeneratorConfig(**TINY)))
    assert run("evaluate", str(model), str(ds), "--device", "cpu").returncode == 0
    _flip_a_patch_byte(next((ds / "test").glob("*.h5")))
    err = one_clean_line(run("evaluate", str(model), str(ds), "--device", "cpu"))
    assert "checksum mismatch" in err and "dpedkit verify" in err
    res = run("verify", str(ds), "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 1 and not report["ok"]
    [bad] = [s for s in report["shards"] if s["problems"]]
    assert bad["path"] == "test/shard-00000.h5" and bad["checksummed"]
    assert any("dslr: row 1 cannot be read" in p for p in bad["problems"])
    from dpedkit.dataset.loader import PatchDataset

    patches = PatchDataset(ds, "test")  # opened without the sha256 pass: the chunk checksum still catches it
    with pytest.raises(ShardError, match="damaged shard data"):
        patches.raw(1)


# ------------------------------------------------------------------------------------ 4. OS errors


def _file_size_limit(limit: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_disk_is_one_line_and_the_rerun_gives_the_clean_dataset(raw, clean, tmp_path, jobs):
    """A file-size limit stands in for a full disk (it fails the same writes); jobs 1 used to segfault (139)."""
    out = tmp_path / "ds"
    res = run(*_build_args(raw, out), "--jobs", jobs, preexec_fn=_file_size_limit(150_000))
    err = one_clean_line(res)
    assert "File too large" in err and "shard-0000" in err
    visible = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    for shard in (p for p in visible if p.suffix == ".h5"):  # what is there is complete: shard and its record
        assert DatasetDir(out).shard_record(str(shard.relative_to(out))) is not None, shard
    assert not [p for p in out.rglob(".*.tmp*")], "a temporary file was left behind"
    assert run(*_build_args(raw, out), "--jobs", jobs).returncode == 0  # space freed: the rerun resumes
    assert digest(out) == digest(clean)


def test_oserrors_of_every_writing_command_are_one_line(raw, clean, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should go")
    out = blocker / "out"
    model = tmp_path / "m.pt"
    save_checkpoint(model, Generator(GeneratorConfig(**TINY)))
    photo = next((raw / "phone").iterdir())
    cases = {
        "align": ["align", str(photo), str(next((raw / "dslr").iterdir())), "-o", str(out)],
        "build": _build_args(raw, out),
        "synth": ["synth", str(out), "--n", "1", "--phone-mp", "0.1", "--dslr-mp", "0.2"],
        "enhance": ["enhance", str(model), str(photo), "-o", str(out), "--device", "cpu"],
        "inspect": ["inspect", str(clean), "-o", str(out / "r.html"), "--pair-views", "0"],
        "train": ["train", str(clean), "-o", str(out), "--model", "srcnn", "--iters", "1", "--device", "cpu"],
        "convert": ["convert", str(model), "-o", str(out / "m.pt")],
        "export-dped": ["export-dped", str(clean), "-o", str(out), "--phone", "p"],
        "demo": ["demo", "-o", str(out), "--pairs", "2", "--iters", "1"],
    }
    for name, args in cases.items():
        err = one_clean_line(run(*args))
        assert str(blocker) in err and ("Not a directory" in err or "exists and is not a folder" in err), name


def test_align_leaves_nothing_partial(raw, tmp_path):
    phone, dslr = next((raw / "phone").iterdir()), next((raw / "dslr").iterdir())
    out = tmp_path / "pair"
    res = run("align", str(phone), str(dslr), "-o", str(out), preexec_fn=_file_size_limit(20_000))
    assert "File too large" in one_clean_line(res)
    assert not out.exists() or not [p.name for p in out.iterdir()]  # no lone phone.png


# ----------------------------------------------------------------------------- 5. concurrent builds


def test_a_second_build_into_a_folder_in_use_is_refused(raw, tmp_path):
    out = tmp_path / "ds"
    with DatasetDir(out).lock("build"):
        err = one_clean_line(run(*_build_args(raw, out)))
        assert [p.name for p in out.iterdir()] == [".dpedkit.lock"]  # the second run wrote nothing
    assert f"is in use: dpedkit build, pid {os.getpid()}, running since" in err
    assert run(*_build_args(raw, out)).returncode == 0  # released: the folder is free again


# ------------------------------------------------------------------------------ 6. a killed worker


def test_an_item_that_kills_its_worker_is_recorded_and_the_rest_go_on():
    seen = []
    results = run_parallel(die_on, ["a", "die", "b", "c"], n_jobs=2, on_result=lambda i, r: seen.append(i),
                           on_crash=lambda item, reason: f"{item}: {reason}")  # fmt: skip
    assert results == ["a", "die: worker died (signal 9; out of memory?)", "b", "c"] and sorted(seen) == results[:0] + [
        "a", "b", "c", "die"]  # fmt: skip
    with pytest.raises(Exception, match="terminated"):  # without on_crash a dead worker still stops the run
        run_parallel(die_on, ["a", "die"], n_jobs=2)


def test_a_worker_killed_during_a_build_is_retried_and_the_build_exits_0(raw, clean, tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "dpedkit_cli.main", "-q", *_build_args(raw, out), "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"COLUMNS": "1000"})  # fmt: skip
    killed, deadline = None, time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        workers = [c for c in children if b"LokyProcess" in Path(f"/proc/{c}/cmdline").read_bytes()]
        if workers and list((out / "train").glob(".shard-*.tmp*")):  # a worker is writing a shard: kill it
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.02)
    _, stderr = proc.communicate(timeout=300)
    assert killed is not None, "the build finished before a worker could be killed"
    assert proc.returncode == 0, stderr[-2000:]
    assert "a worker died (signal 9; out of memory?)" in " ".join(stderr.split()) and "Traceback" not in stderr
    assert digest(out) == digest(clean)  # the pair it was running was run again


# ------------------------------------------------------------------------------ 7. memory bombs


def test_a_photo_claiming_a_huge_size_is_refused_from_its_header(raw, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(25000, 25000))
    (tmp_path / "huge.png").write_bytes(png_claiming(100000, 100000))
    for name in ("bomb.png", "huge.png"):
        err = one_clean_line(run("align", str(tmp_path / name), str(next((raw / "dslr").iterdir())), "-o",
                                 str(tmp_path / "out")))  # fmt: skip
        assert "MP limit (--max-pixels)" in err
    model = tmp_path / "m.pt"
    save_checkpoint(model, Generator(GeneratorConfig(**TINY)))
    good = tmp_path / "photos"
    write_image(good / "a.png", np.full((24, 32, 3), 90, np.uint8))
    (good / "b.png").write_bytes(png_claiming(100000, 100000))
    write_image(good / "c.png", np.full((24, 32, 3), 200, np.uint8))
    res = run("enhance", str(model), str(good), "-o", str(tmp_path / "enh"), "--device", "cpu")
    assert res.returncode == 1 and "b.png" in " ".join(res.stderr.split())  # recorded; the others are written
    assert sorted(p.name for p in (tmp_path / "enh").iterdir()) == ["a.png", "c.png"]


def test_a_checkpoint_claiming_a_huge_network_is_refused_before_allocating(tmp_path):
    path = tmp_path / "bomb.pt"
    save_checkpoint(path, Generator(GeneratorConfig(**TINY)))
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"] = {"channels": 4096, "blocks": 64}  # ~77 GB of weights if built
    torch.save(ckpt, path)
    code = f"from dpedkit.nn.checkpoint import load_model\ntry: load_model({str(path)!r})\n" \
           f"except Exception as e: print(type(e).__name__)\n{PEAK_MB}"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "CheckpointError" and int(out[1]) < 1500, out  # MB


def test_a_shard_claiming_huge_patches_is_refused(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=2, n_test=1, patch=16)
    shard = next((ds / "train").glob("*.h5"))
    with h5py.File(shard, "a") as f:
        for name in ("phone", "dslr"):
            del f[name]
            f.create_dataset(name, shape=(2, 100000, 100000, 3), dtype=np.uint8, chunks=(1, 64, 64, 3))
        f.attrs["patch_size"] = 100000
    with pytest.raises(ShardError, match="patch size 100000"):
        from dpedkit.dataset.loader import load_split

        load_split(ds, "train")


def test_a_sparse_huge_tf_data_file_is_not_read_whole(shared, tmp_path):
    src = shared("models", "dped_orig")
    prefix = next(src.glob("*.index")).with_suffix("")
    (tmp_path / "m.index").write_bytes(Path(str(prefix) + ".index").read_bytes())
    data = tmp_path / "m.data-00000-of-00001"
    data.write_bytes(Path(str(prefix) + ".data-00000-of-00001").read_bytes())
    os.truncate(data, 8 << 30)  # 8 GB, sparse: the tensors are at its start
    code = f"from dpedkit.nn.checkpoint import load_model\nload_model({str(tmp_path / 'm')!r})\n{PEAK_MB}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1]) < 1500  # MB: the 8 GB file was never read whole


# ------------------------------------------------------------------------------ 8. malformed inputs


def test_malformed_tf_generators_name_what_is_wrong():
    good = {f"g/W{i}": np.zeros((3, 3, 4, 4), np.float32) for i in range(1, 5)}
    for bad_w1 in (np.zeros((3, 64), np.float32), np.zeros((9, 9, 3, 0), np.float32)):
        with pytest.raises(CheckpointError, match="W1 has shape"):
            tf_generator_state_dict(good | {"g/W1": bad_w1})


def test_a_tf_shape_whose_product_overflows_is_refused():
    from dpedkit.interop.tfbundle import TensorEntry, TFBundle

    bundle = TFBundle.__new__(TFBundle)
    bundle.prefix, bundle.verify, bundle.num_shards, bundle._sizes = Path("x"), False, 1, {0: 64}
    bundle.entries = {"w": TensorEntry("w", 1, (2**32, 2**32), 0, 0, 0, None)}  # int64 product: 0
    bundle._shard_path = lambda i: Path("x")
    with pytest.raises(CheckpointError, match="inconsistent with its shape"):
        bundle.read("w")


def test_malformed_datasets_and_models_are_clear_errors(tmp_path):
    ds = write_synthetic_dataset(tmp_path / "ds", n_train=4, n_test=2, patch=16)
    manifest = json.loads((ds / "dataset.json").read_text())
    del manifest["shards"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dataset.json").write_text(json.dumps(manifest))
    assert "damaged dataset manifest" in one_clean_line(run("verify", str(tmp_path / "bad")))
    mixed = write_synthetic_dataset(tmp_path / "mixed", n_train=4, n_test=2, patch=16)
    other = write_synthetic_dataset(tmp_path / "other", n_train=4, n_test=2, patch=24)
    manifest = json.loads((mixed / "dataset.json").read_text())
    (mixed / "train" / "shard-00001.h5").write_bytes((other / "train" / "shard-00000.h5").read_bytes())
    extra = dict(manifest["shards"][0], path="train/shard-00001.h5")
    extra["sha256"] = hashlib.sha256((mixed / "train" / "shard-00001.h5").read_bytes()).hexdigest()
    manifest["shards"].insert(1, extra)
    (mixed / "dataset.json").write_text(json.dumps(manifest))
    err = one_clean_line(run("train", str(mixed), "-o", str(tmp_path / "run"), "--model", "srcnn", "--iters", "1",
                             "--device", "cpu", "--data-mode", "memory"))  # fmt: skip
    assert "patches of different sizes (16 px in" in err
    g = Generator(GeneratorConfig(**TINY))
    with torch.no_grad():
        g.c1.weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", g)
    from dpedkit.nn.discriminator import Discriminator

    save_checkpoint(tmp_path / "d.pt", Discriminator())
    photos = tmp_path / "photos"
    write_image(photos / "a.png", np.full((24, 32, 3), 90, np.uint8))
    err = one_clean_line(run("enhance", str(tmp_path / "nan.pt"), str(photos), "-o", str(tmp_path / "e")))
    assert "hold NaN or infinite values" in err and not (tmp_path / "e").exists()
    err = one_clean_line(run("enhance", str(tmp_path / "d.pt"), str(photos), "-o", str(tmp_path / "e")))
    assert "holds a 'dped-discriminator' network" in err


# --------------------------------------------------------------------------- 9. new-user frictions


def test_new_user_frictions(raw, tmp_path):
    empty = tmp_path / "pairs.csv"
    empty.write_text("name,phone,dslr\n")
    err = one_clean_line(run(*_build_args(raw, tmp_path / "ds"), "--pairs", str(empty)))
    assert "lists no pair" in err and not (tmp_path / "ds").exists()
    out = tmp_path / "done"
    res = run(*_build_args(raw, out)[:-1], quiet=False)  # without -q or --quiet: INFO lines are shown
    assert res.returncode == 0 and "INFO" in res.stderr and "elapsed" in res.stderr  # progress lines in a pipe
    err = one_clean_line(run(*_build_args(raw, out), "--ncc", "0.95"))
    assert "patch.ncc_min: 0.9 in the dataset, 0.95 now" in err and "--overwrite" in err and "=True" not in err
    res = run(*_build_args(raw, out), quiet=False)  # the command's own --quiet: no INFO line, no bar
    assert res.returncode == 0 and "INFO" not in res.stderr and "elapsed" not in res.stderr
    phone, dslr = sorted((raw / "phone").iterdir())[0], sorted((raw / "dslr").iterdir())[0]
    assert run("align", str(phone), str(dslr), "-o", str(tmp_path / "pair")).returncode == 0
    err = one_clean_line(run("align", str(phone), str(dslr), "-o", str(tmp_path / "pair")))
    assert "holds an earlier alignment" in err and "--overwrite" in err
    assert run("align", str(phone), str(dslr), "-o", str(tmp_path / "pair"), "--overwrite").returncode == 0
    swapped = run("-v", "align", str(dslr), str(phone), "-o", str(tmp_path / "swapped"))
    assert "wrong way round" in " ".join(swapped.stderr.split())
    with pytest.raises(ConfigError, match="batch must be an integer"):
        EvalConfig(batch="5")


def test_errors_come_before_any_progress_bar(raw, tmp_path):
    res = run("build", str(raw / "phone"), str(raw / "dslr"), "-o", str(raw / "phone" / "ds"))
    err = one_clean_line(res)
    assert "lies inside the input" in err and "elapsed" not in res.stderr  # no (empty) progress before the error


def test_no_library_message_names_a_python_argument():
    root = Path(__file__).resolve().parents[1] / "dpedkit"
    offenders = [p.name for p in root.rglob("*.py") if "=True (--" in p.read_text() or "overwrite (--" in p.read_text()]
    assert not offenders


# ------------------------------------------------------------------------------- 10. ray in CI


def test_ray_is_installed_where_ci_runs():
    if not os.environ.get("CI"):
        pytest.skip("CI installs the dev extras, ray included")
    import ray  # noqa: F401


def test_input_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="bomb.png: image is 25000x25000"):
        from dpedkit.io import read_image

        (tmp_path / "bomb.png").write_bytes(png_claiming(25000, 25000))
        read_image(tmp_path / "bomb.png")
    with pytest.raises(ShardError, match="not a finished dpedkit dataset"):
        export_dped(tmp_path / "nothing", tmp_path / "x")
