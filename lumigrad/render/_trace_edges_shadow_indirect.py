"""Boundary term of hard shadows seen from the path vertices (shadows carried by indirect light).

A point or directional light's hard shadow on a receiver (the floor) is a curve across which the
radiance the receiver reflects jumps. Another surface that sees the floor (a wall, at a path vertex
``x = x_k``) integrates that radiance over directions, so the jump is a discontinuity of its incoming
radiance along the shadow curve as seen from ``x``. It is not a mesh edge, so the silhouette samples
of :mod:`lumigrad.render._trace_edges_indirect` miss it; moving the occluder, the light, the receiver
or ``x`` moves it.

Estimator, at the same path vertices and with the same throughput ``beta_k`` as those silhouette
samples (the loop of :func:`lumigrad.render._trace_edges_indirect.indirect_boundary` calls this one):
for each point / directional light, a point ``e(s)`` on the edges that are silhouettes seen from the
light, picked by length (the pieces of :func:`lumigrad.render._trace_edges._shadow_boundary`), is
pushed along the light ray onto its receiver ``q``. Where ``e`` is lit, ``q`` is visible from ``x``, in
the hemisphere of ``x``'s shading normal (the one the path tracer integrates) and not on ``x``'s own
face, the term is ``beta_k f cos (L_B - L_A) |dw/ds| / P(edge) * (H W / N) * (m . (w_b - stop_grad(w_b)))``
with ``w_b = normalize(q - x)`` (``q`` re-attached on the receiver's triangle: a function of the edge's
vertices, the light's position or direction and the receiver's vertices; ``x`` re-attached), the
tangent ``dw/ds`` of ``normalize(q(e(s)) - x)`` by central differences, ``m`` its normal on the
sphere, and the jump measured by two rays from ``x`` a hair either side with *that light alone,
direct light only* (a copy of the scene lit by it): across the shadow curve only that light's direct
light at ``q`` jumps (what ``q`` reflects of other light is continuous there), so this is the whole
jump, without the noise of the remaining bounces.

No double counting: the silhouette samples measure jumps across mesh-edge silhouettes seen from
``x``, these across shadow curves, which are other curves. At the first vertex ``x_0`` the screen-space
hard-shadow term covers shadows *on* ``x_0``'s surface (a discontinuity of the screen integral over
``x_0``); this one covers shadows on the surfaces ``x_0`` sees (discontinuities of ``x_0``'s direction
integral of indirect light, paths camera -> ``x_0`` -> ``q`` -> light), so both are counted at ``x_0``.
The same holds at the vertex right behind a planar mirror, whose *own* shadows the mirror's
screen-space terms differentiate (:mod:`lumigrad.render._trace_edges_mirror`): the shadows it sees
on other surfaces are this term's.

Checked (``tests/trace/test_trace_indirect_shadows.py``) against a quadrature closed form on a scene
where the occluder's gradient comes only from this term (exactly zero without it): 32 x 16384 samples
give d(mean)/d(occluder y, z) = -0.00333 +- 0.00002, 0.0066 +- 0.0002 for -0.00330, 0.00638, and
d/d(light z) = -0.0096 +- 0.0005 for -0.0092 (interior part alone: -0.0049); central differences of
8192-spp renders agree. Cost: 1.10-1.17x the forward + backward CPU time of a Cornell box with a point light
(``bench/results_indirect_shadows.md``).

Penumbrae of area and environment lights: as in the screen term, their ``shadow_light_samples``
light samples act as point / directional lights (:func:`lumigrad.render._trace_edges._virtual_lights`,
the same ones), an emitter point's cosine towards ``q`` weighting its samples. Each hit takes one of a
source's ``K`` samples, uniformly, weighted by ``K`` (sampling all ``K`` per hit would cost ``K`` times
the rays). Checked against central differences (a small emissive square instead of the point light):
16 x 16384 samples 0.0065 +- 0.0003 vs 0.0061 +- 0.0002. Cost with the Cornell box's area light:
1.45x (2 bounces) to 1.70x (3 bounces) the forward + backward time, mostly per-light overhead of the 16
small sample groups.

The samples draw from their own generator (a fixed function of the seed and the view), so turning
them on leaves every other sample of the render as it was. Not covered: shadow curves seen in mirrors
at the first hit (a screen-space boundary).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot, safe_normalize
from lumigrad.ops.trace import occluded, reattach
from lumigrad.render._trace_edges import (_DS, _edge_lit, _facing_one, _light_ray, _lit_by, _pick_edge_points,
                                          _receiver_steps, _receivers, _silhouette)

__all__ = ["shadow_casters", "shadow_samples"]

_SIDE = 1e-4  # half the angle (radians) between the two rays that measure a jump
_REL_TOL = 1e-4  # the visibility test of a receiver point stops this fraction short of it
_GRAZE = 1e-6  # receivers seen at a smaller cosine to x's geometric normal are taken as coplanar with x


def shadow_casters(sc, b: int, virtual=()) -> tuple[list, torch.Generator | None]:
    """``(groups, generator)``: groups of ``(light, edges [E, 2], lit-only scene, cos_from)``, one group per
    point / directional light and one per area or environment light (its ``virtual`` samples, of which each
    hit takes one), and the generator of view ``b``'s samples (None without shadows)."""
    if not sc.settings.shadows or not (sc.point_lights or virtual):
        return [], None
    gen = torch.Generator(device=sc.device).manual_seed((sc.settings.seed * 1_000_003 + (1 << 61) + b) % (2**63))
    fn, v0 = sc.accel._face_data
    ef = sc.accel.edge_faces

    def caster(light, scene, skip=None, cos_from=None):
        sil = _silhouette(ef, _facing_one(light, fn, v0))
        e = sc.accel.edges[sil if skip is None else sil & ~skip]
        lit = copy.copy(scene)
        lit.gen = gen
        return (light, e, lit, cos_from) if e.shape[0] else None

    groups = [[caster(light, _lit_by(sc, light))] for light in sc.point_lights]
    # _virtual_lights lists K = shadow_light_samples samples per emitter (an emitter point each, with its
    # cosine), then the environment's (directions, no cosine; fewer where the pdf is 0): one group per source.
    area = [v for v in virtual if v[3] is not None]
    K = max(1, sc.settings.shadow_light_samples)
    groups += [[caster(*v) for v in area[i:i + K]] for i in range(0, len(area), K)]
    groups.append([caster(*v) for v in virtual if v[3] is None])
    return [g for g in groups if any(c is not None for c in g)], gen


