from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpedkit.dataset.pairs import PairRecord, pair_folders, read_pairs_csv, write_pairs_csv
from dpedkit.errors import ConfigError, InputError


def make(folder, name, stamp=None, subsec=None):
    folder.mkdir(exist_ok=True)
    exif = Image.Exif()
    if stamp is not None:
        exif.get_ifd(0x8769)[0x9003] = stamp
        if subsec is not None:
            exif.get_ifd(0x8769)[0x9291] = subsec
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(folder / name, exif=exif)
    return folder / name


def test_by_name(tmp_path):
    for n in ("a.jpg", "b.jpg", "c.jpg"):
        make(tmp_path / "phone", n)
    for n in ("b.jpg", "a.jpg", "d.jpg"):
        make(tmp_path / "dslr", n)
    (tmp_path / "phone" / "notes.txt").write_text("not an image")
    pairing = pair_folders(tmp_path / "phone", tmp_path / "dslr")
    assert [(r.name, r.phone.split("/")[-2:], r.dslr.split("/")[-2:]) for r in pairing.pairs] == [
        ("a", ["phone", "a.jpg"], ["dslr", "a.jpg"]),
        ("b", ["phone", "b.jpg"], ["dslr", "b.jpg"]),
    ]
    assert [p.split("/")[-1] for p in pairing.unpaired_phone] == ["c.jpg"]
    assert [p.split("/")[-1] for p in pairing.unpaired_dslr] == ["d.jpg"]
    # iterating gives every record, the unpaired ones one-sided
    assert [(r.name, r.complete) for r in pairing] == [("a", True), ("b", True), ("c", False), ("d", False)]
    assert len(pairing) == 2


def test_by_name_stems_may_differ_in_suffix_but_not_repeat(tmp_path):
    make(tmp_path / "phone", "x.jpg")
    make(tmp_path / "dslr", "x.png")
    assert [r.name for r in pair_folders(tmp_path / "phone", tmp_path / "dslr").pairs] == ["x"]
    make(tmp_path / "dslr", "x.jpg")
    with pytest.raises(InputError, match="share the stem 'x'"):
        pair_folders(tmp_path / "phone", tmp_path / "dslr")


def test_by_time_pairs_only_unambiguous_photos_within_max_dt(tmp_path):
    p, d = tmp_path / "phone", tmp_path / "dslr"
    make(p, "IMG_1.jpg", "2024:05:06 10:00:00", "10")
    make(p, "IMG_2.jpg", "2024:05:06 10:00:05", "00")
    make(p, "IMG_3.jpg", "2024:05:06 10:00:30")  # nothing within 2 s
    make(p, "IMG_4.jpg")  # no capture time
    make(d, "DSC_9.jpg", "2024:05:06 10:00:00", "60")  # 0.5 s after IMG_1
    make(d, "DSC_7.jpg", "2024:05:06 10:00:01", "50")  # 1.4 s after IMG_1 too: IMG_1 is ambiguous within 2 s
    make(d, "DSC_8.jpg", "2024:05:06 10:00:06", "25")  # 1.25 s after IMG_2
    pairing = pair_folders(p, d, by="time", max_dt=2.0)
    assert [(r.name, r.dslr.split("/")[-1], r.dt) for r in pairing.pairs] == [
        ("IMG_2", "DSC_8.jpg", pytest.approx(1.25))
    ]
    assert sorted(x.split("/")[-1] for x in pairing.unpaired_phone) == ["IMG_1.jpg", "IMG_3.jpg", "IMG_4.jpg"]
    assert sorted(x.split("/")[-1] for x in pairing.unpaired_dslr) == ["DSC_7.jpg", "DSC_9.jpg"]
    assert [x.split("/")[-1] for x in pairing.no_time] == ["IMG_4.jpg"]
    why = {Path(k).name: v for k, v in pairing.reasons.items()}
    assert why["IMG_1.jpg"].startswith("ambiguous") and why["DSC_7.jpg"] == why["IMG_1.jpg"]
    assert why["IMG_3.jpg"] == "no DSLR photo within 2 s" and why["IMG_4.jpg"].startswith("no capture time")
    assert pairing.clock_offset == 0 and not pairing.clock_estimated
    # a tighter window leaves IMG_1 one candidate and drops the 1.25 s pair
    pairing = pair_folders(p, d, by="time", max_dt=1.0)
    assert [(r.name, r.dslr.split("/")[-1]) for r in pairing.pairs] == [("IMG_1", "DSC_9.jpg")]
    # a given clock offset shifts the DSLR times: with -1.25 s, IMG_2 and DSC_8 are simultaneous
    pairing = pair_folders(p, d, by="time", max_dt=0.5, clock_offset="1.25")
    assert [(r.name, r.dslr.split("/")[-1], r.dt) for r in pairing.pairs] == [
        ("IMG_1", "DSC_7.jpg", pytest.approx(1.4)),
        ("IMG_2", "DSC_8.jpg", pytest.approx(1.25)),
    ]


