"""BVH4 prototype: query and refit kernels (see :mod:`lumigrad.ops._bvh4`)."""
from __future__ import annotations

import os

import warp as wp

from lumigrad.ops._bvh_kernels import LEAF_BITS, _mt, _mt_t64, _safe_rcp, _slab, _stack_f, _stack_i
from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

VARIANT = int(os.environ.get("LG_BVH4_VARIANT", "0"))
LROWS = int(os.environ.get("LG_LROWS", "12"))
STACK4 = int(os.environ.get("LG_BVH4_STACK", "100"))  # 3 entries per level, depth <= 32, + 3 scratch slots
_stack4_i = wp.types.vector(length=STACK4, dtype=wp.int32)
_stack4_f = wp.types.vector(length=STACK4, dtype=wp.float32)
_FAR_PAD = 1.000002
_MISS = 3.0e38  # the key of a child not hit
_EDGE_TOL4 = 1.0e-6
EMPTY = 1.0e30  # padding boxes: lo = +EMPTY, hi = -EMPTY (a miss for every ray with octant-ordered slabs)


@wp.func
def _sel_min(a: wp.vec4, b: wp.vec4):
    return wp.vec4(wp.where(a[0] < b[0], a[0], b[0]), wp.where(a[1] < b[1], a[1], b[1]),
                   wp.where(a[2] < b[2], a[2], b[2]), wp.where(a[3] < b[3], a[3], b[3]))


@wp.func
def _sel_max(a: wp.vec4, b: wp.vec4):
    return wp.vec4(wp.where(a[0] > b[0], a[0], b[0]), wp.where(a[1] > b[1], a[1], b[1]),
                   wp.where(a[2] > b[2], a[2], b[2]), wp.where(a[3] > b[3], a[3], b[3]))


@wp.func
def _keys4(nodes: wp.array(dtype=wp.vec4), ref: int, ix: int, iy: int, iz: int, o: wp.vec3, rcp: wp.vec3,
           best: float):
    """Entry distances of the 4 children of node ``ref`` (``_MISS`` where the box is not hit before ``best``)."""
    b = 6 * ref
    tnx = wp.cw_mul(nodes[b + ix] - wp.vec4(o[0]), wp.vec4(rcp[0]))
    tny = wp.cw_mul(nodes[b + iy] - wp.vec4(o[1]), wp.vec4(rcp[1]))
    tnz = wp.cw_mul(nodes[b + iz] - wp.vec4(o[2]), wp.vec4(rcp[2]))
    tfx = wp.cw_mul(nodes[b + 3 - ix] - wp.vec4(o[0]), wp.vec4(rcp[0]))
    tfy = wp.cw_mul(nodes[b + 5 - iy] - wp.vec4(o[1]), wp.vec4(rcp[1]))
    tfz = wp.cw_mul(nodes[b + 7 - iz] - wp.vec4(o[2]), wp.vec4(rcp[2]))
    tn = _sel_max(_sel_max(tnx, tny), _sel_max(tnz, wp.vec4(0.0)))
    tf = _sel_min(_sel_min(tfx, tfy), tfz) * _FAR_PAD
    # selects, not ``and`` (Warp's ``and`` short-circuits: a branch per lane)
    tf = _sel_min(tf, wp.vec4(best * 0.99999994))
    return wp.vec4(wp.where(tn[0] <= tf[0], tn[0], _MISS), wp.where(tn[1] <= tf[1], tn[1], _MISS),
                   wp.where(tn[2] <= tf[2], tn[2], _MISS), wp.where(tn[3] <= tf[3], tn[3], _MISS))


@wp.func
def _cswap(ka: float, ca: int, kb: float, cb: int):
    s = kb < ka
    return wp.where(s, kb, ka), wp.where(s, cb, ca), wp.where(s, ka, kb), wp.where(s, ca, cb)


