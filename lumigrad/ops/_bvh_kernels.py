"""Warp kernels of lumigrad's own triangle BVH (:mod:`lumigrad.ops._bvh`): ray queries, gather and refit.

Layout (built by :func:`lumigrad.ops._bvh.build_topology`, filled in by the refit kernels here):

* ``nodes``: ``[4N]`` vec3. Node ``n`` holds the boxes of *both* its children: ``lo0, hi0, lo1, hi1`` at
  ``4n .. 4n + 3``. One node visit reads 48 contiguous bytes and tests both children, near one first.
* ``kids``: ``[N]`` vec2i, the children's references: ``r >= 0`` is an inner node, ``r < 0`` a leaf of
  ``c = ((-1 - r) & 7) + 1`` triangles starting at slot ``(-1 - r) >> 3``. Nodes are numbered breadth
  first (children after parents; a level is a contiguous range), node 0 is the root.
* ``tris``: ``[3F]`` vec3, the triangles' corners in leaf order (slot ``k`` at ``3k .. 3k + 2``): a leaf
  test reads one contiguous block instead of Warp's three dependent loads per triangle
  (primitive index -> vertex indices -> points). ``tface``: ``[F]`` the original face id of each slot.

Queries: ordered binary traversal with a fixed local stack of (node, entry distance); popped entries
farther than the current closest hit are skipped. The triangle test is the watertight Woop-Benthin-Wald
test that ``wp.mesh_query_ray`` uses (same hits up to rounding at edges), with the per-ray shear set up
once per ray instead of once per triangle, and the edge functions computed in float64 (exact products,
so the sign test is exact; Warp uses an FMA difference of products). Box tests are the slab test with
the far distance widened by ``1 + 2e-6`` (conservative under float rounding: a box is never missed when
a triangle inside it is hit).
"""
from __future__ import annotations

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["STACK_SIZE", "LEAF_BITS", "bvh_closest", "bvh_anyhit", "bvh_gather", "bvh_refit_level",
           "bvh_refit_serial"]

STACK_SIZE = 96  # the builder keeps the tree depth below this
LEAF_BITS = 3  # leaf sizes 1..8
_stack_i = wp.types.vector(length=STACK_SIZE, dtype=wp.int32)
_stack_f = wp.types.vector(length=STACK_SIZE, dtype=wp.float32)
_FAR_PAD = 1.000002


@wp.func
def _safe_rcp(x: float):
    if x == 0.0:
        return 1.0e20
    return 1.0 / x


@wp.func
def _woop_setup(d: wp.vec3):
    """``(kx, ky, kz, sx, sy, sz)``: the per-ray part of the watertight test (as Warp's, done once)."""
    ax = wp.abs(d[0])
    ay = wp.abs(d[1])
    az = wp.abs(d[2])
    kz = int(2)
    if ax > ay:
        if ax > az:
            kz = 0
    elif ay > az:
        kz = 1
    kx = kz + 1
    if kx == 3:
        kx = 0
    ky = kx + 1
    if ky == 3:
        ky = 0
    if d[kz] < 0.0:
        tmp = kx
        kx = ky
        ky = tmp
    return kx, ky, kz, d[kx] / d[kz], d[ky] / d[kz], 1.0 / d[kz]


@wp.func
def _woop(tris: wp.array(dtype=wp.vec3), k: int, o: wp.vec3, kx: int, ky: int, kz: int, sx: float, sy: float,
          sz: float):
    """Distance to triangle slot ``k``, or -1 on a miss (a hit behind the origin is also negative)."""
    a = tris[3 * k] - o
    b = tris[3 * k + 1] - o
    c = tris[3 * k + 2] - o
    ax = a[kx] - sx * a[kz]
    ay = a[ky] - sy * a[kz]
    bx = b[kx] - sx * b[kz]
    by = b[ky] - sy * b[kz]
    cx = c[kx] - sx * c[kz]
    cy = c[ky] - sy * c[kz]
    u = float(wp.float64(cx) * wp.float64(by) - wp.float64(cy) * wp.float64(bx))
    v = float(wp.float64(ax) * wp.float64(cy) - wp.float64(ay) * wp.float64(cx))
    w = float(wp.float64(bx) * wp.float64(ay) - wp.float64(by) * wp.float64(ax))
    if (u < 0.0 or v < 0.0 or w < 0.0) and (u > 0.0 or v > 0.0 or w > 0.0):
        return -1.0
    det = u + v + w
    if det == 0.0:
        return -1.0
    tt = u * (sz * a[kz]) + v * (sz * b[kz]) + w * (sz * c[kz])
    if (tt < 0.0 and det > 0.0) or (tt > 0.0 and det < 0.0):
        return -1.0
    return tt * (1.0 / det)


