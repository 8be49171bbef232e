import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dpedkit.errors import InputError
from dpedkit.inspect.report import ReportConfig, is_report, write_report

SECTIONS = ["summary", "plots", "pairs", "views", "samples", "lowest"]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """3 synthetic pairs + an unrelated pair + a DSLR photo without partner, built into a dataset."""
    from dpedkit.dataset.build import BuildConfig, build_dataset
    from dpedkit.synth.pairs import synthesize

    raw = tmp_path_factory.mktemp("raw")
    synthesize(raw, n=3, seed=0, phone_mp=0.3, dslr_mp=0.6)
    shutil.copy(raw / "phone" / "0000.jpg", raw / "phone" / "0003.jpg")  # unrelated to dslr/0003
    shutil.copy(raw / "dslr" / "0001.jpg", raw / "dslr" / "0003.jpg")
    shutil.copy(raw / "dslr" / "0002.jpg", raw / "dslr" / "0099.jpg")  # no phone partner
    out = tmp_path_factory.mktemp("ds") / "ds"
    build_dataset(raw / "phone", raw / "dslr", out, config=BuildConfig(test_images=1))
    return out


@pytest.fixture(scope="module")
def legacy_dataset(tiny_dataset, tmp_path_factory):
    """``tiny_dataset`` as dpedkit wrote it before schema 2: shards without the candidates/ group."""
    import h5py

    from dpedkit.dataset.shards import file_sha256

    out = tmp_path_factory.mktemp("legacy") / "ds"
    shutil.copytree(tiny_dataset, out)
    manifest = json.loads((out / "dataset.json").read_text())
    for entry in manifest["shards"]:
        with h5py.File(out / entry["path"], "a") as f:
            del f["candidates"]
            f.attrs["schema_version"] = 1
        entry["sha256"] = file_sha256(out / entry["path"])
    manifest["schema_version"] = 1
    (out / "dataset.json").write_text(json.dumps(manifest))
    return out


