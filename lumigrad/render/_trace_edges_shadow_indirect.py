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
direct light only*: across the shadow curve only that light's direct light at ``q`` jumps (what ``q``
reflects of other light is continuous there), so this is the whole jump, without the noise of the
remaining bounces.

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
8192-spp renders agree.

Penumbrae of area and environment lights: as in the screen term, their ``shadow_light_samples``
light samples act as point / directional lights (:func:`lumigrad.render._trace_edges._virtual_lights`,
the same ones), an emitter point's cosine towards ``q`` weighting its samples. Each hit takes one of a
source's ``K`` samples, uniformly, weighted by ``K`` (sampling all ``K`` per hit would cost ``K`` times
the rays). Checked against central differences (a small emissive square instead of the point light):
16 x 16384 samples 0.0065 +- 0.0003 vs 0.0061 +- 0.0002. Environment lights (a bright patch of a map,
``test_environment_light_shadow_gradient_matches_*``), through the map's samples as directional lights:
the term is the occluder's only gradient; 96 x 16384 samples give d(mean)/d(occluder x, y, z) = -0.0030 +-
0.0002, 0.0012 +- 0.0002, -0.0005 +- 0.0002 against a closed form integrated over the map (the directional
light's, 16 x 16 directions) of -0.00270, 0.00125, -0.00071, and central differences (h = 0.03, 12 seeds)
-0.00268 +- 0.00012 for x.

Batched lights: each light's samples are drawn in turn (its edge picks, from the generator in the same
order as a loop over lights would), then all lights' samples go through each step together, with the
light as a per-sample row index (:class:`_Casters`: positions / directions, colours, emitter cosines):
one BVH launch for all receivers, one for the lit tests, one for the seen tests, one closest-hit launch
and one shadow-ray launch for all jump rays, whose radiance is the next-event estimate of
:func:`lumigrad.render.path._direct` with one light per row (torch, any material) instead of a light-only
scene copy and a :func:`lumigrad.render.path._radiance` call per light. Same random numbers, same samples:
the gradient equals the per-light loop's up to rounding (1e-15 relative; the loop's jump radiance came
from the fused ``shade_direct`` kernel on Lambert scenes). Cost (``bench/results_indirect_shadows.md``,
Cornell box, 64^2, 4 spp, fwd + bwd CPU time over the render without the term): area light (16 virtual
lights) 1.04x at 2 bounces, 1.15x at 3 (the loop: 1.51x, 1.77x); point light 1.01x (loop 1.12x).

The samples draw from their own generator (a fixed function of the seed and the view), so turning
them on leaves every other sample of the render as it was. Not covered: shadow curves seen in mirrors
at the first hit (a screen-space boundary).
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot, safe_normalize
from lumigrad.ops.trace import intersect, occluded, reattach
from lumigrad.render._trace_edges import _DS, _pick_edge_points, light_silhouettes, receiver_faces
from lumigrad.scene.lights import PointLight

__all__ = ["shadow_casters", "shadow_samples"]

_SIDE = 1e-4  # half the angle (radians) between the two rays that measure a jump
_REL_TOL = 1e-4  # the visibility test of a receiver point stops this fraction short of it
_GRAZE = 1e-6  # receivers seen at a smaller cosine to x's geometric normal are taken as coplanar with x
_MIN_DIST_SQ = 1e-12  # lumigrad.shade.lighting._MIN_DIST_SQ


class _Casters:
    """The shadow casters of one view: ``groups`` (lists of ``(light index, edges [E, 2])`` or None, one group
    per point / directional light and one per area or environment light, of whose samples each hit takes one)
    and the lights' rows, indexed by light: ``point [nl]`` bool, ``vec [nl, 3]`` position or unit direction
    towards the light (differentiable), ``scale [nl, 3]`` colour times intensity, ``fall [nl, 3]`` point-light
    attenuation ``1 / (c + l d + q d^2)``, ``cos_y``, ``cos_n [nl, 3]`` the emitter point and normal whose
    cosine towards the receiver weights the light (``has_cos [nl]``; the lit scene lacks it)."""

    def __init__(self, sc, groups: list, lights: list, cos_from: list) -> None:
        from lumigrad.render.path import _light_rows

        self.groups = groups
        kind, _, scale, fall = _light_rows(_with_lights(sc, lights))
        like = dict(dtype=sc.dtype, device=sc.device)
        self.point = kind == 0
        self.vec = torch.stack([lt.position if isinstance(lt, PointLight) else safe_normalize(lt.to_light)
                                for lt in lights]).to(**like)
        self.scale, self.fall = scale.detach(), fall
        self.has_cos = torch.tensor([c is not None for c in cos_from], dtype=torch.bool, device=sc.device)
        zero = torch.zeros(3, **like)
        self.cos_y = torch.stack([zero if c is None else c[0] for c in cos_from]).detach()
        self.cos_n = torch.stack([zero if c is None else c[1] for c in cos_from]).detach()

    def __bool__(self) -> bool:
        return bool(self.groups)


