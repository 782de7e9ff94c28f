"""Boundary term of visibility changes seen from the path vertices (occlusion of indirect light).

:mod:`lumigrad.render._trace_edges` samples the discontinuities of the *screen* integral (primary
silhouettes) and of the *light* integrals at the first hits (hard shadows, penumbrae). With
``max_bounces >= 2`` a path vertex ``x`` also integrates indirect light over directions,
``int f(x, w) cos L_ind(x, w) dw``, and ``L_ind`` jumps where an edge seen from ``x`` separates two
surfaces (an occluder in front of a lit wall). Moving the occluder, or ``x`` itself, moves that
curve on the sphere of directions, which interior (re-attached) gradients cannot see.

Estimator (Li et al. 2018, "Differentiable Monte Carlo ray tracing through edge sampling", their
secondary edges, without the edge hierarchy): per view, ``N`` camera samples (one per pixel by
default) find their first hit ``x_0`` and continue by the path tracer's own BSDF samples
(:func:`lumigrad.render.path._sample_bsdf`, mirrors included) to ``x_1 .. x_{max_bounces - 2}``, with
throughput ``beta_k`` (detached). At each non-mirror vertex ``x = x_k`` the sample picks a mesh edge
among the edges that can be silhouettes (open boundaries, and edges between non-coplanar faces) through
the edge tree of :mod:`lumigrad.render._edge_tree` (a descent weighing each node by its edges' length
where its bounds allow a silhouette seen from ``x`` above its tangent plane, and at the leaf each edge by its
length where it is one; the weight divides by ``P(edge | x)``, the probability the pick was drawn with),
and a point ``p`` on it, drawn uniformly
in the angle the edge subtends at ``x`` (:func:`_equiangular`); ``_EDGE_PICKS = 2`` such picks per vertex,
each weighted ``1 / 2``. Until session 12 edges were picked by length among all candidates, 8 per vertex
(most were not silhouettes seen from ``x``, and there are ``O(sqrt(E))`` silhouettes among ``E`` edges);
on ``bench/trace_gi_shape.py``'s scene (lumigrad alone, 32 seeds, ``scratch`` A/B in one process), CPU x MSE
of the gradient at 82k triangles: by length x 8 0.25, tree x 2 0.19, x 4 0.28, x 8 0.28 (the tree's picks
are mostly silhouettes, so each traces its rays: 1.0 CPU s per gradient with 8 against 0.56 with 2); at 5k
by length x 8 0.16, tree x 1 0.13, x 2 0.15. The gradient's error there is now mostly the other terms'
(rel. RMSE ~0.55-0.6 with or without this term's noise). Where the edge is
a silhouette seen from ``x``, ``p`` is visible from ``x`` and in the hemisphere of ``x``'s shading
normal (the hemisphere the path tracer integrates, whichever side the path arrived from), the jump
``L_ind(w_B) - L_ind(w_A)`` is measured by a ray from ``x`` a hair beside ``p`` and, on the side of the
face seen on the edge, the ray to ``p`` itself re-attached to that face (a face seen edge-on subtends less
than the hair: ``bench/results_trace12.md``; ``w_A`` on the side of ``m = normalize(w x e)``), and the term
``beta_k f cos (L_B - L_A) |dw/dt| / P(edge) * (H W / N) * (m . (w_b - stop_grad(w_b)))`` is added to
the pixel of the sample, with ``w_b = normalize(p - x)`` a differentiable function of the edge's
vertices and of ``x`` (re-attached, hence of the hit triangle, the earlier vertices and the camera):
zero-valued, its gradient is the boundary integral (``|dw/dt|`` converts the edge parameter to arc
length on the sphere; divided by the density of ``p`` it is the subtended angle). Points uniform along
the edge (until session 11) gave weights growing as ``1 / distance`` for edges passing close to ``x``,
an infinite variance.

``L_ind`` at ``x_k`` is the radiance arriving from the next hit with the path's remaining
``max_bounces - 1 - k`` bounces. At the first hit it leaves out that hit's emission and the
environment seen by escaping rays: the first hits' direct light has its own boundary terms
(penumbrae of area and environment lights, hard shadows of point lights), so counting it here would
count it twice. The same holds at the hit right behind a planar mirror, whose direct light the
mirror's screen-space terms differentiate (:mod:`lumigrad.render._trace_edges_mirror`), and at every
vertex after one that drew shadow samples (:mod:`lumigrad.render._trace_edges_shadow_indirect`): the
penumbra at ``x_{k+1}`` seen from ``x_k`` is the same discontinuity of the path integral as the
occluder's silhouette across the emitter seen from ``x_{k+1}``, sliced the other way, so it is counted
once. Until session 11 the later vertices kept direct light: with an area light and three bounces
that counted the penumbra twice (``test_area_light_penumbra_seen_at_the_second_vertex_is_counted_once``:
0.0132 +- 0.0044 against central differences of 0.00615 +- 0.00026, now 0.0062 +- 0.0005), and its
rare large jumps were most of the noise of shape gradients under an area light (``bench/trace_gi_shape.py``,
5k triangles: relative RMSE 6.0 -> 1.4 with both changes, ``bench/results_trace11.md``). Where no shadow
samples are drawn (``shadows=False``, or after a mirror vertex) ``L_ind`` is the whole incoming radiance.
Escaping rays always see the ambient and SH lights, which act as a distant environment when
``max_bounces > 1`` (:func:`lumigrad.render.path._sky_radiance`).

Checked against closed forms (``tests/trace/test_trace_indirect_edges.py``): a wall lit only by a
floor, with an occluder between them, seen directly (first vertex) and in a coloured planar mirror
(second vertex: camera -> mirror -> wall, where only this term carries the gradient); and a card
seen from its back against central differences of renders with common random numbers.

Shadow boundaries that the indirect light carries (a shadow cast on the floor, seen by the wall) are
not mesh edges: their samples (:mod:`lumigrad.render._trace_edges_shadow_indirect`) are drawn in the
same loop, at the same vertices with the same throughputs.

**Silhouettes seen in planar mirrors** from ``x`` (a wall lit through a mirror, an occluder moving in
the mirror's view) are not mesh edges seen from ``x`` either: for each planar mirror
(:func:`lumigrad.render._trace_edges_mirror.planar_mirrors`), each hit also draws one sample on the
*virtual* edges, the mesh edges (the mirror's own left out, picked by length as above) reflected across
the mirror's plane: ``p' = R(p)``, with ``R`` the reflection across the plane moved half the ray offset
towards ``x`` (the plane the renderer's reflected rays effectively use, see
:mod:`lumigrad.render._trace_edges_mirror`: else the two rays that measure the jump need not straddle
the reflected edge). It is kept where ``x`` and ``p`` lie on the same side of the plane, the edge is a
silhouette seen from ``x`` reflected, ``p'`` is in the hemisphere of ``x``'s shading normal, the ray from
``x`` towards ``p'`` hits that mirror first, and its reflection reaches ``p`` unoccluded. The jump is
measured as above (the two rays from ``x`` go through the mirror, ``L_ind`` with the same bounces) with
the virtual edge's direction in ``m`` and ``|dw/dt|``; the differentiable direction is
``w_b = normalize(R_q(p) - x)``, ``R_q`` the reflection across the plane through the re-attached mirror
hit ``q`` with its shading normal (so the mirror's vertices get gradients too; as in the screen-space
mirror term, the plane does not depend on where ``q`` lies on it, so the implicit derivative is the
explicit one). Through a mirror only emitters and environments are seen with one bounce left (the
mirror's), so with point / directional lights alone the samples are skipped at the last vertex depth.
They draw from a generator of their own (seed and view), so the other samples of a scene with mirrors
are what they were without them. Budget: ``indirect_samples`` per vertex depth *and per planar mirror*
(one per hit, most rejected by the cheap tests before any ray is traced). Checked against a closed form
(``tests/trace/test_trace_indirect_mirror_edges.py``: a wall lit only through a mirror, an occluder seen
only in it; the gradient is exactly zero without these samples): 12 x 8192 samples give d(mean)/d(occluder
x, y, z) = -0.0002 +- 0.0004, 0.0025 +- 0.0006, -0.0051 +- 0.0002 for 0.0001, 0.0033, -0.0048; 64 x 16384
(the slow test) 0.0001 +- 0.0002, 0.0031 +- 0.0002, -0.00492 +- 0.00006 (y, z 1.3 and 1.7 standard errors
off: not conclusive either way at this budget).
Cost (``bench/mirror_edges_more.py``, the chains' bench scene: a floor seeing a sphere in two mirror
walls, 3 bounces, 4 spp, default samples; A/B in one process, medians of 7): the mirror samples add 5-9 %
to the render with every other term on (64^2: 240 vs 228 ms, 128^2: 481 vs 441 ms; about 120 of 3747
samples per mirror pass the tests at 64^2, and none is drawn at the last depth there: point light only).
Not covered: edges seen from ``x`` through two or more mirrors, or in curved mirrors, and the shadows
seen in mirrors from ``x`` (shadow curves reflected).

``TraceSettings.indirect_samples`` sets the budget (per vertex depth). ``_PICKER = "length"`` restores the
picks by length among all candidates (kept for A/B benches). Tried and not kept: picking in proportion to
length x dihedral angle (the share of directions from which an edge is a silhouette). On the test wall with a
black level-3 icosphere as occluder (16 x 4096 samples) it moved samples from the sphere's nearly flat edges,
which carry the gradient, to the walls' static open edges: the standard error of d/dy grew 6x (0.00026 vs
0.00004). In the tree, weighing by the angle an edge subtends at ``x`` instead of its length
(:data:`lumigrad.render._edge_tree.BY_ANGLE`) gave no gain on the bench scene (82k triangles, 24 seeds, 4
picks: rel. RMSE 0.56 vs 0.53).
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot, safe_normalize
from lumigrad.ops.trace import intersect, occluded
from lumigrad.render._attached import attach_camera_hits, attach_path_hits, ray_material_points
from lumigrad.render._trace_edges_shadow_indirect import shadow_casters, shadow_samples
from lumigrad.render._trace_edges import _MIN_COS, seen_face

__all__ = ["indirect_boundary"]

_SIDE = 1e-4  # half the angle (radians) between the two rays that measure a jump
_REL_TOL = 1e-4  # the visibility test of an edge point stops this fraction short of it
_FLAT = 1e-6  # edges whose faces' normals differ less than this (sine) cannot be silhouettes
_EDGE_PICKS = 2  # edges picked per hit (see _edge_samples and the module docstring)
_PICKER = "tree"  # "tree": lumigrad.render._edge_tree; "length": by length among all candidates


def _candidate_edges(sc) -> Tensor:
    """``[E]`` bool: open boundary edges and edges between non-coplanar faces."""
    fn, _ = sc.accel._face_data
    ef = sc.accel.edge_faces
    n0 = safe_normalize(fn[ef[:, 0]])
    n1 = safe_normalize(fn[ef[:, 1].clamp(min=0)])
    bent = (torch.linalg.cross(n0, n1, dim=-1).norm(dim=-1) > _FLAT) | (dot(n0, n1) < 0)
    return (ef[:, 1] < 0) | bent


def _incoming(sc, origins: Tensor, dirs: Tensor, bounces: int, direct: Tensor, known: Tensor | None = None
              ) -> tuple[Tensor, Tensor]:
    """``(L [R, 3], face [R])``: radiance arriving at ``origins`` from ``dirs``: what the next hit reflects
    (``bounces`` bounces from it) and, where ``direct [R]`` (bool) holds, its emission and the environment seen by
    escaping rays; escaping rays always see the ambient and SH lights (a distant environment when ``max_bounces >
    1``); and those first hits (int32, -1: none). ``known [R]``: the first hits where ``>= 0`` (re-attached, not
    traced)."""
    from lumigrad.render.path import _emission, _fill_unknown_hits, _radiance, _sky_radiance, _trace

    ind = copy.copy(sc)
    ind.settings = dataclasses.replace(sc.settings, max_bounces=bounces, background=(0.0, 0.0, 0.0))
    if known is None:
        face = intersect(sc.accel.bvh, origins, dirs).face
    else:
        face = _fill_unknown_hits(sc, origins, dirs, known.to(torch.int32))
    L, hit = _radiance(ind, origins, dirs, sc.gen, face)
    if not bool(direct.all()):
        h = _trace(ind, origins, dirs, face)
        L = L.index_add(0, h.idx, -_emission(ind, h) * (~direct[h.idx]).to(L.dtype)[:, None])
    miss = torch.nonzero(~hit).squeeze(1)
    if miss.numel():
        if sc.env is not None:
            env_off = torch.nonzero(~direct[miss]).squeeze(1)
            L = L.index_add(0, miss[env_off], -sc.env.eval(dirs[miss[env_off]]).to(L.dtype))
        if sc.ambient or sc.sh:
            L = L.index_add(0, miss, _sky_radiance(sc, dirs[miss]).to(L.dtype))
    return L, face


class _EdgeTable:
    """The edges an edge sample may pick: candidates' lengths (pick probability ``length / total``)."""

    def __init__(self, sc, skip_shape: int | None = None, length: Tensor | None = None) -> None:
        """``length``: the candidates' lengths when known (another table's), else computed (Warp kernel
        :func:`lumigrad.render._edge_tree.candidate_lengths`, reference ``length * _candidate_edges(sc)``)."""
        from lumigrad.render._edge_tree import candidate_lengths

        self.edges, self.ef = sc.accel.edges, sc.accel.edge_faces
        if length is None:
            length = candidate_lengths(sc.verts.detach(), self.edges, self.ef, sc.accel._face_data[0], _FLAT)
        self.length = length
        if skip_shape is not None:  # a mirror's own edges (in its plane: never seen in it)
            self.length = self.length * (sc.owner[self.ef[:, 0]] != skip_shape)
        self.total = float(self.length.sum())
        self._tree = None
        self._sc = sc

    def tree(self):
        """The :class:`lumigrad.render._edge_tree.EdgeTree` over these edges (built at the first call)."""
        if self._tree is None:
            from lumigrad.render._edge_tree import EdgeTree, edge_order

            acc = self._sc.accel
            fn, v0 = acc._face_data
            vd = self._sc.verts.detach()
            # The edges' order (a Morton curve) depends on the topology only for correctness: kept on the accel
            # (0.2-0.4 CPU s per render at 2M edges otherwise).
            order = getattr(acc, "_edge_tree_order", None)
            if order is None or order.shape[0] != self.edges.shape[0]:
                order = acc._edge_tree_order = edge_order(vd, self.edges)
            self._tree = EdgeTree(vd, self.edges, self.ef, fn, v0, self.length, order)
        return self._tree