@wp.func
def bvh4_closest(
    nodes: wp.array(dtype=wp.vec4),  # [6N]
    kids: wp.array(dtype=wp.vec4i),  # [N]
    tris: wp.array(dtype=wp.vec3),  # [4F] leaf order
    tface: wp.array(dtype=wp.int32),  # [F]
    o: wp.vec3,
    d: wp.vec3,
    tmax: float,
):
    best = tmax
    slot = int(-1)
    if kids.shape[0] == 0:
        return slot, best
    rcp = wp.vec3(_safe_rcp(d[0]), _safe_rcp(d[1]), _safe_rcp(d[2]))
    ix = wp.where(rcp[0] >= 0.0, 0, 3)
    iy = wp.where(rcp[1] >= 0.0, 1, 4)
    iz = wp.where(rcp[2] >= 0.0, 2, 5)
    st = _stack4_i()
    stt = _stack4_f()
    sp = int(0)
    ref = int(0)
    while True:
        if ref >= 0:
            k = _keys4(nodes, ref, ix, iy, iz, o, rcp, best)
            c = kids[ref]
            if VARIANT >= 2:
                nh = wp.where(k[0] < _MISS, 1, 0) + wp.where(k[1] < _MISS, 1, 0) + wp.where(
                    k[2] < _MISS, 1, 0) + wp.where(k[3] < _MISS, 1, 0)
                if nh == 1:  # a branch (predicted, speculated past) rather than selects on the critical path
                    if k[0] < _MISS:
                        ref = c[0]
                        continue
                    if k[1] < _MISS:
                        ref = c[1]
                        continue
                    if k[2] < _MISS:
                        ref = c[2]
                        continue
                    ref = c[3]
                    continue
                if VARIANT == 3 and nh == 2:
                    if k[0] < _MISS:
                        if k[1] < _MISS:
                            if k[1] < k[0]:
                                st[sp] = c[0]
                                stt[sp] = k[0]
                                sp += 1
                                ref = c[1]
                                continue
                            st[sp] = c[1]
                            stt[sp] = k[1]
                            sp += 1
                            ref = c[0]
                            continue
                        if k[2] < _MISS:
                            if k[2] < k[0]:
                                st[sp] = c[0]
                                stt[sp] = k[0]
                                sp += 1
                                ref = c[2]
                                continue
                            st[sp] = c[2]
                            stt[sp] = k[2]
                            sp += 1
                            ref = c[0]
                            continue
                        if k[3] < k[0]:
                            st[sp] = c[0]
                            stt[sp] = k[0]
                            sp += 1
                            ref = c[3]
                            continue
                        st[sp] = c[3]
                        stt[sp] = k[3]
                        sp += 1
                        ref = c[0]
                        continue
                    if k[1] < _MISS:
                        if k[2] < _MISS:
                            if k[2] < k[1]:
                                st[sp] = c[1]
                                stt[sp] = k[1]
                                sp += 1
                                ref = c[2]
                                continue
                            st[sp] = c[2]
                            stt[sp] = k[2]
                            sp += 1
                            ref = c[1]
                            continue
                        if k[3] < k[1]:
                            st[sp] = c[1]
                            stt[sp] = k[1]
                            sp += 1
                            ref = c[3]
                            continue
                        st[sp] = c[3]
                        stt[sp] = k[3]
                        sp += 1
                        ref = c[1]
                        continue
                    if k[2] < _MISS:
                        if k[3] < k[2]:
                            st[sp] = c[2]
                            stt[sp] = k[2]
                            sp += 1
                            ref = c[3]
                            continue
                        st[sp] = c[3]
                        stt[sp] = k[3]
                        sp += 1
                        ref = c[2]
                        continue
                    if k[3] < k[2]:
                        st[sp] = c[2]
                        stt[sp] = k[2]
                        sp += 1
                        ref = c[3]
                        continue
                    st[sp] = c[3]
                    stt[sp] = k[3]
                    sp += 1
                    ref = c[2]
                    continue
            k0, c0, k1, c1 = _cswap(k[0], c[0], k[1], c[1])
            k2, c2, k3, c3 = _cswap(k[2], c[2], k[3], c[3])
            k0, c0, k2, c2 = _cswap(k0, c0, k2, c2)
            k1, c1, k3, c3 = _cswap(k1, c1, k3, c3)
            k1, c1, k2, c2 = _cswap(k1, c1, k2, c2)
            if VARIANT == 1 and k1 >= _MISS:
                if k0 < _MISS:
                    ref = c0
                    continue
            elif k0 < _MISS:
                # push the hit ones among c1..c3 far first (c_i at sp + m - i), the others to a scratch slot
                m = wp.where(k1 < _MISS, 1, 0) + wp.where(k2 < _MISS, 1, 0) + wp.where(k3 < _MISS, 1, 0)
                p3 = wp.where(m >= 3, sp, sp + 3)
                st[p3] = c3
                stt[p3] = k3
                p2 = wp.where(m >= 2, sp + m - 2, sp + 3)
                st[p2] = c2
                stt[p2] = k2
                p1 = wp.where(m >= 1, sp + m - 1, sp + 3)
                st[p1] = c1
                stt[p1] = k1
                sp += m
                ref = c0
                continue
        else:
            code = -1 - ref
            s0 = code >> LEAF_BITS
            s1 = s0 + (code & 7) + 1
            for kk in range(s0, s1):
                t = _mt(tris, kk, o, d, best)
                if t >= 0.0 and t < best:
                    best = t
                    slot = kk
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
    return tface[slot], _mt_t64(tris, slot, o, d)


