"""Surface materials: parameter containers read by :func:`lumigrad.shade.shade`.

Every parameter is a Python float, a constant tensor (``[]``, ``[1]`` or
``[C]``), or a :class:`TextureParam` sampled at the pixel UVs. Set
``requires_grad`` on the tensors (or the texture image) to optimise them.

Models (``n`` normal, ``l`` to light, ``v`` to camera, ``h = normalize(l + v)``;
the BRDF includes its 1/pi, see :mod:`lumigrad.scene.lights` for the units):

* :class:`LambertMaterial`: ``f = albedo / pi``.
* :class:`BlinnPhongMaterial` (energy-normalised Blinn-Phong):
  ``f = diffuse / pi + specular * (s + 8) / (8 pi) * max(n.h, 0)**s``.
* :class:`GGXMaterial` (Cook-Torrance, as in UE4 / glTF):
  ``f = (1 - metallic) * base_color / pi + D * Vis * F`` with
  ``alpha = roughness**2``,
  ``D = alpha**2 / (pi * ((n.h)**2 * (alpha**2 - 1) + 1)**2)`` (GGX / Trowbridge-Reitz),
  ``Vis = G / (4 n.l n.v)`` the Smith height-correlated visibility
  ``0.5 / (n.l * sqrt((n.v)**2 (1 - alpha**2) + alpha**2) + n.v * sqrt((n.l)**2 (1 - alpha**2) + alpha**2))``,
  ``F = F0 + (1 - F0) * (1 - v.h)**5`` (Schlick) with
  ``F0 = lerp(0.04, base_color, metallic)``.
  The diffuse lobe is not reduced by ``1 - F`` (so the model is not exactly
  energy conserving at grazing angles, matching common real-time practice).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from lumigrad._runtime.checks import check_finite, check_float_tensor

__all__ = ["TextureParam", "LambertMaterial", "BlinnPhongMaterial", "GGXMaterial", "Material", "MaterialParam"]


@dataclass
class TextureParam:
    """A material parameter stored as a texture image, sampled at the pixel UVs.

    Args:
        texture: ``[Ht, Wt, C]`` (shared) or ``[B, Ht, Wt, C]`` (per view)
            texel values; row 0 is the top of the image, and uv ``(0, 0)`` is
            its bottom-left corner (see :func:`lumigrad.ops.texture.texture`).
        filter_mode: passed to the texture op; ``None`` uses the op's default.
        boundary_mode: passed to the texture op; ``None`` uses the op's default.
    """

    texture: Tensor  # [Ht, Wt, C] or [B, Ht, Wt, C]
    filter_mode: str | None = None
    boundary_mode: str | None = None

    def __post_init__(self):
        check_float_tensor(
            "TextureParam", "texture", self.texture, (3, 4), expected="[Ht, Wt, C] or [B, Ht, Wt, C]"
        )
        if min(self.texture.shape) == 0:
            raise ValueError(f"TextureParam(): texture must be non-empty, got {list(self.texture.shape)}")
        check_finite("TextureParam", "texture", self.texture)

    @property
    def channels(self) -> int:
        return self.texture.shape[-1]


MaterialParam = Tensor | TextureParam | float


def _check_param(cls: str, name: str, v, channels: tuple[int, ...]):
    """Validate shape and finiteness of one parameter; ``channels`` lists the allowed last-dim sizes.

    Value ranges are not enforced here (an optimiser may step outside them);
    shading clamps where a value would make the BRDF undefined.
    """
    allowed = " or ".join(map(str, channels))
    if isinstance(v, TextureParam):
        if v.channels not in channels:
            raise ValueError(f"{cls}(): {name} texture must have {allowed} channels, got {list(v.texture.shape)}")
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not math.isfinite(v):
            raise ValueError(f"{cls}(): {name} must be finite, got {v!r}")
        return float(v)
    if not isinstance(v, Tensor):
        raise TypeError(f"{cls}(): {name} must be a float, a torch.Tensor or a TextureParam, got {type(v).__name__}")
    exp = f"[] or [{allowed}]"
    check_float_tensor(cls, name, v, (0, 1), expected=exp)
    if v.ndim == 1 and v.shape[0] not in set(channels) | {1}:
        raise ValueError(f"{cls}(): {name} must be {exp}, got {list(v.shape)}")
    check_finite(cls, name, v)
    return v


@dataclass
class LambertMaterial:
    """Ideal diffuse surface.

    Args:
        albedo: diffuse reflectance in [0, 1]: float, ``[]``/``[1]``/``[3]``
            tensor, or a 1- or 3-channel :class:`TextureParam`.
    """

    albedo: MaterialParam = 0.8

    def __post_init__(self):
        self.albedo = _check_param("LambertMaterial", "albedo", self.albedo, (1, 3))


@dataclass
class BlinnPhongMaterial:
    """Energy-normalised Blinn-Phong (formula in the module docstring).

    Args:
        diffuse: diffuse albedo, 1 or 3 channels.
        specular: specular colour, 1 or 3 channels.
        shininess: exponent ``s > 0``, 1 channel; clamped to >= 1e-3 during shading.
    """

    diffuse: MaterialParam = 0.8
    specular: MaterialParam = 0.2
    shininess: MaterialParam = 32.0

    def __post_init__(self):
        cls = "BlinnPhongMaterial"
        self.diffuse = _check_param(cls, "diffuse", self.diffuse, (1, 3))
        self.specular = _check_param(cls, "specular", self.specular, (1, 3))
        self.shininess = _check_param(cls, "shininess", self.shininess, (1,))


@dataclass
class GGXMaterial:
    """Metallic-roughness Cook-Torrance with GGX (formula in the module docstring).

    Args:
        base_color: 1 or 3 channels in [0, 1].
        roughness: perceptual roughness in [0, 1], 1 channel; clamped to
            [0.02, 1] during shading to keep ``D`` finite.
        metallic: in [0, 1], 1 channel; clamped to [0, 1] during shading.
    """

    base_color: MaterialParam = 0.8
    roughness: MaterialParam = 0.5
    metallic: MaterialParam = 0.0

    def __post_init__(self):
        cls = "GGXMaterial"
        self.base_color = _check_param(cls, "base_color", self.base_color, (1, 3))
        self.roughness = _check_param(cls, "roughness", self.roughness, (1,))
        self.metallic = _check_param(cls, "metallic", self.metallic, (1,))


Material = LambertMaterial | BlinnPhongMaterial | GGXMaterial
