"""BRDFs on raw tensors (formulas in :mod:`lumigrad.scene.materials`).

All BRDFs share one signature, ``brdf(normals, to_light, view_dirs, *params)``,
with direction tensors ``[..., 3]`` (normalised here with an eps guard) and
parameters broadcastable to ``[..., C]``. They return the BRDF value
``f(l, v)`` (1/sr, including its 1/pi), *without* the ``n.l`` factor.

Cosines are clamped to >= 1e-4 and normalisations carry an eps, so values and
gradients stay finite at grazing angles and for zero vectors (background).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad._runtime.checks import _desc
from lumigrad.geometry.normals import dot

__all__ = ["lambert_brdf", "blinn_phong_brdf", "ggx_brdf", "ggx_ndf"]

_EPS_SQ = 1e-12  # added to squared lengths before rsqrt: zero vectors map to zero, grads stay finite
_MIN_COS = 1e-4  # floor for n.l and n.v inside the specular terms
_MIN_ROUGHNESS = 0.02


def _normalize(x: Tensor) -> Tensor:
    """``x / |x|`` along the last dim, finite (and zero) for zero vectors."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + _EPS_SQ)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return dot(a, b, keepdim=True)


def _check_dir(fn: str, name: str, t) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor [..., 3], got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64) or t.ndim < 1 or t.shape[-1] != 3:
        raise ValueError(f"{fn}(): {name} must be float32/float64 [..., 3], got {_desc(t)}")
    return t


def _check_param(fn: str, name: str, t, like: Tensor) -> Tensor:
    """A float (converted to ``like``'s dtype) or a float tensor on ``like``'s dtype and device."""
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return torch.tensor([float(t)], dtype=like.dtype, device=like.device)
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}(): {name} must be a float or a torch.Tensor [..., C], got {type(t).__name__}")
    if t.dtype != like.dtype or t.device != like.device:
        raise ValueError(f"{fn}(): {name} must be {like.dtype} on {like.device} like normals, got {_desc(t)} on {t.device}")
    return t if t.ndim else t.reshape(1)


def _check_all(fn: str, normals, to_light, view_dirs, **params) -> tuple[Tensor, ...]:
    n = _check_dir(fn, "normals", normals)
    dirs = [n, _check_dir(fn, "to_light", to_light), _check_dir(fn, "view_dirs", view_dirs)]
    for name, t in (("to_light", dirs[1]), ("view_dirs", dirs[2])):
        if t.dtype != n.dtype or t.device != n.device:
            raise ValueError(f"{fn}(): {name} must be {n.dtype} on {n.device} like normals, got {_desc(t)} on {t.device}")
    try:
        torch.broadcast_shapes(*(t.shape for t in dirs))
    except RuntimeError:
        shapes = ", ".join(str(list(t.shape)) for t in dirs)
        raise ValueError(f"{fn}(): normals, to_light and view_dirs must broadcast, got {shapes}") from None
    return (*dirs, *(_check_param(fn, k, v, n) for k, v in params.items()))


# --- unchecked cores (directions already unit), used by shade() --------------------------------


def _lambert(n: Tensor, albedo: Tensor) -> Tensor:
    return (albedo / math.pi) * torch.ones_like(n[..., :1])


def _blinn_phong(n, l, v, diffuse, specular, shininess) -> Tensor:
    h = _normalize(l + v)
    nh = _dot(n, h)
    s = shininess.clamp_min(1e-3)
    # pow at 0 has an infinite/NaN derivative in s; evaluate at a floor and mask.
    lobe = torch.where(nh > 0, nh.clamp_min(1e-12) ** s, torch.zeros_like(nh))
    return diffuse / math.pi + specular * ((s + 8.0) / (8.0 * math.pi)) * lobe


def _ggx_d(nh: Tensor, alpha: Tensor) -> Tensor:
    a2 = alpha * alpha
    t = nh * nh * (a2 - 1.0) + 1.0
    return a2 / (math.pi * t * t)


def _ggx(n, l, v, base_color, roughness, metallic) -> Tensor:
    h = _normalize(l + v)
    nl = _dot(n, l).clamp_min(_MIN_COS)
    nv = _dot(n, v).clamp_min(_MIN_COS)
    nh = _dot(n, h).clamp(0.0, 1.0)
    vh = _dot(v, h).clamp(0.0, 1.0)
    r = roughness.clamp(_MIN_ROUGHNESS, 1.0)
    alpha = r * r
    a2 = alpha * alpha
    vis = 0.5 / (nl * torch.sqrt(nv * nv * (1.0 - a2) + a2) + nv * torch.sqrt(nl * nl * (1.0 - a2) + a2))
    m = metallic.clamp(0.0, 1.0)
    f0 = 0.04 * (1.0 - m) + base_color * m
    fresnel = f0 + (1.0 - f0) * (1.0 - vh) ** 5
    return (1.0 - m) * base_color / math.pi + _ggx_d(nh, alpha) * vis * fresnel


