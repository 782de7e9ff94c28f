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

Session 10 (``bench/bvh_ab.py``: this tree vs another checkout in one process, single thread, paired medians of
``time.thread_time``; tables in ``bench/results_bvh.md``; code in commits 4939c39 and 496ac51 of branch ``bvh4``),
none kept. (1) BVH4 again, collapsed by largest child area, SoA child boxes (``lo_x[4] .. hi_z[4]``, padding
``lo = +1e30, hi = -1e30``), near/far planes picked per ray octant, a 5-swap sorting network and branch-free pushes:
the object code does have the 4 slab tests as SIMD, and inner visits per ray halve (5k: 8.2 -> 4.3, 82k: 10.6 -> 5.7,
Cornell path-like rays 6.3 -> 2.9; triangle tests unchanged, 3.0 / 2.9 / 5.0), yet closest hits took 1.08-1.29x and
any hits 0.92-1.13x the binary query's time: the next node comes out of selects after the keys, a dependency chain
the CPU cannot speculate past, while the binary query's branches are predicted. A branch for the one-child-hit case
brought it to 0.94-1.05x (a branchy two-hit case: no better), never a clear gain. (2) SIMD leaves: each leaf one
block of 4 triangles in SoA rows, one Moller-Trumbore on all lanes (selects, not ``and``: Warp's ``and``
short-circuits into branches), leaves numbered depth first (level order: 1.3M 1.15x slower), a per-leaf refit
kernel. Binary tree: closest / any 0.91 / 0.83x at 5k, 0.93 / 0.86x at 82k, 0.98 / 1.03x at 1.3M, but 1.01 / 1.08x
on the Cornell box and its path tracer forward 1.05x (leaves there hold 2.6 triangles; the scalar test's early outs
win); an early out after the plane test made it 1.06-1.17x everywhere; with BVH4 nodes no better. (3) Nodes numbered
depth first instead of by level: 1.3M 1.03 / 0.98x, 82k 1.00 / 1.00x (noise). (4) Near-first order in any-hit
queries: 1.02-1.05x. (5) 2x2 ray packets for coherent camera rays (one thread, 4 rays, shared stack, SIMD across
the rays; commit e49c34c): 1.01-1.02x at 5k, 0.97x at 82k, 1.22x at 1.3M of the scalar query on the same rays.
Noise floor of the paired ratios: about 2 % (the same query against itself: 0.994-1.002x).
"""
from __future__ import annotations

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["STACK_SIZE", "LEAF_BITS", "bvh_closest", "bvh_anyhit", "bvh_tris", "bvh_leaves", "bvh_refit_level",
           "bvh_refit_serial", "bvh_sah_split", "SAH_BINS"]

STACK_SIZE = 64  # the builder keeps the tree depth below this (the stacks are zeroed per ray: keep them small)
LEAF_BITS = 3  # leaf sizes 1..8
_stack_i = wp.types.vector(length=STACK_SIZE, dtype=wp.int32)
_stack_f = wp.types.vector(length=STACK_SIZE, dtype=wp.float32)
_FAR_PAD = 1.000002
# Barycentric slack of the triangle test (relative): a ray through a shared edge may hit both triangles
# (the closest-hit order picks one) but, unlike an exact test in float32, never slips between them.
_EDGE_TOL = 1.0e-6


@wp.func
def _safe_rcp(x: float):
    if x == 0.0:
        return 1.0e20
    return 1.0 / x


@wp.func
def _mt(tris: wp.array(dtype=wp.vec3), k: int, o: wp.vec3, d: wp.vec3, best: float):
    """Distance to triangle slot ``k`` if hit at ``0 <= t < best``, else -1 (Moller-Trumbore, precomputed normal)."""
    k4 = 4 * k
    s = o - tris[k4]
    n = tris[k4 + 3]
    det = -wp.dot(d, n)
    tn = wp.dot(s, n)
    if det > 0.0:
        if tn < 0.0 or tn >= best * det:
            return -1.0
        c = wp.cross(s, d)
        u = wp.dot(tris[k4 + 2], c)
        v = -wp.dot(tris[k4 + 1], c)
        tol = _EDGE_TOL * det
        if u < -tol or v < -tol or u + v > det + tol:
            return -1.0
        return tn / det
    if det < 0.0:
        if tn > 0.0 or tn <= best * det:
            return -1.0
        c = wp.cross(s, d)
        u = wp.dot(tris[k4 + 2], c)
        v = -wp.dot(tris[k4 + 1], c)
        tol = -_EDGE_TOL * det
        if u > tol or v > tol or u + v < det - tol:
            return -1.0
        return tn / det
    return -1.0


@wp.func
def _mt_t64(tris: wp.array(dtype=wp.vec3), k: int, o: wp.vec3, d: wp.vec3):
    """The hit distance of slot ``k`` again in float64 (once per ray): float32 ``dot(s, n) / -dot(d, n)``
    loses digits to cancellation on grazing rays (up to ~1e-5 relative at 512^2 on the bench scenes)."""
    k4 = 4 * k
    p0 = tris[k4]
    e1 = wp.vec3d(tris[k4 + 1])
    e2 = wp.vec3d(tris[k4 + 2])
    n = wp.cross(e1, e2)
    s = wp.vec3d(o) - wp.vec3d(p0)
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
                t = _mt(tris, k, o, d, best)
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
    return tface[slot], _mt_t64(tris, slot, o, d)


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
                t = _mt(tris, k, o, d, tmax)
                if t > 0.0 and t < tmax:
                    return True
        if sp == 0:
            break
        sp -= 1
        ref = st[sp]
    return False


# --- build / refit ------------------------------------------------------------------------------------------


@wp.kernel
def bvh_tris(
    offset: int,
    points: wp.array(dtype=wp.vec3),  # [V]
    indices: wp.array(dtype=wp.int32),  # [3F]
    slot: wp.array(dtype=wp.int32),  # [F] leaf slot of each face
    tris: wp.array(dtype=wp.vec3),  # [4F] out
):
    """One thread per face, in face order (reads stay coherent, writes scatter): ``p0, e1, e2, e1 x e2``."""
    f = wp.tid() + offset
    p0 = points[indices[3 * f]]
    e1 = points[indices[3 * f + 1]] - p0
    e2 = points[indices[3 * f + 2]] - p0
    k4 = 4 * slot[f]
    tris[k4] = p0
    tris[k4 + 1] = e1
    tris[k4 + 2] = e2
    tris[k4 + 3] = wp.cross(e1, e2)


@wp.func
def _pad(lo: wp.vec3, hi: wp.vec3):
    """``lo, hi`` widened by 2^-20 of the box's largest magnitude per axis: more than the rounding of
    ``p0 + (p1 - p0)`` (a few ulps of the corners' magnitude); boxes only grow."""
    m = wp.vec3(wp.max(wp.abs(lo[0]), wp.abs(hi[0])), wp.max(wp.abs(lo[1]), wp.abs(hi[1])),
                wp.max(wp.abs(lo[2]), wp.abs(hi[2])))
    pad = m * 9.5367431640625e-07 + wp.vec3(1.0e-30)
    return lo - pad, hi + pad


@wp.kernel
def bvh_leaves(
    offset: int,
    tris: wp.array(dtype=wp.vec3),  # [4F]
    leaf_ref: wp.array(dtype=wp.int32),  # [L] each leaf's reference
    leaf_pos: wp.array(dtype=wp.int32),  # [L] row of its box in nodes (4 parent + 2 side)
    nodes: wp.array(dtype=wp.vec3),  # [4N] out: the leaves' boxes
):
    """One thread per leaf: the box of its triangles (as the query sees them: p0, p0 + e1, p0 + e2), padded."""
    code = -1 - leaf_ref[wp.tid() + offset]
    k0 = code >> LEAF_BITS
    k1 = k0 + (code & 7) + 1
    lo = tris[4 * k0]
    hi = lo
    for k in range(k0, k1):
        p0 = tris[4 * k]
        p1 = p0 + tris[4 * k + 1]
        p2 = p0 + tris[4 * k + 2]
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
