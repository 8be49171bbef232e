"""Image files: one reader for every command, an atomic writer.

Decoding is OpenCV's (fast) for JPEG, PNG, TIFF, PPM/PGM, BMP and WebP; Pillow reads only the header for EXIF
(orientation, capture time). HEIC/HEIF and camera RAW files go to :mod:`dpedkit.io.camera` (libheif, LibRaw).
Every image comes back as ``H x W x 3`` RGB, upright, whatever the file held: 8- to 16-bit, grayscale, RGB,
RGBA (alpha dropped), CMYK JPEG, HEIF with its own transforms, a Bayer mosaic.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dpedkit.config import MAX_PIXELS
from dpedkit.errors import InputError
from dpedkit.io.camera import (
    HEIF_SUFFIXES,
    RAW_SUFFIXES,
    apply_orientation,
    decode_heif,
    decode_raw,
    heif_exif,
    heif_size,
    is_heif,
    is_heif_data,
    is_raw,
    posix_time,
    tiff_capture_time,
)
from dpedkit.io.files import atomic_path

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".bmp", ".webp")
IMAGE_SUFFIXES = RASTER_SUFFIXES + HEIF_SUFFIXES + RAW_SUFFIXES

_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_SUBSEC_ORIGINAL = 0x9291
_OFFSET_ORIGINAL = 0x9011


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and what was done to it.

    Attributes:
        rgb: ``H x W x 3`` RGB array, ``uint8`` (or ``uint16`` on the full 0..65535 scale when read with
            ``keep_16bit=True`` from a file of more than 8 bits), upright.
        path: the file it came from.
        orientation: the EXIF orientation applied to ``rgb`` (1 = none; for RAW, LibRaw's own turn; for HEIF
            always 1: libheif applies the file's transforms and the EXIF tag is ignored).
        bit_depth: bits per sample in the file (8, 10, 12 or 16; 16 for RAW).
        channels: channels as decoded (1 gray, 3 colour (CMYK JPEG included, converted by OpenCV), 4 RGBA).
        format: ``"raster"`` (OpenCV's formats), ``"heif"`` or ``"raw"``.
        metadata: what the camera decoders recorded (RAW: CFA pattern, black/white levels, white balance,
            colour matrix, output options; HEIF: bit depth, the EXIF orientation ignored); empty for rasters.
    """

    rgb: np.ndarray
    path: str
    orientation: int
    bit_depth: int
    channels: int
    format: str = "raster"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` after orientation."""
        return self.rgb.shape[1], self.rgb.shape[0]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive; hidden files excluded), sorted by name."""
    return list_files(folder)[0]


def list_files(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """``(images, others)``: the visible files directly in ``folder``, sorted, split by :func:`list_images`'s rule.

    ``others`` are the files dpedkit does not read (sidecars, videos...).

    Raises:
        InputError: ``folder`` is not a folder, or an image's name is not valid UTF-8 (names are recorded in UTF-8
            files: ``pairs.jsonl``, shards), naming the file.
    """
    files = _visible_files(folder)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    for p in images:
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:  # bytes the file system gave that are no UTF-8 (surrogate escapes)
            shown = p.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise InputError(p.parent / shown, "file name is not valid UTF-8: rename the file") from None
    return images, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]


def _visible_files(folder: str | Path) -> list[Path]:
    """Files directly in ``folder``, sorted, without hidden ones (``.DS_Store``, macOS ``._IMG_1.jpg``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_image(
    path: str | Path,
    *,
    keep_16bit: bool = False,
    min_side: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
    linear: bool = False,
    half_size: bool = False,
) -> LoadedImage:
    """Read an image file as upright RGB.

    Args:
        path: a JPEG, PNG, TIFF, PPM/PGM, BMP, WebP, HEIC/HEIF or camera RAW file (any format LibRaw reads).
            HEIF is recognised by its content too, whatever its suffix.
        keep_16bit: keep samples of more than 8 bits as ``uint16``; by default they are rounded to ``uint8``.
        min_side: refuse images whose width or height (after orientation) is below this many pixels.
        max_pixels: refuse images of more pixels than this, from the size in the file's header, before anything
            is decoded (a 2 MB PNG can claim 25000 x 25000 pixels: 1.9 GB once decoded); None: no limit.
        linear: RAW only: linear output (no gamma, no brightening) instead of sRGB.
        half_size: RAW only: LibRaw's half-size output (one pixel per 2 x 2 Bayer quad, no demosaic).

    Returns:
        A :class:`LoadedImage`.

    Raises:
        InputError: the file is missing, empty, truncated, not an image, smaller than ``min_side`` or larger
            than ``max_pixels``.
    """
    path = Path(path)
    data = _read_bytes(path)
    if is_raw(path):
        rgb, meta = decode_raw(data, path, linear=linear, half_size=half_size, max_pixels=max_pixels)
        img = LoadedImage(rgb, str(path), meta["orientation"], 16, 3, "raw", meta)
    elif is_heif(path) or is_heif_data(data):
        _check_pixels(path, heif_size(data), max_pixels)
        rgb, meta = decode_heif(data, path)
        img = LoadedImage(rgb, str(path), 1, meta["bit_depth"], 3, "heif", meta)
    else:
        img = _read_raster(path, data, max_pixels)
    rgb = img.rgb if keep_16bit else to_uint8(img.rgb)
    if min_side is not None and min(rgb.shape[:2]) < min_side:
        h, w = rgb.shape[:2]
        raise InputError(path, f"image is {w}x{h}, smaller than the {min_side}x{min_side} minimum (one patch)")
    return LoadedImage(rgb, img.path, img.orientation, img.bit_depth, img.channels, img.format, img.metadata)


def _check_pixels(path: Path, size: tuple[int, int] | None, max_pixels: int | None) -> None:
    if size is not None and max_pixels is not None and size[0] * size[1] > max_pixels:
        w, h = size
        raise InputError(
            path, f"image is {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP limit (--max-pixels)"
        )


def _read_raster(path: Path, data: bytes, max_pixels: int | None) -> LoadedImage:
    """OpenCV's decode of ``data`` as upright RGB (``uint8`` or ``uint16``), EXIF orientation applied."""
    _check_complete(path, data)
    size, exif = _header(data)
    _check_pixels(path, size, max_pixels)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:  # e.g. OpenCV's own pixel limit
        raise InputError(path, f"not a decodable image ({exc.err})") from None
    if img is None or img.size == 0:
        raise InputError(path, "not a readable image (OpenCV could not decode it)")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported sample type {img.dtype} (8- or 16-bit integer images only)")
    orientation = _orientation(exif)
    rgb = apply_orientation(_to_rgb(img, path), orientation)
    return LoadedImage(np.ascontiguousarray(rgb), str(path), orientation, 8 * img.itemsize, channels)


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


def read_capture_time(path: str | Path) -> float | None:
    """A photo's capture time as POSIX seconds, or None when it has none.

    EXIF ``DateTimeOriginal`` + ``SubSecTimeOriginal`` (+ ``OffsetTimeOriginal`` when the camera wrote it) of
    JPEG/PNG/TIFF/WebP EXIF, HEIC/HEIF EXIF and TIFF-based RAW (DNG, NEF, CR2, ARW, ORF, PEF, ...). Without an
    offset the time is the camera's local clock, read as if it were UTC (see :func:`dpedkit.io.camera.posix_time`).
    """
    path = Path(path)
    data = _read_bytes(path)
    if is_raw(path):
        return tiff_capture_time(data)
    exif = heif_exif(data) if is_heif(path) or is_heif_data(data) else _exif(data)
    if exif is None:
        return None
    sub = exif.get_ifd(_EXIF_IFD)
    stamp = sub.get(_DATETIME_ORIGINAL) or exif.get(0x0132)  # fall back to DateTime
    return posix_time(stamp, sub.get(_SUBSEC_ORIGINAL), sub.get(_OFFSET_ORIGINAL))


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
