"""Warp kernels for :func:`lumigrad.ops.antialias.antialias` (one Warp module).

The forward runs one thread per pixel over flattened views (``rast [P, 4]``,
P = B*H*W). Each thread analyses the pair it forms with its right neighbour
(slot 0) and with the pixel below (slot 1) and writes only its own two slots, so
parallel chunks never race: the blend weight ``alpha`` and an edge ``code`` per
pair. The backward runs one thread per *active* pair (code >= 0, compacted by
the wrapper) and writes the gradients of the pair's two edge vertices to its own
two rows, which the wrapper reduces with ``index_add_``.

Pair geometry (see :mod:`lumigrad.ops._antialias_ref` for the spec): the front
triangle's pixel is the *origin*, ``s = +1`` when that is the first pixel of the
pair and -1 otherwise. In pixel units relative to the origin's centre, ``a`` is
the coordinate along the pair (X for slot 0, Y for slot 1) and ``c`` the one
across it. An edge crossing ``c = 0`` at ``a = a_x`` gives ``t = s * a_x``, the
distance from the origin centre towards the other pixel, and
``alpha = s * (0.5 - clamp(t, 0, 1))``. Codes are ``(face * 3 + k) * 2 + use1``
(k: edge opposite corner k; use1: origin is the second pixel), -1 for no blend.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["antialias_bwd", "antialias_fwd"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)

# Tolerated mismatch between rasterized coverage and the analytic edge (pixels),
# as in nvdiffrast: a crossing at t in (-EPS, 1 + EPS) is clamped to [0, 1].
_EPS = 0.0625


@wp.func
def _det3(ax: Any, ay: Any, aw: Any, bx: Any, by: Any, bw: Any, cx: Any, cy: Any, cw: Any):
    # a . (b x c) over homogeneous (x, y, w): the screen-space facing of a triangle,
    # valid even when a vertex lies behind the camera (w <= 0).
    return ax * (by * cw - bw * cy) + ay * (bw * cx - bx * cw) + aw * (bx * cy - by * cx)


@wp.func
def _opposed(a: Any, b: Any):
    z = type(a)(0.0)
    return (a > z and b < z) or (a < z and b > z)


@wp.func
def _crossing(a1: Any, c1: Any, a2: Any, c2: Any, s: Any):
    """Signed distance ``t`` to where edge (1, 2) crosses ``c = 0``; -1e30 if it does not."""
    z = type(a1)(0.0)
    if (c1 < z) == (c2 < z):
        return type(a1)(-1.0e30)
    return s * (a1 * c2 - a2 * c1) / (c2 - c1)


@wp.func
def _steep(a1: Any, c1: Any, a2: Any, c2: Any):
    # Edges at more than 45 degrees to the pair direction are the other direction's job.
    return wp.abs(c2 - c1) >= wp.abs(a2 - a1)


@wp.func
def _screen(pos: wp.array2d(dtype=Any), row: int, d: int, ox: int, oy: int, width: int, height: int):
    """(along, across) pixel coordinates of vertex ``row`` relative to the origin pixel centre."""
    one = pos.dtype(1.0)
    half = pos.dtype(0.5)
    w = pos[row, 3]
    sx = (pos[row, 0] / w + one) * (half * pos.dtype(width)) - (pos.dtype(ox) + half)
    sy = (one - pos[row, 1] / w) * (half * pos.dtype(height)) - (pos.dtype(oy) + half)
    if d == 0:
        return sx, sy
    return sy, sx


@wp.func
def _analyze(
    pos: wp.array2d(dtype=Any),
    rast: wp.array2d(dtype=Any),
    tri: wp.array2d(dtype=wp.int32),
    opp: wp.array2d(dtype=wp.int32),
    p0: int,
    p1: int,
    x: int,
    y: int,
    d: int,
    vbase: int,
    width: int,
    height: int,
):
    """Blend weight and edge code for the pair (p0, p1); p1 is right of (d=0) or below (d=1) p0."""
    zero = pos.dtype(0.0)
    t0 = int(rast[p0, 3]) - 1
    t1 = int(rast[p1, 3]) - 1
    if t0 == t1:
        return zero, -1
    use1 = 0
    if t0 < 0:
        use1 = 1
    elif t1 >= 0 and not (rast[p0, 2] < rast[p1, 2]):
        use1 = 1
    f = t0
    s = pos.dtype(1.0)
    ox = x
    oy = y
    if use1 == 1:
        f = t1
        s = pos.dtype(-1.0)
        ox = x + 1 - d
        oy = y + d
    r0 = vbase + tri[f, 0]
    r1 = vbase + tri[f, 1]
    r2 = vbase + tri[f, 2]
    # Edges of triangles crossing the camera plane have no finite projection: no blend.
    if pos[r0, 3] <= zero or pos[r1, 3] <= zero or pos[r2, 3] <= zero:
        return zero, -1

    # Silhouette test: edge k is a silhouette unless the neighbour across it
    # (opposite vertex o_k) lies on the other side, i.e. faces the same way.
    q0 = r0
    q1 = r1
    q2 = r2
    if opp[f, 0] >= 0:
        q0 = vbase + opp[f, 0]
    if opp[f, 1] >= 0:
        q1 = vbase + opp[f, 1]
    if opp[f, 2] >= 0:
        q2 = vbase + opp[f, 2]
    x0 = pos[r0, 0]
    y0 = pos[r0, 1]
    w0 = pos[r0, 3]
    x1 = pos[r1, 0]
    y1 = pos[r1, 1]
    w1 = pos[r1, 3]
    x2 = pos[r2, 0]
    y2 = pos[r2, 1]
    w2 = pos[r2, 3]
    bb = _det3(x0, y0, w0, x1, y1, w1, x2, y2, w2)
    sil0 = not _opposed(bb, _det3(pos[q0, 0], pos[q0, 1], pos[q0, 3], x1, y1, w1, x2, y2, w2))
    sil1 = not _opposed(bb, _det3(x0, y0, w0, pos[q1, 0], pos[q1, 1], pos[q1, 3], x2, y2, w2))
    sil2 = not _opposed(bb, _det3(x0, y0, w0, x1, y1, w1, pos[q2, 0], pos[q2, 1], pos[q2, 3]))

    a0, c0 = _screen(pos, r0, d, ox, oy, width, height)
    a1, c1 = _screen(pos, r1, d, ox, oy, width, height)
    a2, c2 = _screen(pos, r2, d, ox, oy, width, height)
    # The edge through which the triangle leaves towards the other pixel: largest t.
    k = int(0)
    t = _crossing(a1, c1, a2, c2, s)
    ok = sil0 and _steep(a1, c1, a2, c2)
    tb = _crossing(a2, c2, a0, c0, s)
    if tb > t:
        k = 1
        t = tb
        ok = sil1 and _steep(a2, c2, a0, c0)
    tc = _crossing(a0, c0, a1, c1, s)
    if tc > t:
        k = 2
        t = tc
        ok = sil2 and _steep(a0, c0, a1, c1)
    eps = pos.dtype(_EPS)
    one = pos.dtype(1.0)
    if not ok or t <= -eps or t >= one + eps:
        return zero, -1
    alpha = s * (pos.dtype(0.5) - wp.clamp(t, zero, one))
    return alpha, (f * 3 + k) * 2 + use1


@wp.kernel
def antialias_fwd(
    offset: int,
    pos: wp.array2d(dtype=Any),  # [Bp*V, 4] clip
    rast: wp.array2d(dtype=Any),  # [P, 4]
    tri: wp.array2d(dtype=wp.int32),  # [F, 3]
    opp: wp.array2d(dtype=wp.int32),  # [F, 3] opposite vertex across edge k, -1 if none
    width: int,
    height: int,
    num_verts: int,
    pos_batched: int,
    alpha: wp.array2d(dtype=Any),  # [P, 2] out
    code: wp.array2d(dtype=wp.int32),  # [P, 2] out
):
    p = wp.tid() + offset
    hw = width * height
    b = p // hw
    x = (p % hw) % width
    y = (p % hw) // width
    vbase = b * num_verts * pos_batched
    a = alpha.dtype(0.0)
    c = int(-1)
    if x + 1 < width:
        a, c = _analyze(pos, rast, tri, opp, p, p + 1, x, y, 0, vbase, width, height)
    alpha[p, 0] = a
    code[p, 0] = c
    a = alpha.dtype(0.0)
    c = int(-1)
    if y + 1 < height:
        a, c = _analyze(pos, rast, tri, opp, p, p + width, x, y, 1, vbase, width, height)
    alpha[p, 1] = a
    code[p, 1] = c


@wp.kernel
def antialias_bwd(
    offset: int,
    pos: wp.array2d(dtype=Any),  # [Bp*V, 4]
    tri: wp.array2d(dtype=wp.int32),  # [F, 3]
    code: wp.array2d(dtype=wp.int32),  # [P, 2] from the forward
    pairs: wp.array(dtype=wp.int32),  # [N] active pairs, 2 * pixel + slot
    grad_alpha: wp.array(dtype=Any),  # [N]
    width: int,
    height: int,
    num_verts: int,
    pos_batched: int,
    grad_buf: wp.array2d(dtype=Any),  # [2N, 4] out, zero-initialised
    rows: wp.array(dtype=wp.int32),  # [2N] out, zero-initialised: pos row of each gradient
):
    """d(loss)/d(clip pos) of the two edge vertices of active pair i, in rows 2i and 2i + 1."""
    i = wp.tid() + offset
    g = grad_alpha[i]
    zero = grad_alpha.dtype(0.0)
    if g == zero:
        return
    p = pairs[i] // 2
    d = pairs[i] % 2
    c = code[p, d]
    hw = width * height
    vbase = (p // hw) * num_verts * pos_batched
    x = (p % hw) % width
    y = (p % hw) // width
    use1 = c % 2
    f = (c // 2) // 3
    k = (c // 2) % 3
    s = pos.dtype(1.0)
    ox = x
    oy = y
    if use1 == 1:
        s = pos.dtype(-1.0)
        ox = x + 1 - d
        oy = y + d
    ra = vbase + tri[f, (k + 1) % 3]
    rb = vbase + tri[f, (k + 2) % 3]
    a1, c1 = _screen(pos, ra, d, ox, oy, width, height)
    a2, c2 = _screen(pos, rb, d, ox, oy, width, height)
    den = c2 - c1
    ax = (a1 * c2 - a2 * c1) / den
    t = s * ax
    if t <= zero or t >= pos.dtype(1.0):
        return  # alpha was clamped: locally constant
    # alpha = s/2 - a_x, so d alpha / d a_x = -1.
    ga1 = -g * c2 / den
    ga2 = g * c1 / den
    gc1 = -g * (ax - a2) / den
    gc2 = -g * (a1 - ax) / den
    half = pos.dtype(0.5)
    sw = half * pos.dtype(width)
    sh = half * pos.dtype(height)
    for e in range(2):
        r = ra
        gx_pix = ga1
        gy_pix = gc1
        if e == 1:
            r = rb
            gx_pix = ga2
            gy_pix = gc2
        if d == 1:
            tmp = gx_pix
            gx_pix = gy_pix
            gy_pix = tmp
        w = pos[r, 3]
        # X = (x/w + 1) W/2 - ox', Y = (1 - y/w) H/2 - oy'.
        gx = gx_pix * sw / w
        gy = -gy_pix * sh / w
        grad_buf[2 * i + e, 0] = gx
        grad_buf[2 * i + e, 1] = gy
        grad_buf[2 * i + e, 3] = -(gx * pos[r, 0] + gy * pos[r, 1]) / w
        rows[2 * i + e] = r


# Declare both float overloads up front so the module hash, and the compiled
# cache entry, do not depend on which dtype a process happens to use first.
for _scalar in (wp.float32, wp.float64):
    _arr = wp.array2d(dtype=_scalar)
    wp.overload(antialias_fwd, {"pos": _arr, "rast": _arr, "alpha": _arr})
    wp.overload(antialias_bwd, {"pos": _arr, "grad_alpha": wp.array(dtype=_scalar), "grad_buf": _arr})