@wp.func
def bvh4_anyhit(
    nodes: wp.array(dtype=wp.vec4),
    kids: wp.array(dtype=wp.vec4i),
    tris: wp.array(dtype=wp.vec3),
    o: wp.vec3,
    d: wp.vec3,
    tmax: float,
):
    if kids.shape[0] == 0:
        return False
    rcp = wp.vec3(_safe_rcp(d[0]), _safe_rcp(d[1]), _safe_rcp(d[2]))
    ix = wp.where(rcp[0] >= 0.0, 0, 3)
    iy = wp.where(rcp[1] >= 0.0, 1, 4)
    iz = wp.where(rcp[2] >= 0.0, 2, 5)
    st = _stack4_i()
    sp = int(0)
    ref = int(0)
    while True:
        if ref >= 0:
            k = _keys4(nodes, ref, ix, iy, iz, o, rcp, tmax)
            c = kids[ref]
            if VARIANT >= 2:
                nh = wp.where(k[0] < _MISS, 1, 0) + wp.where(k[1] < _MISS, 1, 0) + wp.where(
                    k[2] < _MISS, 1, 0) + wp.where(k[3] < _MISS, 1, 0)
                if nh == 1:  # a branch (predicted, speculated past) rather than selects on the critical path
                    if k[0] < _MISS:
                        ref = c[0]
                        continue
                    if k[1] < _MISS:
                        ref = c[1]
                        continue
                    if k[2] < _MISS:
                        ref = c[2]
                        continue
                    ref = c[3]
                    continue
                if VARIANT == 3 and nh == 2:
                    if k[0] < _MISS:
                        if k[1] < _MISS:
                            if k[1] < k[0]:
                                st[sp] = c[0]
                                sp += 1
                                ref = c[1]
                                continue
                            st[sp] = c[1]
                            sp += 1
                            ref = c[0]
                            continue
                        if k[2] < _MISS:
                            if k[2] < k[0]:
                                st[sp] = c[0]
                                sp += 1
                                ref = c[2]
                                continue
                            st[sp] = c[2]
                            sp += 1
                            ref = c[0]
                            continue
                        if k[3] < k[0]:
                            st[sp] = c[0]
                            sp += 1
                            ref = c[3]
                            continue
                        st[sp] = c[3]
                        sp += 1
                        ref = c[0]
                        continue
                    if k[1] < _MISS:
                        if k[2] < _MISS:
                            if k[2] < k[1]:
                                st[sp] = c[1]
                                sp += 1
                                ref = c[2]
                                continue
                            st[sp] = c[2]
                            sp += 1
                            ref = c[1]
                            continue
                        if k[3] < k[1]:
                            st[sp] = c[1]
                            sp += 1
                            ref = c[3]
                            continue
                        st[sp] = c[3]
                        sp += 1
                        ref = c[1]
                        continue
                    if k[2] < _MISS:
                        if k[3] < k[2]:
                            st[sp] = c[2]
                            sp += 1
                            ref = c[3]
                            continue
                        st[sp] = c[3]
                        sp += 1
                        ref = c[2]
                        continue
                    if k[3] < k[2]:
                        st[sp] = c[2]
                        sp += 1
                        ref = c[3]
                        continue
                    st[sp] = c[3]
                    sp += 1
                    ref = c[2]
                    continue
            k0, c0, k1, c1 = _cswap(k[0], c[0], k[1], c[1])
            k2, c2, k3, c3 = _cswap(k[2], c[2], k[3], c[3])
            k0, c0, k2, c2 = _cswap(k0, c0, k2, c2)
            k1, c1, k3, c3 = _cswap(k1, c1, k3, c3)
            k1, c1, k2, c2 = _cswap(k1, c1, k2, c2)
            if k0 < _MISS:
                m = wp.where(k1 < _MISS, 1, 0) + wp.where(k2 < _MISS, 1, 0) + wp.where(k3 < _MISS, 1, 0)
                st[wp.where(m >= 3, sp, sp + 3)] = c3
                st[wp.where(m >= 2, sp + m - 2, sp + 3)] = c2
                st[wp.where(m >= 1, sp + m - 1, sp + 3)] = c1
                sp += m
                ref = c0
                continue
        else:
            code = -1 - ref
            s0 = code >> LEAF_BITS
            s1 = s0 + (code & 7) + 1
            for kk in range(s0, s1):
                t = _mt(tris, kk, o, d, tmax)
                if t > 0.0 and t < tmax:
                    return True
        if sp == 0:
            break
        sp -= 1
        ref = st[sp]
    return False