def test_by_time_two_phones_near_one_dslr_are_ambiguous_not_guessed(tmp_path):
    p, d = tmp_path / "phone", tmp_path / "dslr"
    make(p, "a.jpg", "2024:01:01 00:00:00", "0")
    make(p, "b.jpg", "2024:01:01 00:00:00", "3")
    make(d, "z.jpg", "2024:01:01 00:00:00", "2")
    pairing = pair_folders(p, d, by="time")
    assert pairing.pairs == [] and len(pairing.unpaired_phone) == 2
    assert {v for v in pairing.reasons.values()} == {
        "ambiguous (burst?): 2 phone and 1 DSLR photo(s) within 2 s of each other; not guessed (a smaller "
        "--max-dt or a pairs CSV decides)"
    }


def test_by_order(tmp_path):
    for n in ("p1.jpg", "p2.jpg", "p3.jpg"):
        make(tmp_path / "phone", n)
    for n in ("d2.jpg", "d1.jpg"):
        make(tmp_path / "dslr", n)
    pairing = pair_folders(tmp_path / "phone", tmp_path / "dslr", by="order")
    assert [(r.name, r.dslr.split("/")[-1]) for r in pairing.pairs] == [("p1", "d1.jpg"), ("p2", "d2.jpg")]
    assert [x.split("/")[-1] for x in pairing.unpaired_phone] == ["p3.jpg"] and pairing.unpaired_dslr == []


def test_unpaired_names_do_not_clash(tmp_path):
    make(tmp_path / "phone", "a.jpg", "2024:01:01 00:00:00")
    make(tmp_path / "dslr", "a.jpg", "2024:01:01 00:01:00")
    pairing = pair_folders(tmp_path / "phone", tmp_path / "dslr", by="time")
    assert pairing.pairs == [] and sorted(r.name for r in pairing) == ["a", "dslr-a.jpg"]


def test_bad_options_and_folders(tmp_path):
    make(tmp_path / "phone", "a.jpg")
    with pytest.raises(ConfigError, match="by must be one of 'name', 'time', 'order'"):
        pair_folders(tmp_path / "phone", tmp_path / "phone", by="size")
    with pytest.raises(ConfigError, match="max_dt"):
        pair_folders(tmp_path / "phone", tmp_path / "phone", by="time", max_dt=0)
    with pytest.raises(InputError, match="not a folder"):
        pair_folders(tmp_path / "phone", tmp_path / "missing")


