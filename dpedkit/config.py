"""The one config surface: the options of every configurable stage, and the TOML file that sets them.

Each stage's options are a frozen dataclass here (:class:`AlignConfig`, :class:`PatchConfig`,
:class:`BuildConfig`, :class:`TrainConfig`, :class:`EvalConfig`, :class:`EnhanceConfig`, :class:`ReportConfig`,
and the synth, demo and benchmark options): defaults are written
once, in the field; ``__post_init__`` validates and raises :class:`~dpedkit.errors.ConfigError` naming the field;
the class docstring's ``Attributes`` section is the help text of each field (the command-line flags are generated
from these classes by ``dpedkit_cli.options``). Enumerations are ``Literal`` types; their tuples
(``get_args``) are the one source of the choices.

Resolution: defaults < a TOML file (``--config FILE.toml``) < flags typed on the command line. A config file has
one table per section of :data:`SECTIONS`, so one file can serve every command; a command reads its own sections
(``build`` reads ``[build]``, ``[align]`` and ``[patch]``: a nested config field is the section of its name)::

    [align]
    work_mp = 0.7

    [patch]
    ncc_min = 0.92

    [train]
    model = "dped"
    model_config = { channels = 32 }

This module imports neither OpenCV nor torch, so ``dpedkit COMMAND --help`` stays fast.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, is_dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal, Self, Union, get_args, get_origin, get_type_hints

from dpedkit.errors import ConfigError, check_choice, check_range
from dpedkit.io.files import json_safe
from dpedkit.nn.registry import MODELS as MODELS_SPECS
from dpedkit.nn.registry import model_spec, trainable

Method = Literal["magsac", "prosac", "accurate", "ransac"]
Interpolation = Literal["linear", "cubic", "lanczos"]
PatchInterpolation = Literal["linear", "cubic"]
Rotation = Literal["fit", "search", "none"]
SearchScale = Literal[1, 2]
Moving = Literal["phone", "dslr"]
BuildMode = Literal["rgb", "raw2rgb"]
OnError = Literal["record", "raise"]
PairBy = Literal["name", "time", "order"]
SEED_MAX = 2**32 - 1  # the largest seed numpy's legacy seeding and every consumer here accept
MAX_CLOCK_OFFSET = 48 * 3600.0  # seconds: the largest clock offset time pairing looks for
PhoneFormat = Literal["jpg", "heic", "dng"]
DslrFormat = Literal["jpg", "dng"]
Turn = Literal[0, 90, 180, 270]
Light = Literal["normal", "shadow", "tint"]
BitDepth = Literal[8, 16]
BenchFormat = Literal["jpg", "raw"]
Prefer = Literal["jpeg", "raw"]
Split = Literal["train", "test"]
ModelName = Literal[trainable()]  # the registry's trainable models (dpedkit.nn.registry), known at import
LossPreset = Literal["code", "paper"]
DataMode = Literal["auto", "memory", "loader"]
LrSchedule = Literal["constant", "step", "cosine"]
ImageFormat = Literal["png", "jpg"]

SPLITS: tuple[str, ...] = get_args(Split)
MAX_PIXELS = 250_000_000  # largest photo read by default: above the 200 MP of today's largest camera sensors

VGG_WEIGHTS_SOURCE = (  # where VGG-19 weights come from (said with every error about them)
    "Download either imagenet-vgg-verydeep-19.mat (MatConvNet, ~510 MB, the file the original DPED uses: "
    "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat) or torchvision's VGG-19 "
    "weights (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) and pass the local path "
    "(e.g. --vgg PATH). 'random' gives untrained weights for smoke tests only."
)
VGG_WEIGHTS_HELP = f"VGG-19 weights are needed for the content loss and none were given. {VGG_WEIGHTS_SOURCE}"
MODELS: tuple[str, ...] = get_args(ModelName)  # for help texts; checks ask the registry


def flag(name: str, **extra: Any) -> dict[str, Any]:
    """Field metadata naming the command-line flag of a field whose default name (``--field-name``) is not used."""
    return {"flag": name, **extra}


class ConfigMixin:
    """A (frozen) config dataclass: field types checked, then the class's ``_validate``; dict round trips.

    Every value, whether typed in Python, read from a TOML file or from a JSON record, is checked against the
    field's annotation first (:class:`ConfigError` naming the field, never a ``TypeError``): ints pass as floats,
    lists as tuples. Then ``_validate`` checks ranges and combinations.
    """

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _checked(type(self), f.name, getattr(self, f.name)))
            if f.name == "seed":  # every seed: numpy, torch and OpenCV all take it (AlignConfig narrows it further)
                check_range("seed", self.seed, 0, SEED_MAX)  # type: ignore[attr-defined]
        self._validate()

    def _validate(self) -> None:
        """Range and combination checks of the subclass (types are checked already)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields (nested configs as dicts, tuples as lists)."""
        return json_safe(asdict(self), finite=False)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming the valid ones."""
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} option(s) {unknown}; valid: {sorted(known)}")
        return cls(**cls._nested(dict(data)))

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn the dicts of nested config fields back into objects."""
        out = dict(data)
        for f in fields(cls):  # type: ignore[arg-type]
            sub = nested_class(cls, f)
            if sub is not None and isinstance(out.get(f.name), Mapping):
                out[f.name] = sub.from_dict(out[f.name])
        return out


def _checked(cls: type, name: str, value: Any) -> Any:
    """``value`` for field ``name`` of ``cls`` if it has the annotated type, else :class:`ConfigError`.

    Values from files and JSON are checked before the field validators run. An int passes as a float (and stays
    an int, so a config's dict, and every file that records it, is what was given); a list becomes a tuple.
    """
    tp = field_type(cls, name)
    kinds = [t for t in (get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,))]
    if value is None and type(None) in kinds:
        return None
    for kind in kinds:
        origin = get_origin(kind) or kind
        if origin is Literal:
            return value  # the field's validator names the choices
        if origin is tuple and isinstance(value, list | tuple):
            return tuple(_not_nan(name, _checked_item(name, v, get_args(kind)[0])) for v in value)
        if isinstance(origin, type) and is_dataclass(origin) and isinstance(value, Mapping | origin):
            return value
        if origin is float and value in ("inf", "-inf"):  # an infinity as strict JSON writes it (io.json_safe)
            return float(value)
        if origin in (int, float, str, bool, dict) and _fits(value, origin):
            return _not_nan(name, value)
    wanted = " or ".join(_type_name(k) for k in kinds)
    raise ConfigError(f"{name} must be {wanted}; got {value!r}")


def _not_nan(name: str, value: Any) -> Any:
    """``value`` unless it is a float NaN (which passes every range check): then :class:`ConfigError`."""
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{name} must be a number; got NaN")
    return value


def _checked_item(name: str, value: Any, kind: type) -> Any:
    if not _fits(value, kind):
        raise ConfigError(f"{name} must hold {_type_name(kind)} values; got {value!r}")
    return value


def _fits(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "unset"}
    origin = get_origin(kind) or kind
    return names.get(origin, "a table" if origin is dict else getattr(origin, "__name__", str(origin)))


# --------------------------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class AlignConfig(ConfigMixin):
    """Options of the alignment stage (defaults chosen by measurement, see ``dpedkit bench align``).

    Attributes:
        work_mp: megapixels each image is shrunk to (never enlarged) before SIFT.
        max_features: strongest SIFT keypoints kept per image (0: all).
        contrast_threshold: SIFT contrast threshold.
        ratio: Lowe ratio-test bound.
        method: robust estimator: ``magsac`` (MAGSAC++), ``prosac``, ``accurate`` (GC-RANSAC), ``ransac``.
        weighted: final least-squares fit weighted by the keypoint sizes (SIFT localisation error).
        threshold_px: inlier residual bound, in DSLR pixels at the working scale.
        min_inliers: fewest inliers accepted.
        min_inlier_ratio: fewest inliers per putative match accepted.
        max_rmse_px: largest inlier RMSE accepted, in DSLR pixels at the working scale.
        scale_range: plausible DSLR pixels per phone pixel ``(min, max)``.
        max_rotation_deg: plausible absolute rotation between the two images.
        turn_tolerance_deg: a rotation within this many degrees of 90, 180 or 270 is a photo turned by a quarter
            turn (EXIF orientation missing or wrong): the pair is aligned and the turn recorded as
            ``orientation_fix`` (0: such pairs fail as ``implausible-rotation``).
        max_anisotropy: largest singular-value ratio of the local Jacobian (shear/squash) accepted.
        min_overlap: smallest crop area, as a fraction of the phone image, accepted.
        min_coverage: smallest area of the inliers' convex hull, as a fraction of the crop, accepted (a
            homography supported by one small cluster of matches extrapolates badly to the rest of the crop).
        margin_px: DSLR pixels kept clear of the DSLR border by the crop.
        interpolation: resampling kernel of the DSLR warp: ``linear``, ``cubic`` or ``lanczos``.
        min_side: images with a side below this many pixels fail with ``too-small``.
        max_pixels: photos of more pixels than this (read from the file's header) are refused before they are
            decoded, so a crafted or broken file cannot take all the memory.
        threads: threads used to process the two images side by side (1: sequential; a build runs each
            worker on one thread whatever this says).
        seed: seed of OpenCV's random generator (FLANN trees, USAC sampling), set in the calling thread before
            matching so the same pair always gives the same result.
    """

    work_mp: float = 0.5
    max_features: int = 8000
    contrast_threshold: float = 0.04
    ratio: float = 0.8
    method: Method = "magsac"
    weighted: bool = True
    threshold_px: float = field(default=1.0, metadata=flag("--threshold"))
    min_inliers: int = 20
    min_inlier_ratio: float = 0.1
    max_rmse_px: float = 1.0
    scale_range: tuple[float, float] = (0.125, 8.0)
    max_rotation_deg: float = field(default=45.0, metadata=flag("--max-rotation"))
    turn_tolerance_deg: float = field(default=10.0, metadata=flag("--turn-tolerance"))
    max_anisotropy: float = 2.0
    min_overlap: float = 0.1
    min_coverage: float = 0.2
    margin_px: float = 1.0
    interpolation: Interpolation = "linear"
    min_side: int = 32
    max_pixels: int = MAX_PIXELS
    threads: int = 2
    seed: int = field(default=0, metadata=flag("--align-seed"))

    def _validate(self) -> None:
        check_range("work_mp", self.work_mp, 0.01, 1000.0)
        check_range("max_features", self.max_features, 0)
        check_range("contrast_threshold", self.contrast_threshold, 0.0, 1.0)
        check_range("ratio", self.ratio, 0.01, 1.0)
        check_choice("method", self.method, get_args(Method))
        check_range("threshold_px", self.threshold_px, 0.01, 100.0)
        check_range("min_inliers", self.min_inliers, 4)
        check_range("min_inlier_ratio", self.min_inlier_ratio, 0.0, 1.0)
        check_range("max_rmse_px", self.max_rmse_px, 0.0)
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] < self.scale_range[1]:
            raise ConfigError(f"scale_range must be (min, max) with 0 < min < max; got {self.scale_range!r}")
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        check_range("max_rotation_deg", self.max_rotation_deg, 0.0, 180.0)
        check_range("turn_tolerance_deg", self.turn_tolerance_deg, 0.0, 44.0)
        check_range("max_anisotropy", self.max_anisotropy, 1.0)
        check_range("min_overlap", self.min_overlap, 0.0, 1.0)
        check_range("min_coverage", self.min_coverage, 0.0, 1.0)
        check_range("margin_px", self.margin_px, 0.0, 100.0)
        check_choice("interpolation", self.interpolation, get_args(Interpolation))
        check_range("min_side", self.min_side, 1)
        check_range("max_pixels", self.max_pixels, 1)
        check_range("threads", self.threads, 1, 64)
        check_range("seed", self.seed, 0, 2**31 - 1)


# ----------------------------------------------------------------------------------------------- patches


@dataclass(frozen=True)
class PatchConfig(ConfigMixin):
    """Options of :func:`dpedkit.dataset.patches.extract_patches`.

    Attributes:
        size: patch side ``P`` in pixels (DPED: 100).
        ncc_min: keep a patch pair when the NCC of the stored patches is at least this (DPED: 0.9).
        radius: translation search radius ``R`` in px (integer shifts in ``[-R, R]`` plus sub-pixel).
            Residual misalignment after the global homography sets it: on 10 hard synthetic pairs (lens
            distortion, a 10-25 px parallax region, a moving object) the true residual was median 0.7 px, p95
            4.4 px, p99 23 px; R = 24 keeps the parallax patches (R = 16 loses them) for ~1-5 % more time.
            On city100 (planar) measured shifts stay under 2.1 px.
        max_angle: rotation search range in degrees (``+-max_angle``).
        rotation: ``"fit"`` (angle refined jointly with the sub-pixel shift; cheap), ``"search"`` (naive:
            re-match the neighbourhood rotated to ``angle_steps`` angles) or ``"none"`` (shift only).
        angle_steps: number of angles tried by ``rotation="search"`` (odd, includes 0).
        interpolation: resampling of the stored phone patch: ``"cubic"`` (sharper) or ``"linear"``.
        max_outside: how far (px) the refined phone window may reach beyond the crop (border pixels are
            replicated there); windows reaching further are not kept.
        search_scale: ``2`` runs the integer search on both images halved (``INTER_AREA``): first over
            ``+-4`` px there, then over ``+-ceil(radius / 2)`` unless that found a peak inside with NCC
            ``>= ncc_min`` (~4x cheaper than at full resolution at ``radius = 24``, same kept set and shifts on
            hard synthetic pairs with 10-25 px parallax); Gauss-Newton starts from the doubled peak. ``1``
            searches ``+-radius`` at full resolution. ``rotation="search"`` always searches at full resolution.
        moving: which side's window the refinement moves and resamples: ``"phone"`` (DPED: the DSLR windows stay
            on the grid) or ``"dslr"`` (the phone windows stay exactly on the grid: a RAW mosaic is never
            resampled; ``raw2rgb`` builds).
    """

    size: int = field(default=100, metadata=flag("--patch"))
    ncc_min: float = field(default=0.9, metadata=flag("--ncc"))
    radius: int = 24
    max_angle: float = 1.0
    rotation: Rotation = "fit"
    angle_steps: int = 5
    interpolation: PatchInterpolation = field(default="cubic", metadata=flag("--patch-interpolation"))
    max_outside: float = 1.0
    search_scale: SearchScale = 2
    moving: Moving = "phone"

    def _validate(self) -> None:
        check_choice("moving", self.moving, get_args(Moving))
        for name in ("size", "radius", "angle_steps"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise ConfigError(f"{name} must be an integer; got {getattr(self, name)!r}")
        check_range("size", self.size, 8, 4096)
        check_range("ncc_min", self.ncc_min, -1.0, 1.0)
        check_range("radius", self.radius, 0, self.size)
        check_range("max_angle", self.max_angle, 0.0, 10.0)
        check_choice("rotation", self.rotation, get_args(Rotation))
        check_range("angle_steps", self.angle_steps, 3, 41)
        if self.angle_steps % 2 == 0:
            raise ConfigError(f"angle_steps must be odd (so 0 degrees is tried); got {self.angle_steps}")
        check_choice("interpolation", self.interpolation, get_args(PatchInterpolation))
        check_range("max_outside", self.max_outside, 0.0, float(self.size))
        check_choice("search_scale", self.search_scale, get_args(SearchScale))


# ----------------------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class PairsConfig(ConfigMixin):
    """How phone photos find their DSLR twins (``dpedkit pairs``; ``build`` without ``--pairs``).

    Attributes:
        by: ``name`` (same file stem), ``time`` (EXIF capture time) or ``order`` (the i-th of each folder,
            sorted by name).
        max_dt: largest capture-time difference in seconds, after the clock offset (``by = "time"``). Photos with
            more than one candidate within it (bursts) are left unpaired as ambiguous, never guessed.
        clock_offset: the DSLR's clock minus the phone's, in seconds (``"37.4"``), or ``"auto"``: estimated from
            the photos as the mode of all phone-to-DSLR time differences, and reported with its spread.
        prefer: which file a stem uses when it has both a RAW and a processed image (JPEG, HEIC, TIFF...):
            ``jpeg`` (the camera's processed image) or ``raw``.
    """

    by: PairBy = "name"
    max_dt: float = 2.0
    clock_offset: str = "0"
    prefer: Prefer = "jpeg"

    def _validate(self) -> None:
        check_choice("by", self.by, get_args(PairBy))
        check_choice("prefer", self.prefer, get_args(Prefer))
        if not self.max_dt > 0:
            raise ConfigError(f"max_dt must be > 0 seconds; got {self.max_dt!r}")
        if self.offset_seconds is None and self.clock_offset != "auto":
            raise ConfigError(f"clock_offset must be 'auto' or a number of seconds; got {self.clock_offset!r}")

    @property
    def offset_seconds(self) -> float | None:
        """``clock_offset`` as seconds, or None for ``"auto"`` (or a value that is not a finite number)."""
        try:
            value = float(self.clock_offset)
        except ValueError:
            return None
        return value if math.isfinite(value) else None


@dataclass(frozen=True)
class BuildConfig(ConfigMixin):
    """Options of :func:`dpedkit.dataset.build.build_dataset` (stored in ``dataset.json`` and every shard).

    Attributes:
        align: alignment options (section ``[align]``; each build worker runs on one core).
        pairs: how the photos of the two folders are paired (section ``[pairs]``; unused with a pairs CSV).
        patch: patch options (section ``[patch]``; ``size`` is the patch side ``P``, ``ncc_min`` the threshold).
        test_images: number of source pairs in the test split; overrides ``test_fraction`` when set.
        test_fraction: fraction of pairs in the test split (rounded, at least one when there are two or more
            pairs and the fraction is positive).
        seed: seed of the split permutation; OpenCV's RNG is also reset to it before each pair, so a pair's
            result never depends on what its worker processed before (matching and USAC sampling are then
            seeded by ``align.seed``).
        pairs_per_shard: source pairs per shard (= per parallel task; 1 gives the finest resume and balance).
        keep_test_full: write the full aligned test images to ``test_full/``.
        on_error: what an unexpected exception while processing a pair does: ``"record"`` (log it and mark
            the pair ``"error"``) or ``"raise"``. Unreadable input is always recorded (``"unreadable"``).
        bit_depth: bits per stored sample: 8 (``uint8`` patches, the DPED format) or 16 (``uint16``: 16-bit TIFF
            and PNG, RAW and 10-bit HEIC keep their precision; 8-bit sources are scaled by 257).
        mode: ``"rgb"`` (DPED: phone photo -> DSLR photo) or ``"raw2rgb"`` (the phone's RAW file: its Bayer mosaic
            stored as recorded, ``uint16``, patches at even sensor coordinates; the DSLR patch is moved onto it:
            raw2rgb sets ``patch.moving = "dslr"``; alignment and NCC use the demosaiced proxy). ``patch.size``
            must be even.
    """

    align: AlignConfig = field(default_factory=AlignConfig)
    patch: PatchConfig = field(default_factory=PatchConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    test_images: int | None = None
    test_fraction: float = 0.1
    seed: int = 0
    pairs_per_shard: int = 1
    keep_test_full: bool = True
    on_error: OnError = "record"
    bit_depth: BitDepth = 8
    mode: BuildMode = "rgb"

    def _validate(self) -> None:
        check_choice("mode", self.mode, get_args(BuildMode))
        if self.mode == "raw2rgb":
            if self.patch.size % 2:
                raise ConfigError(f"mode raw2rgb needs an even --patch size (every patch the same Bayer phase); "
                                  f"got {self.patch.size}")  # fmt: skip
            if self.patch.moving != "dslr":  # the one place that decides which side moves: the RAW never does
                object.__setattr__(self, "patch", replace(self.patch, moving="dslr"))
        for name, cls in (("align", AlignConfig), ("patch", PatchConfig), ("pairs", PairsConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name} must be a {cls.__name__}; got {type(getattr(self, name)).__name__}")
        if self.test_images is not None:
            check_range("test_images", self.test_images, 0)
        check_range("test_fraction", self.test_fraction, 0.0, 1.0)
        check_range("pairs_per_shard", self.pairs_per_shard, 1, 100_000)
        check_choice("on_error", self.on_error, get_args(OnError))
        check_choice("bit_depth", self.bit_depth, get_args(BitDepth))


# ----------------------------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """Options of :func:`dpedkit.train.train`; defaults are the DPED paper's recipe.

    Attributes:
        model: the network and its recipe: a model of :mod:`dpedkit.nn.registry` (help text: each one's
            ``summary`` there); the learned ISPs (``input="raw"``) train on raw2rgb datasets.
        iters: training iterations (20,000).
        batch: patch pairs per batch and per process (50).
        lr: Adam learning rate of both optimisers (betas 0.9/0.999, eps 1e-8); None: the model's recipe's (5e-4, DPED's,
            for ``dped``, ``johnson`` and ``dped-raw``; 2e-4 for ``srcnn``; 1e-3 for ``sid-unet``).
        loss_preset: ``"code"`` (10 content / 1 texture / 0.5 color / 2000 TV, as the official code and
            checkpoints) or ``"paper"`` (1 / 0.4 / 0.1 / 400).
        vgg: VGG-19 weights for the content loss: a ``.mat`` / torchvision ``.pth`` path, or ``"random"``
            (untrained; tests and smoke runs). Required by ``dped`` and ``johnson``.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        amp: bfloat16 autocast for the forward passes (weights and optimiser stay float32).
        eval_every: evaluate, save samples and checkpoints every this many iterations (1,000), and at the end.
        seed: seed of the weight initialisation, the batch order and the discriminator's swaps.
        init: start the generator from this model (dpedkit checkpoint or official TF checkpoint prefix). Its
            architecture is kept: ``model_config`` (``--arch``) may only repeat it.
        phone: phone folder of an official DPED tree (``iphone``...); ignored for dpedkit datasets.
        model_config: architecture overrides for the generator, e.g. ``{"channels": 16, "blocks": 1}`` (on the
            command line ``--arch channels=16 --arch blocks=1``).
        data_mode: ``"memory"`` (uint8 patches in device memory, batches gathered there), ``"loader"``
            (DataLoader with ``workers`` processes) or ``"auto"`` (memory when it fits in half the free memory).
        workers: DataLoader worker processes of the loader path.
        eval_batch: patches per batch of the DPED evaluation protocol (50).
        samples: test patches shown in each sample grid.
        save_every: also write ``latest.pt`` this often, evaluations aside: iterations (``"500"``) or minutes of
            wall time (``"10m"``, the default); ``"0"``: only at evaluations. SIGINT and SIGTERM always save.
        ema: decay of an exponential moving average of the generator's weights (0.999, say), evaluated and
            checkpointed beside the raw weights; 0: none; None: the recipe's (0.98 for ``srcnn``, else none).
        lr_schedule: ``"constant"`` (DPED), ``"step"`` (times ``lr_gamma`` every ``lr_step`` iterations) or
            ``"cosine"`` (to 0 at ``iters``), after ``warmup``.
        warmup: iterations of linear learning-rate warm-up (from ``lr / warmup`` to ``lr``).
        lr_step: iterations between two steps of the ``step`` schedule (0: a third of the iterations after
            warm-up).
        lr_gamma: factor of each step of the ``step`` schedule.
        grad_clip: clip the generator's (and discriminator's) gradient to this global L2 norm; 0: no clipping.
        tensorboard: write TensorBoard event files in the run folder (losses, metrics, learning rate,
            throughput, sample images); ``metrics.jsonl`` is written either way.
        compile: compile the networks with ``torch.compile`` for the training steps (a one-off compilation, then faster
            steps on CUDA; on CPU it needs a C++ compiler). Checkpoints and evaluations use the plain modules.
    """

    model: ModelName = "dped"
    iters: int = 20000
    batch: int = 50
    lr: float | None = None
    loss_preset: LossPreset = "code"
    vgg: str | None = None
    device: str = "auto"
    amp: bool = False
    eval_every: int = 1000
    seed: int = 0
    init: str | None = None
    phone: str | None = None
    model_config: dict[str, Any] | None = field(default=None, metadata=flag("--arch"))
    data_mode: DataMode = "auto"
    workers: int = 2
    eval_batch: int = 50
    samples: int = 6
    save_every: str = "10m"
    ema: float | None = None
    lr_schedule: LrSchedule = "constant"
    warmup: int = 0
    lr_step: int = 0
    lr_gamma: float = 0.5
    grad_clip: float = 0.0
    tensorboard: bool = True
    compile: bool = False

    def _validate(self) -> None:
        check_choice("model", self.model, trainable())
        check_choice("lr_schedule", self.lr_schedule, get_args(LrSchedule))
        self.save_interval()  # raises on a malformed value
        if self.ema is not None:
            check_range("ema", self.ema, 0.0, 0.99999999)
        check_range("lr_gamma", self.lr_gamma, 1e-6, 1.0)
        check_range("grad_clip", self.grad_clip, 0.0)
        check_choice("loss_preset", self.loss_preset, get_args(LossPreset))
        check_choice("data_mode", self.data_mode, get_args(DataMode))
        for name, lo in (("iters", 0), ("batch", 1), ("eval_every", 1), ("seed", 0), ("workers", 0),
                         ("eval_batch", 1), ("samples", 0), ("warmup", 0), ("lr_step", 0)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer; got {value!r}")
            check_range(name, value, lo)
        if self.lr is not None:
            check_range("lr", self.lr, 0.0, 1.0)
            if self.lr <= 0:
                raise ConfigError(f"lr must be positive; got {self.lr!r}")
        if self.model_config is not None and not isinstance(self.model_config, dict):
            raise ConfigError(f"model_config must be a dict of architecture options; got {self.model_config!r}")
        if self.needs_vgg and not self.vgg:
            raise ConfigError(f"the {self.model!r} model trains with a VGG content loss. {VGG_WEIGHTS_HELP} "
                              "(the srcnn model needs no VGG)")  # fmt: skip

    def with_recipe_defaults(self) -> TrainConfig:
        """This config with ``lr`` and ``ema`` taken from the model's recipe where they are None."""
        recipe = model_spec(self.model).recipe
        return replace(self, lr=recipe.lr if self.lr is None else self.lr,
                       ema=recipe.ema if self.ema is None else self.ema)  # fmt: skip

    def save_interval(self) -> tuple[int, float]:
        """``(iterations, seconds)`` between two time-or-step checkpoints of ``save_every`` (0: never)."""
        text = str(self.save_every).strip().lower()
        try:
            if text.endswith("m"):
                minutes = float(text[:-1])
                if minutes >= 0 and math.isfinite(minutes):
                    return 0, minutes * 60.0
            elif int(text) >= 0:
                return int(text), 0.0
        except ValueError:
            pass
        raise ConfigError(f"save_every must be iterations (500) or minutes (10m), or 0; got {self.save_every!r}")

    @property
    def needs_vgg(self) -> bool:
        """True for the models trained with the VGG content loss (see the recipe table)."""
        return model_spec(self.model).recipe.vgg


