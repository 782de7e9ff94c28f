"""Boundary term of silhouettes seen in curved mirrors (edge sampling + a specular-manifold Newton solve).

A curved mirror (a :class:`~lumigrad.scene.trace_types.MirrorMaterial` shape that is not planar in the
sense of :func:`lumigrad.render._trace_edges_mirror.mirror_plane`: a smooth-shaded "chrome ball", a bent
sheet) reflects each ray about its *interpolated shading normal*, so no virtual camera exists and the
planar module cannot sample what it shows. Here the path camera -> mirror point ``m`` -> edge point ``p``
is found per sampled edge point by solving the reflection law on the mirror's triangles.

Method, per view and per curved mirror:

* **Edges.** Candidates are the edges of the other shapes that can be silhouettes seen from *some* point of
  the mirror: open edges, and edges with a face whose plane cuts the mirror's bounding sphere or whose two
  faces see it from opposite sides. With a still camera and a still mirror only moving shapes' edges
  (:class:`~lumigrad.render._trace_edges.Motion`: the others' terms are exactly zero). ``M`` points are
  stratified along them by 3D length (:func:`_stratified`; ``M = TraceSettings.edge_samples``, default
  ``H * W``, times the fraction of the image the mirror's screen bounding box covers, per curved mirror and
  view, as the planar-mirror term; no new setting).
* **Reflection law.** On mirror face ``f`` (corners ``v_i``, vertex normals ``n_i``), with barycentrics
  ``b``: ``m(b) = sum b_i v_i``, ``n(b) = normalize(sum b_i n_i)`` (the renderer's shading normal),
  ``wo = normalize(c - m)`` (``-forward`` for an orthographic camera), the renderer's reflected-ray origin
  ``m' = m + sigma eps g`` (``g`` the face's unit normal, ``sigma`` the side the reflected ray leaves on),
  ``r = normalize(p - m')``, ``h = normalize(wo + r)``; the constraint is
  ``F(b) = ((h - s n) . t1, (h - s n) . t2) = 0`` (``t1, t2``: the face's tangents, ``s``: the side the
  camera sees), i.e. ``h`` parallel to ``n``: 2 equations, 2 unknowns.
* **Seeds, and several solutions.** A curved mirror can show one edge point several times, and each image
  is a boundary of its own: the estimator adds one boundary sample per solution (the boundary integral is
  the sum over the image curves, so this is unbiased). Solutions are searched per face: the constraint
  linearised in ``b`` over face ``f`` (the mismatch ``u_i = reflect(wo_i, n_i) - normalize(p - v_i)`` at
  its corners, projected on the tangents, interpolated linearly) has one zero, and the face is tried
  (Newton from that zero, clamped into the face) when that zero lies within ``_SEED_MARGIN`` of the face
  (barycentrics ``> -_SEED_MARGIN``), after a cheaper cone test on the reflected directions. A solution
  counts when Newton converges (``|F| < 1e-10``) *inside* its face (``b >= -1e-12``; repeats of one solution
  on a shared edge are dropped), so a solution found from the seeds of two faces is counted once. Margins
  measured on the chrome ball (3000 edge points): 0.25 and 0.1 find every solution that Newton from every
  face finds, 0 misses 3 %; ``test_seeds_find_every_solution`` checks 0.25 on the ball and a concave sheet.
  Not covered: two solutions inside one face (a fold of the reflection map within a triangle).
* **Kept when** the edge is a silhouette seen from ``m'`` (its faces face opposite ways from it, or it is
  open), the camera sees ``m`` (nothing in between) and ``m' -> p`` is unoccluded.
* **Jump and weight.** The jump is ``boundary_term``'s at ``x = project(m)`` (the full radiance through
  the mirror): the silhouette's face seen from ``m'`` is shaded at ``x`` itself (the camera ray re-attached
  to the mirror face, the reflected ray to the silhouette face; its side of the outline is the sign of the
  screen step towards its centroid), and one camera ray goes a hair beyond the edge. With two rays a hair
  either side (before session 14) the term depended on the offset: 6 % / 0.8 % low at 1e-2 / 1e-3 pixels
  on a lit sphere seen in a chrome ball, whose rim faces are thinner than that in the reflection. The screen tangent ``dx/ds`` (``s``: the edge
  parameter) is the implicit derivative ``db/ds = -J^-1 dF/dp dp/ds`` pushed through ``m`` and the
  projection (forward mode), the weight ``|dx/ds| L / (len_e M)``.
* **Differentiable boundary point**: one Newton step taken with autograd on from the detached solution,
  ``b = b* - J^-1 F(b*, theta)`` (``J``, ``b*`` detached), then ``x_b = project(m(b))``: its derivative is
  the implicit-function derivative of the solution w.r.t. the edge's vertices, the camera (pose and
  intrinsics) and the mirror's vertices (positions and, through the vertex normals, their shading).

Why Newton on the triangles and not a virtual camera per triangle, or path-space sampling of the mirror:
the renderer reflects about interpolated normals, so the reflected image of an edge is a smooth curve that
no piecewise-planar model reproduces; the solve gives the exact boundary of the image the renderer makes
(a faceted virtual camera would put the samples off the rendered outline, where the two side rays see no
jump). Sampling mirror points and hitting the edge instead has probability zero.

Checks (``tests/trace/test_trace_curved_mirror_edges.py``, chrome ball 16^2, 4000 samples, float64): against
a closed form (the emitter's outline solved point by point as a polygon, whose pixel-weighted area matches
the render to 4e-5 relative, differentiated at h = 1e-5; ``ray_eps = 1e-6``, see the known bias below): camera x / z and ball x / y translations
-0.09470 / -0.22887 / 0.09358 / -0.04187 (s.e. <= 0.00009) vs -0.09469 / -0.22888 / 0.09357 / -0.04190;
the quad's translation vs central differences of renders; a concave cylindrical sheet (slow test).
Stratified edge points matter: with independent length-proportional picks the camera-x standard error was
0.0129 (of 0.075), stratified 0.0004. Central differences of renders are themselves off by O(h) when the
outline's extreme points sit on pixel borders (2 % at h = 0.02 with the ball centred on a pixel corner).

Known bias, from the renderer: reflected rays start ``ray_eps`` (of the scene's size) off the mirror along
the *face* normal, which jumps across the mirror's edges, so the reflection steps by about that much at
every mirror edge and the rendered outline has short pieces along those creases, which this term does not
sample. With the default ``ray_eps = 1e-4`` in the test scene (eps = 0.35 % of the ball's radius) that is
0.5-1.7 % of the gradient (ball y: -0.04128 vs -0.04200), at ``1e-5`` 0.1-0.3 %, at ``1e-6`` within noise.

Cost: torch on top of the BVH ops (no Warp kernel): ``M x F_mirror`` cone tests (chunked matmuls) and
linearised seeds, then Newton (forward-mode Jacobians) on about 5 surviving pairs per sample: about 0.1 ms
of CPU per edge sample (``bench/results_curved_mirror_edges.md``: 64^2, level-3 ball, gradient w.r.t. the
quad, 389 ms with the term vs 20 ms without, 19.8x; w.r.t. the camera 403 vs 34 ms; 128^2 1230 vs 59 ms).

Not covered: faceted (flat-shaded) curved mirrors' creases (the reflection jumps across them; nothing
samples that curve), shadows seen in curved mirrors, the mirror's own edges seen in itself, and paths
with more than one mirror bounce or a curved mirror seen from a diffuse surface.
"""
from __future__ import annotations