@wp.kernel
def bvh4_gather(
    offset: int,
    src: wp.array(dtype=wp.vec4i),  # [N4] row of each child's box in the binary nodes (-1: padding)
    nodes2: wp.array(dtype=wp.vec3),  # [4N2] binary boxes (refitted)
    nodes4: wp.array(dtype=wp.vec4),  # [6N4] out
):
    """One thread per BVH4 node: its 4 child boxes, SoA (lo x, lo y, lo z, hi x, hi y, hi z rows)."""
    i = wp.tid() + offset
    s = src[i]
    lo = wp.mat44()
    hi = wp.mat44()
    for j in range(4):
        r = s[j]
        a = wp.vec3(EMPTY)
        b = wp.vec3(-EMPTY)
        if r >= 0:
            a = nodes2[r]
            b = nodes2[r + 1]
        for ax in range(3):
            lo[ax, j] = a[ax]
            hi[ax, j] = b[ax]
    for ax in range(3):
        nodes4[6 * i + ax] = wp.vec4(lo[ax, 0], lo[ax, 1], lo[ax, 2], lo[ax, 3])
        nodes4[6 * i + 3 + ax] = wp.vec4(hi[ax, 0], hi[ax, 1], hi[ax, 2], hi[ax, 3])


# --- SIMD leaves: 4 triangles per leaf in SoA rows (p0 x/y/z, e1 x/y/z, e2 x/y/z, n x/y/z), padded with zeros ----


@wp.func
def _dot4(ax: wp.vec4, ay: wp.vec4, az: wp.vec4, bx: wp.vec4, by: wp.vec4, bz: wp.vec4):
    return wp.cw_mul(ax, bx) + wp.cw_mul(ay, by) + wp.cw_mul(az, bz)