def _with_lights(sc, lights: list):
    import copy

    v = copy.copy(sc)
    v.point_lights = lights
    return v


def shadow_casters(sc, stream: int, virtual=(), light_edges=None) -> tuple[_Casters | list, torch.Generator | None]:
    """``(casters, generator)``: the shadow casters (:class:`_Casters`: the point / directional lights and the
    area / environment lights' ``virtual`` samples, with the edges that are silhouettes seen from each) and the
    generator of the samples of random stream ``stream`` (a view and round: ``indirect_boundary``'s), or
    ``([], None)`` without shadows. ``light_edges``: those silhouettes
    (:func:`lumigrad.render._trace_edges.light_silhouettes`, once per render), or None to compute them."""
    if not sc.settings.shadows or not (sc.point_lights or virtual):
        return [], None
    gen = torch.Generator(device=sc.device).manual_seed((sc.settings.seed * 1_000_003 + (1 << 61) + stream) % (2**63))
    sil_point, sil_virtual = light_silhouettes(sc, virtual) if light_edges is None else light_edges
    lights, cos_from = [], []

    def caster(light, e, cos=None):
        if not e.shape[0]:
            return None
        lights.append(light)
        cos_from.append(cos)
        return len(lights) - 1, e

    groups = [[caster(light, e)] for light, e in zip(sc.point_lights, sil_point)]
    # _virtual_lights lists K = shadow_light_samples samples per emitter (an emitter point each, with its
    # cosine), then the environment's (directions, no cosine; fewer where the pdf is 0): one group per source.
    area = [(v[0], e, v[3]) for v, e in zip(virtual, sil_virtual) if v[3] is not None]
    K = max(1, sc.settings.shadow_light_samples)
    groups += [[caster(*v) for v in area[i:i + K]] for i in range(0, len(area), K)]
    groups.append([caster(v[0], e) for v, e in zip(virtual, sil_virtual) if v[3] is None])
    groups = [g for g in groups if any(c is not None for c in g)]
    return (_Casters(sc, groups, lights, cos_from) if groups else []), gen


def shadow_samples(sc, h, casters: _Casters, gen: torch.Generator, bf_cos) -> tuple[Tensor, Tensor]:
    """``(sel [k], contrib [k, 3])``: one shadow-curve sample per light group from each hit of ``h``; ``sel`` are
    the hits whose samples count (repeated per group) and ``contrib`` their zero-valued terms (per unit pixel
    weight). ``bf_cos(sel, wn) -> [k, 3]`` is the BSDF times cosine at those hits towards ``wn``.

    The samples of all lights are drawn first (per light, in the order of the groups) and then traced,
    tested and shaded together: one batch of rays per step for all lights (module docstring)."""
    empty = torch.zeros(0, dtype=torch.long, device=sc.device), torch.zeros(0, 3, dtype=sc.dtype, device=sc.device)
    drawn = _draw(sc, h.idx.numel(), casters.groups, gen)
    if drawn is None:
        return empty
    got = _all_lights(sc, h, casters, *drawn, bf_cos)
    return empty if got is None else got


