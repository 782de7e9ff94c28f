"""Warp kernels of lumigrad's own triangle BVH (:mod:`lumigrad.ops._bvh`): ray queries, SAH build, refit.

Layout (built by :func:`lumigrad.ops._bvh.build_topology`, filled in by the refit kernels here):

* ``nodes``: ``[4N]`` vec3. Node ``n`` holds the boxes of *both* its children: ``lo0, hi0, lo1, hi1`` at
  ``4n .. 4n + 3``. One node visit reads 48 contiguous bytes and tests both children, near one first.
* ``kids``: ``[N]`` vec2i, the children's references: ``r >= 0`` is an inner node, ``r < 0`` a leaf of
  ``c = ((-1 - r) & 7) + 1`` triangles starting at slot ``(-1 - r) >> 3``. Nodes are numbered breadth
  first (children after parents; a level is a contiguous range), node 0 is the root.
* ``tris``: ``[4F]`` vec3, per leaf slot ``k`` (``4k .. 4k + 3``): corner ``p0``, edges ``e1 = p1 - p0``,
  ``e2 = p2 - p0`` and ``e1 x e2``, in leaf order: a leaf test reads one contiguous block instead of
  Warp's three dependent loads per triangle (primitive index -> vertex indices -> points), and the
  normal is not recomputed per test. ``tface``: ``[F]`` the original face id of each slot.

Queries: ordered binary traversal (near child first) with a fixed local stack of (node, entry
distance); popped entries beyond the closest hit so far are skipped. Box test: the slab test with
compare-selects (``wp.min``/``wp.max`` carry NaN handling that cost ~30 % of the query time) and the
far distance widened by ``1 + 2e-6``, so float rounding never loses a box whose triangle is hit.
Triangle test: Moller-Trumbore with the precomputed edges and normal (``det = -d.n``,
``t det = -(o - p0).n``, then ``u, v`` from ``(o - p0) x d``), with an early out on ``t`` before the
cross product; it was faster here than Warp's watertight Woop test (also tried, with the ray's shear
set up once per ray: 410 vs 345 ns/ray at 5k). Unlike Woop's it is not watertight by itself, so the
barycentric bounds get a relative slack of 1e-6: a ray through a shared edge may hit both triangles (the
closest-hit order picks one) but cannot slip between them through rounding. The reported ``t`` of the closest hit
is recomputed in float64 once per ray (float32 ``t = -(o - p0).n / d.n`` loses digits on grazing rays).

What did not help (``bench/bvh.py``, single thread): leaf sizes 2 or 8 instead of 4 (within noise), a
branch-free near/far ordering (always write the far child, bump the stack pointer by a flag: 15 %
slower), one 64-byte record per node with the child references stored as floats (one cache line per
visit, but 20-50 % slower: the float-to-int conversions and the extra count state). The stacks are zeroed
per ray (Warp's vector constructor), yet 16 instead of 64 entries changed nothing measurable (the fused path
kernel on the Cornell box: 1054 vs 1097 ns per path, noise). Tried for the path tracer (``bench/trace_gi.py``'s
Cornell box, 36 triangles; single thread, paired rounds) and not kept: a branch-free two-sided triangle test
(flip the signs of ``det``, ``t det`` and the barycentric numerators: exact, same hits, no faster); a 4-wide
BVH collapsed from the binary one (children's boxes as ``vec4`` per axis, one padding row that pushes empty
slots to ``+inf``; same hits, but 10-30 % slower per query on the Cornell box and the icospheres: 4 hit tests
and pushes per node are 4 data-dependent branches); leaves of <= 2 triangles (Cornell box closest hits
0.87x, paths 0.92x, but icosphere-6 shadow rays 1.05-1.1x); splitting to 2 and merging sibling leaves back
to <= 4 where the SAH prefers it (node cost 2 triangle tests: Cornell closest 0.88x, any 0.95x, but
``bench/bvh.py`` 1.3M triangles 0.9x / 0.87x of the ratios to Warp and the build 1.5-2x longer; node cost 3:
the leaf-4 tree again).
"""
from __future__ import annotations

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["STACK_SIZE", "LEAF_WIDTH", "LEAF_ROWS", "bvh_closest", "bvh_anyhit", "bvh_leaves", "bvh_refit_level",
           "bvh_refit_serial", "bvh_sah_split", "SAH_BINS"]

