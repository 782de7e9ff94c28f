"""Warp kernels for :func:`lumigrad.ops.edge_grad.edge_grad` (one Warp module, hand-written backward only).

Inputs are screen-space vertices ``scr [Bp*V, 4] = (X, Y, z_ndc, w)`` (X right,
Y down, pixels; clip w, the vertex is usable when w > 0) and per-pixel triangle ids ``ids [P]``
(-1 = background), P = B*H*W. Each pixel forms a pair with its right neighbour
(slot 0, axis X) and the pixel below (slot 1, axis Y).

``edge_classify`` (one thread per pixel, writes only its own two slots) labels
each pair with a code: 0 no discontinuity, 1 the boundary moves with the first
pixel's triangle, 2 with the second's, 3 the two triangles intersect between the
pixel centres. ``edge_grad_tasks`` (one thread per pixel, launched per task over
interleaved image rows) computes each active pair's ``dL/db`` (loss derivative
w.r.t. the boundary position along the pair axis, from the colour jump) and adds
the gradient w.r.t. the screen coordinates of the owner triangle's vertices into
the task's own buffer; ``clip_grad`` sums the buffers and chains them to clip
space. The spec is :mod:`lumigrad.ops._edge_grad_ref`.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = [
    "screen_verts", "edge_classify", "rim_motion_bwd", "edge_grad_tasks", "clip_grad", "OVERLOADS",
    "NONE", "OWNER_FIRST", "OWNER_SECOND", "INTERSECT",
]

NONE = 0
OWNER_FIRST = 1
OWNER_SECOND = 2
INTERSECT = 3


@wp.func
def _area2(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int):
    """Twice the signed screen-space area of triangle rows r0, r1, r2 (> 0: one facing)."""
    return (scr[r1, 0] - scr[r0, 0]) * (scr[r2, 1] - scr[r0, 1]) - (scr[r1, 1] - scr[r0, 1]) * (scr[r2, 0] - scr[r0, 0])


@wp.func
def _bary(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int, px: Any, py: Any):
    """Screen-space (affine) barycentrics of point (px, py) in triangle rows r0, r1, r2; area 0 -> all 0."""
    area = _area2(scr, r0, r1, r2)
    zero = px - px
    if area == zero:
        return zero, zero, zero, zero
    l0 = ((scr[r1, 0] - px) * (scr[r2, 1] - py) - (scr[r1, 1] - py) * (scr[r2, 0] - px)) / area
    l1 = ((scr[r2, 0] - px) * (scr[r0, 1] - py) - (scr[r2, 1] - py) * (scr[r0, 0] - px)) / area
    return l0, l1, type(px)(1.0) - l0 - l1, area


@wp.func
def _bary_in(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int, px: Any, py: Any, area: Any):
    """:func:`_bary` with the triangle's (non-zero) doubled area already known: same values."""
    l0 = ((scr[r1, 0] - px) * (scr[r2, 1] - py) - (scr[r1, 1] - py) * (scr[r2, 0] - px)) / area
    l1 = ((scr[r2, 0] - px) * (scr[r0, 1] - py) - (scr[r2, 1] - py) * (scr[r0, 0] - px)) / area
    return l0, l1, type(px)(1.0) - l0 - l1


@wp.func
def _inv_depth(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int, l0: Any, l1: Any, l2: Any):
    """1 / w at a point of the triangle's plane (affine in screen space under perspective)."""
    return l0 / scr[r0, 3] + l1 / scr[r1, 3] + l2 / scr[r2, 3]


@wp.func
def _perspective(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int):
    one = scr.dtype(1.0)
    return scr[r0, 3] != one or scr[r1, 3] != one or scr[r2, 3] != one


@wp.func
def _valid(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int):
    z = scr.dtype(0.0)
    return scr[r0, 3] > z and scr[r1, 3] > z and scr[r2, 3] > z


@wp.func
def _inside(l0: Any, l1: Any, l2: Any):
    z = type(l0)(0.0)
    return l0 > z and l1 > z and l2 > z


@wp.func
def _depth(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int, l0: Any, l1: Any, l2: Any):
    return l0 * scr[r0, 2] + l1 * scr[r1, 2] + l2 * scr[r2, 2]