class IndirectTables:
    """What :func:`indirect_boundary` needs of the mesh that is the same for every view and round of a render
    (detached): the edge table, the planar mirrors with theirs, and the lights' silhouette edges
    (``light_edges``: :func:`lumigrad.render._trace_edges.light_silhouettes`' pair, or None to compute them).
    Built once per render (at 1.3M triangles the edge table took 0.19 s in torch, the lights' silhouettes 0.6 s
    per use)."""

    def __init__(self, sc, light_edges=None) -> None:
        self.table = _EdgeTable(sc)
        self.light_edges = light_edges
        self.mirrors = []  # (plane, its edge table) of each planar mirror, for the edges seen in it
        if bool(sc.mats.mirror.any()):
            from lumigrad.render._trace_edges_mirror import planar_mirrors

            self.mirrors = [(m, _EdgeTable(sc, m.shape, self.table.length)) for m in planar_mirrors(sc)]


def indirect_boundary(sc, b: int, n: int, virtual=(), rnd: int = 0, tables: IndirectTables | None = None
                      ) -> tuple[Tensor, Tensor]:
    """``(pixel [k] long, contrib [k, 3])``: ``n`` boundary samples of view ``b`` (module docstring) at each of
    the path vertices ``x_0 .. x_{max_bounces - 2}``; ``pixel`` indexes the ``[B * H * W]`` image rows and
    ``contrib`` is zero-valued with the gradient. ``virtual``: the area / environment lights' samples as point /
    directional lights (:func:`lumigrad.render._trace_edges._virtual_lights`), whose shadows are sampled too.
    ``rnd``: the round, when the caller averages several (each round's own generators draw other samples);
    ``tables``: the render's :class:`IndirectTables` (built here when None)."""
    from lumigrad.render.path import _camera_rays, _sample_bsdf, _take, _trace

    cam = sc.camera
    H, W = cam.height, cam.width
    empty = (torch.zeros(0, dtype=torch.long, device=sc.device), torch.zeros(0, 3, dtype=sc.dtype, device=sc.device))
    tables = IndirectTables(sc) if tables is None else tables
    table = tables.table
    if table.total <= 0:
        return empty
    stream = b + (rnd << 16)  # views (< 65536) and rounds: the own generators' streams
    casters, shadow_gen = shadow_casters(sc, stream, virtual, tables.light_edges)
    # Camera samples: stratified by pixel when n is a multiple of H * W, else uniform over the image.
    with torch.no_grad():
        if n % (H * W) == 0:
            q = torch.arange(n, device=sc.device) % (H * W)
            pix = torch.stack([(q % W).to(sc.dtype), (q // W).to(sc.dtype)], -1) + sc.rand(n, 2)
        else:
            pix = sc.rand(n, 2) * torch.tensor([W, H], dtype=sc.dtype, device=sc.device)
        pixel_of_sample = b * H * W + pix[:, 1].floor().long().clamp(0, H - 1) * W + pix[:, 0].floor().long().clamp(0, W - 1)
    view = torch.full((n,), b, dtype=torch.long, device=sc.device)
    o, d = _camera_rays(cam, view, pix)
    # The first hits parameterised as the interior's are: material points with attached camera hits (the
    # boundary directions then move with the point, as the path tracer's rays from it do).
    h, _ = attach_camera_hits(sc, _trace(sc, o, d), view)
    rows, beta = h.idx, None  # each hit's camera sample; throughput of the path to it (None: 1)
    # Vertices whose direct light other terms differentiate, whose jumps leave it out: the first hits (the
    # screen-space shadow terms), the hits right behind a planar mirror (lumigrad.render._trace_edges_mirror)
    # and the vertices after one that drew shadow samples (_trace_edges_shadow_indirect).
    screen = torch.ones(h.idx.numel(), dtype=torch.bool, device=sc.device)
    planar = torch.zeros(len(sc.shapes), dtype=torch.bool, device=sc.device)
    mirrors = tables.mirrors
    if mirrors:
        planar[[m.shape for m, _ in mirrors]] = True
        mirrors = [(m, t) for m, t in mirrors if t.total > 0]
    msc = _own_stream(sc, stream) if mirrors else sc
    pixels, contribs = [], []
    last = sc.settings.max_bounces - 2
    for depth in range(last + 1):
        if h.idx.numel() == 0:
            break
        bounces = sc.settings.max_bounces - 1 - depth
        samples = [_edge_samples(sc, h, table, bounces, direct=~screen)]
        if _lit_after_mirror(sc, bounces):
            samples += [_mirror_edge_samples(msc, h, mt, m, bounces, ~screen) for m, mt in mirrors]
        if casters:
            samples.append(shadow_samples(sc, h, casters, shadow_gen, lambda sel, wn: _bsdf_cos(sc, h, sel, wn)))
        for sel, contrib in samples:
            if sel.numel():
                weight = (H * W / n) if beta is None else (H * W / n) * _take(beta, sel)
                pixels.append(_take(pixel_of_sample, _take(rows, sel)))
                contribs.append(contrib * weight)
        if depth == last:
            break
        # The next vertex, by the path tracer's own BSDF sample (its mirrors included).
        w, wi, _, delta = _sample_bsdf(sc, h, sc.gen)
        w = w.detach()
        beta = w if beta is None else beta * w
        side = torch.where(dot(h.ng, wi, keepdim=True) >= 0, 1.0, -1.0).to(sc.dtype)
        h2 = attach_path_hits(sc, h, _trace(sc, h.points + side * h.ng * sc.eps, wi), delta)[0]
        # The next vertex's direct light is differentiated elsewhere when this vertex drew shadow samples (its
        # penumbrae and hard shadows seen from here, the same discontinuity in this vertex's directions), or
        # when it is the hit right behind a planar mirror the camera sees.
        shadowed = ~sc.mats.mirror[h.shape] if casters else torch.zeros_like(screen)
        if depth == 0:
            shadowed = shadowed | (screen & planar[h.shape])
        screen = _take(shadowed, h2.idx)
        rows, beta, h = _take(rows, h2.idx), _take(beta, h2.idx), h2
    if not pixels:
        return empty
    return torch.cat(pixels), torch.cat(contribs)


def _bsdf_cos(sc, h, sel: Tensor, wn: Tensor) -> Tensor:
    """``[k, 3]`` (detached) BSDF times cosine of the hits ``h[sel]`` towards the unit directions ``wn [k, 3]``."""
    from lumigrad.render.path import _hit_material, _take

    with torch.no_grad():
        hs = type(h)(*(None if v is None else _take(v, sel) for v in h))
        at = {key: val.detach() for key, val in _hit_material(sc, hs).items()}
        ns = hs.ns.detach()
        return sc.mats.brdf(hs.shape, ns, wn, hs.wo.detach(), at) * dot(ns, wn, keepdim=True)


def _silhouette_from(ef: Tensor, fn: Tensor, v0: Tensor, eye: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(silhouette [k] bool, f0, f1)``: whether each edge (faces ``ef [k, 2]``, ``-1``: open) is a silhouette
    seen from ``eye [k, 3]`` (open, or one face turned towards it and the other away)."""
    f0, f1 = ef[:, 0], ef[:, 1]
    g1 = f1.clamp(min=0)
    return (f1 < 0) | ((dot(fn[f0], eye - v0[f0]) > 0) != (dot(fn[g1], eye - v0[g1]) > 0)), f0, f1


def _equiangular(x: Tensor, a: Tensor, c: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """``(t [k, 1], angle [k, 1])``: points ``a + t (c - a)`` on the segments ``a c`` drawn uniformly in the angle
    they subtend at ``x`` (equiangular sampling, ``u [k, 1]`` uniform), and that angle.

    The boundary term's ``|dw/dt|`` (the direction's angular speed along the edge) is ``len d / r^2`` (``d``: the
    line's distance from ``x``, ``r``: the point's), so with points uniform in ``t`` an edge passing close to
    ``x`` gives weights growing as ``1 / r`` with an infinite variance; drawn with density ``len d / (r^2
    angle)`` in ``t``, ``|dw/dt| / pdf(t)`` is the subtended angle: bounded by pi."""
    ev = c - a
    length = ev.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    along = ev / length
    s_foot = dot(x - a, along, keepdim=True)  # the foot of the perpendicular from x, along the edge
    d = (x - a - s_foot * along).norm(dim=-1, keepdim=True).clamp_min(1e-12 * length)
    th0, th1 = torch.atan2(-s_foot, d), torch.atan2(length - s_foot, d)
    t = ((s_foot + d * torch.tan(th0 + u * (th1 - th0))) / length).clamp(0.0, 1.0)
    return t, th1 - th0


def _jump(sc, org: Tensor, target: Tensor, wn: Tensor, dist: Tensor, edge_dir: Tensor, bounces: int,
          direct: Tensor, near: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, tuple]:
    """``(m [k, 3], jump [k, 3], sides)``: the unit normal ``m = normalize(wn x edge_dir)`` of the edge's curve on the
    sphere of directions at ``target`` (seen along ``wn`` at ``dist`` from ``org``) and the incoming radiance on
    its side B minus side A (side A towards ``m``), by two rays a hair either side. ``near = (face [k], centre
    [k, 3], normal [k, 3])``: the face seen on the edge, a point inside it and its normal; that face's side is
    shaded at the edge itself
    (the ray towards ``target`` re-attached to ``face``): a face seen nearly edge-on subtends less than the
    hair while its shading varies across it (as :func:`lumigrad.render._trace_edges._jumps`). ``sides``: for
    side A then B, ``(L [k, 3], first hit [k], ray direction [k, 3])``."""
    m = safe_normalize(torch.linalg.cross(wn, edge_dir, dim=-1))
    off = (_SIDE * dist) * m
    w_a, w_b = safe_normalize(target + off - org), safe_normalize(target - off - org)
    known = None
    if near is not None:
        face, centre, normal = near
        w_at = safe_normalize(target - org)
        # Where the ray meets the face's plane too obliquely to re-attach it, two rays beside the edge.
        steep = dot(normal, w_at).abs() > _MIN_COS * normal.norm(dim=-1).clamp_min(1e-30)
        on_a = dot(m, centre - target) > 0
        near_a, near_b = on_a & steep, ~on_a & steep
        w_a = torch.where(near_a[:, None], w_at, w_a)
        w_b = torch.where(near_b[:, None], w_at, w_b)
        none = torch.full_like(face, -1)
        known = torch.cat([torch.where(near_a, face, none), torch.where(near_b, face, none)])
    L, face = _incoming(sc, torch.cat([org, org], 0), torch.cat([w_a, w_b], 0), bounces, direct.repeat(2), known)
    k = target.shape[0]
    return m, L[k:] - L[:k], ((L[:k], face[:k], w_a), (L[k:], face[k:], w_b))


def _edge_samples(sc, h, table: _EdgeTable, bounces: int, direct: Tensor) -> tuple[Tensor, Tensor]:
    """``(sel [k], contrib [k, 3])``: one edge sample from each hit of ``h``; ``sel`` are the hits whose
    sample lies on a visible silhouette, ``contrib`` their zero-valued terms (per unit pixel weight); the jumps
    include direct light (emission, environment) where ``direct [h]`` holds."""
    from lumigrad.render.path import _take

    fn, v0 = sc.accel._face_data
    vd = sc.verts.detach()
    edges, ef = table.edges, table.ef
    none = (torch.zeros(0, dtype=torch.long, device=sc.device), torch.zeros(0, 3, dtype=sc.dtype, device=sc.device))
    with torch.no_grad():
        # _EDGE_PICKS edges per hit (the hit's path is shared); only those that pass the tests trace rays.
        hit = torch.arange(h.idx.numel(), device=sc.device).repeat_interleave(_EDGE_PICKS)
        k = hit.numel()
        if _PICKER == "tree":
            tree = table.tree()
            pick, prob = tree.pick(h.points.detach(), h.ns.detach(), _EDGE_PICKS, sc.rand(k, tree.depth))
        else:
            pick = torch.multinomial(table.length, k, replacement=True, generator=sc.gen)
            prob = table.length[pick] / table.total
        e = edges[pick]
        a, c = vd[e[:, 0]], vd[e[:, 1]]
        x, ng, ns = h.points.detach()[hit], h.ng.detach()[hit], h.ns.detach()[hit]
        t, angle = _equiangular(x, a, c, sc.rand(k, 1))
        p = a + t * (c - a)
        w = p - x
        dist = w.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        wn = w / dist
        sil, f0, f1 = _silhouette_from(ef[pick], fn, v0, x)
        own = (f0 == h.face[hit]) | (f1 == h.face[hit])
        # The direction integral is over the shading normal's hemisphere whichever side the path arrived from
        # (as the path tracer's BSDF sample); its rays leave from the geometric side they point to.
        side = torch.where(dot(ng, wn) >= 0, 1.0, -1.0).to(sc.dtype)
        ok = sil & ~own & (dot(ns, wn) > 0) & ~sc.mats.mirror[h.shape[hit]] & (prob > 0)
        sel = torch.nonzero(ok).squeeze(1)
        if sel.numel() == 0:
            return none
        org = x[sel] + (side[sel] * sc.eps)[:, None] * ng[sel]
        seen = ~occluded(sc.accel.bvh, org, p[sel] - org, 1.0 - _REL_TOL)
        sel = sel[seen]
        if sel.numel() == 0:
            return none
        org, hs = org[seen], hit[sel]
        wn_s = wn[sel]
        f0s, xs = f0[sel], x[sel]
        face_seen = seen_face(f0s, f1[sel], dot(fn[f0s], xs - v0[f0s]) > 0)
        centre = vd.index_select(0, sc.faces_long.index_select(0, face_seen).reshape(-1)).reshape(-1, 3, 3).mean(1)
        m, jump, sides = _jump(sc, org, p[sel], wn_s, dist[sel], (c - a)[sel], bounces, direct[hs],
                               (face_seen, centre, fn[face_seen]))
        # |dw/dt| / pdf(t) is the subtended angle; each of the hit's candidates counts 1 / _EDGE_PICKS
        scale = _bsdf_cos(sc, h, hs, wn_s) * (angle[sel] / (_EDGE_PICKS * prob[sel])[:, None])
    # Differentiable boundary direction: the edge point (edge vertices) seen from the re-attached hit.
    ep = e[sel]
    pb = sc.verts.index_select(0, ep[:, 0])
    pb = pb + t[sel] * (sc.verts.index_select(0, ep[:, 1]) - pb)
    x = _take(h.points, hs)
    wb = safe_normalize(pb - x)
    contrib = scale * jump * dot(m, wb - wb.detach(), keepdim=True)
    # Sides whose hits are attached (lumigrad.render._attached.attach_path_hits) move with their surfaces: the
    # edge's motion counts relative to theirs, L_B (v_e - V_B) - L_A (v_e - V_A) (side A towards m).
    for sign, (L, face, ray) in zip((1.0, -1.0), sides):
        contrib = contrib + sign * scale * L * _side_motion(sc, x, org, ray, face, m)
    return hs, contrib


def _side_motion(sc, x: Tensor, org: Tensor, ray: Tensor, face: Tensor, m: Tensor) -> Tensor:
    """``[k, 1]`` zero-valued, whose derivative is ``m . V``: the velocity on ``x``'s sphere of directions of the
    material point that the ray ``org + t ray`` meets on ``face [k]`` (0 unless that face's shape is attached)."""
    out = torch.zeros(x.shape[0], 1, dtype=sc.dtype, device=sc.device)
    got = ray_material_points(sc, face, org, ray)
    if got is None:
        return out
    rows, y = got
    v = safe_normalize(y - x.index_select(0, rows))
    return out.index_put((rows,), dot(m.index_select(0, rows), v - v.detach(), keepdim=True))


def _own_stream(sc, stream: int):
    """A shallow copy of ``sc`` with a generator of its own (seeded from the seed and the view's ``stream``): the samples
    of edges seen in mirrors leave the other samples' random streams as they are."""
    own = copy.copy(sc)
    own.gen = torch.Generator(device=sc.device).manual_seed((sc.settings.seed * 1_000_003 + (3 << 60) + stream) % (2**63))
    return own


def _lit_after_mirror(sc, bounces: int) -> bool:
    """Whether radiance can arrive at a vertex through a mirror with ``bounces`` bounces from the mirror hit:
    one (the mirror's) reaches only emitters and environments, two reach lit surfaces."""
    sky = bool(sc.ambient or sc.sh) and not sc.analytic_sky
    return bounces >= 2 or bool(sc.emitters) or sc.env is not None or sky


def _mirror_edge_samples(sc, h, table: _EdgeTable, mirror, bounces: int, direct: Tensor) -> tuple[Tensor, Tensor]:
    """``(sel [k], contrib [k, 3])`` as :func:`_edge_samples`, for the edges seen in planar ``mirror``
    (:class:`lumigrad.render._trace_edges_mirror.MirrorPlane`): one sample per hit of ``h`` on the reflection of
    an edge (module docstring); ``table``: the edges other than the mirror's own."""
    from lumigrad.render.path import _take, _trace

    fn, v0 = sc.accel._face_data
    vd = sc.verts.detach()
    p0, n = mirror.point, mirror.normal
    edges, ef = table.edges, table.ef
    none = (torch.zeros(0, dtype=torch.long, device=sc.device), torch.zeros(0, 3, dtype=sc.dtype, device=sc.device))
    with torch.no_grad():
        k = h.idx.numel()
        pick = torch.multinomial(table.length, k, replacement=True, generator=sc.gen)
        e = edges[pick]
        a, c = vd[e[:, 0]], vd[e[:, 1]]
        x, ng, ns = h.points.detach(), h.ng.detach(), h.ns.detach()
        hx = (x - p0) @ n
        sign = torch.sign(hx)  # x's side of the plane: the reflecting side

        def virtual(q):  # q reflected across the plane the renderer's reflected rays use (half the ray offset
            # towards x, as lumigrad.render._trace_edges_mirror explains), so that the jump's rays straddle it
            return q - (2.0 * ((q - p0) @ n - 0.5 * sign * sc.eps))[:, None] * n

        t, angle = _equiangular(x, virtual(a), virtual(c), sc.rand(k, 1))  # the reflection keeps t
        p = a + t * (c - a)
        hp = (p - p0) @ n
        pv = virtual(p)
        xv = x - (2.0 * hx)[:, None] * n  # x seen from behind the mirror: the silhouettes are those seen from it
        w = pv - x
        dist = w.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        wn = w / dist
        sil = _silhouette_from(ef[pick], fn, v0, xv)[0]
        side = torch.where(dot(ng, wn) >= 0, 1.0, -1.0).to(sc.dtype)
        ok = sil & (hx.abs() > sc.eps) & (sign * hp > sc.eps) & (dot(ns, wn) > 0) & ~sc.mats.mirror[h.shape]
        sel = torch.nonzero(ok).squeeze(1)
        if sel.numel() == 0:
            return none
        # The ray from x towards the virtual point must hit this mirror first, and its reflection reach p.
        org = x[sel] + (side[sel] * sc.eps)[:, None] * ng[sel]
        d = pv[sel] - org
        face = intersect(sc.accel.bvh, org, d).face
        dn = dot(d, n)
        hit = (face >= 0) & (dn != 0) & (sc.owner[face.long().clamp(min=0)] == mirror.shape)
        keep = torch.nonzero(hit).squeeze(1)
        sel, org, d, face, dn = sel[keep], org[keep], d[keep], face[keep], dn[keep]
        q = org + (dot(p0 - org, n) / dn)[:, None] * d
        src = q + (sign[sel] * sc.eps)[:, None] * n
        seen = ~occluded(sc.accel.bvh, src, p[sel] - src, 1.0 - _REL_TOL)
        sel, org, d, face = sel[seen], org[seen], d[seen], face[seen]
        if sel.numel() == 0:
            return none
        wn_s = wn[sel]
        ev = c[sel] - a[sel]
        ev = ev - 2.0 * dot(ev, n, keepdim=True) * n  # the virtual edge's direction
        m, jump, _ = _jump(sc, org, pv[sel], wn_s, dist[sel], ev, bounces, direct[sel])  # sides: the mirror
        f = _bsdf_cos(sc, h, sel, wn_s)
        weight = f * jump * angle[sel] * (table.total / table.length[pick[sel]])[:, None]  # |dw/dt| / pdf(t)
    # Differentiable boundary direction: the edge point (edge vertices) reflected across the plane through the
    # re-attached mirror hit with its shading normal (mirror vertices), seen from the re-attached x.
    ep = e[sel]
    pb = sc.verts.index_select(0, ep[:, 0])
    pb = pb + t[sel] * (sc.verts.index_select(0, ep[:, 1]) - pb)
    xs = _take(h.points, sel)
    mh = _trace(sc, xs, d, face)  # any point of the plane will do: the reflection depends only on the plane
    qm = mh.points + (0.5 * sc.eps * sign[sel])[:, None] * n
    wb = safe_normalize(pb - 2.0 * dot(pb - qm, mh.ns, keepdim=True) * mh.ns - xs)
    return sel, weight * dot(m, wb - wb.detach(), keepdim=True)
