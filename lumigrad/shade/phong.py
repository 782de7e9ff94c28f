"""The Phong model as PyTorch3D defines it (``pytorch3d.renderer.lighting``).

For users porting PyTorch3D code. Per light with irradiance colour ``E``
(``color * intensity``) and direction ``l``:

``diffuse * max(n.l, 0) * E + specular * max(v.r, 0)**shininess * [n.l > 0] * E``,

with ``r = 2 (n.l) n - l`` the mirrored light direction and ``v`` the unit
direction to the camera. The specular lobe has **no** ``n.l`` factor and no
normalisation, unlike the energy-normalised :class:`BlinnPhongMaterial`.
Ambient lights add ``ambient * color``. PyTorch3D's ``(ambient + diffuse) *
texels + specular`` is obtained with ``diffuse`` and ``ambient`` set to the
same :class:`TextureParam`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lumigrad.scene.materials import MaterialParam, _check_param
from lumigrad.shade.brdf import _check_all, _dot, _normalize

__all__ = ["PhongMaterial", "phong_specular"]


@dataclass
class PhongMaterial:
    """PyTorch3D-compatible Phong material (formula in the module docstring).

    Args:
        diffuse: 1 or 3 channels (PyTorch3D ``diffuse_color``; default 1).
        specular: 1 or 3 channels (``specular_color``; default 1).
        shininess: exponent ``s`` (``shininess``; default 64), 1 channel.
        ambient: 1 or 3 channels (``ambient_color``; default 1), multiplies ambient lights.
    """

    diffuse: MaterialParam = 1.0
    specular: MaterialParam = 1.0
    shininess: MaterialParam = 64.0
    ambient: MaterialParam = 1.0

    def __post_init__(self):
        cls = "PhongMaterial"
        self.diffuse = _check_param(cls, "diffuse", self.diffuse, (1, 3))
        self.specular = _check_param(cls, "specular", self.specular, (1, 3))
        self.shininess = _check_param(cls, "shininess", self.shininess, (1,))
        self.ambient = _check_param(cls, "ambient", self.ambient, (1, 3))


def _phong_specular(n: Tensor, l: Tensor, v: Tensor, shininess: Tensor) -> Tensor:
    n, l, v = _normalize(n), _normalize(l), _normalize(v)
    cos = _dot(n, l)
    r = 2.0 * cos * n - l
    alpha = torch.relu(_dot(v, r)) * (cos > 0).to(n.dtype)
    # pow(0, s) has an infinite derivative in s at 0 only when s < 1; clamp the base away from 0 for the gradient.
    return torch.where(alpha > 0, alpha.clamp_min(1e-12) ** shininess, torch.zeros_like(alpha))


def phong_specular(
    normals: Tensor,  # [..., 3]
    to_light: Tensor,  # [..., 3]
    view_dirs: Tensor,  # [..., 3]
    shininess: Tensor | float,  # [..., 1]
) -> Tensor:
    """PyTorch3D's specular lobe ``max(0, v.r)**s * [n.l > 0]`` (no ``n.l`` factor).

    Args:
        normals: ``[..., 3]`` surface normals (normalised here).
        to_light: ``[..., 3]`` directions to the light.
        view_dirs: ``[..., 3]`` directions to the camera.
        shininess: float or tensor broadcastable to ``[..., 1]``.

    Returns:
        ``[..., 1]``. Differentiable w.r.t. every input.

    Example:
        >>> n = torch.tensor([0.0, 0.0, 1.0])
        >>> phong_specular(n, n, n, 64.0)  # mirror direction: 1
        tensor([1.])
    """
    n, l, v, s = _check_all("phong_specular", normals, to_light, view_dirs, shininess=shininess)
    return _phong_specular(n, l, v, s)
