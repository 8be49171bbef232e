"""Writers of camera formats, for synthetic pairs and tests: HEIC (pillow-heif) and DNG (tifffile).

They write what real cameras write, so that every reader of :mod:`dpedkit.io.camera` is tested against known
content: a HEIC with its own rotation transform and an EXIF orientation tag; a DNG holding a Bayer mosaic with
black and white levels, the CFA pattern, a colour matrix and the as-shot white balance, which LibRaw demosaics
back to the image it was made from.

Capture times are written as EXIF ``DateTimeOriginal`` + ``SubSecTimeOriginal`` (+ ``OffsetTimeOriginal``),
from POSIX seconds (see :func:`exif_time`).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np

from dpedkit.errors import InputError

_CFA_CODES = {"R": 0, "G": 1, "B": 2}
# XYZ (D65) -> linear sRGB, IEC 61966-2-1
_XYZ_TO_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]], dtype=np.float64
)


def exif_time(seconds: float) -> tuple[str, str]:
    """``("YYYY:MM:DD HH:MM:SS", "fff")``: EXIF date-time and sub-seconds (milliseconds) of POSIX ``seconds``."""
    ms = round(seconds * 1000)
    stamp = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y:%m:%d %H:%M:%S")
    return stamp, f"{ms % 1000:03d}"


def exif_bytes(orientation: int = 1, capture_time: float | None = None, offset: str | None = None) -> bytes:
    """An EXIF block (the "Exif" header + TIFF) with an orientation (when not 1) and a capture time (when given)."""
    from PIL import Image

    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if capture_time is not None:
        stamp, sub = exif_time(capture_time)
        exif[0x0132] = stamp
        ifd = exif.get_ifd(0x8769)
        ifd[0x9003], ifd[0x9291] = stamp, sub
        if offset:
            ifd[0x9011] = offset
    return exif.tobytes()


def encode_heif(
    rgb: np.ndarray,
    *,
    quality: int = 95,
    bit_depth: int = 8,
    orientation: int = 1,
    capture_time: float | None = None,
    offset: str | None = None,
) -> bytes:
    """A HEIC file of an ``H x W x 3`` RGB image, as a phone writes it.

    Args:
        rgb: ``uint8``, or ``uint16`` on the full 0..65535 scale for ``bit_depth`` 10 or 12.
        quality: HEVC quality 1..100.
        bit_depth: 8, 10 or 12 bits per sample.
        orientation: EXIF orientation of ``rgb`` as stored. pillow-heif writes it as the HEIF's own transform
            (``irot``/``imir``) and keeps the EXIF tag too, as iPhones do: a reader must apply it once.
        capture_time: POSIX seconds written as EXIF capture time (None: none).
        offset: EXIF ``OffsetTimeOriginal`` (``"+01:00"``), written with ``capture_time``.
    """
    import pillow_heif

    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(None, f"cannot encode an array of shape {rgb.shape} as HEIF (H x W x 3 RGB only)")
    if bit_depth == 8:
        pixels, mode = np.ascontiguousarray(rgb, np.uint8), "RGB"
    else:  # pillow-heif takes 16-bit samples and keeps their top bit_depth bits
        top = (1 << bit_depth) - 1
        v = (rgb.astype(np.uint32) * top + 32767) // 65535
        pixels, mode = np.ascontiguousarray((v << (16 - bit_depth)).astype(np.uint16)), "RGB;16"
    heif = pillow_heif.from_bytes(mode=mode, size=(rgb.shape[1], rgb.shape[0]), data=pixels.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=quality, exif=exif_bytes(orientation, capture_time, offset), save_to_12bit=bit_depth == 12)
    return buf.getvalue()


def encode_dng(
    rgb: np.ndarray,
    *,
    cfa: str = "RGGB",
    black_level: int = 512,
    white_level: int = 16383,
    neutral: tuple[float, float, float] = (0.5, 1.0, 0.7),
    orientation: int = 1,
    capture_time: float | None = None,
    offset: str | None = None,
) -> bytes:
    """A DNG file holding the Bayer mosaic a sensor would have recorded of an sRGB image.

    The camera's linear response is the linear sRGB value times ``neutral`` (the raw values of a white object),
    so the colour matrix is ``diag(neutral) @ XYZ->sRGB`` and LibRaw, with the as-shot white balance and no
    auto-brightening, gives the image back (up to demosaicing and quantisation).

    Args:
        rgb: ``H x W x 3`` sRGB, ``uint8`` or ``uint16``; even height and width.
        cfa: colours of the 2 x 2 Bayer quad, row by row (``RGGB``, ``BGGR``, ``GRBG``, ``GBRG``).
        black_level: raw value of black.
        white_level: raw value of saturation.
        neutral: as-shot neutral, each in (0, 1].
        orientation: TIFF orientation of the stored mosaic (LibRaw turns its output upright by it).
        capture_time: POSIX seconds written as ``DateTimeOriginal`` (None: none).
        offset: ``OffsetTimeOriginal`` (``"+01:00"``), written with ``capture_time``.
    """
    import tifffile

    h, w = rgb.shape[:2]
    if rgb.ndim != 3 or rgb.shape[2] != 3 or h % 2 or w % 2:
        raise InputError(None, f"cannot encode an array of shape {rgb.shape} as a DNG (even H x W x 3 RGB only)")
    if sorted(cfa) != ["B", "G", "G", "R"]:
        raise InputError(None, f"unsupported CFA pattern {cfa!r} (a Bayer quad: RGGB, BGGR, GRBG or GBRG)")
    x = rgb.astype(np.float64) / np.iinfo(rgb.dtype).max
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4) * np.asarray(neutral)
    mosaic = np.empty((h, w), np.float64)
    for k, colour in enumerate(cfa):
        dy, dx = divmod(k, 2)
        mosaic[dy::2, dx::2] = lin[dy::2, dx::2, _CFA_CODES[colour]]
    raw = np.rint(black_level + mosaic * (white_level - black_level)).astype(np.uint16)
    matrix = np.diag(neutral) @ _XYZ_TO_SRGB
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "dpedkit synthetic", True),  # UniqueCameraModel
        (271, "s", 0, "dpedkit", True),  # Make
        (272, "s", 0, "synthetic DNG", True),  # Model
        (274, "H", 1, orientation, True),  # Orientation
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, tuple(_CFA_CODES[c] for c in cfa), True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50714, "I", 1, black_level, True),  # BlackLevel
        (50717, "I", 1, white_level, True),  # WhiteLevel
        (50721, "2i", 9, _rationals(matrix.ravel()), True),  # ColorMatrix1 (XYZ -> camera)
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, _rationals(neutral), True),  # AsShotNeutral
    ]
    if capture_time is not None:  # TIFF/EP allows these in IFD 0
        stamp, sub = exif_time(capture_time)
        tags += [(306, "s", 0, stamp, True), (36867, "s", 0, stamp, True), (37521, "s", 0, sub, True)]
        if offset:
            tags.append((36881, "s", 0, offset, True))
    buf = io.BytesIO()
    tifffile.imwrite(buf, raw, photometric=32803, subfiletype=0, extratags=tags)  # 32803: CFA
    return buf.getvalue()


def _rationals(values: np.ndarray | tuple[float, ...], denominator: int = 10000) -> tuple[int, ...]:
    """Flat ``(numerator, denominator, ...)`` of ``values`` as TIFF (signed) rationals."""
    return tuple(v for x in values for v in (round(float(x) * denominator), denominator))