import copy
import functools
import math
import warnings
from typing import NamedTuple

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from lumigrad.geometry.normals import dot
from lumigrad.ops.trace import occluded
from lumigrad.render._trace_edges import (_MIN_COS, _REL_TOL, _perp, _project, _seen_from_camera, motion,
                                          seen_face)

__all__ = ["curved_mirrors", "curved_silhouettes", "solve_reflection"]

_SEED_MARGIN = 0.25  # a face is tried when its linearised solution has barycentrics > -this
_NEWTON_ITERS = 40
_NEWTON_TOL = 1e-10  # |F| (sines) at convergence, float64
_MAX_STEP = 0.5  # largest Newton step (barycentric units): keeps far seeds from jumping across the mirror
_LOST = 2.0  # Newton gives up on a face when an iterate's barycentrics fall below -this
_BORDER = 1e-12  # barycentrics down to -this count as inside (rounding on shared edges)
_MAX_COPIES = 12  # faces around one vertex at most, for de-duplicating border solutions
_CONE = 3.0  # the cone test's slack (a factor on the face's reflected-direction spread)
_CHUNK_PAIRS = 1 << 20  # sample x face pairs per chunk of the seed search


def _unit(v: Tensor) -> Tensor:
    """``v / |v|`` in plain torch (forward-mode AD and no kernel launch on the small batches here)."""
    return v / (v * v).sum(-1, keepdim=True).sqrt().clamp_min(1e-300)