def shadow_samples(sc, h, groups: list, gen: torch.Generator, bf_cos) -> tuple[Tensor, Tensor]:
    """``(sel [k], contrib [k, 3])``: one shadow-curve sample per light group from each hit of ``h``; ``sel`` are
    the hits whose samples count (repeated per group) and ``contrib`` their zero-valued terms (per unit pixel
    weight). ``bf_cos(sel, wn) -> [k, 3]`` is the BSDF times cosine at those hits towards ``wn``."""
    from lumigrad.render.path import _take

    sels, contribs = [], []
    for group in groups:
        # A group's hits each take one of its K lights, uniformly: the sum over the K lights is K times it.
        which = torch.randint(len(group), (h.idx.numel(),), generator=gen, device=sc.device) if len(group) > 1 else None
        for i, cast in enumerate(group):
            if cast is None:
                continue
            rows = torch.arange(h.idx.numel(), device=sc.device) if which is None else torch.nonzero(which == i).squeeze(1)
            if rows.numel() == 0:
                continue
            hs = type(h)(*(None if v is None else _take(v, rows) for v in h))
            got = _one_light(sc, hs, *cast, gen, lambda sel, wn, rows=rows: bf_cos(rows[sel], wn))
            if got is not None:
                sels.append(rows[got[0]])
                contribs.append(got[1] * len(group))
    if not sels:
        return torch.zeros(0, dtype=torch.long, device=sc.device), torch.zeros(0, 3, dtype=sc.dtype, device=sc.device)
    return torch.cat(sels), torch.cat(contribs)