@wp.func
def _leaf_t4(tris4: wp.array(dtype=wp.vec4), leaf: int, o: wp.vec3, d: wp.vec3, best: float):
    """Hit distances of the leaf's 4 triangles (``_MISS`` unless hit at ``0 <= t < best``), all lanes at once."""
    b = LROWS * leaf
    dx = wp.vec4(d[0])
    dy = wp.vec4(d[1])
    dz = wp.vec4(d[2])
    sx = wp.vec4(o[0]) - tris4[b]
    sy = wp.vec4(o[1]) - tris4[b + 1]
    sz = wp.vec4(o[2]) - tris4[b + 2]
    e1x = tris4[b + 3]
    e1y = tris4[b + 4]
    e1z = tris4[b + 5]
    e2x = tris4[b + 6]
    e2y = tris4[b + 7]
    e2z = tris4[b + 8]
    if LROWS == 12:
        nx = tris4[b + 9]
        ny = tris4[b + 10]
        nz = tris4[b + 11]
    else:
        nx = wp.cw_mul(e1y, e2z) - wp.cw_mul(e1z, e2y)
        ny = wp.cw_mul(e1z, e2x) - wp.cw_mul(e1x, e2z)
        nz = wp.cw_mul(e1x, e2y) - wp.cw_mul(e1y, e2x)
    det = -_dot4(dx, dy, dz, nx, ny, nz)
    tn = _dot4(sx, sy, sz, nx, ny, nz)
    cx = wp.cw_mul(sy, dz) - wp.cw_mul(sz, dy)
    cy = wp.cw_mul(sz, dx) - wp.cw_mul(sx, dz)
    cz = wp.cw_mul(sx, dy) - wp.cw_mul(sy, dx)
    u = _dot4(e2x, e2y, e2z, cx, cy, cz)
    v = -_dot4(e1x, e1y, e1z, cx, cy, cz)
    inv = wp.cw_div(wp.vec4(1.0), det)  # det = 0 (and padding lanes): inf or NaN, rejected by the compares below
    t = wp.cw_mul(tn, inv)
    uu = wp.cw_mul(u, inv)
    vv = wp.cw_mul(v, inv)
    w = uu + vv
    r = _keep_ge(t, t, 0.0)
    r = _keep_lt(r, t, best)
    r = _keep_ge(r, uu, -_EDGE_TOL4)
    r = _keep_ge(r, vv, -_EDGE_TOL4)
    return _keep_lt(r, w, 1.0 + _EDGE_TOL4 * 1.0000001)


@wp.func
def _keep_ge(r: wp.vec4, x: wp.vec4, lim: float):
    """``r`` where ``x >= lim``, else ``_MISS`` (NaN: ``_MISS``); isomorphic lanes for the SLP vectoriser."""
    return wp.vec4(wp.where(x[0] >= lim, r[0], _MISS), wp.where(x[1] >= lim, r[1], _MISS),
                   wp.where(x[2] >= lim, r[2], _MISS), wp.where(x[3] >= lim, r[3], _MISS))


@wp.func
def _keep_lt(r: wp.vec4, x: wp.vec4, lim: float):
    return wp.vec4(wp.where(x[0] < lim, r[0], _MISS), wp.where(x[1] < lim, r[1], _MISS),
                   wp.where(x[2] < lim, r[2], _MISS), wp.where(x[3] < lim, r[3], _MISS))