# --- public, validated ----------------------------------------------------------------------------


def lambert_brdf(
    normals: Tensor,  # [..., 3]
    to_light: Tensor,  # [..., 3]
    view_dirs: Tensor,  # [..., 3]
    albedo: Tensor | float,  # [..., C]
) -> Tensor:
    """Lambertian BRDF ``albedo / pi`` (the directions only set the output shape).

    Args:
        normals: ``[..., 3]`` surface normals.
        to_light: ``[..., 3]`` surface-to-light directions.
        view_dirs: ``[..., 3]`` surface-to-camera directions.
        albedo: ``[..., C]`` (or ``[C]``, scalar) diffuse reflectance.

    Returns:
        ``[..., C]`` BRDF value; differentiable w.r.t. ``albedo``.

    Example:
        >>> n = torch.tensor([[0.0, 0.0, 1.0]])
        >>> lambert_brdf(n, n, n, torch.tensor([1.0, 0.5, 0.0])) * math.pi
        tensor([[1.0000, 0.5000, 0.0000]])
    """
    n, l, v, albedo = _check_all("lambert_brdf", normals, to_light, view_dirs, albedo=albedo)
    return _lambert(n.expand(torch.broadcast_shapes(n.shape, l.shape, v.shape)), albedo)


def blinn_phong_brdf(
    normals: Tensor,  # [..., 3]
    to_light: Tensor,  # [..., 3]
    view_dirs: Tensor,  # [..., 3]
    diffuse: Tensor | float,  # [..., C]
    specular: Tensor | float,  # [..., C]
    shininess: Tensor | float,  # [..., 1]
) -> Tensor:
    """Energy-normalised Blinn-Phong BRDF.

    ``f = diffuse / pi + specular * (s + 8) / (8 pi) * max(n.h, 0)**s``.

    Args:
        normals, to_light, view_dirs: ``[..., 3]`` (normalised here).
        diffuse: ``[..., C]`` diffuse albedo.
        specular: ``[..., C]`` specular colour.
        shininess: ``[..., 1]`` exponent, clamped to >= 1e-3.

    Returns:
        ``[..., C]``; differentiable w.r.t. all inputs.
    """
    n, l, v, kd, ks, s = _check_all(
        "blinn_phong_brdf", normals, to_light, view_dirs, diffuse=diffuse, specular=specular, shininess=shininess
    )
    return _blinn_phong(_normalize(n), _normalize(l), _normalize(v), kd, ks, s)


def ggx_brdf(
    normals: Tensor,  # [..., 3]
    to_light: Tensor,  # [..., 3]
    view_dirs: Tensor,  # [..., 3]
    base_color: Tensor | float,  # [..., C]
    roughness: Tensor | float,  # [..., 1]
    metallic: Tensor | float,  # [..., 1]
) -> Tensor:
    """Cook-Torrance GGX BRDF with metallic workflow (model in :mod:`lumigrad.scene.materials`).

    Args:
        normals, to_light, view_dirs: ``[..., 3]`` (normalised here).
        base_color: ``[..., C]`` in [0, 1].
        roughness: ``[..., 1]`` perceptual roughness, clamped to [0.02, 1];
            ``alpha = roughness**2``.
        metallic: ``[..., 1]``, clamped to [0, 1].

    Returns:
        ``[..., C]``: diffuse + specular BRDF value; symmetric in
        ``to_light`` and ``view_dirs``. Differentiable w.r.t. all inputs.
    """
    n, l, v, c, r, m = _check_all(
        "ggx_brdf", normals, to_light, view_dirs, base_color=base_color, roughness=roughness, metallic=metallic
    )
    return _ggx(_normalize(n), _normalize(l), _normalize(v), c, r, m)


def ggx_ndf(
    n_dot_h: Tensor,  # [...]
    roughness: Tensor | float,  # broadcastable
) -> Tensor:
    """GGX / Trowbridge-Reitz normal distribution ``D(h)``, ``alpha = roughness**2``.

    Normalised so that the integral of ``D(h) (n.h)`` over the hemisphere is 1.
    ``roughness`` is clamped to [0.02, 1] as in :func:`ggx_brdf`.
    """
    if not isinstance(n_dot_h, Tensor):
        raise TypeError(f"ggx_ndf(): n_dot_h must be a float torch.Tensor, got {type(n_dot_h).__name__}")
    if n_dot_h.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"ggx_ndf(): n_dot_h must be a float32/float64 tensor, got {_desc(n_dot_h)}")
    r = torch.as_tensor(roughness, dtype=n_dot_h.dtype, device=n_dot_h.device).clamp(_MIN_ROUGHNESS, 1.0)
    return _ggx_d(n_dot_h.clamp(0.0, 1.0), r * r)
