"""Synthetic pairs as a real shoot leaves them: camera file formats, a turned phone photo, capture times.

:func:`camera_files` takes a pair made by :func:`dpedkit.synth.pairs.make_pair` (its geometry untouched: the
same seed gives the same scene in every format) and returns the files to write and what the truth gains:

- **formats**: JPEG (the pair's own bytes, no second compression), HEIC (pillow-heif, quality 90) or DNG (a
  Bayer mosaic, black/white levels, CFA pattern, colour matrix and as-shot white balance; see
  :func:`dpedkit.io.camera_write.encode_dng`). A DNG side is cropped to even width and height (the last column
  or row goes; no coordinate moves). A phone DNG holds what the phone's sensor recorded
  (:attr:`~dpedkit.synth.pairs.SynthPair.phone_sensor`: optics and noise, not the ISP's look or JPEG): the
  look a learned ISP must learn to replace.
- **turn**: the phone's pixels turned clockwise by 90, 180 or 270 degrees with no EXIF orientation; the truth's
  ``H_phone_to_dslr`` and ``phone_size`` then describe the turned photo, and ``rotate`` records the turn.
- **capture times**: EXIF ``DateTimeOriginal`` + ``SubSecTimeOriginal`` in every file: pair ``i``'s phone photo
  at about ``T0 + 10 i`` seconds, its DSLR photo ``clock_offset`` later plus Gaussian ``time_jitter``; a burst
  is three consecutive pairs shot 0.3 s apart. Recorded as ``truth["capture"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dpedkit.config import SynthConfig
from dpedkit.geometry import turn_image, turn_matrix
from dpedkit.io.camera_write import encode_dng, encode_heif, exif_bytes

if TYPE_CHECKING:
    from dpedkit.synth.pairs import SynthPair

T0 = 1_777_629_600.0  # 2026-05-01 10:00:00 UTC: the first phone shot
SPACING = 10.0  # seconds between two shots outside bursts (plus up to 4 s at random)
BURST_GAP = 0.3  # seconds between the shots of a burst
SUFFIXES = {"jpg": ".jpg", "heic": ".heic", "dng": ".dng"}


def capture_times(n: int, config: SynthConfig, seed: int) -> list[dict[str, Any]]:
    """``{"phone": t, "dslr": t, "burst": k | None}`` (POSIX seconds) for pairs ``0..n-1``.

    Bursts are spread evenly over the pairs (each three consecutive pairs, ``burst`` numbering them); the
    random draws come from their own generator, so the pairs' geometry is the same with or without times.
    """
    rng = np.random.default_rng([seed, 7_000_001])
    starts = {int(round((k + 0.5) * n / config.bursts)) - 1 for k in range(config.bursts)} if config.bursts else set()
    burst_of: dict[int, int] = {}
    for k, s in enumerate(sorted(starts)):
        for j in range(3):
            if 0 <= s + j < n and s + j not in burst_of:
                burst_of[s + j] = k
    out, t = [], T0
    for i in range(n):
        if i:
            same_burst = i in burst_of and burst_of.get(i - 1) == burst_of[i]
            t += BURST_GAP if same_burst else SPACING + float(rng.uniform(0, 4))
        jitter = float(rng.normal(0, config.time_jitter)) if config.time_jitter else 0.0
        out.append({"phone": round(t, 3), "dslr": round(t + config.clock_offset + jitter, 3), "burst": burst_of.get(i)})
    return out


def turn_phone(phone: np.ndarray, h_phone_to_dslr: np.ndarray, rotate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(turned phone image, H mapping the turned photo's pixels to the DSLR)`` for a clockwise ``rotate``."""
    h, w = phone.shape[:2]
    return turn_image(phone, rotate), h_phone_to_dslr @ turn_matrix(rotate, w, h)


def encode(rgb: np.ndarray, fmt: str, capture_time: float, *, jpeg: bytes = b"") -> tuple[bytes, tuple[int, int]]:
    """``(file bytes, (width, height) stored)`` of one side in format ``fmt`` with its capture time.

    ``jpeg``: the side's own JPEG bytes (used as they are for ``jpg``, the EXIF segment added).
    """
    if fmt == "jpg":
        from dpedkit.io import encode_image

        return _with_exif(jpeg or encode_image(rgb, ".jpg", quality=95), capture_time), (rgb.shape[1], rgb.shape[0])
    if fmt == "heic":
        return encode_heif(rgb, quality=90, capture_time=capture_time), (rgb.shape[1], rgb.shape[0])
    even = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
    return encode_dng(even, capture_time=capture_time), (even.shape[1], even.shape[0])


def _with_exif(jpeg: bytes, capture_time: float) -> bytes:
    """A JPEG with an EXIF APP1 segment (capture time) inserted right after its start-of-image marker."""
    payload = exif_bytes(capture_time=capture_time)  # starts with "Exif\0\0"
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def camera_files(
    pair: SynthPair, config: SynthConfig, times: dict[str, Any]
) -> tuple[dict[str, tuple[str, bytes]], dict[str, Any]]:
    """The two files of a pair (made by :func:`dpedkit.synth.pairs.make_pair`) and the truth entries they change.

    Returns:
        ``({"phone": (suffix, bytes), "dslr": (suffix, bytes)}, truth updates)``; the updates hold
        ``H_phone_to_dslr``, ``phone_size`` and ``dslr_size`` as written, ``rotate``, ``formats`` and
        ``capture`` (``times``, from :func:`capture_times`).
    """
    phone, dslr, truth, jpegs = pair.phone, pair.dslr, pair.truth, (pair.phone_jpeg, pair.dslr_jpeg)
    if config.phone_format == "dng" and pair.phone_sensor is not None:
        phone = pair.phone_sensor  # a RAW file holds the sensor's data, before the phone's ISP
    h = np.asarray(truth["H_phone_to_dslr"], np.float64)
    turned, h = turn_phone(phone, h, config.rotate)
    phone_jpeg = jpegs[0] if config.rotate == 0 else b""  # turned pixels need a new JPEG
    p_bytes, p_size = encode(turned, config.phone_format, times["phone"], jpeg=phone_jpeg)
    d_bytes, d_size = encode(dslr, config.dslr_format, times["dslr"], jpeg=jpegs[1])
    files = {"phone": (SUFFIXES[config.phone_format], p_bytes), "dslr": (SUFFIXES[config.dslr_format], d_bytes)}
    updates = {
        "H_phone_to_dslr": [[float(v) for v in row] for row in h / h[2, 2]],
        "phone_size": list(p_size),
        "dslr_size": list(d_size),
        "rotate": config.rotate,
        "formats": {"phone": config.phone_format, "dslr": config.dslr_format},
        "capture": times,
    }
    return files, updates
