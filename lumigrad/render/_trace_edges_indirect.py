"""Boundary term of visibility changes seen from the camera's first hits (occlusion of indirect light).

:mod:`lumigrad.render._trace_edges` samples the discontinuities of the *screen* integral (primary
silhouettes) and of the *light* integrals at the first hits (hard shadows, penumbrae). With
``max_bounces >= 2`` the first hit ``x`` also integrates indirect light over directions,
``int f(x, w) cos L_ind(x, w) dw``, and ``L_ind`` jumps where an edge seen from ``x`` separates two
surfaces (an occluder in front of a lit wall). Moving the occluder, or ``x`` itself, moves that
curve on the sphere of directions, which interior (re-attached) gradients cannot see.

Estimator (Li et al. 2018, "Differentiable Monte Carlo ray tracing through edge sampling", their
secondary edges, without the edge hierarchy): per view, ``N`` camera samples (one per pixel by
default) find their first hit ``x``; each picks a mesh edge with probability proportional to its
length among the edges that can be silhouettes (open boundaries, and edges between non-coplanar
faces) and a uniform point ``p`` on it. Where the edge is a silhouette seen from ``x``, ``p`` is
visible from ``x`` and above ``x``'s surface, the jump ``L_ind(w_B) - L_ind(w_A)`` is measured by two
rays from ``x`` a hair either side of ``p`` (``w_A`` on the side of ``m = normalize(w x e)``), and the
term ``f cos (L_B - L_A) |dw/dt| / P(edge) * (H W / N) * (m . (w_b - stop_grad(w_b)))`` is added to
the pixel of the sample, with ``w_b = normalize(p - x)`` a differentiable function of the edge's
vertices and of ``x`` (hence of the hit triangle and the camera): zero-valued, its gradient is the
boundary integral (``|dw/dt|`` converts the edge parameter to arc length on the sphere).

``L_ind`` is the radiance *reflected* at the next hit (next-event estimation and further bounces,
``max_bounces - 1`` of them), without the emission of that hit and without the environment map
for rays that escape: direct light already has its own boundary terms (penumbrae of area and
environment lights, hard shadows of point lights), so counting it here would count it twice.
Rays that escape see the ambient and SH lights, which act as a distant environment when ``max_bounces > 1``
(:func:`lumigrad.render.path._sky_radiance`).

Not covered: visibility changes seen from later bounces or through mirrors (a mirror's first hit
has no direction integral), and shadow boundaries that the indirect light carries (a shadow cast
on the floor, seen by the wall), which are not mesh edges. Sampling edges by length alone (no
hierarchy, no silhouette culling before the pick) is unbiased but noisy on large meshes, where
most picked edges are not silhouettes from ``x``: ``TraceSettings.indirect_samples`` sets the
budget.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot, safe_normalize
from lumigrad.ops.trace import intersect, occluded

__all__ = ["indirect_boundary"]

_SIDE = 1e-4  # half the angle (radians) between the two rays that measure a jump
_REL_TOL = 1e-4  # the visibility test of an edge point stops this fraction short of it
_FLAT = 1e-6  # edges whose faces' normals differ less than this (sine) cannot be silhouettes


def _candidate_edges(sc) -> Tensor:
    """``[E]`` bool: open boundary edges and edges between non-coplanar faces."""
    fn, _ = sc.accel._face_data
    ef = sc.accel.edge_faces
    n0 = safe_normalize(fn[ef[:, 0]])
    n1 = safe_normalize(fn[ef[:, 1].clamp(min=0)])
    bent = (torch.linalg.cross(n0, n1, dim=-1).norm(dim=-1) > _FLAT) | (dot(n0, n1) < 0)
    return (ef[:, 1] < 0) | bent


def _incoming(sc, origins: Tensor, dirs: Tensor) -> Tensor:
    """``[R, 3]`` indirect radiance arriving at ``origins`` from ``dirs``: what the next hit reflects
    (``max_bounces - 1`` bounces from it), without its emission; escaping rays see only ambient and SH light."""
    from lumigrad.render.path import _emission, _radiance, _sky_radiance, _trace

    st = sc.settings
    ind = copy.copy(sc)
    ind.settings = dataclasses.replace(st, max_bounces=st.max_bounces - 1, background=(0.0, 0.0, 0.0))
    face = intersect(sc.accel.bvh, origins, dirs).face
    L, hit = _radiance(ind, origins, dirs, sc.gen, face)
    h = _trace(ind, origins, dirs, face)
    L = L.index_add(0, h.idx, -_emission(ind, h))
    miss = torch.nonzero(~hit).squeeze(1)
    if miss.numel():
        if sc.env is not None:
            L = L.index_add(0, miss, -sc.env.eval(dirs[miss]).to(L.dtype))
        if sc.ambient or sc.sh:
            L = L.index_add(0, miss, _sky_radiance(sc, dirs[miss]).to(L.dtype))
    return L


def indirect_boundary(sc, b: int, n: int) -> tuple[Tensor, Tensor]:
    """``(pixel [k] long, contrib [k, 3])``: ``n`` boundary samples of view ``b`` (module docstring);
    ``pixel`` indexes the ``[B * H * W]`` image rows and ``contrib`` is zero-valued with the gradient."""
    from lumigrad.render.path import _camera_rays, _hit_material, _take, _trace

    cam = sc.camera
    H, W = cam.height, cam.width
    empty = (torch.zeros(0, dtype=torch.long, device=sc.device), torch.zeros(0, 3, dtype=sc.dtype, device=sc.device))
    edges, ef = sc.accel.edges, sc.accel.edge_faces
    fn, v0 = sc.accel._face_data
    vd = sc.verts.detach()
    length = (vd[edges[:, 1]] - vd[edges[:, 0]]).norm(dim=-1) * _candidate_edges(sc)
    total = float(length.sum())
    if total <= 0:
        return empty
    # Camera samples: one per pixel (stratified) when n = H * W, else uniform over the image.
    with torch.no_grad():
        if n == H * W:
            q = torch.arange(n, device=sc.device)
            pix = torch.stack([(q % W).to(sc.dtype), (q // W).to(sc.dtype)], -1) + sc.rand(n, 2)
        else:
            pix = sc.rand(n, 2) * torch.tensor([W, H], dtype=sc.dtype, device=sc.device)
    o, d = _camera_rays(cam, torch.full((n,), b, dtype=torch.long, device=sc.device), pix)
    h = _trace(sc, o, d)
    if h.idx.numel() == 0:
        return empty
    with torch.no_grad():
        k = h.idx.numel()
        pick = torch.multinomial(length, k, replacement=True, generator=sc.gen)
        t = sc.rand(k, 1)
        e = edges[pick]
        a, c = vd[e[:, 0]], vd[e[:, 1]]
        p = a + t * (c - a)
        x, ng, ns, wo = h.points.detach(), h.ng.detach(), h.ns.detach(), h.wo.detach()
        w = p - x
        dist = w.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        wn = w / dist
        f0, f1 = ef[pick, 0], ef[pick, 1]
        s0 = dot(fn[f0], x - v0[f0]) > 0
        s1 = dot(fn[f1.clamp(min=0)], x - v0[f1.clamp(min=0)]) > 0
        sil = (f1 < 0) | (s0 != s1)
        own = (f0 == h.face) | (f1 == h.face)
        side = torch.where(dot(ng, wo) >= 0, 1.0, -1.0).to(sc.dtype)
        ok = sil & ~own & (dot(ns, wn) > 0) & (dot(ng, wn) * side > 0) & ~sc.mats.mirror[h.shape]
        sel = torch.nonzero(ok).squeeze(1)
        if sel.numel() == 0:
            return empty
        org = x[sel] + (side[sel] * sc.eps)[:, None] * ng[sel]
        seen = ~occluded(sc.accel.bvh, org, p[sel] - org, 1.0 - _REL_TOL)
        sel = sel[seen]
        if sel.numel() == 0:
            return empty
        org = org[seen]
        wn_s, dist_s, edge_dir = wn[sel], dist[sel], (c - a)[sel]
        m = safe_normalize(torch.linalg.cross(wn_s, edge_dir, dim=-1))
        off = (_SIDE * dist_s) * m
        w_a, w_b = safe_normalize(p[sel] + off - org), safe_normalize(p[sel] - off - org)
        L = _incoming(sc, torch.cat([org, org], 0), torch.cat([w_a, w_b], 0))
        jump = L[sel.numel():] - L[: sel.numel()]  # side B minus side A
        hs = type(h)(*(None if v is None else _take(v, sel) for v in h))
        at = {key: val.detach() for key, val in _hit_material(sc, hs).items()}
        f = sc.mats.brdf(hs.shape, ns[sel], wn_s, wo[sel], at) * dot(ns[sel], wn_s, keepdim=True)
        perp = edge_dir - dot(edge_dir, wn_s, keepdim=True) * wn_s
        dwdt = perp.norm(dim=-1, keepdim=True) / dist_s
        weight = f * jump * dwdt * (total / length[pick[sel]])[:, None] * (H * W / n)
    # Differentiable boundary direction: the edge point (edge vertices) seen from the re-attached hit.
    ep = e[sel]
    pb = sc.verts.index_select(0, ep[:, 0])
    pb = pb + t[sel] * (sc.verts.index_select(0, ep[:, 1]) - pb)
    wb = safe_normalize(pb - _take(h.points, sel))
    contrib = weight * dot(m, wb - wb.detach(), keepdim=True)
    rows = _take(h.idx, sel)
    px = pix[rows]
    pixel = b * H * W + px[:, 1].floor().long().clamp(0, H - 1) * W + px[:, 0].floor().long().clamp(0, W - 1)
    return pixel, contrib
