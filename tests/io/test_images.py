import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from dpedkit.errors import InputError
from dpedkit.io import apply_orientation, read_capture_time, read_image, read_rgb, to_uint8, write_image


@pytest.fixture
def photo(rng):
    return (rng.random((40, 60, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".ppm", ".bmp"])
def test_lossless_roundtrip(tmp_path, photo, suffix):
    write_image(tmp_path / f"a{suffix}", photo)
    img = read_image(tmp_path / f"a{suffix}")
    assert img.rgb.dtype == np.uint8 and np.array_equal(img.rgb, photo) and img.orientation == 1


def test_jpeg_cmyk_gray_rgba_16bit(tmp_path, photo):
    Image.fromarray(photo).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    cmyk = read_image(tmp_path / "cmyk.jpg")
    assert cmyk.rgb.shape == photo.shape
    assert np.abs(cmyk.rgb.astype(int) - photo).mean() < 12

    Image.fromarray(photo[:, :, 0]).save(tmp_path / "g.pgm")
    gray = read_image(tmp_path / "g.pgm")
    assert gray.channels == 1 and np.array_equal(gray.rgb, np.repeat(photo[:, :, :1], 3, 2))

    Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])).save(tmp_path / "a.png")
    assert np.array_equal(read_rgb(tmp_path / "a.png"), photo)

    deep = photo.astype(np.uint16) * 257 + 100
    cv2.imwrite(str(tmp_path / "d.png"), deep[:, :, ::-1])
    img16 = read_image(tmp_path / "d.png", keep_16bit=True)
    assert img16.bit_depth == 16 and np.array_equal(img16.rgb, deep)
    assert np.array_equal(read_rgb(tmp_path / "d.png"), to_uint8(deep))
    assert np.abs(to_uint8(deep).astype(int) - photo).max() <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, photo, orientation):
    im = Image.fromarray(photo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif, quality=100, subsampling=0)
    img = read_image(tmp_path / "o.jpg")
    with Image.open(tmp_path / "o.jpg") as ref:
        expected = np.asarray(ImageOps.exif_transpose(ref).convert("RGB"))
    assert img.orientation == orientation
    assert img.rgb.shape == expected.shape and np.array_equal(img.rgb, expected)


def test_apply_orientation_is_the_identity_for_1(photo):
    assert apply_orientation(photo, 1) is photo


def test_capture_time(tmp_path, photo):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    exif.get_ifd(0x8769)[0x9291] = "25"
    Image.fromarray(photo).save(tmp_path / "t.jpg", exif=exif)
    t = read_capture_time(tmp_path / "t.jpg")
    assert t is not None and t % 60 == pytest.approx(9.25)
    Image.fromarray(photo).save(tmp_path / "n.jpg")
    assert read_capture_time(tmp_path / "n.jpg") is None


def test_bad_files_raise_typed_errors_naming_the_file(tmp_path, photo):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cases = {
        "missing.jpg": "no such file",
        "empty.jpg": "empty",
        "text.png": "not a readable image",
        "cut.jpg": "truncated",
        "cut.png": "truncated",
    }
    for name, cause in cases.items():
        with pytest.raises(InputError, match=cause) as err:
            read_image(tmp_path / name)
        assert name in str(err.value)


def test_min_side(tmp_path, photo):
    write_image(tmp_path / "s.png", photo)
    with pytest.raises(InputError, match="60x40, smaller than the 100x100"):
        read_image(tmp_path / "s.png", min_side=100)


def test_written_files_get_normal_permissions(tmp_path, photo):
    import os

    umask = os.umask(0)
    os.umask(umask)
    write_image(tmp_path / "p.png", photo)
    assert os.stat(tmp_path / "p.png").st_mode & 0o777 == 0o666 & ~umask


def test_jpeg_with_appended_data_is_complete(tmp_path, photo, rng):
    """Motion photos append a video after the JPEG: bytes that may hold FFDA/FFD9 must not matter."""
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    for i in range(20):
        tail = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes() + b"\xff\xda\x00\x08" + bytes(100)
        (tmp_path / f"m{i}.jpg").write_bytes(buf.getvalue() + tail)
        assert read_image(tmp_path / f"m{i}.jpg").rgb.shape == photo.shape
    progressive = io.BytesIO()
    Image.fromarray(photo).save(progressive, "JPEG", quality=90, progressive=True)
    (tmp_path / "p.jpg").write_bytes(progressive.getvalue())
    assert read_image(tmp_path / "p.jpg").rgb.shape == photo.shape
    (tmp_path / "pcut.jpg").write_bytes(progressive.getvalue()[:-200])
    with pytest.raises(InputError, match="truncated JPEG"):
        read_image(tmp_path / "pcut.jpg")


def test_exif_of_a_200_megapixel_photo_is_read(tmp_path):
    """Pillow refuses to open images over ~179 MP; the header-only EXIF read must still work."""
    from dpedkit.io import exif_orientation

    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG", exif=exif)
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (12240).to_bytes(2, "big") + (16320).to_bytes(2, "big")  # height, width in SOF0
    assert exif_orientation(bytes(data)) == 6


def test_input_error_survives_pickling():
    """Raised in a worker process, it reaches the caller whole (else loky reports a BrokenProcessPool)."""
    import pickle

    from dpedkit.errors import InputError

    err = pickle.loads(pickle.dumps(InputError("a.jpg", "truncated JPEG")))
    assert isinstance(err, InputError) and (err.path, err.cause, str(err)) == (
        "a.jpg",
        "truncated JPEG",
        "a.jpg: truncated JPEG",
    )