def _rows(page: str) -> list[str]:
    body = page.split("id='pairs-table'", 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr[^>]*>(.*?)</tr>", body)


def _kept_fraction(row: str) -> float:
    return float(re.findall(r"data-v='([^']*)'", row)[1])  # pair, then kept fraction (status/split are text)


def test_dataset_report_has_every_section_and_is_self_contained(tiny_dataset, tmp_path):
    out = tmp_path / "r.html"
    res = write_report(tiny_dataset, out, config=ReportConfig(samples=6, lowest=3))
    page = out.read_text()
    assert res.kind == "dataset" and res.sections == SECTIONS and res.n_pairs == 4 and res.unpaired == 1
    for sid in SECTIONS:
        assert f"id='{sid}'" in page
    # every image is embedded; nothing is fetched from anywhere
    assert not re.search(r"""(src|href)=['"](?!data:|#)""", page)
    assert page.count("<img ") >= 4 + 3 * 6 + 6 + 3  # 4 plots, 3 ok pair views of 6 pictures, galleries
    # worst first: the failed pairs (kept fraction 0), then increasing kept fraction
    fractions = [_kept_fraction(r) for r in _rows(page)]
    assert fractions == sorted(fractions) and fractions[0] == 0.0
    # every row links to an existing pair view
    for name in ("0000", "0001", "0002", "0003", "0099"):
        assert f"href='#pair-{name}'" in page and f"id='pair-{name}'" in page
    assert "no-partner" in page and "0099" in res.pair_views
    assert "every candidate window (kept or rejected) of all ok pairs" in page


def test_dataset_report_bounded_recomputation(legacy_dataset, tmp_path):
    res = write_report(legacy_dataset, tmp_path / "r.html", config=ReportConfig(pair_views=1, hist_pairs=0, samples=2))
    page = (tmp_path / "r.html").read_text()
    assert len([n for n in res.pair_views if n in ("0000", "0001", "0002")]) == 1  # + the 2 failed pairs' views
    assert {"0003", "0099"} <= set(res.pair_views)
    assert "kept patches only" in page
    assert "raise --pair-views" in page
    assert not res.stored_candidates and len(res.recomputed) == 1


def test_legacy_dataset_recomputes_windows_for_the_histogram(legacy_dataset, tmp_path):
    res = write_report(legacy_dataset, tmp_path / "r.html", config=ReportConfig(pair_views=1, samples=2, lowest=1))
    page = res.path.read_text()
    assert not res.stored_candidates and sorted(res.recomputed) == ["0000", "0001", "0002"]  # hist_pairs=12 >= 3
    assert "of all ok pairs, recomputed from the photos" in page and "stores only the kept patches" in page


def test_stored_candidates_are_used_without_recomputation(tiny_dataset, tmp_path, monkeypatch):
    from dpedkit.dataset.format import DatasetDir
    from dpedkit.inspect import views

    calls = []
    real = views.recompute_pair
    monkeypatch.setattr(views, "recompute_pair", lambda *a, **k: calls.append((a[0]["pair"], k)) or real(*a, **k))
    res = write_report(tiny_dataset, tmp_path / "r.html", config=ReportConfig(pair_views=0, samples=2, lowest=1))
    page = res.path.read_text()
    assert res.stored_candidates and res.recomputed == [] and calls == []  # hist_pairs (12) is not used
    n = len(DatasetDir(tiny_dataset).read_candidates(columns=["ncc"])["ncc"])
    records = [json.loads(x) for x in (tiny_dataset / "pairs.jsonl").read_text().splitlines()]
    assert n == sum(r["patches_total"] for r in records) > 0
    assert f"every candidate window (kept or rejected) of all ok pairs ({n} windows of 3 pairs)" in page
    assert "stored in the dataset; nothing was recomputed" in page and "recomputed from the photos" not in page
    # pair views re-align for the photo overlays only: the windows are not re-refined
    res = write_report(tiny_dataset, tmp_path / "v.html", config=ReportConfig(pair_views=2, samples=1, lowest=1))
    assert [c[0] for c in calls] == res.recomputed and len(calls) == 2
    assert all(k == {"patches": False} for _, k in calls)
    assert "shift field are drawn from the candidate windows stored" in res.path.read_text()


def test_pair_view_from_stored_windows_equals_recomputed(tiny_dataset, legacy_dataset):
    from dpedkit.inspect.views import dataset_pair_view

    stored, again = dataset_pair_view(tiny_dataset, "0001"), dataset_pair_view(legacy_dataset, "0001")
    assert set(stored.images) == set(again.images) >= {"grid", "field", "checkerboard"}
    for key in ("xy", "shift", "ncc", "kept"):  # the build is deterministic: same windows, same pictures
        np.testing.assert_array_equal(stored.candidates[key], again.candidates[key])
    assert stored.images["field"] == again.images["field"] and stored.captions == again.captions


def test_default_output_is_inside_the_source(tiny_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    res = write_report(copy, config=ReportConfig(pair_views=0, hist_pairs=0, samples=1, lowest=1))
    assert res.path == copy / "report.html" and res.path.stat().st_size == res.size_bytes


@pytest.mark.parametrize("legacy", [True, False])
def test_report_survives_moved_photos(tiny_dataset, legacy_dataset, tmp_path, legacy):
    copy = tmp_path / "ds"
    shutil.copytree(legacy_dataset if legacy else tiny_dataset, copy)
    lines = [json.loads(x) for x in (copy / "pairs.jsonl").read_text().splitlines()]
    for r in lines:
        r["phone"] = r["phone"] and str(tmp_path / "gone" / Path(r["phone"]).name)
    (copy / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    res = write_report(copy, config=ReportConfig(samples=2, lowest=1))
    page = res.path.read_text()
    assert res.recomputed == [] and sorted(res.unreadable) == ["0000", "0001", "0002"]
    assert "none of the 3 worst ok pairs could be re-aligned: their photos could not be read" in page
    assert "were re-aligned from their photos" not in page and "re-aligned from their photos" not in res.notes[-1]
    if legacy:
        assert res.sections == SECTIONS and "kept patches only" in page and "no such file" in page
    else:  # the histogram and the window pictures need no photo
        assert res.sections == SECTIONS and "nothing was recomputed" in page and "no such file" in page
        assert page.count("no image behind them") == 2 * 3  # grid and field of the 3 ok pairs


def test_pair_folder_report(tiny_dataset, tmp_path):
    from dpedkit.align import align_files, write_alignment

    rec = json.loads((tiny_dataset / "pairs.jsonl").read_text().splitlines()[0])
    write_alignment(align_files(rec["phone"], rec["dslr"]), tmp_path / "pair")
    res = write_report(tmp_path / "pair", tmp_path / "p.html")
    page = (tmp_path / "p.html").read_text()
    assert res.kind == "pair" and res.sections == ["views"]
    for caption in ("inlier matches", "checkerboard", "blend", "band-passed", "windows kept", "residual shift"):
        assert caption in page
    from dpedkit_cli.main import cli

    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "pair"), "--summary"])
    assert res.exit_code == 0 and "aligned pair" in res.output and "rmse_px" in res.output