def _one_light(sc, h, light, edges: Tensor, lit, cos_from, gen, bf_cos) -> tuple[Tensor, Tensor] | None:
    from lumigrad.render._trace_edges_indirect import _incoming
    from lumigrad.render.path import _take

    picked = _pick_edge_points(sc, edges, h.idx.numel(), gen, sort=False)  # each hit its own iid pick
    if picked is None:
        return None
    pick, s, length, e = picked
    with torch.no_grad():
        hit, face, q = _visible_receivers(sc, h, light, e, s)
        if hit.numel() == 0:
            return None
        a, c = sc.verts.detach()[e[hit, 0]], sc.verts.detach()[e[hit, 1]]
        x, ng = h.points.detach()[hit], h.ng.detach()[hit]
        w = q - x
        dist = w.norm(dim=-1, keepdim=True)
        wn = w / dist
        qm, qp = _receiver_steps(sc, light, face, a, c, s[hit])
        tangent = (safe_normalize(qp - x) - safe_normalize(qm - x)) / (2 * _DS)
        m = safe_normalize(torch.linalg.cross(wn, tangent, dim=-1))
        org = x + torch.where(dot(ng, wn, keepdim=True) >= 0, 1.0, -1.0).to(sc.dtype) * sc.eps * ng
        off = (_SIDE * dist) * m
        w_a, w_b = safe_normalize(q + off - org), safe_normalize(q - off - org)
        direct = torch.ones(2 * hit.numel(), dtype=torch.bool, device=sc.device)
        L = _incoming(lit, torch.cat([org, org], 0), torch.cat([w_a, w_b], 0), 1, direct)
        jump = L[hit.numel():] - L[: hit.numel()]  # side B minus side A
        weight = bf_cos(hit, wn) * jump * tangent.norm(dim=-1, keepdim=True)
        weight = weight * (float(length.sum()) / length[pick[hit]])[:, None]
        if cos_from is not None:  # an emitter point: its cosine towards the receiver (the lit scene lacks it)
            y, ny = cos_from
            weight = weight * dot(safe_normalize(q - y), ny, keepdim=True).clamp_min(0.0)
    # Differentiable boundary direction: the receiver point of the edge point (edge vertices, light) on the
    # receiver's triangle (its vertices), seen from the re-attached hit.
    ep = e[hit]
    pa = sc.verts.index_select(0, ep[:, 0])
    ept = pa + s[hit] * (sc.verts.index_select(0, ep[:, 1]) - pa)
    qb = reattach(sc.verts, sc.faces, face, ept, _light_ray(light)(ept)).points
    wb = safe_normalize(qb - _take(h.points, hit))
    return hit, weight * dot(m, wb - wb.detach(), keepdim=True)


def _visible_receivers(sc, h, light, e: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(hit [k], face [k], q [k, 3])``: the hits of ``h`` whose edge point ``e(s)`` is lit and casts its
    shadow on a receiver point ``q`` (on ``face``) that the hit sees in its shading hemisphere."""
    vd = sc.verts.detach()
    ed = vd[e[:, 0]] + s * (vd[e[:, 1]] - vd[e[:, 0]])
    hit, face = _receivers(sc, light, ed)
    q = reattach(vd, sc.faces, face, ed[hit], _light_ray(light)(ed[hit]).detach()).points
    x, ng, ns = h.points.detach()[hit], h.ng.detach()[hit], h.ns.detach()[hit]
    wn = safe_normalize(q - x)
    # Receivers in x's own plane (its face, or a coplanar neighbour) are seen edge-on: no contribution, and
    # rounding would otherwise let a few through with cosines of 1e-17.
    ok = (dot(ns, wn) > 0) & (dot(ng, wn).abs() > _GRAZE) & (face != h.face[hit]) & ~sc.mats.mirror[h.shape[hit]]
    keep = torch.nonzero(ok).squeeze(1)
    keep = keep[_edge_lit(sc, light, ed[hit][keep])]
    hit, face, q = hit[keep], face[keep], q[keep]
    org = x[keep] + torch.where(dot(ng[keep], wn[keep], keepdim=True) >= 0, 1.0, -1.0).to(sc.dtype) * sc.eps * ng[keep]
    seen = ~occluded(sc.accel.bvh, org, q - org, 1.0 - _REL_TOL)
    return hit[seen], face[seen], q[seen]
