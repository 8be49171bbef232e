"""Input and output shared by every stage: image files (:mod:`.images`), atomic files and JSON (:mod:`.files`).

The image functions are loaded on first use, so that importing the file helpers (as :mod:`dpedkit.config`
does) does not import OpenCV.
"""

from importlib import import_module
from typing import Any

from dpedkit.io.files import (
    LOCK_NAME,
    AtomicFile,
    atomic_path,
    check_apart,
    check_file_name,
    check_room,
    dumps,
    file_mode,
    folder_lock,
    is_url,
    json_safe,
    owned_tempdir,
    read_jsonl,
    write_json,
    write_jsonl,
    write_text,
)

_IMAGES = (
    "IMAGE_SUFFIXES",
    "LoadedImage",
    "apply_orientation",
    "encode_image",
    "exif_orientation",
    "list_files",
    "list_images",
    "read_capture_time",
    "read_image",
    "read_rgb",
    "to_uint8",
    "write_image",
)

__all__ = [
    "LOCK_NAME",
    "AtomicFile",
    "atomic_path",
    "check_apart",
    "check_file_name",
    "check_room",
    "dumps",
    "file_mode",
    "folder_lock",
    "is_url",
    "json_safe",
    "owned_tempdir",
    "read_jsonl",
    "write_json",
    "write_jsonl",
    "write_text",
    *_IMAGES,
]


def __getattr__(name: str) -> Any:
    if name in _IMAGES:
        return getattr(import_module("dpedkit.io.images"), name)
    raise AttributeError(f"module 'dpedkit.io' has no attribute {name!r}")