def curved_mirrors(sc) -> list[int]:
    """Shape ids of the mirrors of render scene ``sc`` that are not planar (the planar module's others)."""
    from lumigrad.render._trace_edges_mirror import mirror_plane

    out = []
    for i in torch.nonzero(sc.mats.mirror).flatten().tolist():
        mesh = sc.shapes[i].mesh
        if mirror_plane(mesh.verts, mesh.faces) is None:
            out.append(i)
    return out


class _Face(NamedTuple):
    """Per (edge point, mirror face) pair: the face's corners and vertex normals, and the two fixed signs."""

    tri: Tensor  # [N, 3, 3] corner positions
    nrm: Tensor  # [N, 3, 3] corner vertex normals
    s: Tensor  # [N] +-1 the side of the face the camera is on
    sigma: Tensor  # [N] +-1 the side the reflected ray leaves on


def _constraint(b: Tensor, face: _Face, eye: Tensor, p: Tensor, persp: bool, eps: float) -> Tensor:
    """``[N, 2]`` the reflection law's residual at barycentrics ``b [N, 2]`` (module docstring); ``eye [N, 3]``
    the camera centre (perspective) or its forward direction (orthographic), ``p [N, 3]`` the edge points."""
    tri, nrm = face.tri, face.nrm
    w = torch.cat([1.0 - b.sum(-1, keepdim=True), b], -1)[..., None]  # [N, 3, 1]
    m = (w * tri).sum(1)
    n = _unit((w * nrm).sum(1))
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    g = _unit(torch.linalg.cross(e1, e2, dim=-1))
    t1 = _unit(e1)
    t2 = torch.linalg.cross(g, t1, dim=-1)
    wo = _unit(eye - m) if persp else -eye
    r = _unit(p - (m + (face.sigma * eps)[:, None] * g))
    d = _unit(wo + r) - face.s[:, None] * n
    return torch.stack([dot(d, t1), dot(d, t2)], -1)


@functools.cache
def _forward_ad_ready() -> None:
    """Torch loads its forward-mode decompositions on the first ``make_dual``, through ``torch.jit.script``, which
    warns (DeprecationWarning, torch 2.13) from inside the render: load them once with that warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with fwAD.dual_level():
            fwAD.make_dual(torch.zeros(1), torch.zeros(1))


def _jacobian(b: Tensor, face: _Face, eye: Tensor, p: Tensor, persp: bool, eps: float) -> tuple[Tensor, Tensor]:
    """``(F [N, 2], J [N, 2, 2])``: the residual and its derivative w.r.t. ``b`` (two forward-mode passes)."""
    _forward_ad_ready()
    cols = []
    with fwAD.dual_level():
        for k in range(2):
            tangent = torch.zeros_like(b)
            tangent[:, k] = 1.0
            out = _constraint(fwAD.make_dual(b, tangent), face, eye, p, persp, eps)
            F, dF = fwAD.unpack_dual(out)
            cols.append(dF)
    return F, torch.stack(cols, -1)


def _solve2(J: Tensor, F: Tensor) -> Tensor:
    """``[N, 2]`` ``J^-1 F`` for ``J [N, 2, 2]`` (Cramer; zero where ``J`` is singular)."""
    det = J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]
    ok = det.abs() > 1e-300
    inv = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
    x0 = (J[:, 1, 1] * F[:, 0] - J[:, 0, 1] * F[:, 1]) * inv
    x1 = (J[:, 0, 0] * F[:, 1] - J[:, 1, 0] * F[:, 0]) * inv
    return torch.stack([x0, x1], -1)


def solve_reflection(b0: Tensor, face: _Face, eye: Tensor, p: Tensor, persp: bool, eps: float
                     ) -> tuple[Tensor, Tensor]:
    """``(b [N, 2], converged [N] bool)``: Newton on :func:`_constraint` from ``b0 [N, 2]`` (float64, detached;
    steps clamped to ``_MAX_STEP``). ``converged``: ``|F| < _NEWTON_TOL`` with a regular Jacobian. Rows leave
    the iteration when converged, or when they wander farther than ``_LOST`` (barycentrics) from their face,
    whose solution, if any, is then another face's (that face has its own seed)."""
    with torch.no_grad():
        b = b0.clone()
        conv = torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
        act = torch.arange(b.shape[0], device=b.device)
        for _ in range(_NEWTON_ITERS):
            if act.numel() == 0:
                break
            fa = _Face(*(x[act] for x in face))
            ba = b[act]
            F, J = _jacobian(ba, fa, eye[act], p[act], persp, eps)
            det = J[:, 0, 0] * J[:, 1, 1] - J[:, 0, 1] * J[:, 1, 0]
            done = (F.norm(dim=-1) < _NEWTON_TOL) & (det.abs() > 1e-12)
            conv[act[done]] = True
            step = _solve2(J, F)
            norm = step.norm(dim=-1, keepdim=True)
            ba = ba - step * (_MAX_STEP / norm.clamp_min(_MAX_STEP))
            b[act] = torch.where(done[:, None], b[act], ba)
            w0 = 1.0 - ba.sum(-1)
            lost = (torch.minimum(w0, ba.min(-1).values) < -_LOST) | ~torch.isfinite(ba).all(-1)
            act = act[~done & ~lost]
        return b, conv