STACK_SIZE = 64  # the builder keeps the tree depth below this (the stacks are zeroed per ray: keep them small)
LEAF_WIDTH = 4  # triangles per leaf block (SIMD lanes); leaves hold 1..4
LEAF_ROWS = 12  # vec4 rows per leaf block: p0 x/y/z, e1 x/y/z, e2 x/y/z, n x/y/z
_MISS = 3.0e38  # a lane's distance when its triangle is not hit
_stack_i = wp.types.vector(length=STACK_SIZE, dtype=wp.int32)
_stack_f = wp.types.vector(length=STACK_SIZE, dtype=wp.float32)
_FAR_PAD = 1.000002
# Barycentric slack of the triangle test (relative): a ray through a shared edge may hit both triangles
# (the closest-hit order picks one) but, unlike an exact test in float32, never slips between them.
_EDGE_TOL = 1.0e-6
_EDGE_MAX = 1.0 + 1.0000001e-6


@wp.func
def _safe_rcp(x: float):
    if x == 0.0:
        return 1.0e20
    return 1.0 / x


@wp.func
def _dot4(ax: wp.vec4, ay: wp.vec4, az: wp.vec4, bx: wp.vec4, by: wp.vec4, bz: wp.vec4):
    return wp.cw_mul(ax, bx) + wp.cw_mul(ay, by) + wp.cw_mul(az, bz)


@wp.func
def _keep_ge(r: wp.vec4, x: wp.vec4, lim: float):
    """``r`` where ``x >= lim``, else ``_MISS`` (also where ``x`` is NaN). Four isomorphic selects, which the
    SLP vectoriser turns into one compare and one blend; ``and`` would short-circuit into a branch per lane."""
    return wp.vec4(wp.where(x[0] >= lim, r[0], _MISS), wp.where(x[1] >= lim, r[1], _MISS),
                   wp.where(x[2] >= lim, r[2], _MISS), wp.where(x[3] >= lim, r[3], _MISS))


@wp.func
def _keep_lt(r: wp.vec4, x: wp.vec4, lim: float):
    """``r`` where ``x < lim``, else ``_MISS``."""
    return wp.vec4(wp.where(x[0] < lim, r[0], _MISS), wp.where(x[1] < lim, r[1], _MISS),
                   wp.where(x[2] < lim, r[2], _MISS), wp.where(x[3] < lim, r[3], _MISS))


@wp.func
def _leaf_t(tris: wp.array(dtype=wp.vec4), leaf: int, o: wp.vec3, d: wp.vec3, best: float):
    """Distances to the 4 triangles of leaf block ``leaf``, ``_MISS`` unless hit at ``0 <= t < best``: Moller-
    Trumbore on all lanes at once (padding lanes are zero: ``det = 0``, rejected as NaN / inf)."""
    b = LEAF_ROWS * leaf
    dx = wp.vec4(d[0])
    dy = wp.vec4(d[1])
    dz = wp.vec4(d[2])
    sx = wp.vec4(o[0]) - tris[b]
    sy = wp.vec4(o[1]) - tris[b + 1]
    sz = wp.vec4(o[2]) - tris[b + 2]
    nx = tris[b + 9]
    ny = tris[b + 10]
    nz = tris[b + 11]
    inv = wp.cw_div(wp.vec4(-1.0), _dot4(dx, dy, dz, nx, ny, nz))  # 1 / det, det = -d.n
    cx = wp.cw_mul(sy, dz) - wp.cw_mul(sz, dy)
    cy = wp.cw_mul(sz, dx) - wp.cw_mul(sx, dz)
    cz = wp.cw_mul(sx, dy) - wp.cw_mul(sy, dx)
    t = wp.cw_mul(_dot4(sx, sy, sz, nx, ny, nz), inv)
    u = wp.cw_mul(_dot4(tris[b + 6], tris[b + 7], tris[b + 8], cx, cy, cz), inv)
    v = -wp.cw_mul(_dot4(tris[b + 3], tris[b + 4], tris[b + 5], cx, cy, cz), inv)
    r = _keep_ge(t, t, 0.0)
    r = _keep_lt(r, t, best)
    r = _keep_ge(r, u, -_EDGE_TOL)
    r = _keep_ge(r, v, -_EDGE_TOL)
    return _keep_lt(r, u + v, _EDGE_MAX)