# -------------------------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class EvalConfig(ConfigMixin):
    """Options of :func:`dpedkit.evaluate.evaluate`.

    Attributes:
        phone: phone folder of an official DPED tree (``iphone``...); ignored for dpedkit datasets.
        split: ``"test"`` (default) or ``"train"``.
        batch: patches per batch (50, the DPED protocol's batch).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        full: score the whole test images of a dpedkit dataset (``test_full/``) instead of its patches, strictly
            and tolerant of the residual misalignment (:mod:`dpedkit.evaluate.full`).
        max_shift: with ``full``: the largest residual shift in pixels the tolerant scores remove.
        max_memory: with ``full``: memory budget in GB of the model on one image (strips beyond it, as enhance).
        lpips: a folder holding the LPIPS v0.1 AlexNet weights (``alexnet-owt-7be5be79.pth`` and ``alex.pth``):
            LPIPS is scored too (:mod:`dpedkit.nn.lpips`; nothing is downloaded).
    """

    phone: str | None = None
    split: Split = "test"
    batch: int = 50
    device: str = "auto"
    full: bool = False
    max_shift: float = 3.0
    max_memory: float = 2.0
    lpips: str | None = None

    def _validate(self) -> None:
        check_choice("split", self.split, SPLITS)
        check_range("max_shift", self.max_shift, 0.0, 64.0)
        check_range("max_memory", self.max_memory, 0.05)
        check_range("batch", self.batch, 1)
        if not isinstance(self.batch, int):
            raise ConfigError(f"batch must be an integer; got {self.batch!r}")