def _reflect(wo: Tensor, n: Tensor) -> Tensor:
    return 2.0 * dot(n, wo, keepdim=True) * n - wo


def _seeds(p: Tensor, tri: Tensor, nrm: Tensor, eye: Tensor, persp: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(sample [k], face [k], b0 [k, 2])``: the (edge point, mirror face) pairs worth a Newton solve and
    their seeds: the zero of the reflection law linearised over the face (module docstring), when within
    ``_SEED_MARGIN`` of it. ``p [M, 3]`` edge points, ``tri, nrm [Fm, 3, 3]`` the faces' corners and normals
    (``face`` indexes them). A cone test goes first: the direction from the face to ``p`` must lie within
    ``_CONE`` times the spread of the corners' reflected directions (plus the face's angular size seen from
    ``p``) of the reflected direction at the centroid."""
    Fm = tri.shape[0]
    g = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    t1 = _unit(tri[:, 1] - tri[:, 0])
    t2 = torch.linalg.cross(_unit(g), t1, dim=-1)
    wo = _unit(eye - tri) if persp else (-eye).expand_as(tri)  # [Fm, 3, 3]
    refl = _reflect(wo, _unit(nrm))  # [Fm, 3, 3]
    cen = tri.mean(1)
    refl_c = _reflect(_unit(eye - cen) if persp else (-eye).expand_as(cen), _unit(nrm.sum(1)))
    spread = torch.acos(dot(refl, refl_c[:, None]).clamp(-1.0, 1.0)).max(1).values  # [Fm]
    size = (tri - cen[:, None]).norm(dim=-1).max(1).values  # [Fm]
    out_s, out_f, out_b = [], [], []
    rows = max(1, _CHUNK_PAIRS // max(Fm, 1))
    for lo in range(0, p.shape[0], rows):
        pc = p[lo:lo + rows]
        # |p - cen| and (p - cen) . refl_c by matmuls ([m, Fm], no [m, Fm, 3] temporaries).
        dist = ((pc * pc).sum(-1)[:, None] - 2.0 * pc @ cen.T + (cen * cen).sum(-1)[None]).clamp_min(0.0).sqrt()
        along = pc @ refl_c.T - (cen * refl_c).sum(-1)[None]
        ang = torch.acos((along / dist.clamp_min(1e-300)).clamp(-1.0, 1.0))
        reach = _CONE * (spread[None] + torch.asin((size[None] / dist.clamp_min(1e-300)).clamp(max=1.0)))
        s_i, f_i = torch.nonzero(ang <= reach, as_tuple=True)
        u = refl[f_i] - _unit(pc[s_i, None] - tri[f_i])  # [k, 3, 3]
        U = torch.stack([dot(u, t1[f_i, None]), dot(u, t2[f_i, None])], -1)  # [k, 3, 2]

        def cross2(a, b):
            return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

        w = torch.stack([cross2(U[:, 1], U[:, 2]), cross2(U[:, 2], U[:, 0]), cross2(U[:, 0], U[:, 1])], -1)
        den = w.sum(-1, keepdim=True)  # w / den: barycentrics of the origin in U's triangle
        ok = den.abs() > 1e-300
        bary = w / torch.where(ok, den, torch.ones_like(den))
        keep = torch.nonzero(ok[:, 0] & (bary.min(-1).values > -_SEED_MARGIN)).squeeze(1)
        out_s.append(s_i[keep] + lo)
        out_f.append(f_i[keep])
        # Seeds clamped into the face (Newton then walks out if the solution lies elsewhere).
        bb = bary[keep].clamp_min(0.0)
        out_b.append((bb / bb.sum(-1, keepdim=True))[:, 1:])
    return torch.cat(out_s), torch.cat(out_f), torch.cat(out_b)


def _candidate_edges(sc, mirror: int, moves) -> Tensor:
    """``[E]`` bool: edges of other shapes that can be silhouettes seen from the mirror (module docstring)."""
    fnorm, v0 = sc.accel._face_data
    ef = sc.accel.edge_faces
    vd = sc.verts.detach()
    mv = vd[sc.faces_long[sc.owner == mirror].reshape(-1)]
    centre = 0.5 * (mv.max(0).values + mv.min(0).values)
    radius = float((mv - centre).norm(dim=-1).max()) + sc.eps
    dist = dot(fnorm, centre - v0) / fnorm.norm(dim=-1).clamp_min(1e-300)  # [F] signed distance of the centre
    cuts = dist.abs() <= radius
    f0, f1 = ef[:, 0], ef[:, 1].clamp(min=0)
    open_edge = ef[:, 1] < 0
    cand = open_edge | cuts[f0] | cuts[f1] | ((dist[f0] > 0) != (dist[f1] > 0))
    cand &= sc.owner[f0] != mirror
    if not moves.camera and not bool(moves.shapes[mirror]):
        cand &= moves.edges(sc)
    return cand


class _Solutions(NamedTuple):
    sample: Tensor  # [k] edge point index
    face: Tensor  # [k] merged face id of the mirror face holding the solution
    b: Tensor  # [k, 2] barycentrics (float64, detached)
    pairs: _Face  # per-solution face data (detached, float64)


def _mirror_face_data(sc, faces: Tensor, nrm_src: Tensor, verts: Tensor) -> tuple[Tensor, Tensor]:
    f = sc.faces_long.index_select(0, faces)
    tri = verts.index_select(0, f.reshape(-1)).reshape(-1, 3, 3)
    nrm = nrm_src.index_select(0, f.reshape(-1)).reshape(-1, 3, 3)
    return tri, nrm


def _seen_faces(sc, view, mirror: int) -> Tensor:
    """``[Fm]`` long: the faces of ``mirror`` that view ``view`` may see: a corner or the centroid in front of
    the camera, projected into the image and not hidden (a closed mirror's back half has no solutions to
    find; a face whose four test points are all hidden but some other point seen is missed)."""
    b_id, w2c, k, c2w, persp = view
    mf = torch.nonzero(sc.owner == mirror).squeeze(1)
    with torch.no_grad():
        tri = sc.verts.detach()[sc.faces_long[mf].reshape(-1)].reshape(-1, 3, 3)
        pts = torch.cat([tri, tri.mean(1, keepdim=True)], 1).reshape(-1, 3)  # [4 Fm, 3]
        x, z = _project(w2c.detach(), k.detach(), pts, persp)
        H, W = sc.camera.height, sc.camera.width
        front = z > sc.camera.near
        xy = x.reshape(-1, 4, 2)
        lo, hi = xy.min(1).values, xy.max(1).values
        in_img = (hi[:, 0] >= 0) & (lo[:, 0] <= W) & (hi[:, 1] >= 0) & (lo[:, 1] <= H)
        ok = front.reshape(-1, 4).all(1) & in_img  # (a face crossing the near plane: its points are tested)
        ok |= front.reshape(-1, 4).any(1) & ~front.reshape(-1, 4).all(1)
        cand = torch.nonzero(ok.repeat_interleave(4) & front).squeeze(1)
        seen = torch.zeros(pts.shape[0], dtype=torch.bool, device=sc.device)
        seen[cand] = _seen_from_camera(sc, b_id, c2w.detach(), pts[cand], persp)
        return mf[seen.reshape(-1, 4).any(1)]


def _solve_all(sc, view, mirror: int, p: Tensor, eye: Tensor, persp: bool) -> _Solutions | None:
    """Every solution of the reflection law on ``mirror`` for the edge points ``p [M, 3]`` (float64, detached)."""
    mf = _seen_faces(sc, view, mirror)
    if mf.numel() == 0:
        return None
    tri, nrm = _mirror_face_data(sc, mf, sc.vnormals.detach().double(), sc.verts.detach().double())
    sample, fi, b0 = _seeds(p, tri, nrm, eye, persp)
    if sample.numel() == 0:
        return None
    t, nr, ps = tri[fi], nrm[fi], p[sample]
    g = torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1)
    cen = t.mean(1)
    s = torch.sign(dot(g, eye - cen) if persp else -dot(g, eye.expand_as(g)))
    sigma = torch.sign(dot(g, ps - cen))
    face = _Face(t, nr, s, sigma)
    b, conv = solve_reflection(b0, face, eye.expand_as(ps), ps, persp, sc.eps)
    with torch.no_grad():
        w = torch.cat([1.0 - b.sum(-1, keepdim=True), b], -1)
        m = (w[..., None] * t).sum(1)
        n = _unit((w[..., None] * nr).sum(1))
        wo = _unit(eye - m) if persp else -eye.expand_as(m)
        r = _unit(ps - m)
        # Inside its face, the camera and the reflected ray on the sides assumed (s, sigma), a true reflection
        # (h along +s n, not the ghost on the other hemisphere).
        ok = conv & (w.min(-1).values >= -_BORDER) & (s != 0) & (sigma != 0)
        ok &= (torch.sign(dot(g, wo)) == s) & (torch.sign(dot(g, r)) == sigma) & (s * dot(n, wo) > 0)
        keep = torch.nonzero(ok).squeeze(1)
        keep = keep[_first_copies(sample[keep], m[keep], float(t.detach().abs().max()))]
    if keep.numel() == 0:
        return None
    pick = _Face(*(x[keep] for x in face))
    return _Solutions(sample[keep], mf[fi[keep]], b[keep], pick)


def _first_copies(sample: Tensor, m: Tensor, size: float) -> Tensor:
    """``[k]`` bool: the solutions that are not a repeat of an earlier one of the same edge point (a solution
    on a shared edge or corner is inside every face around it, up to rounding: ``_BORDER``)."""
    order = torch.argsort(sample, stable=True)
    first = torch.ones(sample.shape[0], dtype=torch.bool, device=sample.device)
    ss, ms = sample[order], m[order]
    for lag in range(1, 1 + _MAX_COPIES):  # a vertex has at most this many faces around it in practice
        if lag >= sample.shape[0]:
            break
        same = (ss[lag:] == ss[:-lag]) & ((ms[lag:] - ms[:-lag]).norm(dim=-1) <= 1e-9 * max(size, 1e-30))
        first[order[lag:][same]] = False
    return first


def _point(tri: Tensor, b: Tensor) -> Tensor:
    w = torch.cat([1.0 - b.sum(-1, keepdim=True), b], -1)[..., None]
    return (w * tri).sum(1)


def _stratified(length: Tensor, M: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(edge [M], s [M])``: ``M`` points stratified along the edges laid end to end (one uniform point in
    each ``1 / M`` of the total length): each is uniform over the total length, as a length-proportional
    pick, but an edge gets its expected share of the points up to one. Why: a reflected outline's edges
    have large jumps of opposite sign that nearly cancel (a dark quad's two sides), and with independent
    picks the random split of the samples between them was most of the variance (camera x on the chrome
    ball: standard error 0.0129 for a gradient of -0.075 with 4000 samples; stratified: 0.0004)."""
    cum = torch.cumsum(length, 0)
    total = cum[-1]
    t = (torch.arange(M, dtype=length.dtype, device=length.device)
         + torch.rand(M, generator=gen, dtype=length.dtype, device=length.device)) * (total / M)
    edge = torch.searchsorted(cum, t, right=True).clamp(max=length.shape[0] - 1)
    start = cum[edge] - length[edge]
    s = ((t - start) / length[edge].clamp_min(1e-300)).clamp(0.0, 1.0)
    return edge, s


