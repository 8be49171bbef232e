"""Move RAW-to-RGB datasets both ways between the Zurich RAW-to-RGB (ZRR) layout and a dpedkit dataset.

The layout of ZRR (Ignatov et al., "Replacing Mobile Camera ISP with a Single Deep Learning Model", CVPRW 2020),
pairs by the integer index of the file name::

    <root>/train/huawei_raw/<i>.png     phone RAW patch: the Bayer mosaic, a 16-bit one-channel PNG
    <root>/train/canon/<i>.jpg          DSLR patch, same index, RGB on the mosaic's pixel grid
    <root>/test/huawei_raw/<i>.png, <root>/test/canon/<i>.jpg
    <root>/test/huawei_full_resolution/*.png   whole phone mosaics (optional; kept byte for byte)

ZRR's mosaics are RGGB with black level 0 and white level 1020 (its readers divide by ``4 * 255``); other datasets
in this layout give their own with ``sensor``. The transfer is :mod:`dpedkit.interop.transfer`'s:

- :func:`import_zrr` writes a RAW-to-RGB dataset (phone ``(N, P, P, 1)`` uint16 mosaics as stored, DSLR uint8 RGB,
  the sensor in the manifest) and keeps the original files' bytes beside each shard (``zrr_source/``). ZRR records
  no white balance: each shard's ``baseline`` is :func:`dpedkit.io.camera.render_mosaic` with grey-world white
  balance (bilinear demosaic, levels, gamma), the plain ISP a learned one is scored against.
- :func:`export_zrr` writes the layout from any RAW-to-RGB dataset (imported, or ``dpedkit build --mode
  raw2rgb``): imported rows byte for byte, other rows as 16-bit PNG mosaics brought to ZRR's levels (black 0,
  white 1020, what ZRR's readers assume; RGGB sensors only) and JPEG DSLR patches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dpedkit.dataset.format import DatasetDir
from dpedkit.dataset.storage import local_dataset
from dpedkit.errors import ConfigError, InputError, check_range
from dpedkit.interop.transfer import Layout, Row, TransferResult, export_tree, import_tree, stack_patches
from dpedkit.io import encode_image, read_image, read_rgb, to_uint8
from dpedkit.io.camera import BAYER, render_mosaic

PHONE = "huawei_raw"
DSLR = "canon"
FULL_RESOLUTION = "test/huawei_full_resolution"
ZRR_SENSOR = {"cfa": "RGGB", "black": 0.0, "white": 1020.0}
LAYOUT = Layout(
    source="zrr",
    split_dirs={"train": (f"train/{PHONE}", f"train/{DSLR}"), "test": (f"test/{PHONE}", f"test/{DSLR}")},
    exts=(".png", ".jpg"),
    keys=("phone_png", "dslr_jpeg"),
    extras=(FULL_RESOLUTION,),
)


def check_sensor(sensor: Mapping[str, Any]) -> dict[str, Any]:
    """``{"cfa", "black", "white"}`` checked: a Bayer CFA and ``0 <= black < white <= 65535``."""
    cfa = str(sensor.get("cfa", ""))
    if cfa not in BAYER:
        raise ConfigError(f"CFA pattern must be one of {', '.join(BAYER)}; got {cfa!r}")
    black, white = float(sensor["black"]), float(sensor["white"])
    check_range("black level", black, 0.0, 65534.0)
    check_range("white level", white, black + 1.0, 65535.0)
    return {"cfa": cfa, "black": black, "white": white}


def import_zrr(
    zrr_dir: str | Path,
    out: str | Path,
    *,
    sensor: Mapping[str, Any] = ZRR_SENSOR,
    **options: Any,
) -> TransferResult:
    """Convert a folder in the ZRR layout into a dpedkit RAW-to-RGB dataset.

    Args:
        zrr_dir: the folder holding ``train/`` and/or ``test/``.
        out: dataset folder to write (new or empty unless ``overwrite``; written beside itself and moved into
            place at the end: a failed import leaves nothing it created).
        sensor: ``{"cfa", "black", "white"}`` of the mosaics (default: ZRR's RGGB, 0, 1020).
        **options: ``rows_per_shard``, ``jobs``, ``overwrite``, ``on_progress`` of
            :func:`~dpedkit.interop.transfer.import_tree`.

    Returns:
        A :class:`~dpedkit.interop.transfer.TransferResult`.

    Raises:
        InputError: not a ZRR folder, no patch pairs, a phone file that is not a one-channel 16-bit PNG, patches of
            differing sizes, or ``out`` not empty.
        ConfigError: a bad ``sensor``.
    """
    root = Path(zrr_dir)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    sensor = check_sensor(sensor)
    config = {"source": "zrr", "zrr_dir": str(root.resolve()), "phone": PHONE, "sensor": sensor,
              "baseline": "demosaic"}  # fmt: skip
    return import_tree(root, LAYOUT, out, decode=_Decoder(sensor), config=config, phone=PHONE, **options)


def read_zrr_mosaic(path: str | Path) -> np.ndarray:
    """A ZRR phone file as its ``H x W x 1`` uint16 mosaic, as stored (checked: one channel, 16 bits, even sides).

    Values above the white level are kept as recorded (10-bit sensors reach 1023 where ZRR says 1020); the
    networks clip them when they normalise.
    """
    img = read_image(path, keep_16bit=True)
    if img.channels != 1 or img.bit_depth != 16:
        raise InputError(path, f"not a RAW mosaic: ZRR phone files are 16-bit one-channel PNGs (this one has "
                               f"{img.channels} channel(s) of {img.bit_depth} bits)")  # fmt: skip
    mosaic = img.rgb[..., :1]
    if mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise InputError(path, f"a Bayer mosaic has even sides; got {mosaic.shape[1]}x{mosaic.shape[0]}")
    return np.ascontiguousarray(mosaic)


def read_zrr_pair(phone: str | Path, dslr: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A ZRR pair as stored: the ``P x P x 1`` uint16 mosaic (:func:`read_zrr_mosaic`) and the uint8 RGB patch."""
    return read_zrr_mosaic(phone), read_rgb(dslr)


def is_zrr_folder(path: str | Path) -> bool:
    """True when ``path`` holds a split of the ZRR layout (``train/huawei_raw`` or ``test/huawei_raw``)."""
    return any((Path(path) / phone_dir).is_dir() for phone_dir, _ in LAYOUT.split_dirs.values())


class _Decoder:
    """Decoder of ZRR patches for one sensor: uint16 mosaics, uint8 RGB DSLR patches, the grey-world baseline."""

    def __init__(self, sensor: Mapping[str, Any]) -> None:
        self.sensor = dict(sensor)

    def __call__(self, rows: list[Row]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        s = self.sensor
        pairs = [read_zrr_pair(p, d) for _, p, d in rows]
        phone = stack_patches([m for m, _ in pairs], [p for _, p, _ in rows])
        dslr = stack_patches([d for _, d in pairs], [d for *_, d in rows])
        baseline = np.stack([render_mosaic(m, s["cfa"], s["black"], s["white"]) for m in phone])
        options = {"phone_dtype": np.uint16, "phone_channels": 1, "baseline": True}
        return {"phone": phone, "dslr": dslr, "baseline": baseline}, options


def export_zrr(
    dataset: str | Path,
    out: str | Path,
    *,
    quality: int = 95,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> TransferResult:
    """Write a RAW-to-RGB dataset in the ZRR layout ``OUT/{train,test}/{huawei_raw,canon}/<i>.{png,jpg}``.

    Args:
        dataset: a dpedkit RAW-to-RGB dataset (``import-zrr`` or ``build --mode raw2rgb``).
        out: the folder to write (new or empty unless ``overwrite``; written beside itself and moved into place).
        quality: JPEG quality 1..100 of DSLR patches that are not byte copies of imported files.
        overwrite: replace an earlier export in a non-empty ``out``.
        on_progress: called ``(shards_done, shards_total)``.

    Raises:
        ShardError: not a finished dpedkit dataset, or a damaged shard.
        ConfigError: an RGB dataset, rows to encode from a sensor that is not RGGB (ZRR's readers assume it), or a
            bad ``quality``.
        InputError: ``out`` not empty.
    """
    dataset = local_dataset(dataset)  # a dataset at a URL: its local copy
    check_range("quality", quality, 1, 100)
    ds = DatasetDir(dataset)
    if not ds.is_raw():
        raise ConfigError(f"{dataset} is an RGB dataset (its phone patches are photos, not RAW mosaics): "
                          "export-dped writes those")  # fmt: skip
    sensor = ds.sensor()

    def encode(phone: np.ndarray, dslr: np.ndarray) -> tuple[bytes, bytes]:  # rows that are not byte copies
        if sensor["cfa"] != "RGGB":
            raise ConfigError(f"{dataset}: the sensor's CFA is {sensor['cfa']}; the ZRR layout holds RGGB mosaics "
                              "(its readers take R at (0, 0)); a shifted phase would change every patch")  # fmt: skip
        mosaic = _encode_mosaic(phone, sensor["black"], sensor["white"])
        return mosaic, encode_image(to_uint8(dslr), ".jpg", quality=quality)

    return export_tree(dataset, Path(out), LAYOUT, encode=encode, phone=PHONE, overwrite=overwrite,
                       on_progress=on_progress)  # fmt: skip


def _encode_mosaic(mosaic: np.ndarray, black: float, white: float) -> bytes:
    """A mosaic as ZRR's 16-bit PNG, its levels mapped to ZRR's (black 0, white 1020)."""
    zb, zw = ZRR_SENSOR["black"], ZRR_SENSOR["white"]
    m = mosaic.reshape(mosaic.shape[:2])
    if (black, white) != (zb, zw):
        scaled = (m.astype(np.float64) - black) * ((zw - zb) / (white - black)) + zb
        m = np.clip(np.rint(scaled), zb, zw).astype(np.uint16)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(m, np.uint16))
    if not ok:
        raise InputError("<mosaic>", "OpenCV could not encode the mosaic as PNG")
    return data.tobytes()