@wp.func
def _shared_verts(tri: wp.array2d(dtype=wp.int32), fa: int, fb: int):
    n = int(0)
    for i in range(3):
        for j in range(3):
            if tri[fa, i] == tri[fb, j]:
                n += 1
    return n


@wp.func
def _classify(
    scr: wp.array2d(dtype=Any),
    ids: wp.array(dtype=wp.int32),
    tri: wp.array2d(dtype=wp.int32),
    p0: int,
    p1: int,
    x0: int,
    y0: int,
    d: int,
    vbase: int,
    tau: Any,
    rel_tol: Any,
):
    fa = ids[p0]
    fb = ids[p1]
    if fa == fb:
        return NONE
    ax = scr.dtype(x0) + scr.dtype(0.5)
    ay = scr.dtype(y0) + scr.dtype(0.5)
    bx = ax + scr.dtype(1 - d)
    by = ay + scr.dtype(d)
    if fb < 0:
        if _valid(scr, vbase + tri[fa, 0], vbase + tri[fa, 1], vbase + tri[fa, 2]):
            return OWNER_FIRST
        return NONE
    b0 = vbase + tri[fb, 0]
    b1 = vbase + tri[fb, 1]
    b2 = vbase + tri[fb, 2]
    if fa < 0:
        if _valid(scr, b0, b1, b2):
            return OWNER_SECOND
        return NONE
    a0 = vbase + tri[fa, 0]
    a1 = vbase + tri[fa, 1]
    a2 = vbase + tri[fa, 2]
    if not (_valid(scr, a0, a1, a2) and _valid(scr, b0, b1, b2)):
        return NONE
    area_a = _area2(scr, a0, a1, a2)
    area_b = _area2(scr, b0, b1, b2)
    zero = scr.dtype(0.0)
    if area_a == zero or area_b == zero:
        return NONE
    # Neighbours across a shared edge that face the same way: one continuous surface
    # (most pairs of a dense mesh: decided before any barycentric).
    if (area_a > zero) == (area_b > zero):
        if _shared_verts(tri, fa, fb) == 2:
            return NONE
    # Each triangle's barycentrics extrapolated to the other pixel (and, below, at its own).
    ma0, ma1, ma2 = _bary_in(scr, a0, a1, a2, bx, by, area_a)
    mb0, mb1, mb2 = _bary_in(scr, b0, b1, b2, ax, ay, area_b)
    b_in_a = _inside(ma0, ma1, ma2)
    a_in_b = _inside(mb0, mb1, mb2)
    if b_in_a and a_in_b:
        return INTERSECT
    if a_in_b:
        return OWNER_FIRST  # b's triangle reaches under the first pixel: the first occludes it
    if b_in_a:
        return OWNER_SECOND
    # Neither reaches the other pixel (small triangles): continuous if each plane,
    # extrapolated, meets the other surface's depth; else the nearer surface owns it.
    la0, la1, la2 = _bary_in(scr, a0, a1, a2, ax, ay, area_a)
    lb0, lb1, lb2 = _bary_in(scr, b0, b1, b2, bx, by, area_b)
    za = _depth(scr, a0, a1, a2, la0, la1, la2)
    zb = _depth(scr, b0, b1, b2, lb0, lb1, lb2)
    gap_b = wp.abs(_depth(scr, a0, a1, a2, ma0, ma1, ma2) - zb)
    gap_a = wp.abs(_depth(scr, b0, b1, b2, mb0, mb1, mb2) - za)
    if wp.max(gap_a, gap_b) <= tau * wp.abs(zb - za):
        return NONE
    if _perspective(scr, a0, a1, a2) or _perspective(scr, b0, b1, b2):
        # Relative gap in linear depth (1/w is affine in screen space): a surface
        # curving away from its tangent plane stays far below a real depth step.
        qa = _inv_depth(scr, a0, a1, a2, la0, la1, la2)
        qb = _inv_depth(scr, b0, b1, b2, lb0, lb1, lb2)
        rel_b = wp.abs(_inv_depth(scr, a0, a1, a2, ma0, ma1, ma2) / qb - scr.dtype(1.0))
        rel_a = wp.abs(_inv_depth(scr, b0, b1, b2, mb0, mb1, mb2) / qa - scr.dtype(1.0))
        if wp.max(rel_a, rel_b) <= rel_tol:
            return NONE
    if za <= zb:
        return OWNER_FIRST
    return OWNER_SECOND


