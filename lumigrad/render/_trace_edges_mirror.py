"""Boundary term of silhouettes seen in planar mirrors (edge sampling through a virtual camera).

A silhouette seen in a mirror moves in the image when the object (or the camera, or the mirror)
moves, and the image jumps across it exactly as across a primary silhouette: the chain camera ->
mirror -> object is deterministic, so this is a screen-space boundary too, sampled like the primary
silhouettes of :mod:`lumigrad.render._trace_edges` (same jump measurement, same weights).

Method, per view and per planar mirror (plane point ``p0``, unit normal ``n``, the reflection
``R(x) = x - 2 (n . (x - p0)) n``):

* the **virtual camera** is the real one reflected across the plane (its centre for a perspective
  camera, its viewing direction for an orthographic one); the silhouette edges *as seen from it*
  (faces facing it on one side, away on the other, and open boundary edges; the mirror's own
  edges excluded) are the curves that bound objects in the mirror image;
* their reflected vertices ``R(v)`` are projected with the real camera and each segment is clipped
  to the mirror's screen bounding box (intersected with the image): a boundary point outside it
  cannot be seen through that mirror, so no sample is spent there. ``M`` points are drawn on the
  clipped segments in proportion to their length (uniform along them), each with weight
  ``total clipped length / M``;
* a point ``x_b`` is kept when its edge point ``e`` (perspective-correct, as for the primary
  silhouettes) lies on the reflecting side of the plane (the camera's side, beyond ``ray_eps``), the
  camera ray through ``x_b`` hits that mirror first (nothing in front of it), and the reflected ray
  from that hit ``q`` reaches ``e`` unoccluded (the primary silhouettes' ``_seen_from_camera`` test,
  from ``q`` instead of the camera);
* the jump is measured by the two camera rays a hair either side of ``x_b``
  (``boundary_term``'s ``accumulate``: the full radiance, through the mirror), and the
  differentiable boundary point is ``x_b = project(R_q(e))``, with ``R_q`` the reflection across
  the plane through the *re-attached* hit ``q`` with its (interpolated) shading normal, i.e. the
  plane the renderer reflects the ray with. Its gradient is that of the true boundary: the
  boundary pixel ``x`` solves ``x = project(R_{q(x)}(e))``, and for a planar mirror ``R_{q(x)}``
  does not change as ``x`` (hence ``q``) slides along the mirror, so the implicit derivative is
  the explicit one at fixed ``x``. Gradients reach the edge's vertices, the camera (pose and
  intrinsics, through the projection and the ray to ``q``) and the mirror's vertices (through
  ``q`` and its normal: rigid motions and deformations alike, to first order).

Budget: each planar mirror gets its own ``M = TraceSettings.edge_samples`` (default ``H * W``)
samples per view, on top of the primary silhouettes' ``M``, scaled by the fraction of the image its
screen bounding box covers (so the sample density per pixel is about that of the primary
silhouettes): splitting one ``M`` by projected length would starve the primary silhouettes whenever
a reflection is long, and clipping to the footprint already keeps the samples where the mirror is.
The term draws its random numbers from a generator of its own (seeded from ``TraceSettings.seed``
and the view), so the other boundary terms' samples do not depend on whether a scene has mirrors.

Cost (``bench/mirror_edges.py``: a Lambert icosphere on a mirror floor that fills most of the view,
point light, ``max_bounces=2``, 4 spp, forward + backward w.r.t. the sphere's vertices, term on vs
off alternating in one process, 2 shared CPU cores): 128^2 / 1.3k triangles 312 vs 224 ms (1.39x
wall, 1.41x CPU), 256^2 / 20k triangles 1186 vs 706 ms (1.68x, 1.65x). Like the primary
silhouettes, most of it is the two radiance rays per sample (here two bounces each) and the BVH
queries of the visibility tests.

Not covered (no boundary samples, interior gradients only, no warning): curved or faceted mirrors
(a mirror shape whose vertices are not within ``1e-5`` of its size of one plane, or whose faces
are not all oriented alike within ``1e-5`` (sine)), silhouettes seen through two or more mirror
bounces or through a mirror seen from a diffuse surface, and hard-shadow boundaries or penumbrae
seen in a mirror.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import NamedTuple

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot
from lumigrad.ops.trace import intersect, occluded
from lumigrad.render._trace_edges import _REL_TOL, _perp, _project, _silhouette

__all__ = ["mirror_plane", "mirror_samples", "mirror_silhouettes", "planar_mirrors"]

log = logging.getLogger(__name__)

_PLANAR_TOL = 1e-5  # vertex distance to the plane (fraction of the mirror's size) and face-normal sine


class MirrorPlane(NamedTuple):
    shape: int  # shape id of the mirror
    point: Tensor  # [3] a point of the plane (mean of the mirror's vertices), detached
    normal: Tensor  # [3] unit normal (the faces' common orientation), detached


def mirror_plane(verts: Tensor, faces: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(point [3], unit normal [3])`` (detached) of the plane holding every face of mesh ``verts [V, 3]``,
    ``faces [F, 3]``, or None: vertices farther than ``_PLANAR_TOL`` of the mesh's size from the plane through
    their mean (normal: the faces' summed cross products), a face normal off by more than ``_PLANAR_TOL``
    (sine), or one facing the other way."""
    with torch.no_grad():
        f = faces.long()
        tri = verts.detach()[f.reshape(-1)].reshape(-1, 3, 3)
        c = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)  # twice area x unit normal
        total = c.sum(0)
        if float(total.norm()) <= 0:
            return None
        n = total / total.norm()
        pts = verts.detach()[f.reshape(-1).unique()]
        p0 = pts.mean(0)
        size = float((pts.max(0).values - pts.min(0).values).norm())
        if float(((pts - p0) @ n).abs().max()) > _PLANAR_TOL * size:
            return None
        sine = torch.linalg.cross(c, n.expand_as(c), dim=-1).norm(dim=-1)
        if not bool(((sine <= _PLANAR_TOL * c.norm(dim=-1)) & (c @ n >= 0)).all()):
            return None
        return p0, n