def test_report_refuses_other_folders(tmp_path):
    with pytest.raises(InputError, match="not a dataset"):
        write_report(tmp_path)


def test_cli_inspect_summary_and_html(tiny_dataset, tmp_path):
    from dpedkit_cli.main import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(tiny_dataset), "--summary", "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "worst 3 pairs" in res.output and "no-partner" in res.output
    out = tmp_path / "c.html"
    res = runner.invoke(cli, ["inspect", str(tiny_dataset), "-o", str(out), "--pair-views", "1", "--samples", "2"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and str(out) in res.output
    assert "dataset report, 4 pair(s) and 1 photo(s) without a partner" in " ".join(res.output.split())
    res = runner.invoke(cli, ["inspect", str(tmp_path)])
    assert res.exit_code == 2 and "error:" in res.output and "dataset.json" in res.output


def test_cli_inspect_summary_as_json(tiny_dataset):
    from dpedkit_cli.main import cli

    res = CliRunner().invoke(cli, ["-q", "inspect", str(tiny_dataset), "--summary", "--json", "--top", "2"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # strict: a NaN metric would have been written as null
    assert data["pairs"] >= 2 and len(data["worst_pairs"]) == 2 and "no-partner" in data["status_counts"]
    assert data["patches_kept"] == sum(data["split_patches"].values())
    res = CliRunner().invoke(cli, ["inspect", str(tiny_dataset), "--json"])
    assert res.exit_code == 2 and "--json goes with --summary" in res.output


def test_cli_inspect_warns_about_pairs_whose_photos_are_missing(tiny_dataset, tmp_path):
    from dpedkit_cli.main import cli

    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    lines = [json.loads(x) for x in (copy / "pairs.jsonl").read_text().splitlines()]
    for r in lines:
        if r["pair"] == "0001":
            r["dslr"] = str(tmp_path / "gone" / "0001.jpg")
    (copy / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    res = CliRunner().invoke(cli, ["inspect", str(copy), "-o", str(tmp_path / "r.html"), "--samples", "1"])
    message = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "2 of the 3 worst ok pairs were re-aligned from their photos" in message
    assert "warning: 2 pair(s) re-aligned from their photos, 1 could not be (photos missing" in message
    assert "0001.jpg: no such file" in message and "Pair views: the 3 worst" not in message


# ------------------------------------------------------------------------------------- headless browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed (CI must install it: apt-get install -y chromium)")
    pytest.skip("chromium is not installed")


def _run_chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0", *extra,
        page.resolve().as_uri(),
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def check_in_browser(tmp_path: Path, page: Path) -> None:
    """The page loads in headless chromium with no console message, and its screenshot is not blank."""
    shot = tmp_path / "shot.png"
    proc = _run_chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.is_file(), proc.stderr[-2000:]
    assert _console_messages(proc.stderr) == []
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (2400, 1280)
    background = np.abs(img.astype(int) - img[5, -5].astype(int)).sum(axis=2) < 8
    assert background.mean() < 0.9 and len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # text, plots: not blank


def test_chromium_sees_console_errors(tmp_path):
    """The console check itself can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert _console_messages(_run_chromium(tmp_path, bad, "--dump-dom").stderr)


def test_report_in_headless_chromium(tiny_dataset, tmp_path):
    out = tmp_path / "r.html"
    write_report(tiny_dataset, out, config=ReportConfig(samples=4, lowest=2))
    check_in_browser(tmp_path, out)
    # the inline sorter: click "kept fraction" twice (descending), read the DOM back
    page = out.read_text().replace(
        "</body>",
        "<script>var th=document.querySelectorAll('#pairs-table th')[3];th.click();th.click();</script></body>",
    )
    (tmp_path / "sorted.html").write_text(page)
    proc = _run_chromium(tmp_path, tmp_path / "sorted.html", "--dump-dom")
    assert _console_messages(proc.stderr) == []
    fractions = [_kept_fraction(r) for r in _rows(proc.stdout.replace('"', "'"))]
    assert len(fractions) == 5 and fractions == sorted(fractions, reverse=True) and fractions[0] > 0


@pytest.mark.shared
@pytest.mark.slow
def test_city100_report_acceptance(shared, tmp_path):
    """Issue 6 acceptance: every section, worst pair first, renders in headless chromium."""
    from dpedkit.dataset.build import BuildConfig, build_dataset

    city = shared("data", "city100")
    ds = tmp_path / "city"
    build_dataset(city / "iPhoneX", city / "NikonD5500", ds, config=BuildConfig(test_images=2), jobs=2)
    res = write_report(ds, tmp_path / "city.html", config=ReportConfig(pair_views=4))
    page = res.path.read_text()
    assert res.sections == SECTIONS and res.n_pairs == 10
    for sid in SECTIONS:
        assert f"id='{sid}'" in page
    records = [json.loads(line) for line in (ds / "pairs.jsonl").read_text().splitlines()]
    lowest = min(r["patches_kept"] / r["patches_total"] for r in records)
    fractions = [_kept_fraction(r) for r in _rows(page)]
    assert fractions[0] == pytest.approx(lowest) and fractions == sorted(fractions)
    assert "of all ok pairs (" in page and "windows of 10 pairs)" in page  # NCC histogram: every window, stored
    assert res.stored_candidates and "nothing was recomputed" in page
    check_in_browser(tmp_path, res.path)


def test_report_never_writes_over_a_file_that_is_not_a_report(tiny_dataset, tmp_path):
    """Issue 20: ``inspect -o ds/dataset.json`` destroyed the dataset; any other file was overwritten silently."""
    from dpedkit_cli.main import cli

    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    manifest = (copy / "dataset.json").read_bytes()
    shard = next((copy / "train").glob("*.h5"))
    for target in (copy / "dataset.json", shard):
        for extra in ([], ["--overwrite"]):  # a dataset's own file: refused even with --overwrite
            res = CliRunner().invoke(cli, ["inspect", str(copy), "-o", str(target), *extra])
            assert res.exit_code == 2 and "is a file of a dataset folder" in " ".join(res.output.split()), res.output
    assert (copy / "dataset.json").read_bytes() == manifest
    mine = tmp_path / "notes.html"
    mine.write_text("my notes")
    res = CliRunner().invoke(cli, ["inspect", str(copy), "-o", str(mine)])
    assert res.exit_code == 2 and "not an earlier dpedkit report; use --overwrite" in " ".join(res.output.split())
    assert mine.read_text() == "my notes"
    cfg = ReportConfig(pair_views=0, hist_pairs=0, samples=1, lowest=1)
    write_report(copy, mine, config=cfg, overwrite=True)
    write_report(copy, mine, config=cfg)  # an earlier report is replaced without asking
    assert is_report(mine) and not is_report(copy / "dataset.json")


# ------------------------------------------------------------------------ the build's numbers, imports


def _view_block(page: str, name: str) -> str:
    return html.unescape(page.split(f"id='pair-{name}'>", 1)[1].split("<div class='pair'", 1)[0])


def test_pair_views_show_the_builds_numbers_and_say_what_the_realignment_found(tiny_dataset, tmp_path):
    from dpedkit.inspect.views import dataset_pair_view

    copy = tmp_path / "ds"
    shutil.copytree(tiny_dataset, copy)
    lines = [json.loads(x) for x in (copy / "pairs.jsonl").read_text().splitlines()]
    before = next(r for r in lines if r["pair"] == "0001").copy()
    for r in lines:  # as if the build had found other numbers than a re-alignment finds (another decoder, say)
        if r["pair"] == "0001":
            r |= {"matches": r["matches"] + 11, "inliers": r["inliers"] + 7, "rmse_px": 0.4321}
    (copy / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    res = write_report(copy, config=ReportConfig(pair_views=3, samples=1, lowest=1))
    page = res.path.read_text()
    changed = " ".join(_view_block(page, "0001").split())
    assert f"matches: {before['matches'] + 11}" in changed and f"inliers: {before['inliers'] + 7}" in changed
    assert "rmse_px: 0.4321" in changed  # the table's numbers, not the re-alignment's
    found = f"{before['matches']} matches, {before['inliers']} inliers"
    assert f"re-alignment of the photos with the build's options and decoders, which found {found}" in changed
    assert "the numbers above are the build's" in changed
    same = " ".join(_view_block(page, "0002").split())
    assert "it found what the build recorded" in same and "of the re-alignment that draws these pictures" in same
    view = dataset_pair_view(copy, "0001")
    assert (view.metrics["matches"], view.metrics["inliers"]) == (before["matches"] + 11, before["inliers"] + 7)


def test_the_pair_view_of_a_dng_pair_has_the_builds_numbers(tmp_path):
    """A DNG side aligns on its half-size luminance in the build: the view's re-alignment must take that path too."""
    from dpedkit.align import align_pair
    from dpedkit.config import AlignConfig
    from dpedkit.dataset.build import BuildConfig, build_dataset
    from dpedkit.inspect.views import dataset_pair_view
    from dpedkit.io import read_rgb
    from dpedkit.synth.pairs import synthesize

    synthesize(tmp_path / "raw", n=1, seed=0, phone_mp=0.15, dslr_mp=0.3, dslr_format="dng")
    align = AlignConfig(work_mp=0.05)  # half size of the 0.3 MP DNG holds enough pixels: the build uses it
    build_dataset(tmp_path / "raw" / "phone", tmp_path / "raw" / "dslr", tmp_path / "ds",
                  config=BuildConfig(test_images=0, align=align))  # fmt: skip
    rec = json.loads((tmp_path / "ds" / "pairs.jsonl").read_text().splitlines()[0])
    assert rec["status"] == "ok"
    decoded = align_pair(read_rgb(rec["phone"]), read_rgb(rec["dslr"]), config=align)  # what the view used to do
    assert (decoded.matches, decoded.inliers) != (rec["matches"], rec["inliers"])  # so this test can fail
    view = dataset_pair_view(tmp_path / "ds", rec["pair"])
    assert {k: view.metrics[k] for k in ("matches", "inliers", "rmse_px")} == {
        k: rec[k] for k in ("matches", "inliers", "rmse_px")
    }
    assert "it found what the build recorded" in view.notes[0] and "matches" in view.images


def test_report_of_an_imported_zrr_dataset_shows_what_it_holds(tmp_path, rng):
    from dpedkit_cli.main import cli

    from dpedkit.interop.zrr import import_zrr
    from dpedkit.testing import write_zrr_tree

    import_zrr(write_zrr_tree(tmp_path / "zrr", rng), tmp_path / "ds")
    res = write_report(tmp_path / "ds", tmp_path / "r.html", config=ReportConfig(samples=4))
    page = " ".join(res.path.read_text().split())
    assert res.imported and res.patch_pairs == 8 and res.n_pairs == 0 and res.recomputed == []
    assert res.sections == ["summary", "plots", "pairs", "views", "samples"]  # no NCC: no lowest-NCC gallery
    for text in ("<th>imported from</th><td>ZRR layout, ", "<th>train rows</th><td>5 patch pairs</td>",
                 "<th>test rows</th><td>3 patch pairs</td>", "<th>phone patches</th><td>32 x 32 x 1 uint16</td>",
                 "<th>DSLR patches</th><td>32 x 32 x 3 uint8</td>", "<th>sensor</th><td>CFA RGGB, black 0, white 1020",
                 "Imported dataset (zrr)", "An imported dataset has no pairs of photos"):  # fmt: skip
        assert text in page, text
    assert page.count("(no NCC: imported)</figcaption>") == 4 and "NCC nan" not in page
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "ds"), "--summary"])
    out = " ".join(res.output.split())
    assert res.exit_code == 0 and "train rows │ 5 patch pairs" in out and "CFA RGGB, black 0, white 1020" in out
    assert "32 x 32 x 1 uint16" in out and "worst" not in out
    res = CliRunner().invoke(cli, ["-q", "inspect", str(tmp_path / "ds"), "--summary", "--json"])
    data = json.loads(res.stdout)
    assert data["source"] == "zrr" and data["split_patches"] == {"train": 5, "test": 3}
    assert data["patch_shapes"] == {"phone": "32 x 32 x 1 uint16", "dslr": "32 x 32 x 3 uint8"}
    assert data["sensor"] == {"cfa": "RGGB", "black": 0.0, "white": 1020.0}


def test_gallery_pictures_are_labelled(tiny_dataset, tmp_path):
    res = write_report(tiny_dataset, tmp_path / "r.html", config=ReportConfig(pair_views=0, samples=2, lowest=1))
    page = res.path.read_text()
    gallery = page.split("<section id='samples'>", 1)[1]
    png = re.findall(r"src='data:image/png;base64,([^']+)'", gallery)[0]
    import base64

    cell = cv2.imdecode(np.frombuffer(base64.b64decode(png), np.uint8), cv2.IMREAD_COLOR)
    assert cell.shape[0] == 100 + 2 * 14 and cell.shape[1] == 202  # phone | DSLR labels above, NCC below
    assert re.search(r"NCC 0\.\d{3} \[(train|test)\]</figcaption>", gallery)