@wp.func
def _fmin(a: float, b: float):
    # a plain compare-select (one minss): wp.min's NaN handling costs extra instructions, and no NaN occurs
    return wp.where(a < b, a, b)


@wp.func
def _fmax(a: float, b: float):
    return wp.where(a > b, a, b)


@wp.func
def _slab(lo: wp.vec3, hi: wp.vec3, o: wp.vec3, rcp: wp.vec3):
    """``(near, far)`` of the box along the ray (``near >= 0``; a miss has ``near > far``)."""
    t1 = wp.cw_mul(lo - o, rcp)
    t2 = wp.cw_mul(hi - o, rcp)
    tn = _fmax(_fmax(_fmin(t1[0], t2[0]), _fmin(t1[1], t2[1])), _fmax(_fmin(t1[2], t2[2]), 0.0))
    tf = _fmin(_fmin(_fmax(t1[0], t2[0]), _fmax(t1[1], t2[1])), _fmax(t1[2], t2[2]))
    return tn, tf * _FAR_PAD


@wp.func
def bvh_closest(
    nodes: wp.array(dtype=wp.vec3),  # [4N]
    kids: wp.array(dtype=wp.vec2i),  # [N]
    tris: wp.array(dtype=wp.vec3),  # [3F] leaf order
    tface: wp.array(dtype=wp.int32),  # [F]
    o: wp.vec3,
    d: wp.vec3,
    tmax: float,
):
    """``(face, t)`` of the closest hit with ``0 <= t < tmax``; ``(-1, tmax)`` on a miss."""
    best = tmax
    slot = int(-1)
    if kids.shape[0] == 0:
        return slot, best
    rcp = wp.vec3(_safe_rcp(d[0]), _safe_rcp(d[1]), _safe_rcp(d[2]))
    kx, ky, kz, sx, sy, sz = _woop_setup(d)
    st = _stack_i()
    stt = _stack_f()
    sp = int(0)
    ref = int(0)
    while True:
        if ref >= 0:
            n4 = 4 * ref
            tn0, tf0 = _slab(nodes[n4], nodes[n4 + 1], o, rcp)
            tn1, tf1 = _slab(nodes[n4 + 2], nodes[n4 + 3], o, rcp)
            h0 = tn0 <= tf0 and tn0 < best
            h1 = tn1 <= tf1 and tn1 < best
            kk = kids[ref]
            if h0 and h1:
                if tn1 < tn0:
                    st[sp] = kk[0]
                    stt[sp] = tn0
                    ref = kk[1]
                else:
                    st[sp] = kk[1]
                    stt[sp] = tn1
                    ref = kk[0]
                sp += 1
                continue
            if h0:
                ref = kk[0]
                continue
            if h1:
                ref = kk[1]
                continue
        else:
            code = -1 - ref
            k0 = code >> LEAF_BITS
            k1 = k0 + (code & 7) + 1
            for k in range(k0, k1):
                t = _woop(tris, k, o, kx, ky, kz, sx, sy, sz)
                if t >= 0.0 and t < best:
                    best = t
                    slot = k
        # pop the next entry that may still hold a closer hit
        ref = int(-2147483647)
        while sp > 0:
            sp -= 1
            if stt[sp] < best:
                ref = st[sp]
                break
        if ref == -2147483647:
            break
    if slot < 0:
        return slot, tmax
    return tface[slot], best


