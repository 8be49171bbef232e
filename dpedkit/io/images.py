"""Image files: one reader for every command, an atomic writer.

Decoding is OpenCV's (fast); Pillow reads only the header for EXIF (orientation, capture time).
Every image comes back as ``H x W x 3`` RGB with the EXIF orientation applied, whatever the file held:
8- or 16-bit, grayscale, RGB, RGBA (alpha dropped) or CMYK JPEG.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from dpedkit.config import MAX_PIXELS
from dpedkit.errors import InputError
from dpedkit.io.files import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".bmp", ".webp")

_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_SUBSEC_ORIGINAL = 0x9291


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and what was done to it.

    Attributes:
        rgb: ``H x W x 3`` RGB array, ``uint8`` (or ``uint16`` when read with ``keep_16bit=True`` from a
            16-bit file), EXIF orientation already applied.
        path: the file it came from.
        orientation: the EXIF orientation tag found (1 = none; 2..8 were applied to ``rgb``).
        bit_depth: bits per sample in the file (8 or 16).
        channels: channels as decoded (1 gray, 3 colour (CMYK JPEG included, converted by OpenCV), 4 RGBA).
    """

    rgb: np.ndarray
    path: str
    orientation: int
    bit_depth: int
    channels: int

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` after orientation."""
        return self.rgb.shape[1], self.rgb.shape[0]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive; hidden files excluded), sorted by name."""
    return list_files(folder)[0]


def list_files(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """``(images, others)``: the visible files directly in ``folder``, sorted, split by :func:`list_images`'s rule.

    ``others`` are the files dpedkit does not read (HEIC, raw files, sidecars...).
    """
    files = _visible_files(folder)
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES], [
        p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES
    ]


def _visible_files(folder: str | Path) -> list[Path]:
    """Files directly in ``folder``, sorted, without hidden ones (``.DS_Store``, macOS ``._IMG_1.jpg``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_image(
    path: str | Path, *, keep_16bit: bool = False, min_side: int | None = None, max_pixels: int | None = MAX_PIXELS
) -> LoadedImage:
    """Read an image file as RGB with its EXIF orientation applied.

    Args:
        path: a JPEG, PNG, TIFF, PPM/PGM, BMP or WebP file.
        keep_16bit: keep 16-bit samples as ``uint16``; by default they are rounded to ``uint8``.
        min_side: refuse images whose width or height (after orientation) is below this many pixels.
        max_pixels: refuse images of more pixels than this, from the size in the file's header, before anything
            is decoded (a 2 MB PNG can claim 25000 x 25000 pixels: 1.9 GB once decoded); None: no limit.

    Returns:
        A :class:`LoadedImage`.

    Raises:
        InputError: the file is missing, empty, truncated, not an image, smaller than ``min_side`` or larger
            than ``max_pixels``.
    """
    path = Path(path)
    data = _read_bytes(path)
    _check_complete(path, data)
    size, exif = _header(data)
    if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
        w, h = size
        raise InputError(
            path, f"image is {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP limit (--max-pixels)"
        )
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:  # e.g. OpenCV's own pixel limit
        raise InputError(path, f"not a decodable image ({exc.err})") from None
    if img is None or img.size == 0:
        raise InputError(path, "not a readable image (OpenCV could not decode it)")
    channels = 1 if img.ndim == 2 else img.shape[2]
    bit_depth = 16 if img.dtype == np.uint16 else 8
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported sample type {img.dtype} (8- or 16-bit integer images only)")
    rgb = _to_rgb(img, path)
    if bit_depth == 16 and not keep_16bit:
        rgb = to_uint8(rgb)
    orientation = _orientation(exif)
    rgb = apply_orientation(rgb, orientation)
    if min_side is not None and min(rgb.shape[:2]) < min_side:
        h, w = rgb.shape[:2]
        raise InputError(path, f"image is {w}x{h}, smaller than the {min_side}x{min_side} minimum (one patch)")
    return LoadedImage(np.ascontiguousarray(rgb), str(path), orientation, bit_depth, channels)


def read_rgb(path: str | Path, *, min_side: int | None = None) -> np.ndarray:
    """Shortcut for ``read_image(path).rgb``: an ``H x W x 3`` uint8 RGB array."""
    return read_image(path, min_side=min_side).rgb


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Convert a ``uint16`` (0..65535) or float [0, 1] image to ``uint8`` with rounding; uint8 passes through."""
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16:
        return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return np.clip(np.rint(np.asarray(rgb, np.float32) * 255.0), 0, 255).astype(np.uint8)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise InputError(path, "empty file (0 bytes)")
    return data


def _check_complete(path: Path, data: bytes) -> None:
    """Detect truncated JPEG/PNG files, which OpenCV would decode silently with a grey tail."""
    if data[:2] == b"\xff\xd8":
        if _jpeg_end(data) < 0:
            raise InputError(path, "truncated JPEG (the image data ends before its end-of-image marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-32:]:
        raise InputError(path, "truncated PNG (no IEND chunk)")


def _jpeg_end(data: bytes) -> int:
    """Offset just past the primary image's end-of-image marker, or -1 when the file ends first.

    Walks the marker segments from the start and skips entropy-coded scan data (where FF is always followed
    by 00 or a restart marker), so data appended after the image (motion photos) is never mistaken for it.
    """
    pos, n = 2, len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return -1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return pos + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart / TEM: no length
            pos += 2
            continue
        if pos + 4 > n:
            return -1
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan: skip the entropy-coded data up to the next real marker
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return -1
                if data[pos + 1] == 0x00 or 0xD0 <= data[pos + 1] <= 0xD7:
                    pos += 2
                    continue
                break
    return -1


def _to_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    """Contiguous RGB from OpenCV's gray, BGR or BGRA (``cvtColor``: ~10x faster than a reversed-axis copy)."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:  # alpha dropped (OpenCV already converts CMYK JPEG to BGR)
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise InputError(path, f"unsupported channel count {img.shape[2]}")


def _header(data: bytes):  # noqa: ANN202 - ((w, h) | None, PIL.Image.Exif | None); PIL imported lazily
    """The stored ``(width, height)`` and EXIF of an encoded image, read from its header only (None when unknown)."""
    from PIL import Image, UnidentifiedImageError

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # header only: the size is checked by the caller
    try:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
            try:
                if im.format == "PNG":  # Pillow's PNG getexif() decodes the whole image: take the chunk instead
                    exif = Image.Exif()
                    if im.info.get("exif"):
                        exif.load(im.info["exif"])
                else:
                    exif = im.getexif()
            except (OSError, SyntaxError, ValueError):
                exif = None
            return size, exif
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None, None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _exif(data: bytes):  # noqa: ANN202 - PIL.Image.Exif | None
    return _header(data)[1]


def _orientation(exif) -> int:  # noqa: ANN001
    value = exif.get(_EXIF_ORIENTATION, 1) if exif is not None else 1
    return int(value) if value in range(1, 9) else 1


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8) of an encoded image, 1 when absent or invalid."""
    return _orientation(_exif(data))


def apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation ``orientation`` (1..8) so the image is upright, as a viewer shows it."""
    ops = {  # contiguous results (OpenCV copies), no strided numpy views
        1: lambda a: a,
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.flip(a, -1),
        4: lambda a: cv2.flip(a, 0),
        5: lambda a: cv2.transpose(a),
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 0),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    return ops[orientation](rgb)


def read_capture_time(path: str | Path) -> float | None:
    """EXIF ``DateTimeOriginal`` + ``SubSecTimeOriginal`` as POSIX seconds (naive local time), or None."""
    exif = _exif(_read_bytes(Path(path)))
    if exif is None:
        return None
    sub = exif.get_ifd(_EXIF_IFD)
    stamp = sub.get(_DATETIME_ORIGINAL) or exif.get(0x0132)  # fall back to DateTime
    if not stamp:
        return None
    try:
        t = datetime.strptime(str(stamp).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    frac = str(sub.get(_SUBSEC_ORIGINAL, "")).strip("\x00 ")
    seconds = (t - datetime(1970, 1, 1)).total_seconds()
    return seconds + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def encode_image(rgb: np.ndarray, suffix: str, *, quality: int = 95, comment: str | None = None) -> bytes:
    """Encode an ``H x W x 3`` RGB (``H x W`` gray, ``H x W x 4`` RGBA) image as the format of ``suffix``.

    Args:
        rgb: the image, uint8 (or uint16 for PNG/TIFF).
        suffix: ``.png``, ``.jpg``, ``.tif``...
        quality: JPEG quality 1..100.
        comment: text stored in the file (PNG ``iTXt`` "Comment" chunk, JPEG ``COM`` segment; other formats: none),
            e.g. how it was made.

    Raises:
        InputError: an array that is not an image, or a format OpenCV cannot encode it as.
    """
    suffix = suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if suffix in (".jpg", ".jpeg") else []
    rgb = np.ascontiguousarray(rgb)
    codes = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[:, :, 0]
    if not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] in codes)):
        raise InputError(None, f"cannot encode an array of shape {rgb.shape} as an image")
    pixels = cv2.cvtColor(rgb, codes[rgb.shape[2]]) if rgb.ndim == 3 else rgb
    try:
        ok, buf = cv2.imencode(suffix, pixels, params)
    except cv2.error as exc:
        raise InputError(None, f"OpenCV cannot encode {rgb.dtype} {suffix} images ({exc.err})") from None
    if not ok:
        raise InputError(None, f"OpenCV cannot encode {suffix} images")
    return _with_comment(buf.tobytes(), suffix, comment) if comment else buf.tobytes()


def _with_comment(data: bytes, suffix: str, comment: str) -> bytes:
    """``data`` (an encoded PNG or JPEG) with ``comment`` stored in it; other formats unchanged."""
    text = comment.encode("utf-8")
    if suffix == ".png":  # an iTXt chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)
        body = b"iTXt" + b"Comment\0" + b"\0\0" + b"\0" + b"\0" + text
        chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
        return data[:33] + chunk + data[33:]
    if suffix in (".jpg", ".jpeg"):  # a COM segment right after SOI
        text = text[:65533]
        return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]
    return data


def write_image(path: str | Path, rgb: np.ndarray, *, quality: int = 95, comment: str | None = None) -> None:
    """Write an ``H x W x 3`` RGB (uint8, or uint16 for PNG/TIFF) image atomically; format from the suffix.

    ``comment``: text stored in a PNG or JPEG file (see :func:`encode_image`).
    """
    path = Path(path)
    try:
        data = encode_image(rgb, path.suffix, quality=quality, comment=comment)
    except InputError as exc:
        raise InputError(path, exc.cause) from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
