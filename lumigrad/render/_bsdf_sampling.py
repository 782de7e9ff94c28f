"""BSDF importance sampling for :func:`lumigrad.render.path.render_trace`.

* Lambert and Blinn-Phong: cosine-weighted hemisphere, ``pdf = cos / pi``.
* GGX (:func:`lumigrad.shade.brdf.ggx_brdf`, ``alpha = roughness^2``): a
  mixture of the specular lobe, sampled by the classic ``D(h) cos(theta_h)``
  half-vector density (Walter et al. 2007; ``pdf(wi) = D(h) (n.h) / (4 |wo.h|)``),
  and the cosine density for the diffuse lobe. The specular lobe is picked with
  probability ``s / (s + d)``, ``s`` the mean normal-incidence Fresnel
  reflectance ``F0``, ``d`` the mean diffuse albedo ``(1 - metallic) base``,
  clamped to [0.1, 1] so a mostly diffuse material still samples its highlight;
  it is 1 for a pure metal.

Sampled directions and densities carry no gradient (detached sampling, as in
Mitsuba 3's PRB): the path weight ``f(wo, wi) cos / pdf`` is differentiated at
fixed directions, which is unbiased for the interior (continuous) part.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.scene.materials import GGXMaterial
from lumigrad.shade.brdf import _MIN_ROUGHNESS, _ggx_d

__all__ = ["frame", "sample_cosine", "spec_prob", "bsdf_pdf", "bsdf_sample"]


def frame(n: Tensor) -> tuple[Tensor, Tensor]:
    """Tangent and bitangent ``[R, 3]`` completing unit normals ``n [R, 3]`` to an orthonormal frame."""
    a = torch.where(n[:, :1].abs() > 0.9, torch.tensor([0.0, 1.0, 0.0], dtype=n.dtype, device=n.device),
                    torch.tensor([1.0, 0.0, 0.0], dtype=n.dtype, device=n.device))
    t = torch.linalg.cross(a, n, dim=-1)
    t = t / t.norm(dim=-1, keepdim=True)
    return t, torch.linalg.cross(n, t, dim=-1)


def sample_cosine(n: Tensor, u1: Tensor, u2: Tensor) -> Tensor:
    """Cosine-weighted directions about unit normals ``n [R, 3]`` from uniforms ``u1, u2 [R]``."""
    r, phi = u1.sqrt(), 2 * math.pi * u2
    t, b = frame(n)
    z = (1 - u1).clamp_min(0).sqrt()
    return (r * torch.cos(phi))[:, None] * t + (r * torch.sin(phi))[:, None] * b + z[:, None] * n


def _mat_param(v, like: Tensor) -> Tensor:
    if isinstance(v, Tensor):
        return v.detach().reshape(-1).to(like.dtype)
    return torch.tensor([float(v)], dtype=like.dtype, device=like.device)


def _alpha(material: GGXMaterial, like: Tensor) -> Tensor:
    r = _mat_param(material.roughness, like).clamp(_MIN_ROUGHNESS, 1.0)
    return r * r


def spec_prob(material, like: Tensor) -> float:
    """Probability of sampling the specular lobe (0 for materials sampled by cosine only)."""
    if not isinstance(material, GGXMaterial):
        return 0.0
    m = float(_mat_param(material.metallic, like).clamp(0, 1).mean())
    base = _mat_param(material.base_color, like).clamp(0, 1)
    s = float((0.04 * (1 - m) + base * m).mean())
    d = float(((1 - m) * base).mean())
    if d <= 0:
        return 1.0
    return min(1.0, max(0.1, s / (s + d)))


def _ggx_pdf(n: Tensor, wo: Tensor, wi: Tensor, alpha: Tensor) -> Tensor:
    h = wo + wi
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    nh = (n * h).sum(-1).clamp(0.0, 1.0)
    oh = (wo * h).sum(-1).abs().clamp_min(1e-8)
    return _ggx_d(nh[:, None], alpha)[:, 0] * nh / (4 * oh)


def bsdf_pdf(material, n: Tensor, wo: Tensor, wi: Tensor) -> Tensor:
    """``[R]`` solid-angle density of :func:`bsdf_sample` for unit ``n, wo, wi [R, 3]`` (no gradient)."""
    with torch.no_grad():
        cos = (n * wi).sum(-1).clamp_min(0.0) / math.pi
        ps = spec_prob(material, n)
        if ps == 0.0:
            return cos
        return ps * _ggx_pdf(n, wo, wi, _alpha(material, n)) * ((n * wi).sum(-1) > 0) + (1 - ps) * cos


def bsdf_sample(material, n: Tensor, wo: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(wi [R, 3], pdf [R])``: directions drawn for unit normals and view directions ``n, wo [R, 3]``."""
    with torch.no_grad():
        R = n.shape[0]
        u = torch.rand(R, 3, generator=gen, dtype=n.dtype, device=n.device)
        wi = sample_cosine(n, u[:, 0], u[:, 1])
        ps = spec_prob(material, n)
        if ps > 0.0:
            a2 = _alpha(material, n) ** 2
            # D(h) cos(theta_h) sampling: tan^2(theta_h) = a^2 u / (1 - u).
            uu = u[:, 0]
            cos2 = (1 - uu) / (1 + (a2 - 1) * uu)
            ct = cos2.clamp(0, 1).sqrt()
            st = (1 - cos2).clamp(0, 1).sqrt()
            phi = 2 * math.pi * u[:, 1]
            t, b = frame(n)
            h = (st * torch.cos(phi))[:, None] * t + (st * torch.sin(phi))[:, None] * b + ct[:, None] * n
            spec = 2 * (wo * h).sum(-1, keepdim=True) * h - wo
            pick = (u[:, 2] < ps)[:, None]
            wi = torch.where(pick, spec, wi)
        return wi, bsdf_pdf(material, n, wo, wi)