def curved_samples(sc, view, mirror: int, M: int, gen: torch.Generator):
    """``(x_b [k, 2], normal [k, 2], weight [k], near)`` boundary samples of the silhouettes seen in curved
    ``mirror`` from view ``view = (b, w2c, k, c2w, persp)`` (module docstring), or None when none passes the
    tests; ``near = (face [k, 2], side [k])``: the mirror face, the silhouette face seen in it and its side
    (``boundary_term``'s ``accumulate``)."""
    b_id, w2c, k, c2w, persp = view
    cand = _candidate_edges(sc, mirror, motion(sc))
    e = sc.accel.edges[cand]
    if e.shape[0] == 0:
        return None
    vd = sc.verts.detach()
    length = (vd[e[:, 1]] - vd[e[:, 0]]).norm(dim=-1)
    total = float(length.sum())
    if total <= 0 or M <= 0:
        return None
    pick, s = _stratified(length.double(), M, gen)
    ep = e[pick]
    a64, c64 = vd[ep[:, 0]].double(), vd[ep[:, 1]].double()
    p = a64 + s[:, None] * (c64 - a64)
    c2w64 = c2w.detach().double()
    eye = c2w64[:3, 3] if persp else c2w64[:3, 2]
    sol = _solve_all(sc, view, mirror, p, eye, persp)
    if sol is None:
        return None
    i, fc = sol.sample, sol.pairs
    with torch.no_grad():
        m = _point(fc.tri, sol.b)
        g = _unit(torch.linalg.cross(fc.tri[:, 1] - fc.tri[:, 0], fc.tri[:, 2] - fc.tri[:, 0], dim=-1))
        src = m + (fc.sigma * sc.eps)[:, None] * g
        # The edge is a silhouette seen from the reflected ray's origin.
        fnorm, v0 = sc.accel._face_data
        ef = sc.accel.edge_faces[cand][pick][i]
        facing = dot(fnorm[ef[:, 0]].double(), src - v0[ef[:, 0]].double()) > 0
        other = dot(fnorm[ef[:, 1].clamp(min=0)].double(), src - v0[ef[:, 1].clamp(min=0)].double()) > 0
        ok = (ef[:, 1] < 0) | (facing != other)
        x, z = _project(w2c.detach().double(), k.detach().double(), m, persp)
        H, W = sc.camera.height, sc.camera.width
        ok &= (x[:, 0] >= 0) & (x[:, 0] < W) & (x[:, 1] >= 0) & (x[:, 1] < H) & (z > sc.camera.near)
        sel = torch.nonzero(ok).squeeze(1)
        dt = sc.dtype
        seen = _seen_from_camera(sc, b_id, c2w.detach(), m[sel].to(dt), persp)
        sel = sel[seen]
        sel = sel[~occluded(sc.accel.bvh, src[sel].to(dt), (p[i[sel]] - src[sel]).to(dt), 1.0 - _REL_TOL)]
        if sel.numel() == 0:
            return None
        # Screen tangent dx/ds by implicit differentiation: db/ds = -J^-1 dF/dp (c - a).
        fs = _Face(*(x_[sel] for x_ in fc))
        bs, ps = sol.b[sel], p[i[sel]]
        ey = eye.expand_as(ps)
        F, J = _jacobian(bs, fs, ey, ps, persp, sc.eps)

        def screen_step(dp: Tensor) -> Tensor:  # dx for the edge point moved by dp (first order)
            with fwAD.dual_level():
                dF = fwAD.unpack_dual(_constraint(bs, fs, ey, fwAD.make_dual(ps, dp), persp, sc.eps)).tangent
                xm = _project(w2c.detach().double(), k.detach().double(),
                              _point(fs.tri, fwAD.make_dual(bs, -_solve2(J, dF))), persp)[0]
                return fwAD.unpack_dual(xm).tangent

        dxds = screen_step((c64 - a64)[i[sel]])
        weight = dxds.norm(dim=-1) * total / (length[pick][i[sel]].double() * M)
        normal = _perp(dxds)
        near = _seen_side(sc, ef[sel], facing[sel], ps, src[sel], normal, screen_step)
    x_b = _attach(sc, view, mirror, sol.face[sel], bs, J, ep[i[sel]], s[i[sel]], fs)
    seen, side = near
    face = torch.stack([sol.face[sel], seen], 1).to(torch.int32)
    return x_b, normal.to(sc.dtype), weight.to(sc.dtype), (face, side.to(sc.dtype))


