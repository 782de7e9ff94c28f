"""Light evaluation at surface points, and spherical-harmonics irradiance.

Units follow :mod:`lumigrad.scene.lights`: ``eval_light`` returns the
irradiance a surface facing the light would receive (call it ``E_perp``), so
reflected radiance is ``brdf * E_perp * max(n.l, 0)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad._runtime.checks import _desc
from lumigrad.scene.lights import (
    AmbientLight,
    DirectionalLight,
    PointLight,
    SHEnvironmentLight,
    _cosine_lobe,
    _sh_basis,
)
from lumigrad.shade.brdf import _normalize

__all__ = ["eval_light", "sh_basis", "sh_irradiance"]

_MIN_DIST_SQ = 1e-12


def _vec3(fn: str, name: str, t) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor [..., 3], got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64) or t.ndim < 1 or t.shape[-1] != 3:
        raise ValueError(f"{fn}(): {name} must be float32/float64 [..., 3], got {_desc(t)}")
    return t


def _match(fn: str, name: str, t, like: Tensor, ref: str = "points") -> Tensor:
    """A float (made a tensor like ``like``) or a tensor already on ``like``'s dtype and device."""
    if not isinstance(t, Tensor):
        return torch.tensor(float(t), dtype=like.dtype, device=like.device)
    if t.dtype != like.dtype or t.device != like.device:
        raise ValueError(
            f"{fn}(): {name} must be {str(like.dtype).replace('torch.', '')} on {like.device} like {ref}, "
            f"got {_desc(t)} on {t.device}"
        )
    return t


def _eval_light(fn: str, light, points: Tensor, name: str = "light") -> tuple[Tensor, Tensor]:
    """Unchecked-shape core of :func:`eval_light` (dtype/device still checked)."""
    ones = torch.ones_like(points[..., :1])
    if isinstance(light, DirectionalLight):
        to_light = _match(fn, f"{name}.to_light", light.to_light, points)
        color = _match(fn, f"{name}.color", light.color, points)
        intensity = _match(fn, f"{name}.intensity", light.intensity, points).reshape(())
        dirs = _normalize(to_light) * ones
        return dirs, (color * intensity) * ones
    if isinstance(light, PointLight):
        pos = _match(fn, f"{name}.position", light.position, points)
        color = _match(fn, f"{name}.color", light.color, points)
        intensity = _match(fn, f"{name}.intensity", light.intensity, points).reshape(())
        d = pos - points
        dist_sq = (d * d).sum(-1, keepdim=True)
        dirs = d * torch.rsqrt(dist_sq + _MIN_DIST_SQ)
        if light.falloff == "inverse_square":
            atten = 1.0 / dist_sq.clamp_min(_MIN_DIST_SQ)
        elif light.falloff == "none":
            atten = ones
        else:
            c, lin, q = light.falloff
            denom = c + lin * torch.sqrt(dist_sq + _MIN_DIST_SQ) + q * dist_sq
            atten = 1.0 / denom.clamp_min(_MIN_DIST_SQ)
        return dirs, color * intensity * atten
    if isinstance(light, (AmbientLight, SHEnvironmentLight)):
        raise TypeError(
            f"{fn}(): {name} must be a DirectionalLight or PointLight, got {type(light).__name__} "
            "(ambient and SH lights have no single direction; shade() handles them)"
        )
    raise TypeError(f"{fn}(): {name} must be a DirectionalLight or PointLight, got {type(light).__name__}")


def eval_light(
    light: DirectionalLight | PointLight,
    points: Tensor,  # [..., 3] world
) -> tuple[Tensor, Tensor]:
    """Direction towards a light and its irradiance at normal incidence.

    Args:
        light: a :class:`DirectionalLight` or :class:`PointLight` whose
            tensors share ``points``' dtype and device.
        points: ``[..., 3]`` world-space surface points (e.g. ``[B, H, W, 3]``).

    Returns:
        ``(to_light_dirs [..., 3] unit, radiance [..., 3])`` where
        ``radiance = color * intensity * falloff(distance)`` is the irradiance
        on a surface facing the light. Differentiable w.r.t. every light
        tensor and ``points``.

    Example:
        >>> pts = torch.zeros(1, 2, 2, 3)
        >>> light = PointLight(torch.tensor([0.0, 0.0, 2.0]), intensity=4.0)
        >>> dirs, rad = eval_light(light, pts)
        >>> rad[0, 0, 0]
        tensor([1., 1., 1.])
    """
    _vec3("eval_light", "points", points)
    return _eval_light("eval_light", light, points)


def sh_basis(
    dirs: Tensor,  # [..., 3]
    order: int,
) -> Tensor:
    """Real spherical harmonics up to band ``order`` at ``dirs``.

    The basis is orthonormal over the sphere, has no Condon-Shortley phase and
    is indexed ``l * l + l + m``; polar axis world +z (details in
    :mod:`lumigrad.scene.lights`).

    Args:
        dirs: ``[..., 3]`` directions (normalised here).
        order: highest band ``l >= 0``.

    Returns:
        ``[..., (order + 1)**2]``; differentiable w.r.t. ``dirs``.
    """
    _vec3("sh_basis", "dirs", dirs)
    if not isinstance(order, int) or isinstance(order, bool) or order < 0:
        raise ValueError(f"sh_basis(): order must be an int >= 0, got {order!r}")
    return _sh_basis(_normalize(dirs), order)


def _sh_irradiance(coeffs: Tensor, n_unit: Tensor) -> Tensor:
    order = math.isqrt(coeffs.shape[0]) - 1
    a = [a_l for l, a_l in enumerate(_cosine_lobe(order)) for _ in range(2 * l + 1)]
    scaled = coeffs * torch.tensor(a, dtype=coeffs.dtype, device=coeffs.device)[:, None]
    return _sh_basis(n_unit, order) @ scaled


def sh_irradiance(
    coeffs: Tensor,  # [(order + 1)**2, C]
    normals: Tensor,  # [..., 3]
) -> Tensor:
    """Irradiance ``E(n) = sum_lm A_l L_lm Y_lm(n)`` from SH radiance (Ramamoorthi and Hanrahan 2001).

    ``A_0 = pi``, ``A_1 = 2 pi / 3``, ``A_2 = pi / 4``, odd ``A_l`` (l > 1) = 0,
    even ``A_l = 2 pi (-1)**(l/2 - 1) / ((l + 2)(l - 1)) * l! / (2**l ((l/2)!)**2)``.
    A uniform radiance of 1 gives ``E = pi``; a Lambertian surface then
    reflects ``albedo / pi * E = albedo``.

    Args:
        coeffs: ``[(order + 1)**2, C]`` radiance coefficients (any order >= 0).
        normals: ``[..., 3]`` (normalised here).

    Returns:
        ``[..., C]`` irradiance; differentiable w.r.t. ``coeffs`` and ``normals``.
    """
    fn = "sh_irradiance"
    if not isinstance(coeffs, Tensor):
        raise TypeError(f"{fn}(): coeffs must be a torch.Tensor [(order + 1)**2, C], got {type(coeffs).__name__}")
    k = coeffs.shape[0] if coeffs.ndim == 2 else 0
    if coeffs.dtype not in (torch.float32, torch.float64) or coeffs.ndim != 2 or math.isqrt(k) ** 2 != k or k == 0:
        raise ValueError(f"{fn}(): coeffs must be float32/float64 [(order + 1)**2, C], got {_desc(coeffs)}")
    _vec3(fn, "normals", normals)
    _match(fn, "coeffs", coeffs, normals, ref="normals")
    return _sh_irradiance(coeffs, _normalize(normals))
