"""Backward Warp kernels of :func:`lumigrad.ops.rasterize`: d loss / d pos from the gradients of
``rast`` (u, v, z) and ``rast_db``. CPU: one accumulation buffer per thread task (no races);
CUDA: per-pixel, per-corner rows reduced in torch (:func:`lumigrad.ops._common.reduce_rows`).
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

from lumigrad.ops._rasterize_funcs import (
    _load_tri,
    _load_tri_bf,
    _edge,
)

__all__: list[str] = []  # private module

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.func
def _pixel_terms(
    r0: Any, r1: Any, r2: Any, c0: Any, c1: Any, c2: Any, zc: Any,
    px: Any, py: Any, gr: Any, gd: Any, want_db: int,
):
    """One pixel's share of d loss / d (triangle), before the chain rule through the edge rows.

    ``gr`` = d loss / d (u, v, z, id) and ``gd`` = d loss / d (du/dX, du/dY, dv/dX, dv/dY)
    already scaled to NDC (used when ``want_db``). With c = (x, y, w),
    r_k = sign(det) (c_i x c_j), e_k = r_k . p, s = sum(e):
    u = e0 / s, v = e1 / s, z = sum(e z) / sum(e w), and
    d b_k / d p_a = (r_k[a] - b_k R[a]) / s with R = sum(r). Returns gq_k = d loss / d r_k
    (three vec3) and the z terms a_k = dz-weight e_k / den, w_k = a_k z (two vec3): all
    linear in the cotangents, so a run of pixels of one triangle can sum them and apply
    :func:`_finish_tri` once.
    """
    zero = type(px)(0.0)
    pv = wp.vector(px, py, type(px)(1.0))
    gu = gr[0]
    gv = gr[1]
    gz = gr[2]
    e0 = _edge(r0, px, py)
    e1 = _edge(r1, px, py)
    e2 = _edge(r2, px, py)
    s = e0 + e1 + e2
    u = e0 / s
    v = e1 / s
    den = e0 * c0[2] + e1 * c1[2] + e2 * c2[2]
    z = (e0 * zc[0] + e1 * zc[1] + e2 * zc[2]) / den
    # d loss / d e_k.
    common = -(gu * u + gv * v) / s
    ge0 = gu / s + common + gz * (zc[0] - z * c0[2]) / den
    ge1 = gv / s + common + gz * (zc[1] - z * c1[2]) / den
    ge2 = common + gz * (zc[2] - z * c2[2]) / den
    # d loss / d r_k beyond e_k = r_k . p: the rows' direct use in rast_db.
    gq0 = wp.vector(zero, zero, zero)
    gq1 = wp.vector(zero, zero, zero)
    gq2 = wp.vector(zero, zero, zero)
    if want_db != 0:
        rs = r0 + r1 + r2
        is_ = type(px)(1.0) / s
        d0x = (r0[0] - u * rs[0]) * is_
        d0y = (r0[1] - u * rs[1]) * is_
        d1x = (r1[0] - v * rs[0]) * is_
        d1y = (r1[1] - v * rs[1]) * is_
        gb0 = -(gd[0] * rs[0] + gd[1] * rs[1]) * is_  # d loss / d u through rast_db
        gb1 = -(gd[2] * rs[0] + gd[3] * rs[1]) * is_
        gs = -(gd[0] * d0x + gd[1] * d0y + gd[2] * d1x + gd[3] * d1y) * is_ - (gb0 * u + gb1 * v) * is_
        ge0 = ge0 + gb0 * is_ + gs
        ge1 = ge1 + gb1 * is_ + gs
        ge2 = ge2 + gs
        g_rs = wp.vector(-(gd[0] * u + gd[2] * v) * is_, -(gd[1] * u + gd[3] * v) * is_, zero)
        gq0 = g_rs + wp.vector(gd[0] * is_, gd[1] * is_, zero)
        gq1 = g_rs + wp.vector(gd[2] * is_, gd[3] * is_, zero)
        gq2 = g_rs
    gq0 = gq0 + pv * ge0
    gq1 = gq1 + pv * ge1
    gq2 = gq2 + pv * ge2
    # z also depends on clip z and w directly: dz/dz_k = e_k / den, dz/dw_k = -z e_k / den.
    gzd = gz / den
    a = wp.vector(gzd * e0, gzd * e1, gzd * e2)
    return gq0, gq1, gq2, a, a * z


@wp.func
def _finish_tri(c0: Any, c1: Any, c2: Any, det: Any, scale: Any, gq0: Any, gq1: Any, gq2: Any, a: Any, aw: Any):
    """d loss / d clip (x, y, z, w) of the three corners from summed :func:`_pixel_terms`."""
    # For r = sign * (c_i x c_j) and gradient g on r: d/dc_i = sign * (c_j x g), d/dc_j = sign * (g x c_i).
    sg = wp.sign(det)
    g0 = (wp.cross(gq1, c2) + wp.cross(c1, gq2)) * sg
    g1 = (wp.cross(c2, gq0) + wp.cross(gq2, c0)) * sg
    g2 = (wp.cross(gq0, c1) + wp.cross(c0, gq1)) * sg
    # The outputs do not change with the triangle's scale, so d/d pos = scale * d/d (scaled corners).
    return (
        wp.vector(g0[0], g0[1], a[0], g0[2] - aw[0]) * scale,
        wp.vector(g1[0], g1[1], a[1], g1[2] - aw[1]) * scale,
        wp.vector(g2[0], g2[1], a[2], g2[2] - aw[2]) * scale,
    )


@wp.func
def _pixel_grad(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, nf: int, nv: int,
    px: Any, py: Any, gr: Any, gd: Any, want_db: int,
):
    """d loss / d clip (x, y, z, w) of the three corners of triangle ``t`` at one pixel."""
    c0, c1, c2, zc, r0, r1, r2, det, scale = _load_tri(pos, tri, t, nf, nv)
    gq0, gq1, gq2, a, aw = _pixel_terms(r0, r1, r2, c0, c1, c2, zc, px, py, gr, gd, want_db)
    return _finish_tri(c0, c1, c2, det, scale, gq0, gq1, gq2, a, aw)


@wp.func
def _db_cotangent(gdb: wp.array(dtype=Any), p: int, want_db: int, sx: Any, sy: Any):
    """d loss / d rast_db at pixel p, scaled from pixel to NDC units (zeros unless want_db)."""
    zero = sx * type(sx)(0.0)
    if want_db == 0:
        return wp.vector(zero, zero, zero, zero)
    g = gdb[p]
    return wp.vector(g[0] * sx, g[1] * sy, g[2] * sx, g[3] * sy)


@wp.func
def _add4(buf: wp.array(dtype=Any), row: int, g: Any):
    buf[row] = buf[row] + g


@wp.func
def _flush(
    gbuf: wp.array(dtype=Any), base: int, tri: wp.array2d(dtype=wp.int32), f: int,
    c0: Any, c1: Any, c2: Any, det: Any, scale: Any, gq0: Any, gq1: Any, gq2: Any, a: Any, aw: Any,
):
    g0, g1, g2 = _finish_tri(c0, c1, c2, det, scale, gq0, gq1, gq2, a, aw)
    _add4(gbuf, base + tri[f, 0], g0)
    _add4(gbuf, base + tri[f, 1], g1)
    _add4(gbuf, base + tri[f, 2], g2)


@wp.kernel
def grad_rows_kernel(
    offset: int, stride: int, height: int, width: int, nf: int, nv: int,
    xs: wp.array(dtype=Any), ys: wp.array(dtype=Any), pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32),
    rast: wp.array(dtype=Any),  # [B*H*W] vec4
    grad: wp.array(dtype=Any),  # [B*H*W] vec4 d loss / d rast (component 3 ignored)
    gdb: wp.array(dtype=Any),  # [B*H*W] vec4 d loss / d rast_db, or [1] unused unless want_db
    want_db: int,
    gbuf: wp.array(dtype=Any),  # [tasks * B*V] vec4, zeroed: this task's gradient w.r.t. pos
):
    """CPU backward: one launch per task over image rows offset, offset + stride, ...;
    sequential within the launch, so the gradient accumulation has no races. Along a row,
    consecutive pixels of one triangle share its corners and edge rows, and their
    :func:`_pixel_terms` are summed before the chain rule runs once for the run."""
    row = offset + wp.tid() * stride  # global row over B*H
    if row >= rast.shape[0] // width:
        return
    b = row // height
    i = row - b * height
    py = ys[i]
    sx = xs.dtype(2.0) / xs.dtype(width)
    sy = -xs.dtype(2.0) / xs.dtype(height)
    base = offset * (pos.shape[0]) + b * nv
    zero = xs.dtype(0.0)
    z3 = wp.vector(zero, zero, zero)
    cur = int(-1)  # triangle of the open run, -1 when none
    c0 = z3
    c1 = z3
    c2 = z3
    zc = z3
    r0 = z3
    r1 = z3
    r2 = z3
    det = zero
    scale = zero
    gq0 = z3
    gq1 = z3
    gq2 = z3
    a = z3
    aw = z3
    p0 = row * width
    for j in range(width):
        v = rast[p0 + j]
        f = int(v[3]) - 1
        if f != cur:
            if cur >= 0:
                _flush(gbuf, base, tri, cur, c0, c1, c2, det, scale, gq0, gq1, gq2, a, aw)
            cur = f
            if f >= 0:
                c0, c1, c2, zc, r0, r1, r2, det, scale = _load_tri_bf(pos, tri, b, f, nv)
                gq0 = z3
                gq1 = z3
                gq2 = z3
                a = z3
                aw = z3
        if f >= 0:
            gd = _db_cotangent(gdb, p0 + j, want_db, sx, sy)
            t0, t1, t2, ta, tw = _pixel_terms(r0, r1, r2, c0, c1, c2, zc, xs[j], py, grad[p0 + j], gd, want_db)
            gq0 = gq0 + t0
            gq1 = gq1 + t1
            gq2 = gq2 + t2
            a = a + ta
            aw = aw + tw
    if cur >= 0:
        _flush(gbuf, base, tri, cur, c0, c1, c2, det, scale, gq0, gq1, gq2, a, aw)


@wp.kernel
def grad_pixels_kernel(
    offset: int, base: int, height: int, width: int, nf: int, nv: int,
    xs: wp.array(dtype=Any), ys: wp.array(dtype=Any), pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32),
    rast: wp.array(dtype=Any), grad: wp.array(dtype=Any),  # [B*H*W] vec4 each
    gdb: wp.array(dtype=Any), want_db: int,  # [B*H*W] vec4 d loss / d rast_db, or [1] unused
    gout: wp.array(dtype=Any),  # [3 * n] vec4 out: per pixel and corner
    vidx: wp.array(dtype=wp.int64),  # [3 * n] out: row of pos [B*V] for each gout row
):
    """CUDA backward: per-pixel, per-corner gradients, reduced in torch with index_add_."""
    k = wp.tid() + offset
    p = base + k
    v = rast[p]
    zero = xs.dtype(0.0)
    if v[3] == zero:
        z4 = wp.vector(zero, zero, zero, zero)
        for m in range(3):
            vidx[3 * k + m] = wp.int64(0)
            gout[3 * k + m] = z4
        return
    hw = height * width
    b = p // hw
    i = (p - b * hw) // width
    j = p - b * hw - i * width
    f = int(v[3]) - 1
    gd = _db_cotangent(gdb, p, want_db, xs.dtype(2.0) / xs.dtype(width), -xs.dtype(2.0) / xs.dtype(height))
    g0, g1, g2 = _pixel_grad(pos, tri, b * nf + f, nf, nv, xs[j], ys[i], grad[p], gd, want_db)
    gout[3 * k + 0] = g0
    gout[3 * k + 1] = g1
    gout[3 * k + 2] = g2
    vidx[3 * k + 0] = wp.int64(b * nv + tri[f, 0])
    vidx[3 * k + 1] = wp.int64(b * nv + tri[f, 1])
    vidx[3 * k + 2] = wp.int64(b * nv + tri[f, 2])