@wp.func
def bvh4s_closest(
    nodes: wp.array(dtype=wp.vec4),  # [6N]
    kids: wp.array(dtype=wp.vec4i),  # [N]
    tris4: wp.array(dtype=wp.vec4),  # [12L]
    lface: wp.array(dtype=wp.int32),  # [4L]
    o: wp.vec3,
    d: wp.vec3,
    tmax: float,
):
    best = tmax
    slot = int(-1)
    if kids.shape[0] == 0:
        return slot, best
    rcp = wp.vec3(_safe_rcp(d[0]), _safe_rcp(d[1]), _safe_rcp(d[2]))
    ix = wp.where(rcp[0] >= 0.0, 0, 3)
    iy = wp.where(rcp[1] >= 0.0, 1, 4)
    iz = wp.where(rcp[2] >= 0.0, 2, 5)
    st = _stack4_i()
    stt = _stack4_f()
    sp = int(0)
    ref = int(0)
    while True:
        if ref >= 0:
            k = _keys4(nodes, ref, ix, iy, iz, o, rcp, best)
            c = kids[ref]
            nh = wp.where(k[0] < _MISS, 1, 0) + wp.where(k[1] < _MISS, 1, 0) + wp.where(
                k[2] < _MISS, 1, 0) + wp.where(k[3] < _MISS, 1, 0)
            if nh == 1:  # a branch (predicted, speculated past) rather than selects on the critical path
                if k[0] < _MISS:
                    ref = c[0]
                    continue
                if k[1] < _MISS:
                    ref = c[1]
                    continue
                if k[2] < _MISS:
                    ref = c[2]
                    continue
                ref = c[3]
                continue
            k0, c0, k1, c1 = _cswap(k[0], c[0], k[1], c[1])
            k2, c2, k3, c3 = _cswap(k[2], c[2], k[3], c[3])
            k0, c0, k2, c2 = _cswap(k0, c0, k2, c2)
            k1, c1, k3, c3 = _cswap(k1, c1, k3, c3)
            k1, c1, k2, c2 = _cswap(k1, c1, k2, c2)
            if k0 < _MISS:
                m = wp.where(k1 < _MISS, 1, 0) + wp.where(k2 < _MISS, 1, 0) + wp.where(k3 < _MISS, 1, 0)
                p3 = wp.where(m >= 3, sp, sp + 3)
                st[p3] = c3
                stt[p3] = k3
                p2 = wp.where(m >= 2, sp + m - 2, sp + 3)
                st[p2] = c2
                stt[p2] = k2
                p1 = wp.where(m >= 1, sp + m - 1, sp + 3)
                st[p1] = c1
                stt[p1] = k1
                sp += m
                ref = c0
                continue
        else:
            leaf = -1 - ref
            t = _leaf_t4(tris4, leaf, o, d, best)
            ta = wp.where(t[1] < t[0], t[1], t[0])
            la = wp.where(t[1] < t[0], 1, 0)
            tb = wp.where(t[3] < t[2], t[3], t[2])
            lb = wp.where(t[3] < t[2], 3, 2)
            tm = wp.where(tb < ta, tb, ta)
            if tm < best:
                best = tm
                slot = 4 * leaf + wp.where(tb < ta, lb, la)
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
    return lface[slot], _t64_4(tris4, slot, o, d)


@wp.func
def _t64_4(tris4: wp.array(dtype=wp.vec4), slot: int, o: wp.vec3, d: wp.vec3):
    b = LROWS * (slot >> 2)
    l = slot & 3
    p0 = wp.vec3d(wp.float64(tris4[b][l]), wp.float64(tris4[b + 1][l]), wp.float64(tris4[b + 2][l]))
    e1 = wp.vec3d(wp.float64(tris4[b + 3][l]), wp.float64(tris4[b + 4][l]), wp.float64(tris4[b + 5][l]))
    e2 = wp.vec3d(wp.float64(tris4[b + 6][l]), wp.float64(tris4[b + 7][l]), wp.float64(tris4[b + 8][l]))
    n = wp.cross(e1, e2)
    s = wp.vec3d(o) - p0
    return float(-wp.dot(s, n) / wp.dot(wp.vec3d(d), n))