def test_csv_roundtrip_relative_to_the_folders(tmp_path):
    p, d = tmp_path / "phone", tmp_path / "dslr"
    make(p, "a,1.jpg", "2024:01:01 00:00:00")  # a comma in a name survives CSV quoting
    make(d, "b.jpg", "2024:01:01 00:00:01")
    pairing = pair_folders(p, d, by="time")
    csv_path = tmp_path / "out" / "pairs.csv"
    write_pairs_csv(pairing, csv_path)
    assert csv_path.read_text().splitlines() == ["name,phone,dslr,dt", '"a,1","a,1.jpg",b.jpg,1.000']
    back = read_pairs_csv(csv_path, phone_dir=p, dslr_dir=d)
    assert back == [PairRecord("a,1", str(p / "a,1.jpg"), str(d / "b.jpg"), 1.0)]
    # without the folders, relative paths are relative to the CSV's folder; absolute paths stay absolute
    write_pairs_csv([PairRecord("x", str(p / "a,1.jpg"), str(d / "b.jpg"))], csv_path)
    assert read_pairs_csv(csv_path)[0].phone == str((p / "a,1.jpg").resolve())


def test_read_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    with pytest.raises(InputError, match="no such pairs CSV"):
        read_pairs_csv(bad)
    bad.write_text("name,phone\nx,a.jpg\n")
    with pytest.raises(InputError, match=r"lacks column\(s\) \['dslr'\]"):
        read_pairs_csv(bad)
    bad.write_text("name,phone,dslr\nx,a.jpg,b.jpg\nx,c.jpg,d.jpg\n")
    with pytest.raises(InputError, match="line 3: pair name 'x' repeated"):
        read_pairs_csv(bad)
    bad.write_text("name,phone,dslr\nx,,b.jpg\n")
    with pytest.raises(InputError, match="line 2: empty"):
        read_pairs_csv(bad)
    bad.write_text("name,phone,dslr\n")
    assert read_pairs_csv(bad) == []
    bad.write_text("")
    with pytest.raises(InputError, match="lacks column"):
        read_pairs_csv(bad)
    bad.write_text("name,phone,dslr,dt\nx,a.jpg,b.jpg,abc\n")
    with pytest.raises(InputError, match="line 2: dt must be a number"):
        read_pairs_csv(bad)


def test_read_csv_tolerates_spaces_in_the_header(tmp_path):
    ok = tmp_path / "ok.csv"
    ok.write_text("name, phone, dslr, dt\nx,a.jpg,b.jpg,0.5\n")
    (rec,) = read_pairs_csv(ok)
    assert (rec.name, rec.dt) == ("x", 0.5) and rec.phone.endswith("a.jpg") and rec.dslr.endswith("b.jpg")


