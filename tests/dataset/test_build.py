import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dpedkit.dataset.build import BuildConfig, build_dataset, split_pairs
from dpedkit.dataset.format import DatasetDir
from dpedkit.dataset.patches import PatchConfig, ncc
from dpedkit.dataset.shards import read_shard, using_store
from dpedkit.errors import ConfigError
from dpedkit.geometry import apply_homography
from dpedkit.synth.pairs import map_phone_to_dslr, synthesize

SMALL = {"phone_mp": 0.15, "dslr_mp": 0.3}
CONFIG = BuildConfig(patch=PatchConfig(size=64), test_images=2, seed=3)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Six small synthetic pairs with known geometry."""
    root = tmp_path_factory.mktemp("raw")
    synthesize(root, n=6, seed=0, **SMALL)
    return root


@pytest.fixture(scope="module")
def clean(raw, tmp_path_factory):
    """A clean single-process build (the reference)."""
    out = tmp_path_factory.mktemp("clean") / "ds"
    summary = build_dataset(raw / "phone", raw / "dslr", out, config=CONFIG, jobs=1)
    return out, summary


def digests(root: Path) -> dict[str, str]:
    """sha256 of every dataset file (per-shard record files hold timings: excluded)."""
    skip = {"shard-"}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not (p.suffix == ".json" and any(p.name.startswith(s) for s in skip))
    }


def assert_same_dataset(a: Path, b: Path) -> None:
    """Byte-identical dataset files; on a mismatch, say which shard arrays differ."""
    da, db = digests(a), digests(b)
    if da == db:
        return
    diff = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    detail = []
    for rel in (k for k in diff if k.endswith(".h5") and k in da and k in db):
        x, y = read_shard(a / rel), read_shard(b / rel)
        detail += [f"{rel}:{k}" for k in x if k != "attrs" and not np.array_equal(x[k], y[k])]
    raise AssertionError(f"datasets differ in {diff}; shard arrays differing: {detail}")


def pairs_of(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]


def test_clean_build_layout_and_split_by_pair(clean):
    out, summary = clean
    assert summary.pairs == 6 and summary.ok == 6 and summary.by_reason == {}
    assert summary.pairs_by_split == {"train": 4, "test": 2}
    records = pairs_of(out)
    assert [r["pair"] for r in records] == sorted(r["pair"] for r in records)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["config"] == CONFIG.to_dict()
    split_of = {r["pair"]: r["split"] for r in records}
    kept = {r["pair"]: 0 for r in records}
    for entry in manifest["shards"]:
        shard = read_shard(out / entry["path"])
        assert len(shard["phone"]) == entry["rows"] and shard["phone"].shape[1:] == (64, 64, 3)
        for name in shard["pair"]:
            assert split_of[name] == entry["split"]  # a photo is wholly in one split
            kept[name] += 1
    assert kept == {r["pair"]: r["patches_kept"] for r in records}
    assert summary.patches["train"] > 0 and summary.patches["test"] > 0
    test_names = sorted(n for n, s in split_of.items() if s == "test")
    for side in ("phone", "dslr"):
        assert sorted(p.stem for p in (out / "test_full" / side).iterdir()) == test_names


def test_split_is_deterministic_for_a_seed():
    names = [f"{i:04d}" for i in range(50)]
    cfg = BuildConfig(test_images=7, seed=3)
    split = split_pairs(names, cfg)
    assert sum(s == "test" for s in split.values()) == 7
    assert split_pairs(names[::-1], cfg) == split
    assert split_pairs(names, BuildConfig(test_images=7, seed=4)) != split
    assert list(split_pairs(names[:5], BuildConfig(test_fraction=0.1)).values()).count("test") == 1
    assert list(split_pairs(names, BuildConfig(test_fraction=0.5)).values()).count("test") == 25


def test_patch_positions_match_the_known_geometry(raw, clean):
    out, _ = clean
    p = CONFIG.patch.size
    errors = []
    for r in pairs_of(out):
        truth = json.loads((raw / "truth" / f"{r['pair']}.json").read_text())
        shard = read_shard(out / f"{r['split']}/shard-{_shard_index(out, r['pair'])}.h5")
        x0, y0 = r["crop"][:2]
        centre = shard["xy"] + (p - 1) / 2 + [x0, y0]  # DSLR window centre on the phone crop grid, full phone px
        stored = apply_homography(np.asarray(r["H_phone_to_dslr"]), centre)  # where the stored DSLR patch came from
        true = map_phone_to_dslr(truth, centre + shard["shift"])  # where the stored phone patch centre really is
        errors.append(np.linalg.norm(stored - true, axis=1) / r["scale"])  # in phone pixels
    errors = np.concatenate(errors)
    assert len(errors) > 50
    assert np.median(errors) < 0.25 and np.percentile(errors, 95) < 0.6


def _shard_index(out: Path, pair: str) -> str:
    for entry in json.loads((out / "dataset.json").read_text())["shards"]:
        record = json.loads((out / Path(entry["path"]).with_suffix(".json")).read_text())
        if pair in [q["pair"] for q in record["pairs"]]:
            return Path(entry["path"]).stem.split("-")[1]
    raise AssertionError(pair)


def test_stored_pairs_pass_the_ncc_threshold(clean):
    out, _ = clean
    for shard in (out / "train").glob("*.h5"):
        d = read_shard(shard)
        for a, b, stored in zip(d["phone"], d["dslr"], d["ncc"], strict=True):
            assert ncc(a, b) == pytest.approx(float(stored), abs=1e-5) and stored >= 0.9


def test_every_candidate_window_is_stored(clean):
    out, _ = clean
    cand = DatasetDir(out).read_candidates()
    records = {r["pair"]: r for r in pairs_of(out)}
    assert sorted(set(cand["pair"])) == sorted(records)
    for name, r in records.items():
        mine = cand["pair"] == name
        assert mine.sum() == r["patches_total"] > 0 and cand["kept"][mine].sum() == r["patches_kept"]
        assert np.all(cand["split"][mine] == r["split"])
        # row-major grid of P x P windows; xy is the grid position times P
        grid = cand["grid"][mine]
        np.testing.assert_array_equal(cand["xy"][mine], grid * CONFIG.patch.size)
        assert np.all(np.diff(grid[:, 1] * 10_000 + grid[:, 0]) > 0)
    for shard_path in sorted(set(cand["shard"])):
        shard = read_shard(out / shard_path)
        here = cand["shard"] == shard_path
        kept = here & cand["kept"]
        # the kept windows are the stored patches, in order, with the same columns
        np.testing.assert_array_equal(cand["row"][kept], np.arange(len(shard["ncc"])))
        assert np.all(cand["row"][here & ~cand["kept"]] == -1)
        for col in ("pair", "xy", "shift", "angle", "ncc", "texture"):
            np.testing.assert_array_equal(cand[col][kept], shard[col])
        assert np.all(cand["ncc"][here & ~cand["kept"] & ~cand["outside"]] < CONFIG.patch.ncc_min)
    assert (~cand["kept"]).any()  # rejected windows are stored too
    some = sorted(records)[:2]
    sub = DatasetDir(out).read_candidates(some, columns=["ncc"])
    assert set(sub) == {"ncc"}
    assert sorted(set(DatasetDir(out).read_candidates(some, columns=["pair"])["pair"])) == some
    np.testing.assert_array_equal(sub["ncc"], cand["ncc"][np.isin(cand["pair"], some)])


def test_two_workers_give_the_same_dataset(raw, clean, tmp_path):
    out, _ = clean
    build_dataset(raw / "phone", raw / "dslr", tmp_path / "ds", config=CONFIG, jobs=2)
    assert_same_dataset(tmp_path / "ds", out)


def test_a_shard_store_chosen_in_the_driver_writes_in_every_worker(raw, clean, tmp_path):
    from dpedkit.testing import MarkingStore

    with using_store(MarkingStore()):
        build_dataset(raw / "phone", raw / "dslr", tmp_path, config=CONFIG, jobs=2)
    marks = sorted(tmp_path.rglob("*.mark"))
    shards = sorted(tmp_path.rglob("shard-*.h5"))
    assert len(marks) == len(shards) > 2  # every shard went through the store, in the worker processes
    assert str(os.getpid()) not in {m.read_text() for m in marks}
    for m in marks:
        m.unlink()
    assert_same_dataset(tmp_path, clean[0])


def test_finished_dataset_is_left_alone_and_plans_must_match(raw, tmp_path):
    cfg = BuildConfig(patch=PatchConfig(size=64), pairs_per_shard=3)
    first = build_dataset(raw / "phone", raw / "dslr", tmp_path, config=cfg)
    assert first.shards == 3 and first.shards_built == 3  # train: 3 + 2 pairs, test: 1
    again = build_dataset(raw / "phone", raw / "dslr", tmp_path, config=cfg)
    assert again.already_finished and again.ok == first.ok and again.shards_built == 0
    with pytest.raises(ConfigError, match="finished dataset of other pairs or settings"):
        build_dataset(raw / "phone", raw / "dslr", tmp_path, config=BuildConfig(seed=9))
    (tmp_path / "dataset.json").unlink()  # an unfinished build ...
    with pytest.raises(ConfigError, match="unfinished build"):
        build_dataset(raw / "phone", raw / "dslr", tmp_path, config=BuildConfig(seed=9))
    resumed = build_dataset(raw / "phone", raw / "dslr", tmp_path, config=cfg)  # ... resumes: nothing to redo
    assert resumed.shards_built == 0 and resumed.patches == first.patches
    redone = build_dataset(raw / "phone", raw / "dslr", tmp_path, config=cfg, overwrite=True)
    assert redone.shards_built == 3


def test_a_photo_replaced_under_its_name_is_noticed(raw, tmp_path):
    import shutil

    src = tmp_path / "raw"
    for side in ("phone", "dslr"):
        (src / side).mkdir(parents=True)
        for name in ("0000.jpg", "0001.jpg"):
            shutil.copy(raw / side / name, src / side / name)
    cfg = BuildConfig(patch=PatchConfig(size=64), test_images=0)
    build_dataset(src / "phone", src / "dslr", tmp_path / "ds", config=cfg)
    shutil.copy(raw / "dslr" / "0002.jpg", src / "dslr" / "0001.jpg")  # the right photo, say, under the old name
    with pytest.raises(ConfigError, match=r"photos changed since \(size or time\): 0001"):
        build_dataset(src / "phone", src / "dslr", tmp_path / "ds", config=cfg)
    assert build_dataset(src / "phone", src / "dslr", tmp_path / "ds", config=cfg, overwrite=True).ok == 1


def test_a_dataset_planned_before_photo_stamps_is_still_recognised(raw, tmp_path):
    cfg = BuildConfig(patch=PatchConfig(size=64), test_images=0)
    build_dataset(raw / "phone", raw / "dslr", tmp_path, config=cfg)
    plan = json.loads((tmp_path / "build.json").read_text())
    del plan["inputs"]  # as an older dpedkit wrote it
    (tmp_path / "build.json").write_text(json.dumps(plan, indent=1, sort_keys=True))
    assert build_dataset(raw / "phone", raw / "dslr", tmp_path, config=cfg).already_finished


def test_sigkill_then_resume_equals_clean_build(raw, clean, tmp_path):
    out, _ = clean
    dest = tmp_path / "ds"
    args = [str(raw / "phone"), str(raw / "dslr"), "-o", str(dest), "--patch", "64", "--test-images", "2",
            "--seed", "3", "--quiet", "--json"]  # fmt: skip
    cmd = [sys.executable, "-m", "dpedkit_cli.main", "-q", "build", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    # a shard counts as finished once its record file is written beside it (right after the shard's rename)
    while not list(dest.glob("*/shard-*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (dest / "dataset.json").exists(), "the build finished before it could be killed"
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout)
    assert 0 < summary["shards_built"] < summary["shards"]
    assert_same_dataset(dest, out)
    assert not list(dest.rglob("*.tmp*"))


def test_cli_json_summary_and_bad_flag(raw, tmp_path):
    from dpedkit_cli.main import cli

    runner = CliRunner()
    args = [
        "-q",
        "build",
        str(raw / "phone"),
        str(raw / "dslr"),
        "-o",
        str(tmp_path),
        "--patch",
        "64",
        "--quiet",
        "--json",
    ]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["ok"] == 6 and summary["failed"] == 0 and summary["patches"]["train"] > 0
    res = runner.invoke(cli, [*args[:-2], "--ncc", "7"])
    assert res.exit_code == 2 and "ncc_min" in res.output


@pytest.mark.slow
@pytest.mark.slow
def test_ray_backend_matches_loky(raw, clean, tmp_path):
    """A local ray instance, 2 pool workers. ray is a dev dependency: in CI a missing ray fails, elsewhere skips."""
    if os.environ.get("CI"):
        import ray  # noqa: F401
    else:
        pytest.importorskip("ray")
    out, _ = clean
    seen = []
    build_dataset(raw / "phone", raw / "dslr", tmp_path, config=CONFIG, jobs=2, backend="ray", on_result=seen.append)
    assert_same_dataset(tmp_path, out)
    assert len(seen) == len(list((tmp_path / "train").glob("shard-*.h5"))) + len(
        list((tmp_path / "test").glob("shard-*.h5"))
    )


@pytest.mark.shared
def test_city100_all_pairs_ok_and_ncc_rechecked(shared, tmp_path):
    city = shared("data", "city100")
    summary = build_dataset(city / "iPhoneX", city / "NikonD5500", tmp_path, config=BuildConfig(test_images=1), jobs=2)
    assert summary.pairs == 10 and summary.ok == 10, summary
    kept = 0
    for path in tmp_path.glob("*/shard-*.h5"):
        d = read_shard(path)
        kept += len(d["ncc"])
        assert all(ncc(a, b) >= 0.9 - 1e-6 for a, b in zip(d["phone"], d["dslr"], strict=True))
    assert kept == sum(summary.patches.values()) > 0


@pytest.fixture(scope="module")
def bad_corpus(raw, tmp_path_factory):
    """Good, broken and odd inputs side by side (see issue 4, point 7)."""
    import cv2
    from PIL import Image

    from dpedkit.io import read_rgb, write_image

    root = tmp_path_factory.mktemp("bad")
    phone, dslr = root / "phone", root / "dslr"
    phone.mkdir(), dslr.mkdir()

    def pair(name, src, *, phone_file=None):
        (dslr / f"{name}.jpg").write_bytes((raw / "dslr" / f"{src}.jpg").read_bytes())
        if phone_file is None:
            (phone / f"{name}.jpg").write_bytes((raw / "phone" / f"{src}.jpg").read_bytes())

    pair("good", "0000")
    pair("corrupt", "0001")
    (phone / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    pair("truncated", "0001")
    data = (raw / "phone" / "0001.jpg").read_bytes()
    (phone / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (phone / "unrelated.jpg").write_bytes((raw / "phone" / "0001.jpg").read_bytes())
    (dslr / "unrelated.jpg").write_bytes((raw / "dslr" / "0002.jpg").read_bytes())
    write_image(phone / "featureless.png", np.full((480, 640, 3), 128, np.uint8))
    write_image(dslr / "featureless.png", np.full((600, 900, 3), 128, np.uint8))
    (phone / "lonely.jpg").write_bytes((raw / "phone" / "0003.jpg").read_bytes())
    pair("sixteen", "0003", phone_file=False)
    rgb16 = read_rgb(raw / "phone" / "0003.jpg").astype(np.uint16) * 257
    cv2.imwrite(str(phone / "sixteen.png"), rgb16[:, :, ::-1])
    pair("gray", "0004", phone_file=False)
    cv2.imwrite(str(phone / "gray.png"), cv2.cvtColor(read_rgb(raw / "phone" / "0004.jpg"), cv2.COLOR_RGB2GRAY))
    pair("rotated", "0005", phone_file=False)
    exif = Image.Exif()
    exif[0x0112] = 6  # viewer turns the stored image 90 degrees clockwise
    Image.fromarray(np.rot90(read_rgb(raw / "phone" / "0005.jpg"), 1)).save(
        phone / "rotated.jpg", exif=exif, quality=95
    )
    return root


def test_bad_input_is_data(bad_corpus, tmp_path):
    from dpedkit_cli.main import cli

    args = ["-q", "build", str(bad_corpus / "phone"), str(bad_corpus / "dslr"), "-o", str(tmp_path)]
    res = CliRunner().invoke(cli, [*args, "--patch", "64", "--jobs", "2", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    status = {r["pair"]: r for r in pairs_of(tmp_path)}
    for name in ("good", "sixteen", "gray", "rotated"):
        assert status[name]["status"] == "ok" and status[name]["patches_kept"] > 0, status[name]
    for name in ("corrupt", "truncated"):
        assert status[name]["status"] == "unreadable" and name in status[name]["reason"]
    assert "truncated JPEG" in status["truncated"]["reason"]
    assert status["lonely"]["status"] == "no-partner" and status["lonely"]["split"] is None
    for name in ("unrelated", "featureless"):
        assert status[name]["status"] not in ("ok", "error") and status[name]["reason"], status[name]
    failed = [r["status"] for r in status.values() if r["status"] != "ok"]
    assert summary["ok"] == 4 and summary["by_reason"] == {k: failed.count(k) for k in set(failed)}


def test_exit_status_1_when_no_pair_succeeds(bad_corpus, tmp_path):
    from dpedkit_cli.main import cli

    phone, dslr = tmp_path / "p", tmp_path / "d"
    for folder, side in ((phone, "phone"), (dslr, "dslr")):
        folder.mkdir()
        (folder / "corrupt.jpg").write_bytes((bad_corpus / side / "corrupt.jpg").read_bytes())
    res = CliRunner().invoke(cli, ["-q", "build", str(phone), str(dslr), "-o", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 1
    assert (tmp_path / "o" / "dataset.json").is_file()


def test_pairs_csv_selects_and_names_pairs(raw, tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("name,phone,dslr\nfirst,0000.jpg,0000.jpg\nsecond,0001.jpg,0001.jpg\n")
    cfg = BuildConfig(patch=PatchConfig(size=64), test_images=0)
    summary = build_dataset(raw / "phone", raw / "dslr", tmp_path / "ds", config=cfg, pairs_csv=csv)
    assert summary.ok == 2 and summary.pairs_by_split == {"train": 2, "test": 0}
    records = pairs_of(tmp_path / "ds")
    assert [r["pair"] for r in records] == ["first", "second"]
    assert records[1]["phone"] == str((raw / "phone" / "0001.jpg").resolve())


def test_build_config_roundtrip_and_errors():
    cfg = BuildConfig(patch=PatchConfig(size=64, ncc_min=0.8), test_images=3, pairs_per_shard=2)
    assert BuildConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="test_fraction"):
        BuildConfig(test_fraction=1.5)
    with pytest.raises(ConfigError, match="on_error must be one of"):
        BuildConfig(on_error="ignore")
    with pytest.raises(ConfigError, match="unknown BuildConfig option"):
        BuildConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="jobs must be"):
        build_dataset("a", "b", "c", jobs=0)


def test_empty_or_unpartnered_input_is_bad_input_and_writes_nothing(raw, tmp_path):
    from dpedkit_cli.main import cli

    empty, lonely = tmp_path / "empty", tmp_path / "lonely"
    empty.mkdir(), lonely.mkdir()
    (lonely / "other.jpg").write_bytes((raw / "phone" / "0000.jpg").read_bytes())
    for phone in (empty, lonely):
        out = tmp_path / f"out-{phone.name}"
        res = CliRunner().invoke(cli, ["-q", "build", str(phone), str(raw / "dslr"), "-o", str(out), "--quiet"])
        assert res.exit_code == 2 and "error:" in res.output, res.output
        assert not out.exists() or not any(out.iterdir())
    res = CliRunner().invoke(cli, ["-q", "pairs", str(empty), str(raw / "dslr")])
    assert res.exit_code == 2 and "no photos in this folder" in " ".join(res.output.split())


def test_a_split_whose_pairs_all_failed_is_a_warning(bad_corpus, tmp_path, caplog):
    cfg = BuildConfig(patch=PatchConfig(size=64), test_images=1)
    split = split_pairs(["a", "b"], cfg)  # the split is drawn before any pair runs: make the test pair fail
    files = {name: "corrupt.jpg" if split[name] == "test" else "good.jpg" for name in split}
    csv = tmp_path / "pairs.csv"
    csv.write_text("name,phone,dslr\n" + "".join(f"{n},{f},{f}\n" for n, f in files.items()))
    with caplog.at_level("WARNING", logger="dpedkit.dataset.build"):
        summary = build_dataset(bad_corpus / "phone", bad_corpus / "dslr", tmp_path / "ds", config=cfg, pairs_csv=csv)
    assert summary.ok == 1 and summary.patches["test"] == 0
    assert len(summary.warnings) == 1 and "the test split has no patches" in summary.warnings[0]
    assert "the test split has no patches" in caplog.text


def test_next_hint_gives_a_short_first_run_or_says_the_train_split_is_empty(tmp_path):
    from dpedkit_cli.main import cli

    synthesize(tmp_path / "raw", n=2, seed=0, **SMALL)
    out = tmp_path / "ds"
    args = ["-q", "build", str(tmp_path / "raw" / "phone"), str(tmp_path / "raw" / "dslr"), "-o", str(out), "--patch",
            "64"]  # fmt: skip
    res = CliRunner().invoke(cli, [*args, "--test-images", "2"])  # every pair in the test split
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "the train split holds no patch pairs" in text and "put all 2 pairs in the test split" in text
    assert "fewer --test-images (below 2) or a smaller --test-fraction" in text and "--overwrite" in text
    assert f"next: dpedkit inspect {out}" in text and f"dpedkit evaluate MODEL {out}" in text
    assert "dpedkit train" not in text
    res = CliRunner().invoke(cli, [*args, "--test-images", "1", "--overwrite"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert f"then dpedkit train {out} -o run --model srcnn --iters 300 (a first run: minutes on a CPU" in text
    assert "20,000 iterations" in text and "no patch pairs" not in text


def test_bit_depth_16_keeps_the_precision_of_16_bit_photos_and_training_reads_it(tmp_path):
    from dataclasses import replace

    from dpedkit.config import TrainConfig
    from dpedkit.dataset.loader import load_split
    from dpedkit.evaluate import evaluate_arrays
    from dpedkit.io import read_image
    from dpedkit.train import train

    synthesize(tmp_path / "raw", n=3, seed=0, phone_mp=0.15, dslr_mp=0.3, dslr_format="dng")
    phone, dslr = tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr"
    cfg8 = BuildConfig(patch=PatchConfig(size=64), test_images=1)
    s8 = build_dataset(phone, dslr, tmp_path / "ds8", config=cfg8)
    s16 = build_dataset(phone, dslr, tmp_path / "ds16", config=replace(cfg8, bit_depth=16))
    assert s8.ok == s16.ok == 3
    p8, d8 = load_split(tmp_path / "ds8", "train")
    p16, d16 = load_split(tmp_path / "ds16", "train")
    assert p8.dtype == np.uint8 and p16.dtype == d16.dtype == np.uint16
    assert abs(len(p16) - len(p8)) <= 0.02 * len(p8)
    assert np.mean(d16 % 257 != 0) > 0.5 and np.mean(p16 % 257 != 0) > 0.5  # not 8-bit values scaled up
    # the same content as the 8-bit build, to within the rounding of 8 bits
    ident8 = evaluate_arrays(lambda x: x, p8, d8)[1].dped_psnr
    ident16 = evaluate_arrays(lambda x: x, p16, d16)[1].dped_psnr
    assert ident16 == pytest.approx(ident8, abs=0.3)
    test_png = next((tmp_path / "ds16" / "test_full" / "dslr").iterdir())
    assert read_image(test_png, keep_16bit=True).bit_depth == 16

    run = tmp_path / "run"
    cfg = TrainConfig(model="srcnn", iters=2, batch=4, eval_every=2, device="cpu", model_config={"channels1": 8})
    train(tmp_path / "ds16", run, config=cfg)
    assert (run / "best.pt").is_file()


def test_the_build_table_counts_photos_without_a_partner_apart_from_pairs(capsys):
    from types import SimpleNamespace

    from dpedkit_cli.commands.build import _render

    counts = {"by_reason": {"no-partner": 12, "unaligned": 1}, "patches": {"train": 3000, "test": 200},
              "pairs_by_split": {"train": 13, "test": 1}}  # fmt: skip
    summary = SimpleNamespace(already_finished=False, out_dir="ds", pairs=27, ok=14, seconds=1.0, shards=15,
                              shards_built=15, **counts)  # fmt: skip
    _render(summary)
    rows = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in capsys.readouterr().err.splitlines()
            if ln.count("│") == 3}  # fmt: skip
    assert rows["pairs"] == "15" and rows["ok"] == "14" and rows["failed: unaligned"] == "1"
    assert rows["photos without a partner"] == "12" and "failed: no-partner" not in rows
    assert rows["patches test (1 pair)"] == "200" and rows["patches train (13 pairs)"] == "3000"
