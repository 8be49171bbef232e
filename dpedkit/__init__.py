"""dpedkit: DPED-style paired phone/DSLR datasets, alignment inspection, and enhancement networks.

Conventions used everywhere in the package (written down once, here):

- Images are ``numpy`` arrays ``H x W x 3`` in **RGB** order. Pixel values are ``uint8`` in [0, 255] on disk
  and in the pipeline; networks and metrics work on ``float32`` in [0, 1] (``CHW`` tensors in torch code).
- Pixel coordinates are ``(x, y)`` = (column, row), **pixel centres at integers**: the top-left pixel's centre
  is (0, 0) and the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5].
- A homography ``H_a_to_b`` maps homogeneous points of image ``a`` to image ``b``: ``p_b ~ H_a_to_b @ p_a``.
  The alignment result stores ``H_phone_to_dslr`` in full-resolution pixel coordinates.
- Rectangles are ``[x0, y0, x1, y1]`` in integer pixel indices, half-open: columns x0..x1-1, rows y0..y1-1.
- Expected per-pair failures are returned as :class:`dpedkit.errors.Failure` values, never raised; bad
  usage and unreadable input raise subclasses of :class:`dpedkit.errors.DpedkitError`.
"""

__version__ = "0.1.0"

from dpedkit.errors import ConfigError, DpedkitError, Failure, InputError  # noqa: E402

__all__ = ["ConfigError", "DpedkitError", "Failure", "InputError", "__version__"]