# --------------------------------------------------------------------------------------------- enhance


@dataclass(frozen=True)
class EnhanceConfig(ConfigMixin):
    """Options of :func:`dpedkit.enhance.enhance`.

    Attributes:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        max_memory: memory budget in GB for one image (host memory on CPU, device memory on GPU); decides
            between a whole-image run and strips (same result, computed exactly), and the strip height.
        format: output format, ``"png"`` (lossless) or ``"jpg"``.
        quality: JPEG quality, 1-100.
        strip_rows: force strips of this many rows, for the models that tile ({tiling}: the same result as the
            whole image); the others always run whole and refuse it (unset: whole image if it fits, else strips
            sized from ``max_memory``).
        spill_dir: folder for the temporary spill files of a strip run (unset: the system temp folder).
        max_pixels: photos of more pixels than this (read from the file's header) are refused before they are
            decoded (recorded as failures; the other photos are enhanced).
    """

    device: str = "auto"
    max_memory: float = 2.0
    format: ImageFormat = "png"
    quality: int = 95
    strip_rows: int | None = None
    spill_dir: str | None = None
    max_pixels: int = MAX_PIXELS

    def _validate(self) -> None:
        check_range("max_memory", self.max_memory, 0.1)
        check_choice("format", self.format, get_args(ImageFormat))
        check_range("quality", self.quality, 1, 100)
        if self.strip_rows is not None:
            check_range("strip_rows", self.strip_rows, 1)
        check_range("max_pixels", self.max_pixels, 1)


