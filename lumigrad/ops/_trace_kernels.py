"""Warp kernels for :mod:`lumigrad.ops.trace` (one Warp module; Warp's generated adjoints are off).

Ray queries against lumigrad's BVH (:mod:`lumigrad.ops._bvh`; traversal in
:mod:`lumigrad.ops._bvh_kernels`). They return integer ids and distances
and are not differentiable: :func:`lumigrad.ops.trace.reattach` recomputes the
hit differentiably in torch. ``shade_direct_fwd`` / ``shade_direct_bwd`` are the
fused re-attachment + Lambert direct lighting of :func:`lumigrad.ops.trace.shade_direct`
with a hand-written backward. Every thread writes only its own ray's outputs, so
chunks launched in parallel by :func:`lumigrad._runtime.launch.launch` never race.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._bvh_kernels import bvh_anyhit, bvh_closest
from lumigrad.ops._common import KERNEL_MODULE_OPTIONS
from lumigrad.ops._qmc_funcs import qmc2

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["trace_closest", "trace_occluded", "trace_direct", "shade_direct_fwd", "shade_direct_bwd",
           "hit_attr_fwd", "hit_attr_bwd", "qmc_pairs"]


@wp.kernel
def trace_closest(
    offset: int,
    nodes: wp.array(dtype=wp.vec3),  # the BVH (lumigrad.ops._bvh.BVHData.args)
    kids: wp.array(dtype=wp.vec2i),
    tris: wp.array(dtype=wp.vec3),
    tface: wp.array(dtype=wp.int32),
    origins: wp.array(dtype=wp.vec3),  # [R]
    dirs: wp.array(dtype=wp.vec3),  # [R]
    tmax: wp.array(dtype=wp.float32),  # [R]
    out_face: wp.array(dtype=wp.int32),  # [R], -1 on a miss
    out_t: wp.array(dtype=wp.float32),  # [R], tmax on a miss
):
    i = wp.tid() + offset
    face, t = bvh_closest(nodes, kids, tris, tface, origins[i], dirs[i], tmax[i])
    out_face[i] = face
    out_t[i] = t


@wp.kernel
def trace_occluded(
    offset: int,
    nodes: wp.array(dtype=wp.vec3),
    kids: wp.array(dtype=wp.vec2i),
    tris: wp.array(dtype=wp.vec3),
    tface: wp.array(dtype=wp.int32),
    origins: wp.array(dtype=wp.vec3),  # [R]
    dirs: wp.array(dtype=wp.vec3),  # [R]
    tmax: wp.array(dtype=wp.float32),  # [R]
    out_hit: wp.array(dtype=wp.int32),  # [R] 1 when something lies in (0, tmax)
):
    i = wp.tid() + offset
    # Any hit ends the traversal (no search for the closest one).
    out_hit[i] = wp.where(bvh_anyhit(nodes, kids, tris, origins[i], dirs[i], tmax[i]), 1, 0)


# --- fused direct lighting (point / directional lights, Lambert) --------------------------------------------
#
# trace_direct: closest hit of each camera ray and, at the hit, one shadow ray per light (float32, as the BVH).
# shade_direct_fwd / _bwd: the differentiable part, per hit: Moller-Trumbore re-attachment of the ray to its
# triangle (the torch ``ray_triangle``), the interpolated shading normal, and Lambert * light * cos * visibility
# summed over the lights. The backward is written by hand (the light loop is dynamic) and writes only its own
# hit's rows, so chunks never race; torch sums rows that belong to shared parameters.

_MIN_DIST_SQ = 1.0e-12  # lumigrad.shade.lighting._MIN_DIST_SQ
_INV_PI = 0.3183098861837907


@wp.func
def _lit(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3), p: wp.vec3,
         ng: wp.vec3, kind: int, lv: wp.vec3, eps: float, shadows: int):
    """1 when the light (``kind`` 0: point at ``lv``, 1: direction ``lv``) is unoccluded from ``p``, else 0.

    As lumigrad.render.path._visible: the shadow ray steps off along itself (more when grazing)."""
    if shadows == 0:
        return 1
    l = lv
    dist = 1.0e30
    if kind == 0:
        dv = lv - p
        dsq = wp.dot(dv, dv)
        l = dv / wp.sqrt(dsq + _MIN_DIST_SQ)
        dist = wp.sqrt(dsq)
    step = eps / wp.max(wp.abs(wp.dot(ng, l)), 0.05)
    tm = wp.max(dist - step - eps, 0.0)
    if bvh_anyhit(nodes, kids, tris, p + step * l, l, tm):
        return 0
    return 1


@wp.kernel
def trace_direct(
    offset: int,
    nodes: wp.array(dtype=wp.vec3),
    kids: wp.array(dtype=wp.vec2i),
    tris: wp.array(dtype=wp.vec3),
    tface: wp.array(dtype=wp.int32),
    points: wp.array(dtype=wp.vec3),  # [V] the BVH's vertices
    indices: wp.array(dtype=wp.int32),  # [3F]
    origins: wp.array(dtype=wp.vec3),  # [R]
    dirs: wp.array(dtype=wp.vec3),  # [R]
    nl: int,
    lkind: wp.array(dtype=wp.int32),  # [nl] 0 point, 1 directional
    lvec: wp.array(dtype=wp.vec3),  # [nl] position, or unit direction towards the light
    eps: float,
    shadows: int,
    given: int,  # 1: face holds the closest hits already (found by the rasterizer), only shadow rays are traced
    face: wp.array(dtype=wp.int32),  # [R], -1 on a miss: written (given = 0) or read (given = 1)
    out_vis: wp.array2d(dtype=wp.int32),  # [R, nl] 1 when the light is unoccluded (rows of misses untouched)
):
    i = wp.tid() + offset
    o = origins[i]
    d = dirs[i]
    f = int(-1)
    qt = float(0.0)
    if given != 0:
        f = face[i]
    else:
        fq, tq = bvh_closest(nodes, kids, tris, tface, o, d, 3.0e38)
        f = fq
        qt = tq
        face[i] = f
    if f < 0:
        return
    p0 = points[indices[3 * f]]
    c = wp.cross(points[indices[3 * f + 1]] - p0, points[indices[3 * f + 2]] - p0)
    ng = wp.normalize(c)
    if given != 0:
        # the ray's intersection with the plane of its triangle (what the BVH query returns)
        den = wp.dot(c, d)
        if den != 0.0:
            qt = wp.dot(c, p0 - o) / den
    p = o + qt * d
    for j in range(nl):
        out_vis[i, j] = _lit(nodes, kids, tris, p, ng, lkind[j], lvec[j], eps, shadows)


@wp.func
def _v3(a: wp.array2d(dtype=Any), i: int, c: int):
    return wp.vector(a[i, c], a[i, c + 1], a[i, c + 2])


@wp.func
def _put3(a: wp.array2d(dtype=Any), i: int, c: int, v: Any):
    a[i, c] = v[0]
    a[i, c + 1] = v[1]
    a[i, c + 2] = v[2]


@wp.func
def _reattach(o: Any, d: Any, p0: Any, p1: Any, p2: Any, tiny: Any):
    """Moller-Trumbore as ``lumigrad.ops._trace_ref.ray_triangle``: ``(t, b1, b2, inv, guarded)``."""
    e1 = p1 - p0
    e2 = p2 - p0
    pv = wp.cross(d, e2)
    det = wp.dot(e1, pv)
    guarded = wp.abs(det) < tiny
    det = wp.where(guarded, tiny, det)
    inv = type(tiny)(1.0) / det
    tv = o - p0
    qv = wp.cross(tv, e1)
    return wp.dot(e2, qv) * inv, wp.dot(tv, pv) * inv, wp.dot(d, qv) * inv, inv, guarded


@wp.func
def _light_at(kind: int, lv: Any, lf: Any, p: Any):
    """``(l, atten, dv, dsq, r, den)``: direction to the light and its attenuation at ``p``."""
    one = type(p[0])(1.0)
    m = type(p[0])(_MIN_DIST_SQ)
    if kind == 0:
        dv = lv - p
        dsq = wp.dot(dv, dv)
        r = one / wp.sqrt(dsq + m)
        den = lf[0] + lf[1] * wp.sqrt(dsq + m) + lf[2] * dsq
        return dv * r, one / wp.max(den, m), dv, dsq, r, den
    return lv, one, lv, one, one, one


@wp.func
def _reattach_bwd(o: Any, d: Any, p0: Any, p1: Any, p2: Any, t: Any, inv: Any, guarded: bool, g_p: Any, g_b1: Any,
                  g_b2: Any, g_e1: Any, g_e2: Any, g_tri: wp.array2d(dtype=Any), i: int):
    """Backward of ``p = o + t d`` with ``(t, b1, b2)`` from :func:`_reattach`, given ``d loss / d p, b1, b2`` and
    what the edges ``e1 = p1 - p0``, ``e2 = p2 - p0`` already received; writes the corner positions' rows of
    ``g_tri`` (columns 0, 6, 12) and returns ``(g_o, g_d)``.

    Moller-Trumbore: ``t = (e2.q) inv``, ``b1 = (tv.pv) inv``, ``b2 = (d.q) inv``, ``inv = 1 / det``, ``det = e1.pv``.
    """
    e1 = p1 - p0
    e2 = p2 - p0
    g_t = wp.dot(g_p, d)
    g_o = g_p
    g_d = t * g_p
    pv = wp.cross(d, e2)
    tv = o - p0
    qv = wp.cross(tv, e1)
    g_inv = g_t * wp.dot(e2, qv) + g_b1 * wp.dot(tv, pv) + g_b2 * wp.dot(d, qv)
    g_det = g_inv * type(g_inv)(0.0)
    if not guarded:
        g_det = -g_inv * inv * inv
    ge2 = g_e2 + (g_t * inv) * qv
    g_q = (g_t * inv) * e2 + (g_b2 * inv) * d
    g_d = g_d + (g_b2 * inv) * qv
    g_tv = (g_b1 * inv) * pv
    g_pv = (g_b1 * inv) * tv + g_det * e1
    ge1 = g_e1 + g_det * pv
    g_tv = g_tv + wp.cross(e1, g_q)
    ge1 = ge1 + wp.cross(g_q, tv)
    g_d = g_d + wp.cross(e2, g_pv)
    ge2 = ge2 + wp.cross(g_pv, d)
    _put3(g_tri, i, 0, -(g_tv + ge1 + ge2))
    _put3(g_tri, i, 6, ge1)
    _put3(g_tri, i, 12, ge2)
    return g_o + g_tv, g_d


@wp.kernel
def shade_direct_fwd(
    offset: int,
    tri: wp.array2d(dtype=Any),  # [h, 18] corner k: position at 6k, vertex normal at 6k + 3
    org: wp.array2d(dtype=Any),  # [h, 3]
    dirs: wp.array2d(dtype=Any),  # [h, 3]
    alb: wp.array2d(dtype=Any),  # [h, 3] Lambert albedo
    vis: wp.array2d(dtype=Any),  # [h, nl] 0 / 1
    nl: int,
    lkind: wp.array(dtype=wp.int32),  # [nl] 0 point, 1 directional
    lvec: wp.array2d(dtype=Any),  # [nl, 3] position / unit direction towards the light
    lscale: wp.array2d(dtype=Any),  # [nl, 3] colour * intensity
    lfall: wp.array2d(dtype=Any),  # [nl, 3] attenuation 1 / (c + l d + q d^2) (point lights)
    tiny: wp.float64,  # determinant guard of ray_triangle
    ntiny: wp.float64,  # squared-norm guard of safe_normalize
    out: wp.array2d(dtype=Any),  # [h, 3] reflected radiance
):
    i = wp.tid() + offset
    zero = tri.dtype(0.0)
    one = tri.dtype(1.0)
    o = _v3(org, i, 0)
    d = _v3(dirs, i, 0)
    t, b1, b2, inv, guarded = _reattach(o, d, _v3(tri, i, 0), _v3(tri, i, 6), _v3(tri, i, 12), tri.dtype(tiny))
    p = o + t * d
    nraw = (one - b1 - b2) * _v3(tri, i, 3) + b1 * _v3(tri, i, 9) + b2 * _v3(tri, i, 15)
    n2 = wp.dot(nraw, nraw)
    ns = nraw * zero
    if n2 > tri.dtype(ntiny):
        ns = nraw / wp.sqrt(n2)
    a = _v3(alb, i, 0)
    rgb = a * zero
    for j in range(nl):
        l, atten, dv, dsq, r, den = _light_at(lkind[j], _v3(lvec, j, 0), _v3(lfall, j, 0), p)
        c = wp.max(wp.dot(ns, l), zero)
        rgb = rgb + wp.cw_mul(a, _v3(lscale, j, 0)) * (atten * c * vis[i, j] * tri.dtype(_INV_PI))
    _put3(out, i, 0, rgb)


@wp.kernel
def shade_direct_bwd(
    offset: int,
    tri: wp.array2d(dtype=Any),
    org: wp.array2d(dtype=Any),
    dirs: wp.array2d(dtype=Any),
    alb: wp.array2d(dtype=Any),
    vis: wp.array2d(dtype=Any),
    nl: int,
    lkind: wp.array(dtype=wp.int32),
    lvec: wp.array2d(dtype=Any),
    lscale: wp.array2d(dtype=Any),
    lfall: wp.array2d(dtype=Any),
    tiny: wp.float64,
    ntiny: wp.float64,
    grad: wp.array2d(dtype=Any),  # [h, 3] d loss / d out
    need: int,  # bit 0: g_org, 1: g_dirs, 2: g_alb, 3: g_lvec and g_lscale (unneeded ones are [1, 3], untouched)
    g_tri: wp.array2d(dtype=Any),  # [h, 18] laid out as tri
    g_org: wp.array2d(dtype=Any),  # [h, 3]
    g_dirs: wp.array2d(dtype=Any),  # [h, 3]
    g_alb: wp.array2d(dtype=Any),  # [h, 3]
    g_lvec: wp.array2d(dtype=Any),  # [h, 3 nl] this hit's share of d loss / d lvec
    g_lscale: wp.array2d(dtype=Any),  # [h, 3 nl]
):
    i = wp.tid() + offset
    zero = tri.dtype(0.0)
    one = tri.dtype(1.0)
    two = tri.dtype(2.0)
    half = tri.dtype(0.5)
    ipi = tri.dtype(_INV_PI)
    m = tri.dtype(_MIN_DIST_SQ)
    # Forward again.
    o = _v3(org, i, 0)
    d = _v3(dirs, i, 0)
    p0 = _v3(tri, i, 0)
    p1 = _v3(tri, i, 6)
    p2 = _v3(tri, i, 12)
    t, b1, b2, inv, guarded = _reattach(o, d, p0, p1, p2, tri.dtype(tiny))
    p = o + t * d
    w0 = one - b1 - b2
    n0 = _v3(tri, i, 3)
    n1 = _v3(tri, i, 9)
    n2v = _v3(tri, i, 15)
    nraw = w0 * n0 + b1 * n1 + b2 * n2v
    n2 = wp.dot(nraw, nraw)
    ok = n2 > tri.dtype(ntiny)
    ns = nraw * zero
    if ok:
        ns = nraw / wp.sqrt(n2)
    a = _v3(alb, i, 0)
    g = _v3(grad, i, 0)
    # Reverse: the light sum.
    g_ns = a * zero
    g_p = a * zero
    ga = a * zero
    for j in range(nl):
        kind = lkind[j]
        lf = _v3(lfall, j, 0)
        sc = _v3(lscale, j, 0)
        l, atten, dv, dsq, r, den = _light_at(kind, _v3(lvec, j, 0), lf, p)
        cd = wp.dot(ns, l)
        c = wp.max(cd, zero)
        v = vis[i, j]
        k = atten * c * v * ipi
        ga = ga + wp.cw_mul(g, sc) * k
        ge = wp.cw_mul(g, a) * (c * v * ipi)  # d loss / d (scale * atten)
        if need & 8 != 0:
            _put3(g_lscale, i, 3 * j, ge * atten)
        g_atten = wp.dot(ge, sc)
        g_c = zero
        if cd >= zero:
            g_c = wp.dot(wp.cw_mul(g, a), sc) * (atten * v * ipi)
        g_ns = g_ns + g_c * l
        g_l = g_c * ns
        if kind == 0:
            g_dv = r * g_l - (r * r * r * wp.dot(g_l, dv)) * dv
            if den > m:
                g_dsq = (-g_atten / (den * den)) * (lf[1] * half * r + lf[2])
                g_dv = g_dv + (two * g_dsq) * dv
            if need & 8 != 0:
                _put3(g_lvec, i, 3 * j, g_dv)
            g_p = g_p - g_dv
        elif need & 8 != 0:
            _put3(g_lvec, i, 3 * j, g_l)
    if need & 4 != 0:
        _put3(g_alb, i, 0, ga)
    # safe_normalize.
    g_raw = a * zero
    if ok:
        g_raw = (g_ns - wp.dot(g_ns, ns) * ns) / wp.sqrt(n2)
    _put3(g_tri, i, 3, w0 * g_raw)
    _put3(g_tri, i, 9, b1 * g_raw)
    _put3(g_tri, i, 15, b2 * g_raw)
    g_b1 = wp.dot(g_raw, n1 - n0)
    g_b2 = wp.dot(g_raw, n2v - n0)
    g_o, g_d = _reattach_bwd(o, d, p0, p1, p2, t, inv, guarded, g_p, g_b1, g_b2, g * zero, g * zero, g_tri, i)
    if need & 1 != 0:
        _put3(g_org, i, 0, g_o)
    if need & 2 != 0:
        _put3(g_dirs, i, 0, g_d)


# --- hit attributes (the general path's re-attachment) ------------------------------------------------------
#
# hit_attr_fwd / _bwd: per hit, Moller-Trumbore re-attachment (as _reattach), the hit point, barycentrics,
# safe-normalised interpolated shading normal and unit geometric normal; spec
# lumigrad.ops._trace_ref.hit_attributes_ref. Straight-line per hit; the backward is written by hand (the
# module has no generated adjoints) and writes only its own hit's rows.


@wp.func
def _unit(v: Any, ntiny: Any):
    """``(v / |v|, 1 / |v|)``, zeros where ``|v|^2 <= ntiny`` (safe_normalize)."""
    n2 = wp.dot(v, v)
    r = n2 * type(n2)(0.0)
    if n2 > ntiny:
        r = type(n2)(1.0) / wp.sqrt(n2)
    return v * r, r


@wp.kernel
def hit_attr_fwd(
    offset: int,
    tri: wp.array2d(dtype=Any),  # [h, 18] corner k: position at 6k, vertex normal at 6k + 3
    org: wp.array2d(dtype=Any),  # [h, 3]
    dirs: wp.array2d(dtype=Any),  # [h, 3]
    tiny: wp.float64,  # determinant guard of ray_triangle
    ntiny: wp.float64,  # squared-norm guard of safe_normalize
    out: wp.array2d(dtype=Any),  # [h, 12]: point, barycentrics, shading normal, geometric normal
):
    i = wp.tid() + offset
    one = tri.dtype(1.0)
    o = _v3(org, i, 0)
    d = _v3(dirs, i, 0)
    p0 = _v3(tri, i, 0)
    p1 = _v3(tri, i, 6)
    p2 = _v3(tri, i, 12)
    t, b1, b2, inv, guarded = _reattach(o, d, p0, p1, p2, tri.dtype(tiny))
    w0 = one - b1 - b2
    ns, rs = _unit(w0 * _v3(tri, i, 3) + b1 * _v3(tri, i, 9) + b2 * _v3(tri, i, 15), tri.dtype(ntiny))
    ng, rg = _unit(wp.cross(p1 - p0, p2 - p0), tri.dtype(ntiny))
    _put3(out, i, 0, o + t * d)
    out[i, 3] = w0
    out[i, 4] = b1
    out[i, 5] = b2
    _put3(out, i, 6, ns)
    _put3(out, i, 9, ng)


@wp.kernel
def hit_attr_bwd(
    offset: int,
    tri: wp.array2d(dtype=Any),
    org: wp.array2d(dtype=Any),
    dirs: wp.array2d(dtype=Any),
    tiny: wp.float64,
    ntiny: wp.float64,
    grad: wp.array2d(dtype=Any),  # [h, 12] d loss / d out
    need: int,  # bit 0: g_org, 1: g_dirs (unneeded ones are [1, 3], untouched)
    g_tri: wp.array2d(dtype=Any),  # [h, 18]
    g_org: wp.array2d(dtype=Any),  # [h, 3]
    g_dirs: wp.array2d(dtype=Any),  # [h, 3]
):
    i = wp.tid() + offset
    one = tri.dtype(1.0)
    o = _v3(org, i, 0)
    d = _v3(dirs, i, 0)
    p0 = _v3(tri, i, 0)
    p1 = _v3(tri, i, 6)
    p2 = _v3(tri, i, 12)
    t, b1, b2, inv, guarded = _reattach(o, d, p0, p1, p2, tri.dtype(tiny))
    w0 = one - b1 - b2
    n0 = _v3(tri, i, 3)
    n1 = _v3(tri, i, 9)
    n2v = _v3(tri, i, 15)
    e1 = p1 - p0
    e2 = p2 - p0
    ns, rs = _unit(w0 * n0 + b1 * n1 + b2 * n2v, tri.dtype(ntiny))
    ng, rg = _unit(wp.cross(e1, e2), tri.dtype(ntiny))
    g_p = _v3(grad, i, 0)
    g_ns = _v3(grad, i, 6)
    g_ng = _v3(grad, i, 9)
    # bary = (1 - b1 - b2, b1, b2)
    g_b1 = grad[i, 4] - grad[i, 3]
    g_b2 = grad[i, 5] - grad[i, 3]
    # shading normal: unit(w0 n0 + b1 n1 + b2 n2)
    g_raw = (g_ns - wp.dot(g_ns, ns) * ns) * rs
    _put3(g_tri, i, 3, w0 * g_raw)
    _put3(g_tri, i, 9, b1 * g_raw)
    _put3(g_tri, i, 15, b2 * g_raw)
    g_b1 = g_b1 + wp.dot(g_raw, n1 - n0)
    g_b2 = g_b2 + wp.dot(g_raw, n2v - n0)
    # geometric normal: unit(e1 x e2)
    g_c = (g_ng - wp.dot(g_ng, ng) * ng) * rg
    g_e1 = wp.cross(e2, g_c)
    g_e2 = wp.cross(g_c, e1)
    g_o, g_d = _reattach_bwd(o, d, p0, p1, p2, t, inv, guarded, g_p, g_b1, g_b2, g_e1, g_e2, g_tri, i)
    if need & 1 != 0:
        _put3(g_org, i, 0, g_o)
    if need & 2 != 0:
        _put3(g_dirs, i, 0, g_d)


@wp.kernel
def qmc_pairs(
    offset: int,
    key: wp.array(dtype=wp.int32),  # [n] sampler keys (uint32 bits)
    s: wp.array(dtype=wp.int32),  # [n] sample indices < 2^m
    m: int,
    d0: int,  # the first dimension pair
    out: wp.array2d(dtype=wp.float32),  # [n, 2 count]: pairs d0 .. d0 + count - 1
):
    """The Sobol sampler's numbers (:func:`lumigrad.ops._qmc_funcs.qmc2`) for the torch path tracer."""
    i = wp.tid() + offset
    for k in range(out.shape[1] // 2):
        u = qmc2(wp.uint32(key[i]), s[i], m, d0 + k)
        out[i, 2 * k] = u[0]
        out[i, 2 * k + 1] = u[1]