def _draw(sc, n: int, groups: list, gen) -> tuple[Tensor, ...] | None:
    """``(rows, light, e [k, 2], s [k, 1], ratio [k], mult [k])``: per sample, its hit, light, edge, edge
    parameter, ``total length / picked edge's length`` and group size (hits take one of a group's lights
    uniformly: the sum over the group is its size times that one)."""
    rows, light, es, ss, ratios, mults = [], [], [], [], [], []
    for group in groups:
        which = torch.randint(len(group), (n,), generator=gen, device=sc.device) if len(group) > 1 else None
        for i, cast in enumerate(group):
            if cast is None:
                continue
            r = torch.arange(n, device=sc.device) if which is None else torch.nonzero(which == i).squeeze(1)
            if r.numel() == 0:
                continue
            picked = _pick_edge_points(sc, cast[1], r.numel(), gen, sort=False)  # each hit its own iid pick
            if picked is None:
                continue
            pick, s, length, e = picked
            rows.append(r)
            light.append(torch.full_like(r, cast[0]))
            es.append(e)
            ss.append(s)
            ratios.append(float(length.sum()) / length[pick])
            mults.append(torch.full((r.numel(),), float(len(group)), dtype=sc.dtype, device=sc.device))
    if not rows:
        return None
    return tuple(torch.cat(x) for x in (rows, light, es, ss, ratios, mults))


def _rays_of(cs: _Casters, light: Tensor, p: Tensor) -> Tensor:
    """``[k, 3]`` unit directions of the lights' rays through ``p [k, 3]`` (light ``light [k]`` each;
    differentiable w.r.t. ``p`` and the lights' tensors)."""
    vec = cs.vec.index_select(0, light)
    return torch.where(cs.point[light][:, None], safe_normalize(p - vec), -vec)


def _all_lights(sc, h, cs: _Casters, rows, light, e, s, ratio, mult, bf_cos) -> tuple[Tensor, Tensor] | None:
    from lumigrad.render.path import _take

    with torch.no_grad():
        vd = sc.verts.detach()
        a, c = vd[e[:, 0]], vd[e[:, 1]]
        ed = a + s * (c - a)
        keep, face, q = _visible_receivers(sc, h, cs, rows, light, ed)
        if keep.numel() == 0:
            return None
        rows, light, e, s, a, c = rows[keep], light[keep], e[keep], s[keep], a[keep], c[keep]
        x, ng = h.points.detach()[rows], h.ng.detach()[rows]
        w = q - x
        dist = w.norm(dim=-1, keepdim=True)
        wn = w / dist
        steps = []
        for ds in (-_DS, _DS):  # the receiver points a step either side: the shadow curve's tangent
            ep = a + (s + ds) * (c - a)
            steps.append(reattach(vd, sc.faces, face, ep, _rays_of(cs, light, ep).detach()).points)
        tangent = (safe_normalize(steps[1] - x) - safe_normalize(steps[0] - x)) / (2 * _DS)
        m = safe_normalize(torch.linalg.cross(wn, tangent, dim=-1))
        org = x + torch.where(dot(ng, wn, keepdim=True) >= 0, 1.0, -1.0).to(sc.dtype) * sc.eps * ng
        off = (_SIDE * dist) * m
        w_a, w_b = safe_normalize(q + off - org), safe_normalize(q - off - org)
        L = _direct_of(sc, cs, light.repeat(2), torch.cat([org, org], 0), torch.cat([w_a, w_b], 0))
        k = rows.numel()
        jump = L[k:] - L[:k]  # side B minus side A
        weight = bf_cos(rows, wn) * jump * tangent.norm(dim=-1, keepdim=True)
        weight = weight * ratio[keep][:, None]
        # An emitter point: its cosine towards the receiver (the lit scene lacks it); others times 1 (exact).
        cos = dot(safe_normalize(q - cs.cos_y[light]), cs.cos_n[light], keepdim=True).clamp_min(0.0)
        weight = weight * torch.where(cs.has_cos[light][:, None], cos, 1.0)
    # Differentiable boundary direction: the receiver point of the edge point (edge vertices, light) on the
    # receiver's triangle (its vertices), seen from the re-attached hit.
    pa = sc.verts.index_select(0, e[:, 0])
    ept = pa + s * (sc.verts.index_select(0, e[:, 1]) - pa)
    qb = reattach(sc.verts, sc.faces, face, ept, _rays_of(cs, light, ept)).points
    wb = safe_normalize(qb - _take(h.points, rows))
    return rows, weight * dot(m, wb - wb.detach(), keepdim=True) * mult[keep][:, None]


