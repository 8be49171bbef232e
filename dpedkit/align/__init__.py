"""Phone-to-DSLR alignment: features, robust homography, validation, crop and warp."""

from dpedkit.align.pipeline import (
    AlignConfig,
    AlignResult,
    align_files,
    align_pair,
    check_pair_dir,
    is_pair_dir,
    read_alignment,
    write_alignment,
)

__all__ = [
    "AlignConfig",
    "AlignResult",
    "align_files",
    "align_pair",
    "check_pair_dir",
    "is_pair_dir",
    "read_alignment",
    "write_alignment",
]
