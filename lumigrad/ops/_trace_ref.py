"""Pure-torch reference for :mod:`lumigrad.ops.trace`: brute-force ray/triangle tests.

``O(R * F)`` memory and time: the spec, for tests on tiny scenes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot

__all__ = ["hit_attributes_ref", "intersect_ref", "occluded_ref", "ray_triangle", "shade_direct_ref"]


def ray_triangle(origins: Tensor, dirs: Tensor, p0: Tensor, p1: Tensor, p2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Moller-Trumbore for broadcast rays ``[..., 3]`` and triangles ``[..., 3]``.

    Returns ``(t, b1, b2)`` with hit = ``(1 - b1 - b2) p0 + b1 p1 + b2 p2 = o + t d``.
    Differentiable; the caller decides what counts as a hit (``t > 0``, ``b >= 0``).
    Parallel rays give huge values, not NaN (the determinant is guarded).
    """
    e1, e2 = p1 - p0, p2 - p0
    pvec = torch.linalg.cross(dirs, e2, dim=-1)
    det = dot(e1, pvec)
    tiny = torch.finfo(det.dtype).tiny ** 0.5
    det = torch.where(det.abs() < tiny, torch.full_like(det, tiny), det)
    inv = 1.0 / det
    tvec = origins - p0
    b1 = dot(tvec, pvec) * inv
    qvec = torch.linalg.cross(tvec, e1, dim=-1)
    b2 = dot(dirs, qvec) * inv
    t = dot(e2, qvec) * inv
    return t, b1, b2


def _all_hits(verts: Tensor, faces: Tensor, origins: Tensor, dirs: Tensor, tmax: Tensor) -> tuple[Tensor, Tensor]:
    tri = verts[faces.long()]  # [F, 3, 3]
    t, b1, b2 = ray_triangle(origins[:, None], dirs[:, None], tri[None, :, 0], tri[None, :, 1], tri[None, :, 2])
    ok = (b1 >= 0) & (b2 >= 0) & (b1 + b2 <= 1) & (t > 0) & (t < tmax[:, None])
    return ok, torch.where(ok, t, torch.full_like(t, float("inf")))


def intersect_ref(verts: Tensor, faces: Tensor, origins: Tensor, dirs: Tensor, tmax: Tensor) -> tuple[Tensor, Tensor]:
    """Closest hit: ``(face [R] int32, -1 on a miss; t [R], tmax on a miss)``."""
    ok, t = _all_hits(verts, faces, origins, dirs, tmax)
    tmin, arg = t.min(dim=1)
    hit = ok.any(dim=1)
    face = torch.where(hit, arg, torch.full_like(arg, -1)).to(torch.int32)
    return face, torch.where(hit, tmin, tmax)


def occluded_ref(verts: Tensor, faces: Tensor, origins: Tensor, dirs: Tensor, tmax: Tensor) -> Tensor:
    """``[R]`` bool: any triangle hit with ``0 < t < tmax``."""
    return _all_hits(verts, faces, origins, dirs, tmax)[0].any(dim=1)


def hit_attributes_ref(corners: Tensor, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Spec of :func:`lumigrad.ops.trace.hit_attributes`: ``(points, bary, ns, ng)``, each ``[h, 3]``.

    The ray ``origins + t dirs`` re-attached to its triangle (:func:`ray_triangle`; corner ``k``'s position
    is ``corners[:, 6k:6k+3]``, its vertex normal ``corners[:, 6k+3:6k+6]``): the hit point, its
    barycentrics ``(1 - b1 - b2, b1, b2)``, the ``safe_normalize``-d interpolated vertex normal and the
    unit geometric normal ``(p1 - p0) x (p2 - p0)`` (zero for a degenerate triangle).
    """
    from lumigrad.geometry.normals import _safe_normalize_torch

    c = corners
    p0, p1, p2 = c[:, 0:3], c[:, 6:9], c[:, 12:15]
    t, b1, b2 = ray_triangle(origins, dirs, p0, p1, p2)
    bary = torch.stack([1.0 - b1 - b2, b1, b2], dim=-1)
    ns = _safe_normalize_torch(bary[:, 0:1] * c[:, 3:6] + bary[:, 1:2] * c[:, 9:12] + bary[:, 2:3] * c[:, 15:18])
    ng = _safe_normalize_torch(torch.linalg.cross(p1 - p0, p2 - p0, dim=-1))
    return origins + t[:, None] * dirs, bary, ns, ng


def shade_direct_ref(corners: Tensor, origins: Tensor, dirs: Tensor, albedo: Tensor, vis: Tensor,
                     lkind: Tensor, lvec: Tensor, lscale: Tensor, lfall: Tensor) -> Tensor:
    """Spec of :func:`lumigrad.ops.trace.shade_direct`: ``[h, 3]`` Lambert radiance from point/directional lights.

    Per hit: the ray ``origins + t dirs`` re-attached to its triangle (:func:`ray_triangle`; corner ``k``'s
    position is ``corners[:, 6k:6k+3]``), the shading normal ``safe_normalize`` of the vertex normals
    (``corners[:, 6k+3:6k+6]``) interpolated there, and
    ``sum_j albedo / pi * lscale_j * atten_j * max(n . l_j, 0) * vis[:, j]``; a point light (``lkind 0``) at
    ``lvec_j`` has ``l = (lvec - p) / sqrt(d^2 + 1e-12)`` and ``atten = 1 / max(c + l sqrt(d^2 + 1e-12) + q d^2,
    1e-12)`` with ``(c, l, q) = lfall_j``; a directional light (``lkind 1``) has ``l = lvec_j``, ``atten = 1``.
    """
    from lumigrad.geometry.normals import safe_normalize

    c = corners
    t, b1, b2 = ray_triangle(origins, dirs, c[:, 0:3], c[:, 6:9], c[:, 12:15])
    p = origins + t[:, None] * dirs
    ns = safe_normalize((1 - b1 - b2)[:, None] * c[:, 3:6] + b1[:, None] * c[:, 9:12] + b2[:, None] * c[:, 15:18])
    out = torch.zeros_like(p)
    m = 1e-12
    for j in range(lvec.shape[0]):
        if int(lkind[j]) == 0:
            dv = lvec[j] - p
            dsq = (dv * dv).sum(-1, keepdim=True)
            l = dv / torch.sqrt(dsq + m)
            c, lin, q = lfall[j]
            atten = 1.0 / (c + lin * torch.sqrt(dsq + m) + q * dsq).clamp_min(m)
        else:
            l = lvec[j].expand_as(p)
            atten = torch.ones_like(p[:, :1])
        cos = (ns * l).sum(-1, keepdim=True).clamp_min(0.0)
        out = out + albedo / math.pi * lscale[j] * atten * cos * vis[:, j:j + 1]
    return out