def _seen_side(sc, ef: Tensor, facing: Tensor, p: Tensor, src: Tensor, normal: Tensor, screen_step
               ) -> tuple[Tensor, Tensor]:
    """``(face [k], side [k])``, as the primary silhouettes' ``_silhouette_side``: the silhouette face seen from
    the reflected ray's origin ``src`` on each edge point ``p``, and the side of the reflected outline (screen
    ``normal``) it lies on: the sign of the screen step towards its centroid. ``side`` is 0 (two rays measure
    the jump) where the reflected ray meets the face at less than ``_MIN_COS``."""
    face = seen_face(ef[:, 0], ef[:, 1], facing)
    corners = sc.verts.detach().double()[sc.faces_long[face]]  # [k, 3, 3]
    side = torch.sign(dot(normal, screen_step(corners.mean(1) - p)))
    g = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
    cos = dot(_unit(g), _unit(p - src)).abs()
    return face, torch.where(cos > _MIN_COS, side, torch.zeros_like(side))


def _attach(sc, view, mirror: int, faces: Tensor, b_star: Tensor, J: Tensor, edge: Tensor, s: Tensor,
            fs: _Face) -> Tensor:
    """``[k, 2]`` differentiable boundary pixels: one Newton step with autograd on from the solution ``b_star``
    (``J`` detached), ``b = b* - J^-1 F(b*, theta)``, then ``project(m(b))`` (module docstring)."""
    _, w2c, k, _, persp = view
    dt = sc.dtype
    tri, nrm = _mirror_face_data(sc, faces, sc.vnormals, sc.verts)
    a = sc.verts.index_select(0, edge[:, 0])
    p = a + s.to(dt)[:, None] * (sc.verts.index_select(0, edge[:, 1]) - a)
    c2w = torch.linalg.inv(w2c)
    eye = (c2w[:3, 3] if persp else c2w[:3, 2]).expand_as(p)
    face = _Face(tri, nrm, fs.s.to(dt), fs.sigma.to(dt))
    bs = b_star.to(dt)
    F = _constraint(bs, face, eye, p, persp, sc.eps)
    b = bs - _solve2(J.to(dt), F)
    return _project(w2c, k, _point(tri, b), persp)[0]


