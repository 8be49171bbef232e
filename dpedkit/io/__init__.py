"""Input and output shared by every stage: image files (:mod:`.images`), atomic files and JSON (:mod:`.files`)."""

from dpedkit.io.files import (
    AtomicFile,
    atomic_path,
    file_mode,
    json_safe,
    read_jsonl,
    write_json,
    write_jsonl,
    write_text,
)
from dpedkit.io.images import (
    IMAGE_SUFFIXES,
    LoadedImage,
    apply_orientation,
    exif_orientation,
    list_files,
    list_images,
    read_capture_time,
    read_image,
    read_rgb,
    to_uint8,
    write_image,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "AtomicFile",
    "LoadedImage",
    "apply_orientation",
    "atomic_path",
    "exif_orientation",
    "file_mode",
    "json_safe",
    "list_files",
    "list_images",
    "read_capture_time",
    "read_image",
    "read_jsonl",
    "read_rgb",
    "to_uint8",
    "write_image",
    "write_json",
    "write_jsonl",
    "write_text",
]