@wp.func
def bvh_anyhit(
    nodes: wp.array(dtype=wp.vec3),
    kids: wp.array(dtype=wp.vec2i),
    tris: wp.array(dtype=wp.vec3),
    o: wp.vec3,
    d: wp.vec3,
    tmax: float,
):
    """Whether any triangle lies on the ray at ``0 < t < tmax`` (shadow rays; stops at the first one)."""
    if kids.shape[0] == 0:
        return False
    rcp = wp.vec3(_safe_rcp(d[0]), _safe_rcp(d[1]), _safe_rcp(d[2]))
    kx, ky, kz, sx, sy, sz = _woop_setup(d)
    st = _stack_i()
    sp = int(0)
    ref = int(0)
    while True:
        if ref >= 0:
            n4 = 4 * ref
            tn0, tf0 = _slab(nodes[n4], nodes[n4 + 1], o, rcp)
            tn1, tf1 = _slab(nodes[n4 + 2], nodes[n4 + 3], o, rcp)
            h0 = tn0 <= tf0 and tn0 < tmax
            h1 = tn1 <= tf1 and tn1 < tmax
            kk = kids[ref]
            if h0 and h1:
                st[sp] = kk[1]
                sp += 1
                ref = kk[0]
                continue
            if h0:
                ref = kk[0]
                continue
            if h1:
                ref = kk[1]
                continue
        else:
            code = -1 - ref
            k0 = code >> LEAF_BITS
            k1 = k0 + (code & 7) + 1
            for k in range(k0, k1):
                t = _woop(tris, k, o, kx, ky, kz, sx, sy, sz)
                if t > 0.0 and t < tmax:
                    return True
        if sp == 0:
            break
        sp -= 1
        ref = st[sp]
    return False


# --- build / refit ------------------------------------------------------------------------------------------


@wp.kernel
def bvh_gather(
    offset: int,
    points: wp.array(dtype=wp.vec3),  # [V]
    indices: wp.array(dtype=wp.int32),  # [3F]
    perm: wp.array(dtype=wp.int32),  # [F] face of each slot (tface)
    tris: wp.array(dtype=wp.vec3),  # [3F] out
):
    k = wp.tid() + offset
    f = perm[k]
    tris[3 * k] = points[indices[3 * f]]
    tris[3 * k + 1] = points[indices[3 * f + 1]]
    tris[3 * k + 2] = points[indices[3 * f + 2]]


@wp.func
def _child_box(nodes: wp.array(dtype=wp.vec3), tris: wp.array(dtype=wp.vec3), ref: int, n4: int):
    if ref >= 0:
        c4 = 4 * ref
        return wp.min(nodes[c4], nodes[c4 + 2]), wp.max(nodes[c4 + 1], nodes[c4 + 3])
    code = -1 - ref
    k0 = code >> LEAF_BITS
    k1 = k0 + (code & 7) + 1
    lo = tris[3 * k0]
    hi = lo
    for j in range(3 * k0 + 1, 3 * k1):
        p = tris[j]
        lo = wp.min(lo, p)
        hi = wp.max(hi, p)
    return lo, hi


@wp.func
def _refit_node(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
                n: int):
    kk = kids[n]
    n4 = 4 * n
    lo0, hi0 = _child_box(nodes, tris, kk[0], n4)
    lo1, hi1 = _child_box(nodes, tris, kk[1], n4)
    nodes[n4] = lo0
    nodes[n4 + 1] = hi0
    nodes[n4 + 2] = lo1
    nodes[n4 + 3] = hi1


@wp.kernel
def bvh_refit_level(
    offset: int,
    first: int,  # the level's first node
    kids: wp.array(dtype=wp.vec2i),
    tris: wp.array(dtype=wp.vec3),
    nodes: wp.array(dtype=wp.vec3),  # [4N] out (this level's rows)
):
    """Boxes of one level's nodes (its children's levels are done): the parallel refit (CUDA)."""
    _refit_node(nodes, kids, tris, first + wp.tid() + offset)


@wp.kernel
def bvh_refit_serial(
    offset: int,
    count: int,  # nodes, all refitted by one thread, deepest first
    kids: wp.array(dtype=wp.vec2i),
    tris: wp.array(dtype=wp.vec3),
    nodes: wp.array(dtype=wp.vec3),
):
    """All boxes in one thread (CPU: one launch instead of one per level; children follow parents)."""
    for j in range(count):
        _refit_node(nodes, kids, tris, count - 1 - j)