TILING: tuple[str, ...] = tuple(n for n, spec in MODELS_SPECS.items() if spec.tiles and spec.enhances)
EnhanceConfig.__doc__ = (EnhanceConfig.__doc__ or "").replace("{tiling}", ", ".join(TILING))  # the registry's


# ------------------------------------------------------------------------------- inspect, synth, demo, bench


@dataclass(frozen=True)
class ReportConfig(ConfigMixin):
    """Options of :func:`dpedkit.inspect.report.write_report` (``dpedkit inspect``).

    Attributes:
        pair_views: render a full pair view for this many pairs, worst first (0: none).
        hist_pairs: when the dataset does not store every candidate window, re-refine up to this many pairs
            (a seeded random sample of the ok pairs) for the NCC histogram (0: histogram of kept patches only).
        samples: random kept patch pairs shown side by side.
        lowest: lowest-NCC kept patch pairs shown.
        seed: seed of every random choice in the report.
        image_width: display width of the pictures in pixels.
    """

    pair_views: int = 12
    hist_pairs: int = 12
    samples: int = 24
    lowest: int = 12
    seed: int = 0
    image_width: int = 900

    def _validate(self) -> None:
        for name in ("pair_views", "hist_pairs", "samples", "lowest", "seed"):
            check_range(name, getattr(self, name), 0)
        check_range("image_width", self.image_width, 200, 4000)


