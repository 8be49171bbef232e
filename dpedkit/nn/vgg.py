"""VGG-19 feature extractor up to ``relu5_4`` for the DPED content loss.

Layout follows torchvision's ``vgg19().features`` indices 0..35 (conv/ReLU pairs, 2x2/2 max pools), so its
state dict loads directly; the pools use ``ceil_mode=True`` to match TF "same" pooling
(100 -> 50 -> 25 -> 13 -> 7, giving (N, 512, 7, 7) features for 100x100 patches).

Weights (nothing is downloaded; pass a local file):

- ``imagenet-vgg-verydeep-19.mat`` (MatConvNet, what the original DPED uses): input ``img * 255 - mean``
  with mean RGB (123.68, 116.779, 103.939), no std scaling.  Kernels are stored (W, H, in, out); PyTorch
  takes them transposed (3, 2, 1, 0).
- a torchvision ``vgg19`` state dict (``vgg19-dcbb9e9d.pth``): a different training run, input
  ``(img - mean) / std`` with the ImageNet statistics in [0, 1].
- ``"random"``: seeded random weights with MatConvNet preprocessing, for tests and smoke runs only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from dpedkit.config import VGG_WEIGHTS_HELP as WEIGHTS_HELP
from dpedkit.config import VGG_WEIGHTS_SOURCE as WEIGHTS_SOURCE
from dpedkit.errors import CheckpointError, check_choice

log = logging.getLogger(__name__)

MATCONVNET_MEAN = (123.68, 116.779, 103.939)  # RGB, 0..255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Preprocess = Literal["matconvnet", "torchvision"]
PREPROCESS: tuple[str, ...] = get_args(Preprocess)

# conv layer names in order; pools after conv1_2, conv2_2, conv3_4, conv4_4
CONV_NAMES = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for i in range(1, n + 1)]
_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
_POOL_AFTER = {"conv1_2", "conv2_2", "conv3_4", "conv4_4"}


class VGG19Features(nn.Module):
    """VGG-19 conv layers up to ``relu5_4``; maps RGB (N, 3, H, W) in [0, 1] to (N, 512, ceil(H/16), ceil(W/16)).

    Args:
        preprocess: ``"matconvnet"`` (x*255 - mean; default, the original DPED) or ``"torchvision"``.
    """

    def __init__(self, preprocess: Preprocess = "matconvnet") -> None:
        super().__init__()
        check_choice("preprocess", preprocess, PREPROCESS)
        self.preprocess = preprocess
        layers: list[nn.Module] = []
        c_in = 3
        for name in CONV_NAMES:
            c_out = _CHANNELS[int(name[4])]
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
            if name in _POOL_AFTER:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            c_in = c_out
        self.features = nn.Sequential(*layers)  # indices as torchvision's vgg19().features[:36]
        if preprocess == "matconvnet":
            mean, std = torch.tensor(MATCONVNET_MEAN) / 255.0, torch.full((3,), 1.0 / 255.0)
        else:
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def conv_layers(self) -> list[nn.Conv2d]:
        """The 16 conv layers in order (conv1_1 ... conv5_4)."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu5_4`` features of RGB ``x`` (N, 3, H, W) float in [0, 1]."""
        return self.features((x - self.mean) / self.std)


def load_vgg(path: str | Path | None, device: str | torch.device = "cpu", *, seed: int = 0) -> VGG19Features:
    """A frozen VGG-19 feature extractor (eval mode, no gradients for its weights).

    Args:
        path: ``imagenet-vgg-verydeep-19.mat``, a torchvision ``vgg19`` state dict (``.pth``), or ``"random"``.
        device: where to put it.
        seed: seed of the random weights (``"random"`` only).

    Raises:
        CheckpointError: ``path`` is None (with where to get weights), missing, or not VGG-19 weights.
    """
    check_weights(path)
    if str(path) == "random":
        vgg = VGG19Features("matconvnet")
        gen = torch.Generator().manual_seed(seed)
        for conv in vgg.conv_layers():
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            nn.init.zeros_(conv.bias)
        log.warning("VGG-19 with random weights: the content loss is meaningless except for tests")
    else:
        p = Path(path)
        if p.suffix.lower() == ".mat":
            vgg = VGG19Features("matconvnet")
            _load_matconvnet(vgg, p)
        else:
            vgg = VGG19Features("torchvision")
            _load_torchvision(vgg, p)
    vgg.requires_grad_(False)
    return vgg.to(device).eval()


def check_weights(path: str | Path | None) -> None:
    """Refuse a ``path`` that :func:`load_vgg` cannot load for sure: none given, or no file there (nothing is read).

    Cheap enough to run before anything else: :func:`dpedkit.train.train` calls it before it loads data or builds
    networks. ``"random"`` passes.

    Raises:
        CheckpointError: ``path`` is None or empty (no weights were given), or names no file (a folder, or nothing);
            each says where the weights come from.
    """
    if path is None or str(path) == "":
        raise CheckpointError(WEIGHTS_HELP)
    if str(path) == "random" or Path(path).is_file():
        return
    p = Path(path)
    where = "" if p.is_absolute() else f" (looked for {p.resolve()})"
    what = "a folder, not a VGG-19 weights file" if p.is_dir() else "no such file"
    raise CheckpointError(f"{p}: {what}{where}; the content loss needs VGG-19 weights. {WEIGHTS_SOURCE}")


def _load_matconvnet(vgg: VGG19Features, path: Path) -> None:
    import numpy as np
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        layers = {str(layer.name): layer for layer in np.atleast_1d(mat["layers"])}
    except Exception as exc:  # loadmat raises many types on foreign files
        raise CheckpointError(f"{path}: not a MatConvNet model file ({exc}). {WEIGHTS_SOURCE}") from exc
    for name, conv in zip(CONV_NAMES, vgg.conv_layers(), strict=True):
        if name not in layers:
            raise CheckpointError(f"{path}: no layer {name!r}; not imagenet-vgg-verydeep-19.mat")
        layer = layers[name]
        # MatConvNet beta files: weights = {kernel, bias}; older files: separate filters / biases fields
        kernel, bias = layer.weights if hasattr(layer, "weights") else (layer.filters, layer.biases)
        weight = torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 1, 0)))
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise CheckpointError(
                f"{path}: layer {name} has shape {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}; not VGG-19"
            )
        conv.weight.data.copy_(weight)
        conv.bias.data.copy_(torch.from_numpy(np.asarray(bias, np.float32).reshape(-1)))


def _load_torchvision(vgg: VGG19Features, path: Path) -> None:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on foreign files
        raise CheckpointError(f"{path}: not a torchvision VGG-19 state dict ({exc}). {WEIGHTS_SOURCE}") from exc
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: not a state dict. {WEIGHTS_SOURCE}")
    own = vgg.features.state_dict()
    picked = {}
    for key in own:
        for candidate in (f"features.{key}", key):
            if candidate in sd:
                picked[key] = sd[candidate]
                break
    missing = [k for k in own if k not in picked]
    wrong = [k for k in picked if tuple(picked[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise CheckpointError(
            f"{path}: not VGG-19 weights (missing {missing[:3]}, wrong shape {wrong[:3]}). {WEIGHTS_SOURCE}"
        )
    vgg.features.load_state_dict(picked)