@wp.func
def bvh4s_anyhit(
    nodes: wp.array(dtype=wp.vec4),
    kids: wp.array(dtype=wp.vec4i),
    tris4: wp.array(dtype=wp.vec4),
    o: wp.vec3,
    d: wp.vec3,
    tmax: float,
):
    if kids.shape[0] == 0:
        return False
    rcp = wp.vec3(_safe_rcp(d[0]), _safe_rcp(d[1]), _safe_rcp(d[2]))
    ix = wp.where(rcp[0] >= 0.0, 0, 3)
    iy = wp.where(rcp[1] >= 0.0, 1, 4)
    iz = wp.where(rcp[2] >= 0.0, 2, 5)
    st = _stack4_i()
    sp = int(0)
    ref = int(0)
    while True:
        if ref >= 0:
            k = _keys4(nodes, ref, ix, iy, iz, o, rcp, tmax)
            c = kids[ref]
            nh = wp.where(k[0] < _MISS, 1, 0) + wp.where(k[1] < _MISS, 1, 0) + wp.where(
                k[2] < _MISS, 1, 0) + wp.where(k[3] < _MISS, 1, 0)
            if nh == 1:  # a branch (predicted, speculated past) rather than selects on the critical path
                if k[0] < _MISS:
                    ref = c[0]
                    continue
                if k[1] < _MISS:
                    ref = c[1]
                    continue
                if k[2] < _MISS:
                    ref = c[2]
                    continue
                ref = c[3]
                continue
            k0, c0, k1, c1 = _cswap(k[0], c[0], k[1], c[1])
            k2, c2, k3, c3 = _cswap(k[2], c[2], k[3], c[3])
            k0, c0, k2, c2 = _cswap(k0, c0, k2, c2)
            k1, c1, k3, c3 = _cswap(k1, c1, k3, c3)
            k1, c1, k2, c2 = _cswap(k1, c1, k2, c2)
            if k0 < _MISS:
                m = wp.where(k1 < _MISS, 1, 0) + wp.where(k2 < _MISS, 1, 0) + wp.where(k3 < _MISS, 1, 0)
                st[wp.where(m >= 3, sp, sp + 3)] = c3
                st[wp.where(m >= 2, sp + m - 2, sp + 3)] = c2
                st[wp.where(m >= 1, sp + m - 1, sp + 3)] = c1
                sp += m
                ref = c0
                continue
        else:
            t = _leaf_t4(tris4, -1 - ref, o, d, tmax)
            if wp.min(wp.min(t[0], t[1]), wp.min(t[2], t[3])) < _MISS:
                if wp.min(wp.min(t[0], t[1]), wp.min(t[2], t[3])) > 0.0:
                    return True
                for l in range(4):
                    if t[l] > 0.0 and t[l] < _MISS:
                        return True
        if sp == 0:
            break
        sp -= 1
        ref = st[sp]
    return False


@wp.func
def bvh2s_closest(
    nodes: wp.array(dtype=wp.vec3),  # [4N]
    kids: wp.array(dtype=wp.vec2i),  # [N]
    tris4: wp.array(dtype=wp.vec4),
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
            leaf = -1 - ref
            t = _leaf_t4(tris4, leaf, o, d, best)
            ta = wp.where(t[1] < t[0], t[1], t[0])
            la = wp.where(t[1] < t[0], 1, 0)
            tb = wp.where(t[3] < t[2], t[3], t[2])
            lb = wp.where(t[3] < t[2], 3, 2)
            tm = wp.where(tb < ta, tb, ta)
            if tm < best:
                best = tm
                slot = 4 * leaf + wp.where(tb < ta, lb, la)
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
    return tface[slot], _t64_4(tris4, slot, o, d)


@wp.func
def bvh2s_anyhit(
    nodes: wp.array(dtype=wp.vec3),
    kids: wp.array(dtype=wp.vec2i),
    tris4: wp.array(dtype=wp.vec4),
    o: wp.vec3,
    d: wp.vec3,
    tmax: float,
):
    """Whether any triangle lies on the ray at ``0 < t < tmax`` (shadow rays; stops at the first one)."""
    if kids.shape[0] == 0:
        return False
    rcp = wp.vec3(_safe_rcp(d[0]), _safe_rcp(d[1]), _safe_rcp(d[2]))
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
            t = _leaf_t4(tris4, -1 - ref, o, d, tmax)
            if wp.min(wp.min(t[0], t[1]), wp.min(t[2], t[3])) < _MISS:
                for l in range(4):
                    if t[l] > 0.0 and t[l] < _MISS:
                        return True
        if sp == 0:
            break
        sp -= 1
        ref = st[sp]
    return False


