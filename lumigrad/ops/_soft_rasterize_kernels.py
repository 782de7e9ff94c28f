"""Warp kernels for :func:`lumigrad.ops.soft_rasterize` (spec: ``_soft_rasterize_ref.py``).

Per-triangle input ``ts [B*F, 12]`` holds, per corner k, (x/w, y/w, z/w, 1/w) at
columns 4k..4k+3 (all zero when w <= 0); ``tc [B*F, 3*C]`` the corner colours.
Triangles are binned to square tiles (CSR: ``tile_start``, ``entry_tri``,
``entry_tile``). The forward runs one thread per pixel over its tile's list; the
backward runs one thread per CSR entry (tile, triangle) over the tile's pixels and
writes that entry's own gradient row, so there are no racing writes; rows are
summed per triangle in torch.

Per pixel the forward saves ``aux [P, 3]`` = (transmittance prod(1 - D), softmax
shift m, softmax normaliser Z). The alpha gradient uses
d alpha / d x_j = (1 - alpha) * D_j (with x_j the sigmoid argument), which needs
no division by (1 - D_j), so saturated triangles are safe.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["soft_fwd_kernel", "soft_bwd_kernel"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.func
def _sel3(k: int, a0: Any, a1: Any, a2: Any):
    if k == 0:
        return a0
    if k == 1:
        return a1
    return a2


@wp.func
def _sigmoid(x: Any):
    one = type(x)(1.0)
    if x >= type(x)(0.0):
        return one / (one + wp.exp(-x))
    ex = wp.exp(x)
    return ex / (one + ex)


@wp.func
def _softplus(x: Any):
    return wp.max(x, type(x)(0.0)) + wp.log(type(x)(1.0) + wp.exp(-wp.abs(x)))


@wp.func
def _seg(dx: Any, dy: Any, ex: Any, ey: Any):
    """Squared distance from p to segment a + t e (d = p - a); returns (d2, t, t strictly inside (0, 1))."""
    zero = type(dx)(0.0)
    one = type(dx)(1.0)
    length2 = ex * ex + ey * ey
    t = zero
    if length2 > zero:
        t = (dx * ex + dy * ey) / length2
    free = 1
    if t <= zero:
        t = zero
        free = 0
    if t >= one:
        t = one
        free = 0
    rx = dx - t * ex
    ry = dy - t * ey
    return rx * rx + ry * ry, t, free


@wp.func
def _geom(ts: wp.array2d(dtype=Any), bf: int, px: Any, py: Any, cut: Any):
    """Pixel/triangle geometry: (ok, inside, d2, edge k, t, t_free, bs0, bs1, bs2).

    ok = 0 when the triangle is skipped (w <= 0 corner, zero area, or outside and
    d2 >= cut^2). bs are the screen barycentrics of the closest point.
    """
    zero = type(px)(0.0)
    ax0 = ts[bf, 0]
    ay0 = ts[bf, 1]
    ax1 = ts[bf, 4]
    ay1 = ts[bf, 5]
    ax2 = ts[bf, 8]
    ay2 = ts[bf, 9]
    ok = 1
    if ts[bf, 3] <= zero or ts[bf, 7] <= zero or ts[bf, 11] <= zero:
        ok = 0
    # Cheap reject: outside the bbox grown by the cutoff means d2 > cut^2.
    if px < wp.min(ax0, wp.min(ax1, ax2)) - cut or px > wp.max(ax0, wp.max(ax1, ax2)) + cut:
        ok = 0
    if py < wp.min(ay0, wp.min(ay1, ay2)) - cut or py > wp.max(ay0, wp.max(ay1, ay2)) + cut:
        ok = 0
    inside = 0
    d2 = zero
    k = 0
    t = zero
    free = 0
    bs0 = zero
    bs1 = zero
    bs2 = zero
    if ok == 1:
        dx0 = px - ax0
        dy0 = py - ay0
        dx1 = px - ax1
        dy1 = py - ay1
        dx2 = px - ax2
        dy2 = py - ay2
        n0 = dx1 * dy2 - dy1 * dx2
        n1 = dx2 * dy0 - dy2 * dx0
        n2 = dx0 * dy1 - dy0 * dx1
        area = n0 + n1 + n2
        if area == zero:
            ok = 0
        if area > zero and n0 >= zero and n1 >= zero and n2 >= zero:
            inside = 1
        if area < zero and n0 <= zero and n1 <= zero and n2 <= zero:
            inside = 1
        d2, t, free = _seg(dx0, dy0, ax1 - ax0, ay1 - ay0)
        e1, t1, f1 = _seg(dx1, dy1, ax2 - ax1, ay2 - ay1)
        if e1 < d2:
            d2 = e1
            t = t1
            free = f1
            k = 1
        e2, t2, f2 = _seg(dx2, dy2, ax0 - ax2, ay0 - ay2)
        if e2 < d2:
            d2 = e2
            t = t2
            free = f2
            k = 2
        if inside == 0 and d2 >= cut * cut:
            ok = 0
        if ok == 1:
            if inside == 1:
                bs0 = n0 / area
                bs1 = n1 / area
                bs2 = n2 / area
            else:
                one = type(px)(1.0)
                bs0 = _sel3(k, one - t, zero, t)
                bs1 = _sel3(k, t, one - t, zero)
                bs2 = _sel3(k, zero, t, one - t)
    return ok, inside, d2, k, t, free, bs0, bs1, bs2


@wp.func
def _pixel_ndc(row: int, col: int, H: int, W: int, one: Any):
    half = type(one)(0.5)
    two = type(one)(2.0)
    px = (type(one)(float(col)) + half) * (two / type(one)(float(W))) - one
    py = one - (type(one)(float(row)) + half) * (two / type(one)(float(H)))
    return px, py


@wp.kernel
def soft_fwd_kernel(
    offset: int,
    ts: wp.array2d(dtype=Any),  # [B*F, 12]
    tc: wp.array2d(dtype=Any),  # [B*F, 3*C] (dummy when C == 0)
    tile_start: wp.array(dtype=wp.int32),  # [B*ntiles + 1]
    entry_tri: wp.array(dtype=wp.int32),  # [E]
    prm: wp.array(dtype=Any),  # sigma, gamma, cutoff, z_eps
    H: int,
    W: int,
    F: int,
    C: int,
    ntx: int,
    nty: int,
    tile: int,
    out: wp.array2d(dtype=Any),  # [B*H*W, C + 2]: fg colour, background weight, alpha
    aux: wp.array2d(dtype=Any),  # [B*H*W, 3]: transmittance, m, Z
):
    i = wp.tid() + offset
    hw = H * W
    b = i / hw
    r = i - b * hw
    row = r / W
    col = r - row * W
    one = ts.dtype(1.0)
    zero = ts.dtype(0.0)
    half = ts.dtype(0.5)
    px, py = _pixel_ndc(row, col, H, W, one)
    sigma = prm[0]
    gamma = prm[1]
    cut = prm[2]
    zeps = prm[3]
    key = (b * nty + row / tile) * ntx + col / tile
    log_t = zero
    m = zeps
    z_sum = one  # background weight exp((z_eps - m) / gamma) at m = z_eps
    for c in range(C):
        out[i, c] = zero
    for e in range(tile_start[key], tile_start[key + 1]):
        bf = b * F + entry_tri[e]
        ok, inside, d2, k, t, free, bs0, bs1, bs2 = _geom(ts, bf, px, py, cut)
        if ok == 0:
            continue
        x = -d2 / sigma
        if inside == 1:
            x = d2 / sigma
        log_t = log_t - _softplus(x)
        if C > 0:
            z = bs0 * ts[bf, 2] + bs1 * ts[bf, 6] + bs2 * ts[bf, 10]
            if z >= -one and z <= one:
                zp = (one - z) * half
                if zp > m:
                    # Online softmax: rescale what has been summed to the new max.
                    scale = wp.exp((m - zp) / gamma)
                    z_sum = z_sum * scale
                    for c in range(C):
                        out[i, c] = out[i, c] * scale
                    m = zp
                wgt = _sigmoid(x) * wp.exp((zp - m) / gamma)
                q0 = bs0 * ts[bf, 3]
                q1 = bs1 * ts[bf, 7]
                q2 = bs2 * ts[bf, 11]
                qs = q0 + q1 + q2
                z_sum = z_sum + wgt
                for c in range(C):
                    cj = (q0 * tc[bf, c] + q1 * tc[bf, C + c] + q2 * tc[bf, 2 * C + c]) / qs
                    out[i, c] = out[i, c] + wgt * cj
    for c in range(C):
        out[i, c] = out[i, c] / z_sum
    trans = wp.exp(log_t)
    out[i, C] = wp.exp((zeps - m) / gamma) / z_sum
    out[i, C + 1] = one - trans
    aux[i, 0] = trans
    aux[i, 1] = m
    aux[i, 2] = z_sum


@wp.func
def _acc(g: wp.array2d(dtype=Any), e: int, j: int, v: Any):
    g[e, j] = g[e, j] + v


@wp.kernel
def soft_bwd_kernel(
    offset: int,
    ts: wp.array2d(dtype=Any),  # [B*F, 12]
    tc: wp.array2d(dtype=Any),  # [B*F, 3*C]
    entry_tri: wp.array(dtype=wp.int32),  # [E]
    entry_tile: wp.array(dtype=wp.int32),  # [E]
    prm: wp.array(dtype=Any),
    H: int,
    W: int,
    F: int,
    C: int,
    ntx: int,
    nty: int,
    tile: int,
    out: wp.array2d(dtype=Any),  # [B*H*W, C + 2] forward output
    aux: wp.array2d(dtype=Any),  # [B*H*W, 3]
    gout: wp.array2d(dtype=Any),  # [B*H*W, C + 2] cotangent
    g_ts: wp.array2d(dtype=Any),  # [E, 12] (zeroed) per-entry gradient
    g_tc: wp.array2d(dtype=Any),  # [E, 3*C] (zeroed)
):
    e = wp.tid() + offset
    key = entry_tile[e]
    per = ntx * nty
    b = key / per
    r = key - b * per
    ty = r / ntx
    tx = r - ty * ntx
    bf = b * F + entry_tri[e]
    one = ts.dtype(1.0)
    zero = ts.dtype(0.0)
    half = ts.dtype(0.5)
    two = ts.dtype(2.0)
    sigma = prm[0]
    gamma = prm[1]
    cut = prm[2]
    for rr in range(tile):
        row = ty * tile + rr
        for cc in range(tile):
            col = tx * tile + cc
            if row >= H or col >= W:
                continue
            i = (b * H + row) * W + col
            px, py = _pixel_ndc(row, col, H, W, one)
            ok, inside, d2, k, t, free, bs0, bs1, bs2 = _geom(ts, bf, px, py, cut)
            if ok == 0:
                continue
            sgn = -one
            if inside == 1:
                sgn = one
            x = sgn * d2 / sigma
            dsig = _sigmoid(x)
            gx = gout[i, C + 1] * aux[i, 0] * dsig  # d alpha / d x = (1 - alpha) D
            gbs0 = zero
            gbs1 = zero
            gbs2 = zero
            if C > 0:
                z = bs0 * ts[bf, 2] + bs1 * ts[bf, 6] + bs2 * ts[bf, 10]
                if z >= -one and z <= one:
                    zp = (one - z) * half
                    z_sum = aux[i, 2]
                    wgt = dsig * wp.exp((zp - aux[i, 1]) / gamma)
                    q0 = bs0 * ts[bf, 3]
                    q1 = bs1 * ts[bf, 7]
                    q2 = bs2 * ts[bf, 11]
                    qs = q0 + q1 + q2
                    b0 = q0 / qs
                    b1 = q1 / qs
                    b2 = q2 / qs
                    dot = zero
                    gb0 = zero
                    gb1 = zero
                    gb2 = zero
                    for c in range(C):
                        c0 = tc[bf, c]
                        c1 = tc[bf, C + c]
                        c2 = tc[bf, 2 * C + c]
                        dot = dot + gout[i, c] * (b0 * c0 + b1 * c1 + b2 * c2 - out[i, c])
                        gcol = gout[i, c] * wgt / z_sum
                        _acc(g_tc, e, c, b0 * gcol)
                        _acc(g_tc, e, C + c, b1 * gcol)
                        _acc(g_tc, e, 2 * C + c, b2 * gcol)
                        gb0 = gb0 + gcol * c0
                        gb1 = gb1 + gcol * c1
                        gb2 = gb2 + gcol * c2
                    gw = (dot - gout[i, C] * out[i, C]) / z_sum
                    gx = gx + gw * wgt * (one - dsig)
                    gz = -half * gw * wgt / gamma
                    # b_k = q_k / qs with q_k = bs_k / w_k.
                    sgb = gb0 * b0 + gb1 * b1 + gb2 * b2
                    gq0 = (gb0 - sgb) / qs
                    gq1 = (gb1 - sgb) / qs
                    gq2 = (gb2 - sgb) / qs
                    gbs0 = gq0 * ts[bf, 3] + gz * ts[bf, 2]
                    gbs1 = gq1 * ts[bf, 7] + gz * ts[bf, 6]
                    gbs2 = gq2 * ts[bf, 11] + gz * ts[bf, 10]
                    _acc(g_ts, e, 3, gq0 * bs0)
                    _acc(g_ts, e, 7, gq1 * bs1)
                    _acc(g_ts, e, 11, gq2 * bs2)
                    _acc(g_ts, e, 2, gz * bs0)
                    _acc(g_ts, e, 6, gz * bs1)
                    _acc(g_ts, e, 10, gz * bs2)
            # Distance: t minimises |p - a - t e|^2 (or is clamped), so it is held fixed.
            k1 = (k + 1) % 3
            akx = ts[bf, 4 * k]
            aky = ts[bf, 4 * k + 1]
            ex = ts[bf, 4 * k1] - akx
            ey = ts[bf, 4 * k1 + 1] - aky
            rx = px - akx
            ry = py - aky
            diffx = rx - t * ex
            diffy = ry - t * ey
            gd2 = -two * gx * sgn / sigma
            _acc(g_ts, e, 4 * k, gd2 * diffx * (one - t))
            _acc(g_ts, e, 4 * k + 1, gd2 * diffy * (one - t))
            _acc(g_ts, e, 4 * k1, gd2 * diffx * t)
            _acc(g_ts, e, 4 * k1 + 1, gd2 * diffy * t)
            if C == 0:
                continue  # the barycentrics only feed colour and depth
            if inside == 1:
                # bs_k = n_k / sum(n), n_k = cross(p - a_{k+1}, p - a_{k+2}).
                dx0 = px - ts[bf, 0]
                dy0 = py - ts[bf, 1]
                dx1 = px - ts[bf, 4]
                dy1 = py - ts[bf, 5]
                dx2 = px - ts[bf, 8]
                dy2 = py - ts[bf, 9]
                area = (dx1 * dy2 - dy1 * dx2) + (dx2 * dy0 - dy2 * dx0) + (dx0 * dy1 - dy0 * dx1)
                sg = gbs0 * bs0 + gbs1 * bs1 + gbs2 * bs2
                for kk in range(3):
                    ka = (kk + 1) % 3
                    kb = (kk + 2) % 3
                    gn = (_sel3(kk, gbs0, gbs1, gbs2) - sg) / area
                    dax = px - ts[bf, 4 * ka]
                    day = py - ts[bf, 4 * ka + 1]
                    dbx = px - ts[bf, 4 * kb]
                    dby = py - ts[bf, 4 * kb + 1]
                    # n = dax * dby - day * dbx and d(p - a)/da = -1.
                    _acc(g_ts, e, 4 * ka, -gn * dby)
                    _acc(g_ts, e, 4 * ka + 1, gn * dbx)
                    _acc(g_ts, e, 4 * kb, gn * day)
                    _acc(g_ts, e, 4 * kb + 1, -gn * dax)
            elif free == 1:
                gt = _sel3(k1, gbs0, gbs1, gbs2) - _sel3(k, gbs0, gbs1, gbs2)
                length2 = ex * ex + ey * ey
                # t = (r . e) / |e|^2 with r = p - a_k, e = a_{k1} - a_k.
                _acc(g_ts, e, 4 * k, gt * (-(ex + rx) + two * t * ex) / length2)
                _acc(g_ts, e, 4 * k + 1, gt * (-(ey + ry) + two * t * ey) / length2)
                _acc(g_ts, e, 4 * k1, gt * (rx - two * t * ex) / length2)
                _acc(g_ts, e, 4 * k1 + 1, gt * (ry - two * t * ey) / length2)