@wp.kernel
def edge_classify(
    offset: int,
    span: int,  # pixels per thread, dividing the width: the width on CPU, 1 on CUDA
    scr: wp.array2d(dtype=Any),  # [Bp*V, 4]
    ids: wp.array(dtype=wp.int32),  # [P]
    tri: wp.array2d(dtype=wp.int32),  # [F, 3]
    width: int,
    height: int,
    num_verts: int,
    pos_batched: int,
    tau: Any,
    rel_tol: Any,
    code: wp.array2d(dtype=wp.int32),  # [P, 2] out
):
    # Thread = ``span`` pixels of one row (span divides the width): no division per pixel.
    j0 = (wp.tid() + offset) * span
    row = j0 // width
    x0 = j0 - row * width
    y = row % height
    vbase = (row // height) * num_verts * pos_batched
    for x in range(x0, x0 + span):
        p = row * width + x
        f = ids[p]
        # Same triangle on both sides (most pairs): no call into the classifier.
        c = int(NONE)
        if x + 1 < width:
            if ids[p + 1] != f:
                c = _classify(scr, ids, tri, p, p + 1, x, y, 0, vbase, tau, rel_tol)
        code[p, 0] = c
        c = int(NONE)
        if y + 1 < height:
            if ids[p + width] != f:
                c = _classify(scr, ids, tri, p, p + width, x, y, 1, vbase, tau, rel_tol)
        code[p, 1] = c


@wp.kernel
def rim_motion_bwd(
    offset: int,
    span: int,  # pixels per thread, dividing the width: the width on CPU, 1 on CUDA
    code: wp.array2d(dtype=wp.int32),  # [P, 2] pair codes
    rast_db: wp.array2d(dtype=Any),  # [P, 4] (du/dX, du/dY, dv/dX, dv/dY)
    grad: wp.array2d(dtype=Any),  # [P, 4] dL/d rast
    width: int,
    height: int,
    out: wp.array2d(dtype=Any),  # [P, 4]
):
    """``g_uv' = J^-T K J^T g_uv`` where a pixel owns a boundary (K drops that screen axis), else ``g``.

    A pixel owns the boundary along X if its pair to the right has code
    OWNER_FIRST or the pair from its left neighbour OWNER_SECOND (Y likewise).
    """
    j0 = (wp.tid() + offset) * span
    row = j0 // width
    x0 = j0 - row * width
    y = row % height
    for x in range(x0, x0 + span):
        p = row * width + x
        kx = code[p, 0] == OWNER_FIRST
        if x > 0:
            kx = kx or code[p - 1, 0] == OWNER_SECOND
        ky = code[p, 1] == OWNER_FIRST
        if y > 0:
            ky = ky or code[p - width, 1] == OWNER_SECOND
        gu = grad[p, 0]
        gv = grad[p, 1]
        if kx or ky:
            a = rast_db[p, 0]
            b = rast_db[p, 1]
            c = rast_db[p, 2]
            d = rast_db[p, 3]
            zero = grad.dtype(0.0)
            gx = a * gu + c * gv
            gy = b * gu + d * gv
            if kx:
                gx = zero
            if ky:
                gy = zero
            det = a * d - b * c
            # A degenerate footprint (edge-on triangle) has no screen motion to split: leave it.
            if wp.abs(det) > grad.dtype(1.0e-12) * (wp.abs(a) + wp.abs(b)) * (wp.abs(c) + wp.abs(d)):
                nu = (d * gx - c * gy) / det
                nv = (a * gy - b * gx) / det
                gu = nu
                gv = nv
        out[p, 0] = gu
        out[p, 1] = gv
        out[p, 2] = grad[p, 2]
        out[p, 3] = grad[p, 3]


@wp.func
def _add_owner(
    scr: wp.array2d(dtype=Any),
    r0: int,
    r1: int,
    r2: int,
    px: Any,
    py: Any,
    d: int,
    g_axis: Any,
    g_z: Any,
    base: int,
    gbuf: wp.array2d(dtype=Any),
):
    """The boundary moves with the fragment at (px, py): spread (g_axis, g_z) over its barycentrics,
    added to rows ``base + r`` of ``gbuf`` (dL/d(X, Y, z_ndc))."""
    l0, l1, l2, area = _bary(scr, r0, r1, r2, px, py)
    for k in range(3):
        r = r0
        lk = l0
        if k == 1:
            r = r1
            lk = l1
        if k == 2:
            r = r2
            lk = l2
        wp.atomic_add(gbuf, base + r, d, lk * g_axis)
        wp.atomic_add(gbuf, base + r, 2, lk * g_z)


@wp.func
def _coord(scr: wp.array2d(dtype=Any), r: int, axis: int):
    return scr[r, axis]


@wp.func
def _facing(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int):
    return _area2(scr, r0, r1, r2) > scr.dtype(0.0)


@wp.func
def _walk_to_contour(
    scr: wp.array2d(dtype=Any),
    tri: wp.array2d(dtype=wp.int32),
    neighbor: wp.array2d(dtype=wp.int32),
    face: int,
    vbase: int,
    start: Any,
    across: Any,
    dirn: Any,
    d: int,
    max_walk: int,
    g: Any,
    base: int,
    gbuf: wp.array2d(dtype=Any),
):
    """Walk from ``face`` along the pair axis (line ``across`` = const, from ``start``
    in direction ``dirn``) across same-facing neighbours until an edge with no
    same-facing neighbour (a contour or mesh border) is crossed within one pixel.
    There the boundary is that edge's crossing point, whose motion is exact: write
    its two vertices' gradients (rows ``base + r`` of ``gbuf``) and return True. False if none is found."""
    cur = face
    zero = scr.dtype(0.0)
    one = scr.dtype(1.0)
    for _step in range(max_walk):
        r0 = vbase + tri[cur, 0]
        r1 = vbase + tri[cur, 1]
        r2 = vbase + tri[cur, 2]
        facing = _facing(scr, r0, r1, r2)
        # Exit edge: of the (two) edges the line crosses, the farthest along dirn.
        best_k = int(-1)
        best_t = scr.dtype(-1.0e30)
        for k in range(3):
            ra = vbase + tri[cur, (k + 1) % 3]
            rb = vbase + tri[cur, (k + 2) % 3]
            ca = _coord(scr, ra, 1 - d) - across
            cb = _coord(scr, rb, 1 - d) - across
            if (ca < zero) != (cb < zero):
                ax = (_coord(scr, ra, d) * cb - _coord(scr, rb, d) * ca) / (cb - ca)
                t = (ax - start) * dirn
                if t > best_t:
                    best_t = t
                    best_k = k
        if best_k < 0 or best_t > one:
            return False  # the surface reaches past the other pixel centre: no contour here
        nb = neighbor[cur, best_k]
        contour = nb < 0
        if not contour:
            n0 = vbase + tri[nb, 0]
            n1 = vbase + tri[nb, 1]
            n2 = vbase + tri[nb, 2]
            if not _valid(scr, n0, n1, n2):
                return False
            contour = _facing(scr, n0, n1, n2) != facing
        if contour:
            if best_t < zero:
                return False
            ra = vbase + tri[cur, (best_k + 1) % 3]
            rb = vbase + tri[cur, (best_k + 2) % 3]
            c1 = _coord(scr, ra, 1 - d) - across
            c2 = _coord(scr, rb, 1 - d) - across
            den = c2 - c1
            # The crossing a* = (a1 c2 - a2 c1) / (c2 - c1) is the edge point at
            # fraction s = -c1 / (c2 - c1). Like a fragment, it reports only its
            # velocity along the axis: (1 - s) da1 + s da2. The across motion is
            # the other pair direction's share (the full crossing shift would count
            # the swept area twice over both directions).
            wp.atomic_add(gbuf, base + ra, d, g * c2 / den)
            wp.atomic_add(gbuf, base + rb, d, -g * c1 / den)
            return True
        cur = nb
    return False


@wp.func
def _slope(scr: wp.array2d(dtype=Any), r0: int, r1: int, r2: int, d: int):
    """d z_ndc / d(axis) of the triangle's plane (axis X for d = 0, Y for d = 1): the depth step over one pixel."""
    # From the first vertex (barycentrics (1, 0, 0)), so float32 loses nothing to far extrapolation.
    x = scr[r0, 0]
    y = scr[r0, 1]
    m0, m1, m2, area = _bary(scr, r0, r1, r2, x + scr.dtype(1 - d), y + scr.dtype(d))
    return _depth(scr, r0, r1, r2, m0, m1, m2) - scr[r0, 2]


@wp.func
def _side_colour(
    color: wp.array2d(dtype=Any), p: int, q: int, use_q: int, own: int, c: int
):
    """Colour of pixel ``p`` extrapolated half a pixel away from ``q`` (the next pixel out, when
    ``use_q``): 1.5 c_p - 0.5 c_q, or with ``own`` (rim rule) the inner border (c_p + c_q) / 2."""
    cp = color[p, c]
    if use_q == 0:
        return cp
    cq = color[q, c]
    if own != 0:
        return color.dtype(0.5) * (cp + cq)
    return color.dtype(1.5) * cp - color.dtype(0.5) * cq


@wp.func
def _pair_dldb(
    color: wp.array2d(dtype=Any),
    grad: wp.array2d(dtype=Any),
    code: wp.array2d(dtype=wp.int32),
    p0: int,
    p1: int,
    d: int,
    along0: int,
    length: int,
    step: int,
    c: int,
    rim: int,
):
    """dL/d(boundary position) of the pair (p0, p1): sum over channels of (c0 - c1) (g0 + g1) / 2,
    with the side colours of :func:`lumigrad.ops.edge_grad.colour_jump`."""
    use_prev = int(0)
    if along0 > 0:
        if code[p0 - step, d] == NONE:
            use_prev = 1
    use_next = int(0)
    if along0 + 1 < length - 1:
        if code[p1, d] == NONE:
            use_next = 1
    own0 = int(0)
    own1 = int(0)
    if rim != 0:
        if c == OWNER_FIRST:
            own0 = 1
        if c == OWNER_SECOND:
            own1 = 1
    acc = color.dtype(0.0)
    for k in range(color.shape[1]):
        jump = _side_colour(color, p0, p0 - step, use_prev, own0, k) - _side_colour(color, p1, p1 + step, use_next, own1, k)
        acc += jump * (grad[p0, k] + grad[p1, k])
    return acc * color.dtype(0.5)


@wp.func
def _pair_grad(
    scr: wp.array2d(dtype=Any),
    ids: wp.array(dtype=wp.int32),
    tri: wp.array2d(dtype=wp.int32),
    neighbor: wp.array2d(dtype=wp.int32),
    max_walk: int,
    p0: int,
    p1: int,
    x: int,
    y: int,
    d: int,
    c: int,
    g: Any,
    vbase: int,
    max_slope_ratio: Any,
    base: int,
    gbuf: wp.array2d(dtype=Any),
):
    """Add the gradient w.r.t. the owner triangle's screen vertices of a pair with code ``c`` whose
    boundary moves with ``dL/db = g`` (pixels along the pair axis) into rows ``base + r`` of ``gbuf``."""
    ax = scr.dtype(x) + scr.dtype(0.5)
    ay = scr.dtype(y) + scr.dtype(0.5)
    bx = ax + scr.dtype(1 - d)
    by = ay + scr.dtype(d)
    mx = (ax + bx) * scr.dtype(0.5)
    my = (ay + by) * scr.dtype(0.5)
    zero = scr.dtype(0.0)
    if c == OWNER_FIRST or c == OWNER_SECOND:
        f = ids[p0]
        start = ax
        dirn = scr.dtype(1.0)
        if c == OWNER_SECOND:
            f = ids[p1]
            start = bx
            dirn = scr.dtype(-1.0)
        across = ay
        if d == 1:
            start = ay
            across = ax
            if c == OWNER_SECOND:
                start = by
        if max_walk > 0:
            if _walk_to_contour(scr, tri, neighbor, f, vbase, start, across, dirn, d, max_walk, g, base, gbuf):
                return
        # No contour edge within reach: the owner's plane, extrapolated to the midpoint, moves the boundary.
        _add_owner(scr, vbase + tri[f, 0], vbase + tri[f, 1], vbase + tri[f, 2], mx, my, d, g, zero, base, gbuf)
    elif c == INTERSECT:
        fa = ids[p0]
        fb = ids[p1]
        a0 = vbase + tri[fa, 0]
        a1 = vbase + tri[fa, 1]
        a2 = vbase + tri[fa, 2]
        b0 = vbase + tri[fb, 0]
        b1 = vbase + tri[fb, 1]
        b2 = vbase + tri[fb, 2]
        ga = _slope(scr, a0, a1, a2, d)
        gb = _slope(scr, b0, b1, b2, d)
        den = ga - gb
        # Nearly parallel planes: the crossing is ill-conditioned, give no gradient.
        if wp.abs(den) * max_slope_ratio <= wp.max(wp.abs(ga), wp.abs(gb)):
            return
        # The crossing shift along this axis alone already accounts for the whole
        # area swept by the line; weight it by n_axis^2 (n: the line's unit normal,
        # along grad(zA - zB)) so that horizontal and vertical pairs add up to it once.
        across = _slope(scr, a0, a1, a2, 1 - d) - _slope(scr, b0, b1, b2, 1 - d)
        g = g * den * den / (den * den + across * across)
        # Crossing b* of z = zA(a) and z = zB(a): moving A by (da, dz) shifts it by
        # (gA da - dz) / den, moving B by (da, dz) by (dz - gB da) / den.
        _add_owner(scr, a0, a1, a2, ax, ay, d, g * ga / den, -g / den, base, gbuf)
        _add_owner(scr, b0, b1, b2, bx, by, d, -g * gb / den, g / den, base, gbuf)


@wp.kernel
def edge_grad_tasks(
    task: int,
    tasks: int,
    span: int,  # pixels per thread: the image width on CPU (one row), 1 on CUDA
    scr: wp.array2d(dtype=Any),  # [Bp*V, 4]
    ids: wp.array(dtype=wp.int32),  # [P]
    tri: wp.array2d(dtype=wp.int32),  # [F, 3]
    neighbor: wp.array2d(dtype=wp.int32),  # [F, 3] face across each edge, -1 on borders
    max_walk: int,  # 0: never walk to the contour edge
    code: wp.array2d(dtype=wp.int32),  # [P, 2] pair codes
    color: wp.array2d(dtype=Any),  # [P, C]
    grad: wp.array2d(dtype=Any),  # [P, C] dL/d color
    rim: int,  # 1: the owner side takes its inner-border colour (edge_rim)
    width: int,
    height: int,
    num_verts: int,
    pos_batched: int,
    max_slope_ratio: Any,
    gbuf: wp.array2d(dtype=Any),  # [tasks*Bp*V, 3] zeroed: dL/d(X, Y, z_ndc), one slice per task
):
    """The whole visibility backward of pixels' two pairs (right: slot 0, below: slot 1).

    One launch per task over image rows task, task + tasks, ... (global rows over
    B*H); each thread runs ``span`` pixels of a row (a Warp CPU thread costs a
    copy of every argument, so a CPU thread takes a whole row). The task adds into
    its own slice of ``gbuf`` (CPU launches are sequential, so ``atomic_add`` is a
    plain add there; CUDA runs one task with real atomics). Pixels whose pairs are
    both continuous cost two loads.
    """
    j0 = wp.tid() * span
    row = task + (j0 // width) * tasks
    x0 = j0 - (j0 // width) * width
    y = row % height
    vbase = (row // height) * num_verts * pos_batched
    base = task * (gbuf.shape[0] // tasks)
    for x in range(x0, x0 + span):
        p0 = row * width + x
        c_right = code[p0, 0]
        c_below = code[p0, 1]
        if c_right != NONE:
            g = _pair_dldb(color, grad, code, p0, p0 + 1, 0, x, width, 1, c_right, rim)
            _pair_grad(
                scr, ids, tri, neighbor, max_walk, p0, p0 + 1, x, y, 0, c_right, g, vbase, max_slope_ratio, base, gbuf
            )
        if c_below != NONE:
            g = _pair_dldb(color, grad, code, p0, p0 + width, 1, y, height, width, c_below, rim)
            _pair_grad(
                scr, ids, tri, neighbor, max_walk, p0, p0 + width, x, y, 1, c_below, g, vbase, max_slope_ratio, base, gbuf
            )


@wp.kernel
def screen_verts(
    offset: int,
    span: int,  # vertices per thread
    pos: wp.array2d(dtype=Any),  # [N, 4] clip
    width: int,
    height: int,
    scr: wp.array2d(dtype=Any),  # [N, 4] out: (X, Y, z_ndc, w)
):
    """:func:`lumigrad.ops.edge_grad.screen_vertices` (same arithmetic, same values) in one pass."""
    n = pos.shape[0]
    i0 = (wp.tid() + offset) * span
    one = pos.dtype(1.0)
    sx = pos.dtype(0.5) * pos.dtype(width)
    sy = pos.dtype(0.5) * pos.dtype(height)
    for i in range(i0, wp.min(i0 + span, n)):
        w = pos[i, 3]
        safe = one
        if w > pos.dtype(0.0):
            safe = w
        scr[i, 0] = (pos[i, 0] / safe + one) * sx
        scr[i, 1] = (one - pos[i, 1] / safe) * sy
        scr[i, 2] = pos[i, 2] / safe
        scr[i, 3] = w


@wp.kernel
def clip_grad(
    offset: int,
    span: int,  # vertices per thread (a Warp CPU thread costs a copy of every argument)
    pos: wp.array2d(dtype=Any),  # [Bp*V, 4] clip
    gbuf: wp.array2d(dtype=Any),  # [tasks*Bp*V, 3] per-task dL/d(X, Y, z_ndc)
    tasks: int,
    width: int,
    height: int,
    grad_pos: wp.array2d(dtype=Any),  # [Bp*V, 4] out
):
    """Sum the tasks' screen-space gradients of vertices and chain them to clip (x, y, z, w)."""
    n = pos.shape[0]
    i0 = (wp.tid() + offset) * span
    zero = pos.dtype(0.0)
    sx = pos.dtype(0.5) * pos.dtype(width)
    sy = pos.dtype(0.5) * pos.dtype(height)
    for i in range(i0, wp.min(i0 + span, n)):
        gx = gbuf[i, 0]
        gy = gbuf[i, 1]
        gz = gbuf[i, 2]
        for t in range(1, tasks):
            gx += gbuf[t * n + i, 0]
            gy += gbuf[t * n + i, 1]
            gz += gbuf[t * n + i, 2]
        w = pos[i, 3]
        # Most vertices get no visibility gradient: skip their four divisions.
        if w > zero and (gx != zero or gy != zero or gz != zero):
            ax = gx * sx / w
            ay = -gy * sy / w
            az = gz / w
            grad_pos[i, 0] = ax
            grad_pos[i, 1] = ay
            grad_pos[i, 2] = az
            grad_pos[i, 3] = -(ax * pos[i, 0] + ay * pos[i, 1] + az * pos[i, 2]) / w
        else:
            for k in range(4):
                grad_pos[i, k] = zero


# Both float overloads up front, so the module hash does not depend on first use. Launching the
# overload itself skips Warp's per-launch argument type inference (~0.05 ms a launch):
# ``OVERLOADS[dtype][kernel name]``, filled here once and never changed.
OVERLOADS: dict = {}
for _scalar in (wp.float32, wp.float64):
    _arr = wp.array2d(dtype=_scalar)
    OVERLOADS[_scalar] = {
        "edge_classify": wp.overload(edge_classify, {"scr": _arr, "tau": _scalar, "rel_tol": _scalar}),
        "rim_motion_bwd": wp.overload(rim_motion_bwd, {"rast_db": _arr, "grad": _arr, "out": _arr}),
        "edge_grad_tasks": wp.overload(
            edge_grad_tasks, {"scr": _arr, "color": _arr, "grad": _arr, "max_slope_ratio": _scalar, "gbuf": _arr}
        ),
        "clip_grad": wp.overload(clip_grad, {"pos": _arr, "gbuf": _arr, "grad_pos": _arr}),
        "screen_verts": wp.overload(screen_verts, {"pos": _arr, "scr": _arr}),
    }