@wp.func
def _leaf_closest(t: wp.vec4):
    """``(t, lane)`` of the smallest of the 4 lanes."""
    ta = wp.where(t[1] < t[0], t[1], t[0])
    la = wp.where(t[1] < t[0], 1, 0)
    tb = wp.where(t[3] < t[2], t[3], t[2])
    lb = wp.where(t[3] < t[2], 3, 2)
    return wp.where(tb < ta, tb, ta), wp.where(tb < ta, lb, la)


@wp.func
def _t64(tris: wp.array(dtype=wp.vec4), slot: int, o: wp.vec3, d: wp.vec3):
    """The hit distance of lane ``slot`` (``LEAF_WIDTH * leaf + lane``) again in float64 (once per ray): float32
    ``dot(s, n) / -dot(d, n)`` loses digits to cancellation on grazing rays (up to ~1e-5 relative at 512^2 on
    the bench scenes)."""
    b = LEAF_ROWS * (slot // LEAF_WIDTH)
    ln = slot % LEAF_WIDTH
    p0 = wp.vec3d(wp.float64(tris[b][ln]), wp.float64(tris[b + 1][ln]), wp.float64(tris[b + 2][ln]))
    e1 = wp.vec3d(wp.float64(tris[b + 3][ln]), wp.float64(tris[b + 4][ln]), wp.float64(tris[b + 5][ln]))
    e2 = wp.vec3d(wp.float64(tris[b + 6][ln]), wp.float64(tris[b + 7][ln]), wp.float64(tris[b + 8][ln]))
    n = wp.cross(e1, e2)
    s = wp.vec3d(o) - p0
    return float(-wp.dot(s, n) / wp.dot(wp.vec3d(d), n))


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
    tris: wp.array(dtype=wp.vec4),  # [12L] leaf blocks
    tface: wp.array(dtype=wp.int32),  # [4L] face of each lane (-1: padding)
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
            t, lane = _leaf_closest(_leaf_t(tris, leaf, o, d, best))
            if t < best:
                best = t
                slot = LEAF_WIDTH * leaf + lane
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
    return tface[slot], _t64(tris, slot, o, d)


@wp.func
def bvh_anyhit(
    nodes: wp.array(dtype=wp.vec3),
    kids: wp.array(dtype=wp.vec2i),
    tris: wp.array(dtype=wp.vec4),
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
            t = _leaf_t(tris, -1 - ref, o, d, tmax)
            if wp.min(wp.min(t[0], t[1]), wp.min(t[2], t[3])) < _MISS:
                for lane in range(LEAF_WIDTH):  # a hit at t = 0 does not count here
                    if t[lane] > 0.0 and t[lane] < _MISS:
                        return True
        if sp == 0:
            break
        sp -= 1
        ref = st[sp]
    return False


# --- build / refit ------------------------------------------------------------------------------------------


@wp.func
def _pad(lo: wp.vec3, hi: wp.vec3):
    """``lo, hi`` widened by 2^-20 of the box's largest magnitude per axis: more than the rounding of
    ``p0 + (p1 - p0)`` (a few ulps of the corners' magnitude); boxes only grow."""
    m = wp.vec3(wp.max(wp.abs(lo[0]), wp.abs(hi[0])), wp.max(wp.abs(lo[1]), wp.abs(hi[1])),
                wp.max(wp.abs(lo[2]), wp.abs(hi[2])))
    pad = m * 9.5367431640625e-07 + wp.vec3(1.0e-30)
    return lo - pad, hi + pad


@wp.func
def _put(tris: wp.array(dtype=float), row: int, lane: int, x: wp.vec3):
    """Rows ``row .. row + 2`` (4 floats each) of the leaf blocks, column ``lane``: ``x``'s x, y, z."""
    tris[4 * row + lane] = x[0]
    tris[4 * row + 4 + lane] = x[1]
    tris[4 * row + 8 + lane] = x[2]


@wp.kernel
def bvh_leaves(
    offset: int,
    points: wp.array(dtype=wp.vec3),  # [V]
    lidx: wp.array(dtype=wp.vec3i),  # [4L] vertex indices of each lane's face (leaf order: coherent reads)
    leaf_ref: wp.array(dtype=wp.int32),  # [M] each leaf child's reference (-1 - leaf)
    leaf_cnt: wp.array(dtype=wp.int32),  # [L] triangles of each leaf (its first lanes)
    leaf_pos: wp.array(dtype=wp.int32),  # [M] row of its box in nodes (4 parent + 2 side)
    tris: wp.array(dtype=float),  # [48L] out: the leaf blocks, as floats (padding lanes stay zero)
    nodes: wp.array(dtype=wp.vec3),  # [4N] out: the leaves' boxes
):
    """One thread per leaf child: its block's lanes (``p0, e1, e2, e1 x e2``, 192 contiguous bytes written by one
    thread) and its box (of the triangles as the query sees them: p0, p0 + e1, p0 + e2), padded."""
    leaf = -1 - leaf_ref[wp.tid() + offset]
    b = LEAF_ROWS * leaf
    lo = wp.vec3(3.0e38)
    hi = wp.vec3(-3.0e38)
    for lane in range(leaf_cnt[leaf]):
        vi = lidx[LEAF_WIDTH * leaf + lane]
        p0 = points[vi[0]]
        e1 = points[vi[1]] - p0
        e2 = points[vi[2]] - p0
        _put(tris, b, lane, p0)
        _put(tris, b + 3, lane, e1)
        _put(tris, b + 6, lane, e2)
        _put(tris, b + 9, lane, wp.cross(e1, e2))
        p1 = p0 + e1
        p2 = p0 + e2
        lo = wp.min(wp.min(lo, p0), wp.min(p1, p2))
        hi = wp.max(wp.max(hi, p0), wp.max(p1, p2))
    pos = leaf_pos[wp.tid() + offset]
    plo, phi = _pad(lo, hi)
    nodes[pos] = plo
    nodes[pos + 1] = phi


@wp.func
def _refit_node(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), n: int):
    kk = kids[n]
    for side in range(2):
        c = kk[side]
        if c >= 0:  # leaves' boxes come from bvh_gather
            c4 = 4 * c
            nodes[4 * n + 2 * side] = wp.min(nodes[c4], nodes[c4 + 2])
            nodes[4 * n + 2 * side + 1] = wp.max(nodes[c4 + 1], nodes[c4 + 3])


@wp.kernel
def bvh_refit_level(
    offset: int,
    first: int,  # the level's first node
    kids: wp.array(dtype=wp.vec2i),
    nodes: wp.array(dtype=wp.vec3),  # [4N] in: deeper levels and leaves; out: this level's rows
):
    """Boxes of one level's nodes (deeper levels are done): the parallel refit (CUDA)."""
    _refit_node(nodes, kids, first + wp.tid() + offset)


@wp.kernel
def bvh_refit_serial(
    offset: int,
    count: int,  # nodes, all refitted by one thread, deepest first
    kids: wp.array(dtype=wp.vec2i),
    nodes: wp.array(dtype=wp.vec3),
):
    """All inner boxes in one thread (CPU: one launch instead of one per level; children follow parents)."""
    for j in range(count):
        _refit_node(nodes, kids, count - 1 - j)


# --- build: binned SAH split of every range of one tree level -----------------------------------------------

SAH_BINS = 16
_SAH_SAMPLES = 8192
_nb3 = 3 * SAH_BINS
_binf = wp.types.vector(length=3 * SAH_BINS, dtype=wp.float32)
_bini = wp.types.vector(length=3 * SAH_BINS, dtype=wp.int32)
_binf1 = wp.types.vector(length=SAH_BINS, dtype=wp.float32)
_bini1 = wp.types.vector(length=SAH_BINS, dtype=wp.int32)


@wp.func
def _bin(c: float, lo: float, scale: float):
    return wp.clamp(int((c - lo) * scale), 0, SAH_BINS - 1)


@wp.func
def _half_area(lo: wp.vec3, hi: wp.vec3):
    e = hi - lo
    return e[0] * e[1] + e[1] * e[2] + e[2] * e[0]


@wp.kernel
def bvh_sah_split(
    offset: int,
    order: wp.array(dtype=wp.int32),  # [F] triangles, each range [start, end) contiguous
    start: wp.array(dtype=wp.int32),  # [n] this level's ranges (>= 2 triangles each)
    end: wp.array(dtype=wp.int32),
    cen: wp.array(dtype=wp.vec3),  # [F] box centres (doubled)
    tlo: wp.array(dtype=wp.vec3),  # [F] triangle boxes
    thi: wp.array(dtype=wp.vec3),
    median: int,  # 1: split every range at its middle (depth limit)
    out: wp.array(dtype=wp.int32),  # [F] order with each range stably partitioned (a copy of order outside them)
    mid: wp.array(dtype=wp.int32),  # [n] first triangle of each range's right child
):
    """One thread per range: bin the centroids (16 bins per axis), pick the split of least SAH cost
    (left area x count + right area x count), and partition the range into ``out``. Ranges whose
    centroids coincide split at their middle."""
    j = wp.tid() + offset
    s = start[j]
    e = end[j]
    cmin = cen[order[s]]
    cmax = cmin
    for i in range(s + 1, e):
        c = cen[order[i]]
        cmin = wp.min(cmin, c)
        cmax = wp.max(cmax, c)
    ext = cmax - cmin
    scale = wp.vec3(0.0)
    for a in range(3):
        if ext[a] > 0.0:
            scale[a] = float(SAH_BINS) / ext[a] * 0.99999
    best_a = int(-1)
    best_k = int(0)
    best_nl = int(0)
    stride = int(1)
    if median == 0 and wp.max(wp.max(ext[0], ext[1]), ext[2]) > 0.0:
        cnt = _bini()
        lx = _binf(1.0e30)
        ly = _binf(1.0e30)
        lz = _binf(1.0e30)
        hx = _binf(-1.0e30)
        hy = _binf(-1.0e30)
        hz = _binf(-1.0e30)
        # ranges of more than _SAH_SAMPLES triangles bin an evenly strided subset (the split is then
        # applied to all of them): the top levels, each a single thread, cost O(_SAH_SAMPLES) instead of O(F)
        stride = wp.max(1, (e - s) // _SAH_SAMPLES)
        for i in range(s, e, stride):
            p = order[i]
            c = cen[p]
            lo = tlo[p]
            hi = thi[p]
            for a in range(3):
                q = a * SAH_BINS + _bin(c[a], cmin[a], scale[a])
                cnt[q] = cnt[q] + 1
                lx[q] = wp.min(lx[q], lo[0])
                ly[q] = wp.min(ly[q], lo[1])
                lz[q] = wp.min(lz[q], lo[2])
                hx[q] = wp.max(hx[q], hi[0])
                hy[q] = wp.max(hy[q], hi[1])
                hz[q] = wp.max(hz[q], hi[2])
        best = float(3.0e38)
        for a in range(3):
            if ext[a] > 0.0:
                # right sweep: area and count of bins k .. 15
                ra = _binf1()
                rc = _bini1()
                blo = wp.vec3(1.0e30)
                bhi = wp.vec3(-1.0e30)
                n = int(0)
                for kk in range(SAH_BINS):
                    k = SAH_BINS - 1 - kk
                    q = a * SAH_BINS + k
                    blo = wp.min(blo, wp.vec3(lx[q], ly[q], lz[q]))
                    bhi = wp.max(bhi, wp.vec3(hx[q], hy[q], hz[q]))
                    n += cnt[q]
                    rc[k] = n
                    if n > 0:
                        ra[k] = _half_area(blo, bhi)
                blo = wp.vec3(1.0e30)
                bhi = wp.vec3(-1.0e30)
                n = int(0)
                for k in range(SAH_BINS - 1):
                    q = a * SAH_BINS + k
                    blo = wp.min(blo, wp.vec3(lx[q], ly[q], lz[q]))
                    bhi = wp.max(bhi, wp.vec3(hx[q], hy[q], hz[q]))
                    n += cnt[q]
                    if n > 0 and rc[k + 1] > 0:
                        cost = _half_area(blo, bhi) * float(n) + ra[k + 1] * float(rc[k + 1])
                        if cost < best:
                            best = cost
                            best_a = a
                            best_k = k
                            best_nl = n
    if best_a < 0:
        for i in range(s, e):
            out[i] = order[i]
        mid[j] = (s + e) // 2
        return
    if stride > 1:  # the counts were of the samples: count the left side in full
        best_nl = int(0)
        for i in range(s, e):
            if _bin(cen[order[i]][best_a], cmin[best_a], scale[best_a]) <= best_k:
                best_nl += 1
    if best_nl == 0 or best_nl == e - s:  # possible with samples only: split at the middle instead
        for i in range(s, e):
            out[i] = order[i]
        mid[j] = (s + e) // 2
        return
    li = s
    ri = s + best_nl
    for i in range(s, e):
        p = order[i]
        if _bin(cen[p][best_a], cmin[best_a], scale[best_a]) <= best_k:
            out[li] = p
            li += 1
        else:
            out[ri] = p
            ri += 1
    mid[j] = s + best_nl
