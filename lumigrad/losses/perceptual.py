"""LPIPS-style perceptual loss on VGG16 features (Zhang et al. 2018), without torchvision at runtime.

The VGG16 ``features`` stack is defined here layer for layer (same indices as
``torchvision.models.vgg16().features``, so its state dict loads directly).
Weights come from the local torch hub cache, from a file, or from a seeded
random init; nothing is ever downloaded.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from lumigrad._runtime.checks import _desc, check_float_tensor

__all__ = ["PerceptualLoss", "vgg16_cache_path"]

_log = logging.getLogger(__name__)

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
# Channels per conv, "M" = 2x2 max pool; stops at relu5_3 (torchvision index 29).
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_CHANNELS = (64, 128, 256, 512, 512)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_MIN_SIZE = 16  # four 2x pools before relu5_3


def vgg16_cache_path() -> Path:
    """Where ``weights="torchvision"`` expects the ImageNet VGG16 file (torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_URL.rsplit("/", 1)[-1]


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for c in _VGG16_CFG:
        if c == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=False)]
            c_in = c
    return nn.Sequential(*layers)


def _random_init(net: nn.Sequential, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                m.bias.zero_()


def _features_state(state: dict) -> dict:
    """Keep the ``features.N.*`` (or bare ``N.*``) entries of a VGG16 state dict, keyed ``N.*``."""
    out = {}
    for k, v in state.items():
        k2 = k[len("features."):] if k.startswith("features.") else k
        m = re.fullmatch(r"(\d+)\.(weight|bias)", k2)
        if m and int(m.group(1)) <= _TAPS[-1]:
            out[k2] = v
    return out


def _load_file(path: Path) -> dict:
    if not path.is_file():
        raise RuntimeError(f"PerceptualLoss(): weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise RuntimeError(f"PerceptualLoss(): {path} must hold a state dict, got {type(state).__name__}")
    return state


def _torchvision_state() -> dict:
    path = vgg16_cache_path()
    if not path.is_file():
        raise RuntimeError(
            f"PerceptualLoss(): weights='torchvision' needs the ImageNet VGG16 weights at {path}, and lumigrad "
            f"never downloads. Fetch {VGG16_URL} to that path (or pass weights=<path to the .pth file>, "
            "or weights=None for random features)."
        )
    try:
        import torchvision
    except ImportError:
        raise RuntimeError(
            f"PerceptualLoss(): weights='torchvision' needs torchvision (pip install 'lumigrad[perceptual]'); "
            f"or pass weights={str(path)!r} to load the cached file without it."
        ) from None
    model = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
    return model.features.state_dict()


def _linear_state(path: Path) -> list[Tensor]:
    """LPIPS ``lin{k}`` weights (``[1, C_k, 1, 1]`` or ``[C_k]``) from a file, as ``[C_k]`` vectors."""
    state = _load_file(path)
    out = []
    for k, c in enumerate(_CHANNELS):
        keys = [key for key in state if key.startswith(f"lin{k}.") and key.endswith("weight")]
        if len(keys) != 1 or state[keys[0]].numel() != c:
            raise RuntimeError(f"PerceptualLoss(): {path} must hold one lin{k}.*weight with {c} values, found {keys}")
        out.append(state[keys[0]].reshape(c).float())
    return out


class PerceptualLoss(nn.Module):
    """LPIPS-style distance between images from unit-normalised VGG16 features.

    For each tap ``k`` (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), features
    ``f_k`` are normalised to unit length over channels at every pixel; the
    distance is ``sum_k mean_hw sum_c w_kc (f_k(x) - f_k(y))**2`` with
    ``w_kc = 1`` unless learned linear weights are given.

    Args:
        weights: ``"torchvision"`` for the ImageNet VGG16 weights from the local
            torch hub cache (needs torchvision and the file at
            :func:`vgg16_cache_path`; RuntimeError otherwise, never a
            download); a ``str``/``Path`` to a VGG16 state dict (full model or
            ``features`` only, torchvision key names; no torchvision needed);
            or ``None`` for a seeded random init (tests).
        linear_weights: optional path to LPIPS linear-layer weights
            (``lin0`` ... ``lin4``, e.g. LPIPS's ``vgg.pth``).
        srgb: encode linear inputs to sRGB before the network, which was
            trained on sRGB images.
        seed: seed of the random init when ``weights=None``.

    The network is frozen (``requires_grad=False``); call ``.to(dtype)`` to
    match the inputs' dtype.

    Example:
        >>> loss_fn = PerceptualLoss(weights=None)
        >>> x = torch.rand(1, 32, 32, 3)
        >>> float(loss_fn(x, x))
        0.0
    """

    def __init__(
        self,
        weights: str | Path | None = "torchvision",
        *,
        linear_weights: str | Path | None = None,
        srgb: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.features = _vgg16_features()
        if weights is None:
            _random_init(self.features, seed)
        elif isinstance(weights, str) and weights == "torchvision":
            self.features.load_state_dict(_features_state(_torchvision_state()))
            _log.debug("PerceptualLoss: loaded torchvision VGG16 weights from %s", vgg16_cache_path())
        elif isinstance(weights, (str, Path)):
            self.features.load_state_dict(_features_state(_load_file(Path(weights))))
            _log.debug("PerceptualLoss: loaded VGG16 weights from %s", weights)
        else:
            raise TypeError(f"PerceptualLoss(): weights must be 'torchvision', a path or None, got {type(weights).__name__}")
        self.features.requires_grad_(False)
        self.srgb = bool(srgb)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        lin = _linear_state(Path(linear_weights)) if linear_weights is not None else None
        self.use_linear = lin is not None
        for k, c in enumerate(_CHANNELS):
            self.register_buffer(f"lin{k}", lin[k] if lin is not None else torch.ones(c))
        self.eval()

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out

    def _prepare(self, img: Tensor) -> Tensor:
        x = img.clamp(0.0, 1.0)
        if self.srgb:
            # The pow branch is evaluated at >= the knee so its derivative stays finite.
            lin_part = 12.92 * x
            pow_part = 1.055 * x.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055
            x = torch.where(x <= 0.0031308, lin_part, pow_part)
        x = x.permute(0, 3, 1, 2)
        return (x - self.mean) / self.std

    def forward(
        self,
        pred: Tensor,  # [B, H, W, 3]
        target: Tensor,  # [B, H, W, 3]
    ) -> Tensor:
        """Perceptual distance averaged over the batch.

        Args:
            pred, target: ``[B, H, W, 3]`` linear images in [0, 1] (clamped),
                ``H, W >= 16``, dtype and device of the module.

        Returns:
            Scalar >= 0, zero for identical images; differentiable w.r.t.
            ``pred`` and ``target``.
        """
        fn = "PerceptualLoss"
        exp = "[B, H, W, 3]"
        check_float_tensor(fn, "pred", pred, (4,), 3, expected=exp)
        check_float_tensor(fn, "target", target, (4,), 3, expected=exp)
        if target.shape != pred.shape:
            raise ValueError(f"{fn}(): target must match pred {_desc(pred)}, got {_desc(target)}")
        if min(pred.shape[1:3]) < _MIN_SIZE:
            raise ValueError(f"{fn}(): pred must be [B, H, W, 3] with H, W >= {_MIN_SIZE}, got {_desc(pred)}")
        w = self.features[0].weight
        for name, t in (("pred", pred), ("target", target)):
            if t.dtype != w.dtype or t.device != w.device:
                raise ValueError(
                    f"{fn}(): {name} must be {w.dtype} on {w.device} like the network, got {_desc(t)} on {t.device} "
                    "(move the module with .to(dtype=..., device=...))"
                )
        b = pred.shape[0]
        feats = self._taps(torch.cat([self._prepare(pred), self._prepare(target)], dim=0))
        total = pred.new_zeros(b)
        for k, f in enumerate(feats):
            # eps inside the rsqrt keeps the gradient finite where all channels are 0 (dead ReLUs).
            f = f * torch.rsqrt((f * f).sum(1, keepdim=True) + 1e-10)
            diff = (f[:b] - f[b:]) ** 2
            weight = getattr(self, f"lin{k}").view(1, -1, 1, 1)
            total = total + (diff * weight).sum(1).flatten(1).mean(1)
        return total.mean()
