"""Reference: the indirect shadow boundary term one light at a time (lumigrad.render._trace_edges_shadow_indirect
before its lights were batched, commit f113f1b), for ``test_trace_indirect_shadows.py`` (batched == looped, same
random numbers) and ``bench/trace_indirect_shadows.py`` (before / after). Each light's samples run through their
own receiver, visibility and jump passes; the jump's radiance comes from a copy of the scene lit by that light.
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


def shadow_casters(sc, b: int, virtual=(), light_edges=None) -> tuple[list, torch.Generator | None]:
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
        L = _incoming(lit, torch.cat([org, org], 0), torch.cat([w_a, w_b], 0), 1, direct)[0]
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