def test_cli_pairs_writes_the_csv_build_reads(tmp_path):
    from click.testing import CliRunner
    from dpedkit_cli.main import cli

    for n in ("a.jpg", "b.jpg"):
        make(tmp_path / "phone", n)
    make(tmp_path / "dslr", "a.png")
    out = tmp_path / "pairs.csv"
    res = CliRunner().invoke(cli, ["pairs", str(tmp_path / "phone"), str(tmp_path / "dslr"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "b.jpg" in res.output and "unpaired: 1 phone, 0 DSLR" in res.output
    recs = read_pairs_csv(out, phone_dir=tmp_path / "phone", dslr_dir=tmp_path / "dslr")
    assert [(r.name, r.dslr) for r in recs] == [("a", str(tmp_path / "dslr" / "a.png"))]
    bad = CliRunner().invoke(cli, ["pairs", str(tmp_path / "phone"), str(tmp_path / "dslr"), "--by", "size"])
    assert bad.exit_code == 2 and "'size' is not one of" in bad.output


def test_hidden_files_are_ignored_and_other_formats_reported(tmp_path):
    make(tmp_path / "phone", "a.jpg")
    make(tmp_path / "dslr", "a.jpg")
    make(tmp_path / "phone", "._a.jpg")  # macOS AppleDouble sidecar: not a photo
    (tmp_path / "phone" / "C.MOV").write_bytes(b"\0\0\0\x18ftypqt  ")
    (tmp_path / "dslr" / "D.xmp").write_bytes(b"<x/>")
    pairing = pair_folders(tmp_path / "phone", tmp_path / "dslr")
    assert [r.name for r in pairing] == ["a"]
    assert sorted(p.split("/")[-1] for p in pairing.skipped) == ["C.MOV", "D.xmp"]


def test_a_folder_without_photos_is_an_input_error(tmp_path):
    make(tmp_path / "dslr", "a.jpg")
    (tmp_path / "phone").mkdir()
    with pytest.raises(InputError, match="no photos in this folder"):
        pair_folders(tmp_path / "phone", tmp_path / "dslr")
    (tmp_path / "phone" / "IMG_1.AAE").write_bytes(b"x")  # an iPhone edit sidecar
    with pytest.raises(InputError, match=r"only \.aae files"):
        pair_folders(tmp_path / "phone", tmp_path / "dslr")


def test_time_pairing_of_60_pairs_with_an_unknown_clock_offset_jitter_and_bursts(tmp_path):
    from dpedkit.dataset.pairs import time_message
    from dpedkit.synth.pairs import iter_pairs, synthesize

    synthesize(tmp_path, n=60, seed=0, phone_mp=0.05, dslr_mp=0.05, clock_offset=37.4, time_jitter=0.3, bursts=2)
    truth = {p.name: (d.name, t["capture"]["burst"]) for p, d, t in iter_pairs(tmp_path)}
    pairing = pair_folders(tmp_path / "phone", tmp_path / "dslr", by="time", clock_offset="auto")

    assert pairing.clock_estimated and abs(pairing.clock_offset - 37.4) <= 0.5
    assert 0 < pairing.clock_spread < 1.0  # the 0.3 s jitter, reported
    bursts = {name for name, (_, burst) in truth.items() if burst is not None}
    assert len(bursts) == 6
    found = {Path(r.phone).name: Path(r.dslr).name for r in pairing.pairs}
    assert found == {name: dslr for name, (dslr, burst) in truth.items() if burst is None}  # every one, right
    why = {Path(k).name: v for k, v in pairing.reasons.items()}
    assert {Path(p).name for p in pairing.unpaired_phone} == bursts
    assert all(why[name].startswith("ambiguous (burst?)") for name in bursts)
    assert len(pairing.unpaired_dslr) == 6
    # without the offset, shots 10-14 s apart meet the wrong DSLR photo: why "auto" matters
    wrong = pair_folders(tmp_path / "phone", tmp_path / "dslr", by="time")
    assert wrong.pairs and all(Path(r.phone).name != Path(r.dslr).name for r in wrong.pairs)
    assert wrong.clock_hint == pytest.approx(37.4, abs=0.5)
    assert "--clock-offset auto" in time_message(wrong)


def test_a_stem_with_raw_and_jpeg_uses_the_preferred_one_and_says_so(tmp_path):
    from dpedkit.dataset.pairs import set_aside_message
    from dpedkit.io.camera_write import encode_dng

    for side in ("phone", "dslr"):
        make(tmp_path / side, "IMG_1.jpg")
    (tmp_path / "dslr" / "IMG_1.NEF").write_bytes(encode_dng(np.full((8, 8, 3), 100, np.uint8)))
    pairing = pair_folders(tmp_path / "phone", tmp_path / "dslr")
    assert [Path(r.dslr).name for r in pairing.pairs] == ["IMG_1.jpg"]
    assert [Path(p).name for p in pairing.set_aside] == ["IMG_1.NEF"] and pairing.prefer == "jpeg"
    assert "IMG_1.NEF" in set_aside_message(pairing) and "--prefer raw" in set_aside_message(pairing)
    pairing = pair_folders(tmp_path / "phone", tmp_path / "dslr", prefer="raw")
    assert [Path(r.dslr).name for r in pairing.pairs] == ["IMG_1.NEF"]
    assert [Path(p).name for p in pairing.set_aside] == ["IMG_1.jpg"]
