"""Boundary terms of silhouettes and shadows seen in planar mirrors (edge sampling via a virtual camera).

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
* the jump is ``boundary_term``'s (``accumulate``: the full radiance, through the mirror): the silhouette's
  face (the one facing the virtual camera) is shaded at ``x_b`` itself, the camera ray re-attached to the
  mirror face it hits and the reflected ray to the silhouette face, and one camera ray goes a hair beyond
  the edge (``_trace_edges._jumps``; at grazing faces two rays a hair either side); and the
  differentiable boundary point is ``x_b = project(R_q(e))``, with ``R_q`` the reflection across
  the plane through the *re-attached* hit ``q`` with its (interpolated) shading normal, i.e. the
  plane the renderer reflects the ray with. Its gradient is that of the true boundary: the
  boundary pixel ``x`` solves ``x = project(R_{q(x)}(e))``, and for a planar mirror ``R_{q(x)}``
  does not change as ``x`` (hence ``q``) slides along the mirror, so the implicit derivative is
  the explicit one at fixed ``x``. Gradients reach the edge's vertices, the camera (pose and
  intrinsics, through the projection and the ray to ``q``) and the mirror's vertices (through
  ``q`` and its normal: rigid motions and deformations alike, to first order). The renderer starts
  the reflected ray ``ray_eps`` off the mirror along its normal, which is the same line as a
  reflection across the plane moved by half that towards the camera: both reflections use that
  plane, else the two rays that measure a jump miss it (measured: the outline's edges that run
  along the image rows got no gradient at all).

**Hard shadow boundaries** of point and directional lights seen in a mirror are
``boundary_term``'s own shadow sampler (``_shadow_boundary``: edge point pushed along the light
ray onto its receiver ``r``) with the receiver reflected instead of projected directly: ``r`` is
kept when it reflects into the mirror's window and passes the same three tests (reflecting side,
camera ray onto the mirror, reflected ray reaching ``r``), and its differentiable pixel is
``project(R_q(r))`` as above. Edges are picked by 3D length among all light silhouettes, as for
shadows seen directly, except the mirror's own when the light is on the reflecting side (their
shadow falls behind the mirror). Edges whose shadows are not in view still take their share of
the samples (in ``tests/trace/test_trace_mirror_edges.py``'s shadow scene, 4000 samples scatter
by 10 % between seeds, 16000 by 5 %, 64000 by 3.4 %; excluding the mirror rim took 16000 from 9 %).

**Penumbrae** of area and environment lights seen in a mirror: the same, for ``boundary_term``'s
light samples treated as point / directional lights (``_virtual_lights``: ``shadow_light_samples``
of them per light, drawn afresh from the term's own generator, each with its share of the
samples), whose light-only scene copies get one bounce more (direct light after the mirror bounce).
In the test's penumbra scene 64 light samples and ``edge_samples=64000`` give 3.51 and 3.53 (two
seeds) for finite differences of 3.41-3.49.

**Chains of two planar mirrors** (camera -> ``A`` -> ``B`` -> object, ``max_bounces >= 2``): the same
sampler with the point reflected twice, ``x_b = project(R_A(R_B(e)))`` (unfold the last reflection first),
the virtual camera ``R_B(R_A(c))`` for the silhouettes (``B``'s own edges excluded), and the window
``A``'s screen box intersected with that of ``B`` as seen in ``A`` (``R_A(B)`` projected). A point is kept
when the camera ray hits ``A`` first, its reflection (from ``A``'s hit, off by ``ray_eps``) hits ``B``
first, and the second reflection reaches ``e`` unoccluded; ``e`` lies on ``B``'s reflecting side, the side
of ``R_A(c)`` (a ray that reaches ``B`` comes from there). Both reflections of the differentiable point are
across the planes through the re-attached hits (``B``'s hit re-attached along the ray reflected by ``A``'s
re-attached hit and shading normal), each shifted by half the ray offset, so gradients reach the camera,
the edge and both mirrors. Ordered pairs are tried only when a cheap test passes (part of each mirror on
the other's reflecting side, non-empty window): ``B`` must be seen in ``A``, which is not symmetric (in
``tests/trace/test_trace_mirror_chain_edges.py`` ``B`` is out of view, so only ``A -> B`` is sampled). The
chains' samples are drawn after all single mirrors' (same generator), so the single-mirror samples are
bit-identical to what they were without chains (checked: nine gradients of
``tests/trace/test_trace_mirror_edges.py``'s scenes equal to the last bit). Checked against finite
differences (that test: every pixel is emission or black, interior gradients are zero, and with the chains
off the gradient is zero; mean +- standard error over 6 seeds of 32000 samples vs 4096-spp central
differences, h = 0.05): d/d(quad x) 38.0 +- 0.3 vs 38.0, quad z -8.84 +- 0.02 vs -8.77, mirror ``B``'s x
-46.8 +- 0.3 vs -46.8, mirror ``A``'s z -29.2 +- 0.2 vs -29.2 (-29.6 with h = 0.01), orthographic camera
54.7 +- 0.7 vs 55.5. With 16000 samples the seeds scatter by 2-5 %.
Cost (``bench/mirror_edges_more.py``: a Lambert level-3 icosphere on a Lambert floor in the corner of two
mirror walls, point light, 3 bounces, 4 spp, forward + backward w.r.t. the sphere's vertices, alternating
in one process on 2 CPU cores, medians of 7): both ordered pairs pass the cheap test there (the corner
reflection is seen through ``A -> B`` on one side and ``B -> A`` on the other, about 500 kept samples each
at 64^2); the chains add 13-15 % to the render with every other term on (64^2: 262 vs 228 ms, CPU 1.14x;
128^2: 498 vs 441 ms, 1.13x / 1.11x CPU).

Budget: each planar mirror gets its own ``M = TraceSettings.edge_samples`` (default ``H * W``)
samples per view (and each ordered pair of them that passes the cheap test as many, for its chain's
silhouettes), on top of the primary silhouettes' ``M``, scaled by the fraction of the image its
screen bounding box covers (so the sample density per pixel is about that of the primary
silhouettes): splitting one ``M`` by projected length would starve the primary silhouettes whenever
a reflection is long, and clipping to the footprint already keeps the samples where the mirror is.
The term draws its random numbers from a generator of its own (seeded from ``TraceSettings.seed``
and the view), so the other boundary terms' samples do not depend on whether a scene has mirrors.

Cost (``bench/mirror_edges.py``: a Lambert icosphere on a mirror floor that fills most of the view,
point light, ``max_bounces=2``, 4 spp, forward + backward w.r.t. the sphere's vertices, term on,
silhouettes only, and off, alternating in one process, 2 shared CPU cores, medians): 128^2 / 1.3k
triangles 212 / 167 / 131 ms (on / off 1.62x wall, 1.66x CPU; silhouettes only 1.28x, 1.30x),
256^2 / 20k triangles 658 / 551 / 394 ms (1.67x, 1.70x; 1.40x, 1.42x). Like the primary
silhouettes, most of it is the two radiance rays per sample (here two bounces each) and the BVH
queries of the visibility tests.

Curved mirrors (a mirror shape whose vertices are not within ``1e-5`` of its size of one plane, or
whose faces are not all oriented alike within ``1e-5`` (sine)) are left to
:mod:`lumigrad.render._trace_edges_curved` (silhouettes seen in them, by a Newton solve of the
reflection law per sampled edge point). Not covered (no boundary samples, interior gradients only, no
warning): shadows seen in curved mirrors, the creases of faceted (flat-shaded) curved mirrors,
anything seen through three or more mirror bounces, and shadows (hard or soft) seen through two (only
silhouettes are sampled through chains). Silhouettes seen in one planar mirror from a diffuse surface
are the indirect term's (:mod:`lumigrad.render._trace_edges_indirect`); through two mirrors, or in a
curved mirror, from there they are not covered. Visibility seen from the surfaces a mirror
shows (indirect light occluded at the reflected hits, shadows seen from them) is the indirect terms'
(:mod:`lumigrad.render._trace_edges_indirect`): the hit behind the mirror is their second path
vertex, where they leave out the direct light that this module's shadow samplers differentiate.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from typing import NamedTuple

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot
from lumigrad.ops.trace import intersect, occluded
from lumigrad.render._trace_edges import (_REL_TOL, _facing_one, _perp, _project, _shadow_boundary, _silhouette,
                                          _silhouette_side, _virtual_lights, stratified_picks)
from lumigrad.scene.lights import PointLight

__all__ = ["MirrorPlane", "MirrorView", "mirror_plane", "mirror_samples", "mirror_silhouettes", "planar_mirrors"]

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


class MirrorView:
    """View ``view = (b, w2c, k, c2w, persp)`` of :func:`~lumigrad.render._trace_edges.boundary_term` seen
    through planar ``mirror`` (and then through ``second``: the chain camera -> mirror -> second -> point):
    reflections, screen window and the visibility tests of points seen in it."""

    def __init__(self, sc, view, mirror: MirrorPlane, second: MirrorPlane | None = None) -> None:
        self.sc, self.view, self.mirror = sc, view, mirror
        self.chain = (mirror,) if second is None else (mirror, second)
        self.last = self.chain[-1]  # the mirror whose reflection reaches the points
        _, w2c, k, c2w, persp = view
        # The virtual viewpoint, reflected across each plane in turn (the camera's centre, or its viewing direction
        # for an orthographic camera), and the side of each plane it is on (the side the rays arrive from).
        eye, fwd, signs = c2w[:3, 3], c2w[:3, 2], []
        for m in self.chain:
            p0, n = m.point, m.normal
            side = float(dot(n, eye - p0)) if persp else -float(dot(n, fwd))
            signs.append((side > 0) - (side < 0))  # 0: the plane is seen edge-on (nothing to sample)
            eye, fwd = _reflect(eye, p0, n), fwd - 2.0 * dot(fwd, n) * n
        self.signs, self.eye, self.fwd = signs, eye, fwd
        self.sign = signs[-1] if all(signs) else 0  # the reflecting side of the last plane
        # The planes the renderer's reflected rays effectively use (module docstring).
        self.shifts = [0.5 * sg * sc.eps for sg in signs]
        self.p_effs = [m.point + sh * m.normal for m, sh in zip(self.chain, self.shifts)]
        self.lo, self.hi = self._window()

    def _unfold(self, p: Tensor, upto: int) -> Tensor:
        """``p [R, 3]`` (detached) reflected across the planes ``upto - 1, ..., 0`` of the chain: where a point
        seen after those reflections appears to the camera."""
        for i in reversed(range(upto)):
            p = _reflect(p, self.p_effs[i], self.chain[i].normal)
        return p

    def _window(self) -> tuple[Tensor, Tensor]:
        """``(lo [2], hi [2])``: the image rectangle, shrunk to each mirror's screen bounding box (the second one
        as seen in the first) when all of it lies in front of the camera (empty when all of it lies behind)."""
        sc, (_, w2c, k, _, persp) = self.sc, self.view
        cam = sc.camera
        lo = torch.zeros(2, dtype=sc.dtype, device=sc.device)
        hi = torch.tensor([float(cam.width), float(cam.height)], dtype=sc.dtype, device=sc.device)
        for i, m in enumerate(self.chain):
            mesh = sc.shapes[m.shape].mesh
            pts = self._unfold(mesh.verts.detach()[mesh.faces.long().reshape(-1)], i)
            P, z = _project(w2c.detach(), k.detach(), pts, persp)
            if not persp or bool((z > cam.near).all()):
                lo, hi = torch.maximum(lo, P.min(0).values), torch.minimum(hi, P.max(0).values)
            elif bool((z <= 0).all()):  # behind the camera: no camera ray reaches it
                hi = lo
        return lo, hi

    def facing(self, fnorm: Tensor, v0: Tensor) -> Tensor:
        """``[F]`` bool: the faces (``fnorm``, ``v0`` as ``boundary_term``'s) turned towards the virtual camera."""
        _, _, _, _, persp = self.view
        if persp:
            return dot(fnorm, self.eye - v0) > 0
        return dot(fnorm, -self.fwd.expand_as(fnorm)) > 0

    def chain_seen(self) -> bool:
        """Cheap necessary conditions for the second mirror to be seen in the first: part of each lies on the
        other's reflecting side (the side its rays arrive from), and the window is not empty."""
        if len(self.chain) == 1:
            return True
        eps = self.sc.eps
        for i, j in ((0, 1), (1, 0)):
            m, o = self.chain[i], self.chain[j]
            mesh = self.sc.shapes[o.shape].mesh
            if not bool((self.signs[i] * ((mesh.verts.detach() - m.point) @ m.normal) > eps).any()):
                return False
        return self.share() > 0

    def share(self) -> float:
        """The fraction of the image the window covers."""
        cam = self.sc.camera
        return float((self.hi - self.lo).clamp_min(0).prod()) / (cam.width * cam.height)

    def project(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(pixels [R, 2], depth [R])`` of the reflections of ``p [R, 3]`` (detached)."""
        _, w2c, k, _, persp = self.view
        return _project(w2c.detach(), k.detach(), self._unfold(p.detach(), len(self.chain)), persp)

    def in_window(self, x: Tensor) -> Tensor:
        return (x[:, 0] >= self.lo[0]) & (x[:, 0] < self.hi[0]) & (x[:, 1] >= self.lo[1]) & (x[:, 1] < self.hi[1])

    def visible(self, x: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """``(ok [R] bool, face [R, C] int32)``: ``p [R, 3]`` lies on the last mirror's reflecting side, the camera
        ray through pixel ``x [R, 2]`` hits the chain's ``C`` mirrors in turn, each first (``face[:, i]``: the
        hit face of mirror ``i``), and the last reflection reaches ``p`` unoccluded."""
        from lumigrad.render.path import _camera_rays

        sc, b = self.sc, self.view[0]
        last = self.last
        with torch.no_grad():
            o, d = _camera_rays(sc.camera, torch.full((x.shape[0],), b, dtype=torch.long, device=sc.device), x)
            ok = self.sign * ((p - last.point) @ last.normal) > sc.eps
            sel = torch.nonzero(ok).squeeze(1)
            o, d, faces = o[sel], d[sel], []
            for i, m in enumerate(self.chain):  # o, d: the rays of the rows ``sel``, reflected i times
                face = torch.full((x.shape[0],), -1, dtype=torch.int32, device=sc.device)
                f = intersect(sc.accel.bvh, o, d).face
                face[sel] = f
                faces.append(face)
                dn = dot(d, m.normal)
                hit = (f >= 0) & (dn != 0) & (sc.owner[f.long().clamp(min=0)] == m.shape)
                ok[sel] = hit
                keep = torch.nonzero(hit).squeeze(1)
                sel, o, d, dn = sel[keep], o[keep], d[keep], dn[keep]
                q = o + (dot(m.point - o, m.normal) / dn)[:, None] * d
                o, d = q + (self.signs[i] * sc.eps) * m.normal, d - 2.0 * dn[:, None] * m.normal
            ok[sel] = ~occluded(sc.accel.bvh, o, p[sel] - o, 1.0 - _REL_TOL)
        return ok, torch.stack(faces, 1)

    def attach(self, x: Tensor, face: Tensor, p: Tensor) -> Tensor:
        """``[R, 2]`` differentiable pixels of ``p [R, 3]`` seen in the chain at pixels ``x [R, 2]`` (detached,
        their camera rays hitting mirror faces ``face [R, C]`` in turn): the projection of ``p`` reflected
        across the planes through the re-attached hits with their shading normals (module docstring)."""
        from lumigrad.render.path import _camera_rays, _trace

        sc, (b, w2c, k, _, persp) = self.sc, self.view
        o, d = _camera_rays(sc.camera, torch.full((x.shape[0],), b, dtype=torch.long, device=sc.device), x)
        hits = [_trace(sc, o, d, face[:, 0])]
        for i in range(1, len(self.chain)):  # the ray reflected by the previous hit (any point of its line will do)
            d = d - 2.0 * dot(d, hits[-1].ns, keepdim=True) * hits[-1].ns
            hits.append(_trace(sc, hits[-1].points, d, face[:, i]))
        for shift, hit in reversed(list(zip(self.shifts, hits))):
            q = hit.points + shift * hit.ns
            p = p - 2.0 * dot(p - q, hit.ns, keepdim=True) * hit.ns
        return _project(w2c, k, p, persp)[0]


class _Samples(NamedTuple):
    x_b: Tensor  # [k, 2] differentiable boundary points (pixels)
    normal: Tensor  # [k, 2] unit screen normals
    weight: Tensor  # [k] clipped projected length / M
    near: tuple[Tensor, Tensor]  # accumulate's (face [k, C + 1]: the mirror faces, then the silhouette's, side [k])


def mirror_samples(sc, view, mirror: MirrorPlane, M: int, gen: torch.Generator,
                   second: MirrorPlane | None = None) -> _Samples | None:
    """The boundary points of view ``view = (b, w2c, k, c2w, persp)`` seen in ``mirror`` (and then in ``second``)
    that pass the visibility tests (module docstring), or None when none does. ``M`` is scaled by the fraction
    of the image the window (the mirrors' screen bounding boxes) covers."""
    mv = MirrorView(sc, view, mirror, second)
    if mv.sign == 0 or not mv.chain_seen():
        return None
    _, _, _, c2w, persp = view
    p0, nrm = mv.last.point, mv.last.normal
    fnorm, v0 = sc.accel._face_data
    edges, ef = sc.accel.edges, sc.accel.edge_faces
    vd = sc.verts.detach()
    with torch.no_grad():
        facing = mv.facing(fnorm, v0)  # silhouettes as seen from the virtual camera
        sil = _silhouette(ef, facing) & (sc.owner[ef[:, 0]] != mv.last.shape)
        eid = torch.nonzero(sil).squeeze(1)
        e = edges[eid]
        height = mv.sign * ((vd - p0) @ nrm)  # [V] signed distance on the reflecting side
        front = (height[e[:, 0]] > 0) | (height[e[:, 1]] > 0)
        e, eid = e[front], eid[front]
        P, z = mv.project(vd)
        front = (z[e[:, 0]] > sc.camera.near) & (z[e[:, 1]] > sc.camera.near)
        e, eid = e[front], eid[front]
        if e.shape[0] == 0:
            return None
        P0, P1 = P[e[:, 0]], P[e[:, 1]]
        s0, s1 = _clip(P0, P1, mv.lo, mv.hi)
        M = math.ceil(M * mv.share())
        length = (P1 - P0).norm(dim=-1) * (s1 - s0).clamp_min(0.0)
        total = float(length.sum())
        if total <= 0 or M <= 0:
            return None
        pick = stratified_picks(length, M, gen)
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
        ok, face = mv.visible(xd, pts)
        cand = torch.nonzero(ok).squeeze(1)
        if cand.numel() == 0:
            return None
        normal = _perp((P1 - P0)[pick][cand])
        # The silhouette's face and its side, as seen from the virtual viewpoint (the jump is shaded on it).
        pts = pts[cand]
        ray = pts - mv.eye if persp else mv.fwd.expand_as(pts)
        seen, side = _silhouette_side(ef[eid[pick[cand]]], facing, sc.faces, fnorm, P, z, xd[cand], normal, ray,
                                      sc.camera.near)
    # Differentiable: the edge point (its vertices), seen in the re-attached mirror hit (camera, mirror vertices).
    ec = ep[cand]
    ea = sc.verts.index_select(0, ec[:, 0])
    eg = ea + t3[cand, None] * (sc.verts.index_select(0, ec[:, 1]) - ea)
    x_b = mv.attach(xd[cand], face[cand], eg)
    return _Samples(x_b, normal, torch.full((cand.numel(),), total / M, dtype=sc.dtype, device=sc.device),
                    (torch.cat([face[cand], seen[:, None].to(face.dtype)], 1), side))


def mirror_silhouettes(sc, view, M: int, accumulate) -> None:
    """Add the boundary terms of what every planar mirror of ``sc`` shows in view ``view`` through
    ``accumulate`` (:func:`lumigrad.render._trace_edges.boundary_term`'s): silhouettes, and with shadows
    the shadow boundaries of point and directional lights and the penumbrae of area and environment
    lights."""
    mirrors = planar_mirrors(sc)
    if not mirrors:
        return
    # A generator and a scene copy of the term's own, so that its random draws (sampling and the jumps'
    # radiance) leave the other terms' streams as they are without mirrors.
    own = copy.copy(sc)
    own.gen = torch.Generator(device=sc.device).manual_seed((sc.settings.seed * 1_000_003 + (1 << 61) + view[0])
                                                            % (2**63))
    virtual = None
    for mirror in mirrors:
        smp = mirror_samples(own, view, mirror, M, own.gen)
        if smp is not None:
            ok = torch.ones(smp.weight.shape[0], dtype=torch.bool, device=sc.device)
            accumulate(view[0], smp.x_b, smp.normal, smp.weight, ok, own, near=smp.near)
        mv = MirrorView(own, view, mirror)
        m = math.ceil(M * mv.share())
        if not sc.settings.shadows or mv.sign == 0 or m <= 0:
            continue
        for light in sc.point_lights:
            _mirror_shadow(own, view, mv, light, m, accumulate, own)
        if virtual is None:  # area / environment lights as point / directional lights, as boundary_term does
            virtual = [(light, _via_mirror(scene), skip, cos_from)
                       for light, scene, skip, cos_from in _virtual_lights(own)]
        for light, scene, skip, cos_from in virtual:
            m_k = max(1, m // sc.settings.shadow_light_samples)
            _mirror_shadow(own, view, mv, light, m_k, accumulate, scene, cos_from, skip)
    if sc.settings.max_bounces < 2:  # a path through two mirrors needs two bounces to see anything
        return
    for first in mirrors:  # chains camera -> first -> second (drawn after the single mirrors' samples)
        for second in mirrors:
            if second is not first:
                smp = mirror_samples(own, view, first, M, own.gen, second)
                if smp is not None:
                    ok = torch.ones(smp.weight.shape[0], dtype=torch.bool, device=sc.device)
                    accumulate(view[0], smp.x_b, smp.normal, smp.weight, ok, own, near=smp.near)


def _mirror_shadow(sc, view, mv: MirrorView, light, M: int, accumulate, scene, cos_from=None, skip=None) -> None:
    """``_shadow_boundary`` of ``light`` seen in mirror ``mv``; ``skip [E]`` bool: edges that cast nothing."""
    fnorm, v0 = sc.accel._face_data
    ef = sc.accel.edge_faces
    sil = _silhouette(ef, _facing_one(light, fnorm, v0))
    if skip is not None:
        sil &= ~skip
    if _light_side(light, mv.last) == mv.sign:  # the mirror's own shadow falls behind it: not in view
        sil &= sc.owner[ef[:, 0]] != mv.last.shape
    _shadow_boundary(sc, view, light, sc.accel.edges[sil], M, accumulate, scene, cos_from, via=mv)


def _via_mirror(scene):
    """A light-only scene copy of ``_virtual_lights`` (direct light only) with one bounce more: the camera
    ray's mirror bounce, then the receiver's direct light from that light (which is what jumps)."""
    v = copy.copy(scene)
    v.settings = dataclasses.replace(scene.settings, max_bounces=scene.settings.max_bounces + 1)
    return v


def _light_side(light, mirror: MirrorPlane) -> int:
    """+1 / -1 / 0: the side of the mirror's plane (along its normal) a point or directional light is on."""
    if isinstance(light, PointLight):
        h = float(dot(mirror.normal, light.position.detach().to(mirror.normal) - mirror.point))
    else:
        h = float(dot(mirror.normal, light.to_light.detach().to(mirror.normal)))
    return (h > 0) - (h < 0)