def _visible_receivers(sc, h, cs: _Casters, rows: Tensor, light: Tensor, ed: Tensor
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """``(keep [k], face [k], q [k, 3])``: the samples (hit ``rows``, ``light``, edge point ``ed``) whose edge
    point is lit and casts its shadow on a receiver point ``q`` (on ``face``) that the hit sees in its shading
    hemisphere."""
    wl = _rays_of(cs, light, ed)
    got = receiver_faces(sc, ed + wl * sc.eps, wl)
    keep = torch.nonzero(got >= 0).squeeze(1)
    face = got[keep]
    rows_k = rows[keep]
    q = reattach(sc.verts.detach(), sc.faces, face, ed[keep], wl[keep]).points
    x, ng, ns = h.points.detach()[rows_k], h.ng.detach()[rows_k], h.ns.detach()[rows_k]
    wn = safe_normalize(q - x)
    # Receivers in x's own plane (its face, or a coplanar neighbour) are seen edge-on: no contribution, and
    # rounding would otherwise let a few through with cosines of 1e-17.
    ok = (dot(ns, wn) > 0) & (dot(ng, wn).abs() > _GRAZE) & (face != h.face[rows_k]) & ~sc.mats.mirror[h.shape[rows_k]]
    sub = torch.nonzero(ok).squeeze(1)
    sub = sub[_edge_lit(sc, cs, light[keep][sub], ed[keep][sub])]
    keep, face, q, x, ng, wn = keep[sub], face[sub], q[sub], x[sub], ng[sub], wn[sub]
    org = x + torch.where(dot(ng, wn, keepdim=True) >= 0, 1.0, -1.0).to(sc.dtype) * sc.eps * ng
    seen = ~occluded(sc.accel.bvh, org, q - org, 1.0 - _REL_TOL)
    return keep[seen], face[seen], q[seen]


def _edge_lit(sc, cs: _Casters, light: Tensor, ed: Tensor) -> Tensor:
    """``[k]`` bool: the edge points ``ed`` are lit by their lights (as :func:`lumigrad.render._trace_edges._edge_lit`:
    a point light's test starts a hair off the light, a directional light's far outside the scene)."""
    vd = sc.verts.detach()
    far = 2.0 * float((vd.max(0).values - vd.min(0).values).norm()) + 1.0
    vec = cs.vec.detach()[light]
    src = torch.where(cs.point[light][:, None], vec + _REL_TOL * (ed - vec), ed + far * vec)
    return ~occluded(sc.accel.bvh, src, ed - src, 1.0 - _REL_TOL)


def _direct_of(sc, cs: _Casters, light: Tensor, org: Tensor, dirs: Tensor) -> Tensor:
    """``[R, 3]`` (no gradient) direct light of light ``light [R]`` alone reflected towards the rays
    ``(org, dirs)`` by their closest hits (0 on a miss or a mirror): next-event estimation of
    :func:`lumigrad.render.path._direct` with one light per row, its shadow ray as
    :func:`lumigrad.render.path._visible`."""
    from lumigrad.render.path import _hit_material, _trace, _visible

    L = torch.zeros_like(org)
    h = _trace(sc, org, dirs, intersect(sc.accel.bvh, org, dirs).face)
    if h.idx.numel() == 0:
        return L
    li = light[h.idx]
    p, ns, ng, wo = h.points.detach(), h.ns.detach(), h.ng.detach(), h.wo.detach()
    vec, point = cs.vec.detach()[li], cs.point[li][:, None]
    d = vec - p
    dsq = (d * d).sum(-1, keepdim=True)
    l = torch.where(point, d * torch.rsqrt(dsq + _MIN_DIST_SQ), vec)
    fall = cs.fall[li]
    den = fall[:, :1] + fall[:, 1:2] * torch.sqrt(dsq + _MIN_DIST_SQ) + fall[:, 2:] * dsq
    e_perp = cs.scale[li] * torch.where(point, 1.0 / den.clamp_min(_MIN_DIST_SQ), 1.0)
    dist = torch.where(point[:, 0], dsq[:, 0].sqrt(), 1e30)
    at = {k: v.detach() for k, v in _hit_material(sc, h).items()}
    rgb = sc.mats.brdf(h.shape, ns, l, wo, at) * e_perp * dot(ns, l, keepdim=True).clamp_min(0.0)
    rgb = rgb * _visible(sc, p, ng, l, dist) * (~sc.mats.mirror[h.shape]).to(sc.dtype)[:, None]
    return L.index_add(0, h.idx, rgb)