def _screen_share(sc, view, mirror: int) -> float:
    """The fraction of the image covered by the screen bounding box of ``mirror``'s vertices in front of the
    camera (clipped to the image): its share of the ``M`` samples, as a planar mirror's window gets."""
    _, w2c, k, _, persp = view
    x, z = _project(w2c.detach(), k.detach(), sc.shapes[mirror].mesh.verts.detach(), persp)
    x = x[z > sc.camera.near]
    if x.shape[0] == 0:
        return 0.0
    W, H = sc.camera.width, sc.camera.height
    lo = torch.minimum(x.min(0).values.clamp_min(0), x.new_tensor([W, H]))
    hi = torch.minimum(x.max(0).values, x.new_tensor([W, H])).clamp_min(0)
    return float((hi - lo).clamp_min(0).prod()) / (W * H)


def curved_silhouettes(sc, view, M: int, accumulate) -> None:
    """Add the boundary terms of the silhouettes every curved mirror of ``sc`` shows in view ``view`` through
    ``accumulate`` (:func:`lumigrad.render._trace_edges.boundary_term`'s)."""
    mirrors = curved_mirrors(sc)
    if not mirrors:
        return
    # A generator of the term's own (and a scene copy holding it, for the jumps' radiance), so the other
    # terms' random streams are those of the scene without curved mirrors.
    own = copy.copy(sc)
    own.gen = torch.Generator(device=sc.device).manual_seed((sc.settings.seed * 1_000_003 + (1 << 60) + view[0])
                                                            % (2**63))
    for mirror in mirrors:
        smp = curved_samples(own, view, mirror, math.ceil(M * _screen_share(sc, view, mirror)), own.gen)
        if smp is None:
            continue
        x_b, normal, weight, near = smp
        ok = torch.ones(weight.shape[0], dtype=torch.bool, device=sc.device)
        accumulate(view[0], x_b, normal, weight, ok, own, near=near)

