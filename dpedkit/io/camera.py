"""What cameras write besides JPEG: HEIC/HEIF (``pillow-heif``, libheif) and RAW (``rawpy``, LibRaw).

Both come back as ``H x W x 3`` RGB ``uint16`` (full range 0..65535), upright, with what was done recorded:

- HEIF: libheif applies the file's own rotation and mirroring (``irot``/``imir``) while decoding. The EXIF
  orientation tag that phones also write must then NOT be applied again (the double-rotation bug): it is read,
  recorded and ignored. A 10- or 12-bit HEIF keeps its precision in the ``uint16`` samples.
- RAW: every format LibRaw reads, demosaiced (AHD) with the camera's white balance into sRGB, or linear
  (``linear=True``: no gamma), 16 bits, the exposure as shot (no auto-brightening). LibRaw turns the image
  upright by the file's orientation. ``half_size=True`` is LibRaw's fast path: one pixel per 2 x 2 Bayer
  quad, no demosaic (a pixel ``(x, y)`` of it covers full-resolution pixels ``2x, 2x+1``; its centre is at
  ``(2x + 0.5, 2y + 0.5)``).
  The mosaic's parameters (CFA pattern, black and white levels, as-shot white balance, colour matrix) are
  returned as plain data for ``pairs.jsonl``.

The libraries are imported on first use: reading a JPEG never loads them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from dpedkit.errors import InputError

HEIF_SUFFIXES = (".heic", ".heif", ".hif")
RAW_SUFFIXES = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl",
    ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mos", ".mrw", ".raw",
)  # fmt: skip
# LibRaw's flip codes -> the EXIF orientation they stand for (what LibRaw's output has been turned by)
_LIBRAW_FLIP = {0: 1, 3: 3, 5: 8, 6: 6}


def is_heif(path: str | Path) -> bool:
    """True for a HEIC/HEIF file name."""
    return Path(path).suffix.lower() in HEIF_SUFFIXES


def is_raw(path: str | Path) -> bool:
    """True for a camera RAW file name (every suffix LibRaw is known for)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def is_heif_data(data: bytes) -> bool:
    """True when ``data`` starts like an ISO media file (``ftyp`` box): HEIF/HEIC/AVIF, whatever its suffix."""
    return data[4:8] == b"ftyp"