@dataclass(frozen=True)
class SynthConfig(ConfigMixin):
    """Options of a synthetic pair (:func:`dpedkit.synth.pairs.make_pair`, ``dpedkit synth``).

    Attributes:
        phone_mp: phone image size in megapixels (4:3), in [0.05, 60].
        dslr_mp: DSLR image size in megapixels (3:2), in [0.05, 80], at least ``phone_mp``.
        hard: add lens distortion, a parallax region and a moving object to the phone side.
        phone_format: file format of the phone photos: ``jpg``, ``heic`` (HEVC, as iPhones write) or ``dng``
            (a Bayer mosaic, as Android phones write).
        dslr_format: file format of the DSLR photos: ``jpg`` or ``dng``.
        rotate: turn the phone photo's pixels clockwise by this many degrees, with no EXIF orientation (as a
            converter that lost it leaves them); the truth maps the turned photo.
        clock_offset: seconds the DSLR's clock is ahead of the phone's, in the capture times written.
        time_jitter: standard deviation in seconds of each pair's DSLR-minus-phone time around the offset.
        bursts: groups of three consecutive pairs shot 0.3 s apart (bursts, ambiguous by capture time).
        light: the scene's light, seen by both cameras: ``normal``; ``shadow`` (most of the frame deep in shadow:
            exposure falling to 1/25 across it); ``tint`` (coloured light: green at 1/5, blue at 1/2 of red),
            where RAW files hold little signal in one channel.
    """

    phone_mp: float = 3.0
    dslr_mp: float = 6.0
    hard: bool = False
    phone_format: PhoneFormat = "jpg"
    dslr_format: DslrFormat = "jpg"
    rotate: Turn = 0
    clock_offset: float = 0.0
    time_jitter: float = 0.0
    bursts: int = 0
    light: Light = "normal"

    def _validate(self) -> None:
        check_range("phone_mp", self.phone_mp, 0.05, 60.0)
        check_range("dslr_mp", self.dslr_mp, 0.05, 80.0)
        if self.phone_mp > self.dslr_mp:
            raise ConfigError(
                f"phone_mp must be <= dslr_mp (the DSLR is the larger camera); got {self.phone_mp} > {self.dslr_mp}"
            )
        if not isinstance(self.hard, bool):
            raise ConfigError(f"hard must be True or False; got {self.hard!r}")
        check_choice("phone_format", self.phone_format, get_args(PhoneFormat))
        check_choice("dslr_format", self.dslr_format, get_args(DslrFormat))
        check_choice("rotate", self.rotate, get_args(Turn))
        check_range("clock_offset", self.clock_offset, -MAX_CLOCK_OFFSET, MAX_CLOCK_OFFSET)
        check_range("time_jitter", self.time_jitter, 0.0, 60.0)
        check_range("bursts", self.bursts, 0, 1000)
        check_choice("light", self.light, get_args(Light))