def planar_mirrors(sc) -> list[MirrorPlane]:
    """The mirror shapes of render scene ``sc`` whose faces lie in one plane (:func:`mirror_plane`)."""
    out = []
    for i in torch.nonzero(sc.mats.mirror).flatten().tolist():
        mesh = sc.shapes[i].mesh
        plane = mirror_plane(mesh.verts, mesh.faces)
        if plane is None:
            log.debug("mirror shape %d is not planar: no boundary term for what it reflects", i)
        else:
            out.append(MirrorPlane(i, *plane))
    return out


def _reflect(x: Tensor, p0: Tensor, n: Tensor) -> Tensor:
    return x - 2.0 * ((x - p0) @ n)[..., None] * n


def _clip(P0: Tensor, P1: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """``(s0, s1) [E]``: the part ``s0 <= s <= s1`` of segments ``P0 + s (P1 - P0)``, ``s`` in [0, 1], inside the
    box ``lo .. hi`` (Liang-Barsky; empty where ``s1 <= s0``)."""
    s0, s1 = torch.zeros_like(P0[:, 0]), torch.ones_like(P0[:, 0])
    inf = torch.full_like(s0, float("inf"))
    for a in range(2):
        d = P1[:, a] - P0[:, a]
        moving = d != 0
        safe = torch.where(moving, d, torch.ones_like(d))
        ta, tb = (lo[a] - P0[:, a]) / safe, (hi[a] - P0[:, a]) / safe
        inside = (P0[:, a] >= lo[a]) & (P0[:, a] <= hi[a])
        enter = torch.where(moving, torch.minimum(ta, tb), torch.where(inside, -inf, inf))
        leave = torch.where(moving, torch.maximum(ta, tb), torch.where(inside, inf, -inf))
        s0, s1 = torch.maximum(s0, enter), torch.minimum(s1, leave)
    return s0, s1


def _window(sc, view, mirror: MirrorPlane) -> tuple[Tensor, Tensor]:
    """``(lo [2], hi [2])``: the image rectangle, shrunk to the mirror's screen bounding box when all of the
    mirror lies in front of the camera."""
    b, w2c, k, _, persp = view
    cam = sc.camera
    lo = torch.zeros(2, dtype=sc.dtype, device=sc.device)
    hi = torch.tensor([float(cam.width), float(cam.height)], dtype=sc.dtype, device=sc.device)
    fid = torch.nonzero(sc.owner == mirror.shape).squeeze(1)
    P, z = _project(w2c.detach(), k.detach(), sc.verts.detach()[sc.faces_long[fid].reshape(-1)], persp)
    if not persp or bool((z > cam.near).all()):
        lo, hi = torch.maximum(lo, P.min(0).values), torch.minimum(hi, P.max(0).values)
    return lo, hi


class _Samples(NamedTuple):
    x_b: Tensor  # [k, 2] differentiable boundary points (pixels)
    normal: Tensor  # [k, 2] unit screen normals
    weight: Tensor  # [k] clipped projected length / M


def mirror_samples(sc, view, mirror: MirrorPlane, M: int, gen: torch.Generator) -> _Samples | None:
    """The boundary points of view ``view = (b, w2c, k, c2w, persp)`` seen in ``mirror`` that pass the
    visibility tests (module docstring), or None when none does. ``M`` is scaled by the fraction of the
    image the mirror's screen bounding box covers."""
    from lumigrad.render.path import _camera_rays, _trace

    b, w2c, k, c2w, persp = view
    cam = sc.camera
    p0, nrm = mirror.point, mirror.normal
    fnorm, v0 = sc.accel._face_data
    edges, ef = sc.accel.edges, sc.accel.edge_faces
    vd = sc.verts.detach()
    with torch.no_grad():
        if persp:
            eye = c2w[:3, 3]
            side = float(dot(nrm, eye - p0))  # > 0: the camera (and the reflecting side) is above the plane
            facing = dot(fnorm, _reflect(eye, p0, nrm) - v0) > 0
        else:
            fwd = c2w[:3, 2]
            side = -float(dot(nrm, fwd))
            facing = dot(fnorm, -(fwd - 2.0 * dot(fwd, nrm) * nrm).expand_as(fnorm)) > 0
        if side == 0.0:
            return None
        sgn = 1.0 if side > 0 else -1.0
        height = sgn * ((vd - p0) @ nrm)  # [V] signed distance on the reflecting side
        sil = _silhouette(ef, facing) & (sc.owner[ef[:, 0]] != mirror.shape)
        e = edges[sil]
        e = e[(height[e[:, 0]] > 0) | (height[e[:, 1]] > 0)]
        # The renderer starts a mirror's reflected ray ray_eps off the surface along the normal: the same line as
        # a reflection across the plane moved half that towards the camera, which is where the image jumps.
        p_eff = p0 + (0.5 * sgn * sc.eps) * nrm
        P, z = _project(w2c.detach(), k.detach(), _reflect(vd, p_eff, nrm), persp)
        e = e[(z[e[:, 0]] > cam.near) & (z[e[:, 1]] > cam.near)]
        if e.shape[0] == 0:
            return None
        P0, P1 = P[e[:, 0]], P[e[:, 1]]
        lo, hi = _window(sc, view, mirror)
        s0, s1 = _clip(P0, P1, lo, hi)
        M = math.ceil(M * float((hi - lo).clamp_min(0).prod()) / (cam.width * cam.height))
        length = (P1 - P0).norm(dim=-1) * (s1 - s0).clamp_min(0.0)
        total = float(length.sum())
        if total <= 0 or M <= 0:
            return None
        pick = torch.multinomial(length, M, replacement=True, generator=gen).sort().values
        u = torch.rand(M, generator=gen, dtype=sc.dtype, device=sc.device)
        s = s0[pick] + u * (s1 - s0)[pick]
        ep = e[pick]
        xd = P0[pick] + s[:, None] * (P1 - P0)[pick]
        if persp:  # the edge parameter of the 3D point behind x_b (perspective-correct in the reflected depths)
            iz0, iz1 = 1.0 / z[ep[:, 0]], 1.0 / z[ep[:, 1]]
            t3 = s * iz1 / ((1 - s) * iz0 + s * iz1)
        else:
            t3 = s
        a, c = vd[ep[:, 0]], vd[ep[:, 1]]
        pts = a + t3[:, None] * (c - a)
        # Only points on the reflecting side; then the camera ray through x_b must hit this mirror first...
        cand = torch.nonzero(sgn * ((pts - p0) @ nrm) > sc.eps).squeeze(1)
        view_ids = torch.full((cand.numel(),), b, dtype=torch.long, device=sc.device)
        o, d = _camera_rays(cam, view_ids, xd[cand])
        face = intersect(sc.accel.bvh, o, d).face
        on_mirror = (face >= 0) & (sc.owner[face.long().clamp(min=0)] == mirror.shape) & (dot(d, nrm) != 0)
        cand, o, d, face = cand[on_mirror], o[on_mirror], d[on_mirror], face[on_mirror]
        # ... and the reflected ray from its hit reach the edge point.
        q = o + (dot(p0 - o, nrm) / dot(d, nrm))[:, None] * d
        src = q + (sgn * sc.eps) * nrm
        seen = ~occluded(sc.accel.bvh, src, pts[cand] - src, 1.0 - _REL_TOL)
        cand, face = cand[seen], face[seen]
        if cand.numel() == 0:
            return None
        normal = _perp((P1 - P0)[pick][cand])
    # Differentiable: the hit re-attached (camera, mirror vertices), the edge point (its vertices), the projection.
    o, d = _camera_rays(cam, torch.full((cand.numel(),), b, dtype=torch.long, device=sc.device), xd[cand])
    hit = _trace(sc, o, d, face)
    ec = ep[cand]
    ea = sc.verts.index_select(0, ec[:, 0])
    eg = ea + t3[cand, None] * (sc.verts.index_select(0, ec[:, 1]) - ea)
    q_eff = hit.points + (0.5 * sgn * sc.eps) * hit.ns
    refl = eg - 2.0 * dot(eg - q_eff, hit.ns, keepdim=True) * hit.ns
    x_b, _ = _project(w2c, k, refl, persp)
    return _Samples(x_b, normal, torch.full((cand.numel(),), total / M, dtype=sc.dtype, device=sc.device))


def mirror_silhouettes(sc, view, M: int, accumulate) -> None:
    """Add the boundary term of the silhouettes seen in every planar mirror of ``sc`` in view ``view``
    through ``accumulate`` (:func:`lumigrad.render._trace_edges.boundary_term`'s)."""
    mirrors = planar_mirrors(sc)
    if not mirrors:
        return
    # A generator and a scene copy of the term's own, so that its random draws (sampling and the jumps'
    # radiance) leave the other terms' streams as they are without mirrors.
    own = copy.copy(sc)
    own.gen = torch.Generator(device=sc.device).manual_seed((sc.settings.seed * 1_000_003 + (1 << 61) + view[0])
                                                            % (2**63))
    for mirror in mirrors:
        smp = mirror_samples(sc, view, mirror, M, own.gen)
        if smp is not None:
            ok = torch.ones(smp.weight.shape[0], dtype=torch.bool, device=sc.device)
            accumulate(view[0], smp.x_b, smp.normal, smp.weight, ok, own)