def decode_heif(data: bytes, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """``(rgb, metadata)`` of a HEIF image, upright by its own transforms (see the module docstring).

    ``rgb`` is ``uint8`` for an 8-bit file, else ``uint16`` on the full 0..65535 scale (a 10-bit sample ``v``
    becomes ``round(v * 65535 / 1023)``).

    Raises:
        InputError: not a HEIF image libheif decodes.
    """
    import pillow_heif

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
        rgb = np.asarray(heif)
    except (ValueError, RuntimeError, OSError, SyntaxError) as exc:
        raise InputError(path, f"not a readable HEIF image ({exc})") from None
    bit_depth = int(heif.info.get("bit_depth", 8))
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    rgb = rgb[:, :, :3]
    if rgb.dtype == np.uint16 and 8 < bit_depth < 16:  # libheif leaves the samples shifted to the top bits
        top = (1 << bit_depth) - 1
        rgb = ((rgb >> (16 - bit_depth)).astype(np.uint32) * 65535 + top // 2) // top
        rgb = rgb.astype(np.uint16)
    meta: dict[str, Any] = {"format": "heif", "bit_depth": bit_depth}
    if (exif_orientation := _exif_orientation(heif.info)) != 1:  # the HEIF transforms turned it already
        meta["exif_orientation_ignored"] = exif_orientation
    return np.require(rgb, requirements=["C", "W"]), meta  # libheif's buffer is read-only: torch would warn


def heif_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a HEIF image from its header (after its transforms), or None when unreadable."""
    import pillow_heif

    try:
        return tuple(pillow_heif.open_heif(io.BytesIO(data)).size)
    except (ValueError, RuntimeError, OSError, SyntaxError):
        return None


def heif_exif(data: bytes) -> Any:
    """The EXIF of a HEIF file as a ``PIL.Image.Exif`` (empty when it has none), or None when unreadable."""
    import pillow_heif

    try:
        return _exif(pillow_heif.open_heif(io.BytesIO(data)).info)
    except (ValueError, RuntimeError, OSError, SyntaxError):
        return None


def _exif(info: Mapping[str, Any]) -> Any:
    """``PIL.Image.Exif`` of the ``exif`` bytes of a pillow-heif ``info`` (empty when absent or malformed)."""
    from PIL import Image

    exif, raw = Image.Exif(), info.get("exif")
    if raw:
        try:
            exif.load(raw[6:] if raw.startswith(b"Exif\x00\x00") else raw)
        except (SyntaxError, ValueError, OSError):
            return Image.Exif()
    return exif


def _exif_orientation(info: Mapping[str, Any]) -> int:
    value = _exif(info).get(0x0112, 1)
    return int(value) if value in range(1, 9) else 1


def decode_raw(
    data: bytes, path: Path, *, linear: bool = False, half_size: bool = False, max_pixels: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(rgb uint16, metadata)`` of a camera RAW file demosaiced by LibRaw (see the module docstring).

    Args:
        data: the file's bytes, in any format LibRaw reads.
        path: where they came from (for messages).
        linear: linear output (gamma 1) instead of sRGB.
        half_size: LibRaw's half-size output (no demosaic; 4x fewer pixels, about 10x faster).
        max_pixels: refuse a sensor of more pixels than this, before demosaicing.

    Raises:
        InputError: a file LibRaw cannot read, or a sensor above ``max_pixels``.
    """
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            w, h = raw.sizes.width, raw.sizes.height
            if max_pixels is not None and w * h > max_pixels:
                raise InputError(
                    path,
                    f"sensor is {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP limit "
                    "(--max-pixels)",
                )
            meta = raw_parameters(raw) | {"linear": linear, "half_size": half_size}
            rgb = raw.postprocess(
                use_camera_wb=True,
                output_bps=16,
                no_auto_bright=True,  # the exposure as shot: nothing the sensor did not clip is clipped
                gamma=(1, 1) if linear else (2.4, 12.92),  # the sRGB curve
                output_color=rawpy.ColorSpace.sRGB,
                half_size=half_size,
            )
    except (rawpy.LibRawError, MemoryError) as exc:
        raise InputError(path, f"not a RAW file LibRaw reads ({type(exc).__name__}: {exc})") from None
    return np.ascontiguousarray(rgb), meta


def half_size_luma(rgb: np.ndarray, cfa: str | None, orientation: int = 1) -> np.ndarray:
    """A luminance of LibRaw's half-size output for features: every channel centred on its block and stretched.

    A half-size pixel takes its red and blue samples from their own corners of the 2 x 2 Bayer block (a quarter
    of a half-size pixel off-centre each way) and averages the two greens (centred). Red and blue are resampled
    to the block centre (bilinear, edges replicated); then each channel is stretched on its own to its 0.1 ..
    99.9 percentiles (a channel dark in a tinted scene or the whole frame in shadow keeps its detail) and the
    three are mixed 1:2:1 (the Bayer proportions). Measured on synthetic DNG pairs (normal, tinted light), this
    aligns as well as the demosaiced full image (``dpedkit.io.read_image``) of the same file.

    Args:
        rgb: ``H x W x 3`` uint8 or uint16 half-size output (upright, as LibRaw turns it).
        cfa: the stored mosaic's 2 x 2 quad (``"RGGB"``...); None or a non-Bayer pattern: no resampling.
        orientation: the file's EXIF orientation (LibRaw turned the output by it).

    Returns:
        ``H x W`` uint8.
    """
    import cv2

    planes = [rgb[..., c].astype(np.float32) for c in range(3)]
    if cfa in BAYER:
        turned = apply_orientation(np.arange(4, dtype=np.uint8).reshape(2, 2), orientation)  # where each quad
        for c, colour in ((0, "R"), (2, "B")):  # position lands once the output is upright
            ny, nx = (int(v) for v in np.argwhere(turned == cfa.index(colour))[0])
            ox, oy = (nx - 0.5) / 2, (ny - 0.5) / 2  # the sample's offset from the block centre, half-size px
            # the plane's pixel x holds the scene at x + o: the centre's value is the plane's at x - o
            shift = np.float32([[1, 0, -ox], [0, 1, -oy]])  # an inverse map: dst(x) = src(x - o)
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            planes[c] = cv2.warpAffine(planes[c], shift, planes[c].shape[::-1], flags=flags,
                                       borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    mix = sum(w * _stretched(p) for w, p in zip((0.25, 0.5, 0.25), planes, strict=True))
    return np.clip(mix * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _stretched(plane: np.ndarray) -> np.ndarray:
    """``plane`` mapped so that its 0.1 and 99.9 percentiles (of every 4th pixel each way) become 0 and 1."""
    lo, hi = np.percentile(plane[::4, ::4], (0.1, 99.9))
    return (plane - lo) / max(float(hi - lo), 1e-6)


def read_mosaic(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """``(mosaic, parameters)``: a RAW file's visible Bayer mosaic as recorded, and :func:`raw_parameters`.

    The mosaic is ``H x W`` uint16 with no demosaic and no black subtraction; ``cfa`` names its top-left 2 x 2
    quad. It is on the sensor's grid: LibRaw's demosaiced output of the same file covers the same pixels when
    the file's orientation is 1 (otherwise it is turned by it).

    Raises:
        InputError: a file LibRaw cannot read, one without a Bayer mosaic (Foveon, X-Trans, linear DNG), or one
            whose black level is not below its white level.
    """
    import rawpy

    path = Path(path)
    try:
        with rawpy.imread(str(path)) as raw:
            meta = raw_parameters(raw)
            if raw.raw_pattern is None or raw.raw_pattern.shape != (2, 2) or meta["cfa"] not in BAYER:
                raise InputError(path, f"not a Bayer mosaic (CFA {meta['cfa']!r}); raw2rgb reads 2 x 2 Bayer sensors")
            if max(meta["black_level"]) >= meta["white_level"]:  # damaged or crafted levels: no value range
                raise InputError(path, f"black level {max(meta['black_level'])} is not below the white level "
                                       f"{meta['white_level']}")  # fmt: skip
            mosaic = raw.raw_image_visible.copy()
    except (rawpy.LibRawError, MemoryError) as exc:
        raise InputError(path, f"not a RAW file LibRaw reads ({type(exc).__name__}: {exc})") from None
    return mosaic, meta


BAYER = ("RGGB", "BGGR", "GRBG", "GBRG")  # the 2 x 2 Bayer quads, named row by row


def apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation ``orientation`` (1..8) so the image is upright, as a viewer shows it."""
    import cv2  # only here: reading HEIC/RAW headers needs no OpenCV

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


def upright_mosaic(mosaic: np.ndarray, cfa: str, orientation: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A mosaic turned upright as LibRaw turns its output, and where its 2 x 2 quads read ``cfa`` again.

    Turning is a permutation of the pixels: no value changes. It moves the Bayer phase: the quads that start at
    ``(x, y)`` with ``(x % 2, y % 2) == parity`` read the file's ``cfa`` again, so patches cut there are read by a
    network exactly as those of an upright file of the same sensor.

    Returns:
        ``(upright, parity)``; ``(mosaic, (0, 0))`` for orientation 1.
    """
    if orientation == 1:
        return mosaic, (0, 0)
    h, w = mosaic.shape[:2]
    phase = ((np.arange(h)[:, None] % 2) * 2 + np.arange(w)[None, :] % 2).astype(np.uint8)  # index in the quad
    turned = apply_orientation(phase, orientation)
    for py in (0, 1):
        for px in (0, 1):
            if "".join(cfa[i] for i in turned[py : py + 2, px : px + 2].ravel()) == cfa:
                return apply_orientation(mosaic, orientation), (px, py)
    raise InputError(None, f"orientation {orientation} turns the {cfa} quads into no Bayer quad")  # not reachable


def render_mosaic(mosaic: np.ndarray, cfa: str, black: float, white: float, wb: np.ndarray | None = None) -> np.ndarray:
    """A Bayer mosaic (``H x W`` or ``H x W x 1``) rendered simply as uint8 RGB: the plainest ISP there is.

    OpenCV's bilinear demosaic, the black/white levels, white-balance gains ``wb`` (R, G, B; None: grey world,
    each channel scaled to the green mean), clipping and the sRGB-like gamma 1/2.2. No denoising, no colour matrix,
    no tone curve: it shows a mosaic and is the baseline of RAW data that records nothing else (ZRR).
    """
    import cv2

    # OpenCV names a Bayer pattern by the second row's second and third pixels: RGGB is its "BG"
    codes = {"RGGB": cv2.COLOR_BayerBG2RGB, "BGGR": cv2.COLOR_BayerRG2RGB, "GRBG": cv2.COLOR_BayerGB2RGB,
             "GBRG": cv2.COLOR_BayerGR2RGB}  # fmt: skip
    rgb = cv2.cvtColor(np.ascontiguousarray(mosaic.reshape(mosaic.shape[:2])), codes[cfa]).astype(np.float32)
    x = np.clip((rgb - black) / max(white - black, 1.0), 0, 1)
    if wb is None:
        means = x.reshape(-1, 3).mean(axis=0)
        wb = means[1] / np.maximum(means, 1e-6)
    else:
        wb = np.asarray(wb, np.float32) / float(wb[1])
    x = np.clip(x * wb, 0, 1) ** (1 / 2.2)
    return (x * 255 + 0.5).astype(np.uint8)


def raw_parameters(raw: Any) -> dict[str, Any]:
    """The mosaic's parameters of an open ``rawpy.RawPy``, as plain data (for ``pairs.jsonl``)."""
    desc = raw.color_desc.decode(errors="replace")
    pattern = raw.raw_pattern
    indices = [] if pattern is None else [int(c) for c in np.asarray(pattern).ravel()]
    # a CFAPattern naming a colour the file does not have (a damaged or crafted DNG) is no CFA at all: such a file
    # is refused where a mosaic is needed (read_mosaic), and still read where LibRaw renders it
    cfa = "".join(desc[i] for i in indices) if indices and all(0 <= i < len(desc) for i in indices) else None
    wb = [float(v) for v in raw.camera_whitebalance]
    flip = int(raw.sizes.flip)
    w, h = int(raw.sizes.width), int(raw.sizes.height)
    return {
        "format": "raw",
        "cfa": cfa,  # e.g. "RGGB": the colours of the 2 x 2 quad, row by row
        "black_level": [int(v) for v in raw.black_level_per_channel],
        "white_level": int(raw.white_level),
        "as_shot_wb": [v if math.isfinite(v) else None for v in wb],
        "color_matrix": np.asarray(raw.color_matrix, float).round(6).tolist(),
        "sensor_size": [int(raw.sizes.raw_width), int(raw.sizes.raw_height)],
        "image_size": [h, w] if flip in (5, 6) else [w, h],  # (width, height) of the full output, upright
        "orientation": _LIBRAW_FLIP.get(flip, 1),
    }


def tiff_capture_time(data: bytes) -> float | None:
    """EXIF capture time of a TIFF-based RAW (DNG, NEF, CR2, ARW, ...) as POSIX seconds, or None.

    UTC when the file says its offset, else the camera's local clock (see :func:`posix_time`).
    """
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            tags = tif.pages[0].tags
            ifd0 = {t.code: t.value for t in tags.values()}
            exif = ifd0.get(34665) or {}  # the EXIF IFD (tifffile names its entries), else IFD 0 (TIFF/EP, DNG)

            def tag(name: str, code: int) -> Any:
                return exif.get(name) if exif.get(name) else ifd0.get(code)

            stamp = tag("DateTimeOriginal", 36867) or ifd0.get(306)
            return posix_time(stamp, tag("SubsecTimeOriginal", 37521), tag("OffsetTimeOriginal", 36881))
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, AttributeError):
        return None


def posix_time(stamp: Any, subsec: Any = None, offset: Any = None) -> float | None:
    """EXIF ``YYYY:MM:DD HH:MM:SS`` + sub-seconds + ``+HH:MM`` offset as POSIX seconds, or None when malformed.

    Without an offset the camera's local clock is taken as it is (two cameras' clocks then differ by an
    unknown constant: see the clock-offset estimate of time pairing).
    """
    if not stamp:
        return None
    try:
        t = datetime.strptime(str(stamp).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    frac = str(subsec or "").strip("\x00 ")
    seconds = (t - datetime(1970, 1, 1)).total_seconds() + (float(f"0.{frac}") if frac.isdigit() else 0.0)
    off = str(offset or "").strip("\x00 ")
    if len(off) == 6 and off[0] in "+-" and off[3] == ":" and off[1:3].isdigit() and off[4:].isdigit():
        delta = timedelta(hours=int(off[1:3]), minutes=int(off[4:]))
        seconds -= (delta if off[0] == "+" else -delta).total_seconds()
    return seconds