@dataclass(frozen=True)
class DemoConfig(ConfigMixin):
    """Options of :func:`dpedkit.demo.run_demo` (defaults: under 3 minutes on 2 CPU cores).

    Attributes:
        pairs: synthetic pairs (one of them, at least, goes to the test split).
        phone_mp: phone photo size in megapixels.
        dslr_mp: DSLR photo size in megapixels (>= phone_mp).
        test_images: pairs held out for evaluation (and for the enhanced photo); None: 1 for up to 5 pairs,
            else 2 (see ``held_out``).
        model: network trained (``"srcnn"``: needs no VGG weights, learns the colour mapping in seconds).
        model_config: architecture options of ``model``; None: :data:`dpedkit.demo.TINY_SRCNN` for ``srcnn``, the
            model's defaults otherwise.
        iters: training iterations.
        batch: patch pairs per iteration.
        lr: Adam learning rate.
        jobs: parallel workers of the build.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        seed: seed of every stage.
    """

    pairs: int = 8
    phone_mp: float = 0.5
    dslr_mp: float = 1.0
    test_images: int | None = None
    model: ModelName = "srcnn"
    model_config: dict[str, Any] | None = None
    iters: int = 300
    batch: int = 16
    lr: float = 2e-3
    jobs: int = 2
    device: str = "auto"
    seed: int = 0

    def _validate(self) -> None:
        check_range("pairs", self.pairs, 2, 1000)
        check_range("phone_mp", self.phone_mp, 0.05, 50.0)
        check_range("dslr_mp", self.dslr_mp, self.phone_mp, 80.0)
        if self.test_images is not None:
            check_range("test_images", self.test_images, 1, self.pairs - 1)
        check_choice("model", self.model, trainable())
        check_range("iters", self.iters, 1)
        check_range("batch", self.batch, 1)
        check_range("lr", self.lr, 1e-7, 1.0)
        check_range("jobs", self.jobs, 1)
        check_range("seed", self.seed, 0)

    @property
    def held_out(self) -> int:
        """Pairs in the test split: ``test_images``, or by default 1 for up to 5 pairs and 2 above."""
        return self.test_images if self.test_images is not None else max(1, min(2, self.pairs // 3))


@dataclass(frozen=True)
class BuildBenchConfig(ConfigMixin):
    """Options of :func:`dpedkit.bench.build.bench_build` (``dpedkit bench build``).

    Attributes:
        pairs: synthetic pairs built (with each worker count).
        phone_mp: phone size in megapixels.
        dslr_mp: DSLR size in megapixels.
        reads: random single reads timed per storage layout.
        jpeg_patches: patches written to the DPED-style JPEG folder (the first ones of the dataset).
        repeats: builds per worker count (alternating); the fastest counts.
        seed: seed of the synthetic pairs and of the read order.
        format: the pairs' files: ``jpg`` (JPEG both sides) or ``raw`` (DNG Bayer mosaics both sides, as an Android
            phone and a DSLR shooting RAW write them; the decode-only floor is then LibRaw's own decode).
        mode: the build's ``mode``: ``rgb`` or ``raw2rgb`` (needs ``format = "raw"``: the phone's mosaic is stored).
    """

    pairs: int = 6
    phone_mp: float = 13.0
    dslr_mp: float = 20.0
    reads: int = 2000
    jpeg_patches: int = 2000
    repeats: int = 2
    seed: int = 0
    format: BenchFormat = "jpg"
    mode: BuildMode = "rgb"

    def _validate(self) -> None:
        check_range("pairs", self.pairs, 2, 1000)
        check_choice("format", self.format, get_args(BenchFormat))
        check_choice("mode", self.mode, get_args(BuildMode))
        if self.mode == "raw2rgb" and self.format != "raw":
            raise ConfigError("bench build --mode raw2rgb needs --format raw (it stores the phone's RAW mosaic)")
        check_range("phone_mp", self.phone_mp, 0.05, 60.0)
        check_range("dslr_mp", self.dslr_mp, self.phone_mp, 80.0)
        check_range("reads", self.reads, 1)
        check_range("jpeg_patches", self.jpeg_patches, 1)
        check_range("repeats", self.repeats, 1, 20)


# ------------------------------------------------------------------------------------------ the TOML file

# section -> the config class it holds (a nested config field of a class is read from the section of its name)
SECTIONS: dict[str, type[ConfigMixin]] = {
    "align": AlignConfig,
    "patch": PatchConfig,
    "pairs": PairsConfig,
    "build": BuildConfig,
    "train": TrainConfig,
    "evaluate": EvalConfig,
    "enhance": EnhanceConfig,
    "inspect": ReportConfig,
}


def nested_class(cls: type, f: Field) -> type[ConfigMixin] | None:
    """The config class of field ``f`` of ``cls`` when it holds a nested config (``BuildConfig.align``), else None."""
    tp = _hints(cls)[f.name]
    return tp if isinstance(tp, type) and is_dataclass(tp) and issubclass(tp, ConfigMixin) else None


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def field_type(cls: type, name: str) -> Any:
    """The resolved type annotation of field ``name`` of ``cls`` (``Literal[...]``, ``int | None``...)."""
    return _hints(cls)[name]


def option_flag(cls: type, name: str) -> str:
    """The command-line flag of field ``name`` of ``cls``: ``--field-name`` unless its metadata names another."""
    f = next((f for f in fields(cls) if f.name == name), None)  # type: ignore[arg-type]
    default = "--" + name.replace("_", "-")
    return default if f is None else f.metadata.get("flag", default)


def field_default(f: Field) -> Any:
    """The default value of a dataclass field (calling its factory)."""
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its description in the class docstring's ``Attributes:`` section (one line of text)."""
    lines = (cls.__doc__ or "").splitlines()
    docs: dict[str, list[str]] = {}
    current, indent = None, None
    start = next((i for i, line in enumerate(lines) if line.strip() == "Attributes:"), None)
    for line in lines[start + 1 :] if start is not None else []:
        if not line.strip():
            current = None
            continue
        here = len(line) - len(line.lstrip())
        indent = here if indent is None else indent
        m = re.match(r"(\w+): (.*)", line.strip())
        if here == indent and m:
            current = m.group(1)
            docs[current] = [m.group(2)]
        elif here > indent and current is not None:
            docs[current].append(line.strip())
        elif here < indent:
            break
    out = {k: _plain_text(" ".join(v)) for k, v in docs.items()}
    if "model" in out and is_dataclass(cls) and field_type(cls, "model") == ModelName:  # the registry's own words
        names = "; ".join(f"{n} ({model_spec(n).summary})" for n in trainable())
        out["model"] = f"the network and its recipe: {names}."
    return out


def _plain_text(rst: str) -> str:
    """Docstring markup as plain text: ``x`` -> x, :class:`~a.B` -> B."""
    rst = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], rst)
    return rst.replace("``", "")


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a config file: ``{section: {field: value}}`` for the sections of :data:`SECTIONS`.

    Raises:
        ConfigError: missing or unreadable file, TOML syntax error (with its line), or an unknown section or a
            value outside a section.
    """
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror or exc})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from exc
    bad = sorted(k for k, v in doc.items() if k not in SECTIONS or not isinstance(v, dict))
    if bad:
        raise ConfigError(
            f"config file {path}: unknown section(s) or values outside a section: {bad}; sections are "
            f"{', '.join(f'[{s}]' for s in SECTIONS)}"
        )
    return doc


def resolve(
    section: str,
    file: Mapping[str, Mapping[str, Any]] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> ConfigMixin:
    """The config of ``section``: defaults < ``file`` (from :func:`read_config_file`) < ``flags``.

    Args:
        section: a key of :data:`SECTIONS` (the command's own section).
        file: the config file's sections (None: no file).
        flags: values given on the command line, by section (a nested config's values under its field name).

    Raises:
        ConfigError: an unknown or invalid option (from the file or the flags).
    """
    cls = SECTIONS[section]
    file, flags = file or {}, flags or {}
    data = _layered(cls, file.get(section, {}), flags.get(section, {}))
    for f in fields(cls):  # type: ignore[arg-type]
        sub = nested_class(cls, f)
        if sub is None:
            continue
        if f.name in file.get(section, {}):
            raise ConfigError(f"{f.name} options go in their own [{f.name}] section, not in [{section}]")
        data[f.name] = _layered(sub, file.get(f.name, {}), flags.get(f.name, {}))
    return cls.from_dict(data)


def _layered(cls: type, file: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """The file's values with the flags' on top; a table option (``model_config``) merges key by key."""
    out = dict(file) | dict(flags)
    for name, value in flags.items():
        if isinstance(value, Mapping) and isinstance(file.get(name), Mapping):
            out[name] = dict(file[name]) | dict(value)
    return out


def to_toml(config: ConfigMixin, section: str, *, title: str = "") -> str:
    """``config`` as a config file (its own section and one per nested config), readable by :func:`resolve`.

    Unset (None) options are written as comments, since TOML has no null.
    """
    own, nested = [], []
    for f in fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if nested_class(type(config), f) is not None:
            nested.append(_table(f.name, value.to_dict()))
        else:
            own.append((f.name, json_safe(value, finite=False)))
    head = f"# {title}\n" if title else ""
    return head + "\n".join([_table(section, dict(own)), *nested])


def _table(name: str, values: Mapping[str, Any]) -> str:
    lines = [f"[{name}]"]
    for key, value in values.items():
        lines.append(f"# {key} = (unset)" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to a config file")
