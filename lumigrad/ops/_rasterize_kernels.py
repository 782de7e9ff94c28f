"""Warp kernels for :func:`lumigrad.ops.rasterize` (generic over float32 / float64).

Per triangle, ``setup_kernel`` writes a pixel bounding box and a record: the
sign-normalised edge rows r_k (coverage test e_k = r_k . (x, y, 1) >= 0 with the
top-left rule, as in the reference) and the plane of z_ndc over the screen.

Two forward paths share the per-triangle and per-pixel functions, so their
results are bitwise identical:

* ``bands`` (CPU): triangles are binned to bands of image rows (CSR lists), and
  each thread task runs whole bands one after another: clear a cache-sized
  depth / id scratch, walk every binned triangle row by row over a conservative
  span (exact edge tests only near the span ends), keep the nearest fragment
  with a plain compare-and-write, then resolve (u, v) and ``rast_db`` once per
  pixel. Bands write disjoint rows, so there are no atomics and no races.
* ``atomic`` (CUDA): one thread per triangle, ``atomic_min`` on z, then on the id
  among equal z, then a per-pixel resolve. It also runs (single-threaded) on CPU
  for the tests.

Layouts: ``pos [B*V, 4]``; ``rast``/``db`` ``[B*H*W]`` of vec4; a global triangle
index is ``t = b * F + f``; ``bbox [B*F, 4]`` = (x0, x1, y0, y1) inclusive pixel
ranges, empty when ``y0 > y1``.
"""
from __future__ import annotations

from typing import Any

import warp as wp

__all__: list[str] = []  # private module

# Every kernel here has a hand-written backward; skip Warp's generated adjoints.
wp.set_module_options({"enable_backward": False})

# Pixels whose centre is this close (in pixels) outside a triangle's projected
# bounding box are still tested, so edge-function rounding never loses a pixel.
_BBOX_MARGIN = 0.01
# Extra columns added to each row span (on top of the rounding bound) for safety.
_SPAN_SLACK = 1e-3
# Depth written before the atomic depth test; any accepted z_ndc is <= 1.
_EMPTY_Z = 3.0
# Per-triangle record width: edge rows (9), z plane (3), z lower bound, draw phase, padding.
REC = 16
# Relative rounding allowance of the z lower bound (above float32 epsilon).
_ZMIN_TOL = 1e-5
# Columns per tile of the per-band max-depth grid used to skip hidden triangles.
_TILE = 32
# Triangles whose largest |clip coordinate| lies outside [_NORM_LO, _NORM_HI] are rescaled
# by a power of two in _load_tri, so edge rows and det neither overflow nor underflow.
_NORM_HI = 2.0**20
_NORM_LO = 2.0**-20


@wp.func
def _cross_canon(ci: Any, cj: Any, vi: int, vj: int):
    # Fixed operand order per vertex pair: the shared edge of two triangles gets
    # exactly negated rows even when the compiler contracts to FMA (CUDA).
    # A select, not a branch: the order is data dependent and would mispredict.
    return wp.where(vi <= vj, wp.cross(ci, cj), -wp.cross(cj, ci))


@wp.func
def _vmax_abs(c: Any):
    return wp.max(wp.abs(c[0]), wp.max(wp.abs(c[1]), wp.abs(c[2])))


@wp.func
def _load_tri(pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, nf: int, nv: int):
    """Homogeneous 2D corners (x, y, w), clip z, and sign-normalised edge rows of triangle ``t``."""
    b = t // nf
    f = t - b * nf
    v0 = tri[f, 0]
    v1 = tri[f, 1]
    v2 = tri[f, 2]
    i0 = b * nv + v0
    i1 = b * nv + v1
    i2 = b * nv + v2
    c0 = wp.vector(pos[i0, 0], pos[i0, 1], pos[i0, 3])
    c1 = wp.vector(pos[i1, 0], pos[i1, 1], pos[i1, 3])
    c2 = wp.vector(pos[i2, 0], pos[i2, 1], pos[i2, 3])
    zc = wp.vector(pos[i0, 2], pos[i1, 2], pos[i2, 2])
    # Edge rows are quadratic and det cubic in the coordinates: far from 1 they overflow
    # (float32: |coord| ~ 1e13) or underflow. Rasterization is invariant under scaling a
    # triangle's corners by one factor, so such triangles are scaled by a power of two
    # (exact: in range the results are bitwise those of the unscaled triangle).
    m = wp.max(wp.max(_vmax_abs(c0), _vmax_abs(c1)), wp.max(_vmax_abs(c2), _vmax_abs(zc)))
    scale = type(m)(1.0)
    if m > type(m)(_NORM_HI) or (m < type(m)(_NORM_LO) and m > type(m)(0.0)):
        scale = type(m)(wp.pow(wp.float64(2.0), -wp.floor(wp.log2(wp.float64(m)))))
        c0 = c0 * scale
        c1 = c1 * scale
        c2 = c2 * scale
        zc = zc * scale
    r0 = _cross_canon(c1, c2, v1, v2)
    r1 = _cross_canon(c2, c0, v2, v0)
    r2 = _cross_canon(c0, c1, v0, v1)
    det = c0[0] * r0[0] + c0[1] * r0[1] + c0[2] * r0[2]
    s = wp.sign(det)
    return c0, c1, c2, zc, r0 * s, r1 * s, r2 * s, det, scale



@wp.func
def _edge(r: Any, px: Any, py: Any):
    return r[0] * px + r[1] * py + r[2]


@wp.func
def _top_left(r: Any):
    zero = type(r[0])(0.0)
    return r[0] > zero or (r[0] == zero and r[1] > zero)


@wp.func
def _load_rec(rec: wp.array2d(dtype=Any), t: int):
    """Per-triangle record from ``setup_kernel``: sign-normalised edge rows and the z_ndc plane."""
    r0 = wp.vector(rec[t, 0], rec[t, 1], rec[t, 2])
    r1 = wp.vector(rec[t, 3], rec[t, 4], rec[t, 5])
    r2 = wp.vector(rec[t, 6], rec[t, 7], rec[t, 8])
    zp = wp.vector(rec[t, 9], rec[t, 10], rec[t, 11])
    return r0, r1, r2, zp


@wp.func
def _inside(e0: Any, e1: Any, e2: Any, r0: Any, r1: Any, r2: Any):
    """Top-left fill rule: every e_k > 0, or e_k == 0 on a top-left edge."""
    zero = type(e0)(0.0)
    m = wp.min(e0, wp.min(e1, e2))
    if m > zero:
        return True
    if m < zero:
        return False
    return (e0 > zero or _top_left(r0)) and (e1 > zero or _top_left(r1)) and (e2 > zero or _top_left(r2))


@wp.func
def _fragment(px: Any, py: Any, r0: Any, r1: Any, r2: Any, zp: Any):
    """Coverage and z_ndc of one pixel centre; returns (hit, z)."""
    e0 = _edge(r0, px, py)
    e1 = _edge(r1, px, py)
    e2 = _edge(r2, px, py)
    one = type(px)(1.0)
    if not _inside(e0, e1, e2, r0, r1, r2):
        return False, one
    z = zp[0] * px + (zp[1] * py + zp[2])  # same order as the row-wise form in raster_bands_kernel
    return z >= -one and z <= one, z


@wp.func
def _resolve(
    rast: wp.array(dtype=Any), db: wp.array(dtype=Any), p: int, px: Any, py: Any,
    rec: wp.array2d(dtype=Any), t: int, z: Any, fid: Any, want_db: int, sx: Any, sy: Any,
):
    """Write (u, v, z, id) and (du/dX, du/dY, dv/dX, dv/dY) for a covered pixel."""
    r0, r1, r2, zp = _load_rec(rec, t)
    e0 = _edge(r0, px, py)
    e1 = _edge(r1, px, py)
    e2 = _edge(r2, px, py)
    inv = type(px)(1.0) / (e0 + e1 + e2)
    b0 = e0 * inv
    b1 = e1 * inv
    rast[p] = wp.vector(b0, b1, z, fid)
    if want_db != 0:
        # d b_k / d p = (r_k - b_k * sum_j r_j) / sum(e), then NDC -> pixels.
        rsum = r0 + r1 + r2
        db[p] = wp.vector(
            (r0[0] - b0 * rsum[0]) * inv * sx,
            (r0[1] - b0 * rsum[1]) * inv * sy,
            (r1[0] - b1 * rsum[0]) * inv * sx,
            (r1[1] - b1 * rsum[1]) * inv * sy,
        )


@wp.func
def _edge_lines(r: Any, tol: float):
    """Row bounds of one edge as lines in y, for the row spans of ``raster_bands_kernel``.

    An edge with a > 0 bounds x from the left (x >= lb*y + c), one with a < 0 from
    the right (x <= hb*y + c). Returns (lb, lo, li, hb, ho, hi): slope and outer /
    inner offsets for each side; the side an edge does not bound gets a constant
    outside the image. Outer lines admit every pixel the exact test can accept,
    inner lines only pixels it surely accepts: the margin m bounds the rounding of
    e = a*px + b*py + c for |px|, |py| <= 1. Selects instead of branches, since the
    signs are data dependent.
    """
    a = wp.float64(r[0])
    b = wp.float64(r[1])
    c = wp.float64(r[2])
    zero = wp.float64(0.0)
    one = wp.float64(1.0)
    far = wp.float64(4.0)
    ia = one / wp.where(a == zero, one, a)
    m = wp.float64(tol) * (wp.abs(a) + wp.abs(b) + wp.abs(c)) * wp.abs(ia)
    sb = -b * ia
    sc = -c * ia
    left = a > zero
    right = a < zero
    return (
        wp.where(left, sb, zero), wp.where(left, sc - m, -far), wp.where(left, sc + m, -far),
        wp.where(right, sb, zero), wp.where(right, sc + m, far), wp.where(right, sc - m, far),
    )  # fmt: skip


@wp.func
def _flat_edge(r: Any, py: Any):
    """For an edge with a == 0, e == b*py + c exactly on the whole row: 2 all pass, 1 test needed, 0 none pass."""
    zero = type(py)(0.0)
    if r[0] != zero:
        return 2
    d = r[1] * py + r[2]
    if d > zero:
        return 2
    if d == zero:
        return 1
    return 0


@wp.func
def _z_plane(c0: Any, c1: Any, c2: Any, zc: Any):
    """z_ndc as an affine function of (x_ndc, y_ndc): z = zp . (x, y, 1).

    sum_k e_k w_k == |det| at every pixel (e_k = |det| alpha_k and sum_k alpha_k w_k = 1),
    so z = sum_k e_k z_k / |det| = sum_k (z_k / det) (c_i x c_j) . p (unnormalised rows).
    The terms cancel heavily for small triangles, so this runs in float64 and rounds once.
    """
    d0 = wp.vec3d(wp.float64(c0[0]), wp.float64(c0[1]), wp.float64(c0[2]))
    d1 = wp.vec3d(wp.float64(c1[0]), wp.float64(c1[1]), wp.float64(c1[2]))
    d2 = wp.vec3d(wp.float64(c2[0]), wp.float64(c2[1]), wp.float64(c2[2]))
    r0 = wp.cross(d1, d2)
    det = wp.dot(d0, r0)
    zero = wp.float64(0.0)
    if det == zero:
        return zc * type(zc[0])(0.0)
    inv = wp.float64(1.0) / det
    zp = (r0 * wp.float64(zc[0]) + wp.cross(d2, d0) * wp.float64(zc[1]) + wp.cross(d0, d1) * wp.float64(zc[2])) * inv
    return wp.vector(type(zc[0])(zp[0]), type(zc[0])(zp[1]), type(zc[0])(zp[2]))


@wp.func
def _floor_i(x: wp.float64, k: wp.float64):
    """floor(x) for -k < x, with k a positive integer: a truncation instead of a libm call."""
    return int(x + k) - int(k)


@wp.func
def _ceil_i(x: wp.float64, k: wp.float64):
    """ceil(x) for x < k, with k a positive integer."""
    return int(k) - int(k - x)


@wp.func
def _to_pixels(c: Any, iw: wp.float64, width: int, height: int):
    """Pixel-centre coordinates (column, row) of a homogeneous point (x, y, w) with iw = 1 / w > 0."""
    half = wp.float64(0.5)
    one = wp.float64(1.0)
    x = (wp.float64(c[0]) * iw + one) * wp.float64(width) * half - half
    y = (one - wp.float64(c[1]) * iw) * wp.float64(height) * half - half
    return x, y


@wp.func
def _setup_tri(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, nf: int, nv: int, height: int,
    width: int, bbox: wp.array2d(dtype=wp.int32), rec: wp.array2d(dtype=Any),
):
    """Write triangle t's pixel bbox (empty when y0 > y1) and record; return (y0, y1)."""
    c0, c1, c2, zc, r0, r1, r2, det, scale = _load_tri(pos, tri, t, nf, nv)
    zero = pos.dtype(0.0)
    x0 = int(0)
    x1 = width - 1
    y0 = int(0)
    y1 = height - 1
    all_front = c0[2] > zero and c1[2] > zero and c2[2] > zero
    all_behind = c0[2] <= zero and c1[2] <= zero and c2[2] <= zero
    zmin = wp.float64(-8.0)  # lower bound of the triangle's z_ndc; none when w crosses 0
    if det == zero or all_behind:
        # No pixel ray can hit a triangle with every w <= 0 (see the reference).
        y0 = 1
        y1 = 0
    elif all_front:
        # Pixel-centre units (column j has its centre at tx = j, row i at ty = i), widened by a margin.
        iw0 = wp.float64(1.0) / wp.float64(c0[2])
        iw1 = wp.float64(1.0) / wp.float64(c1[2])
        iw2 = wp.float64(1.0) / wp.float64(c2[2])
        tx0, ty0 = _to_pixels(c0, iw0, width, height)
        tx1, ty1 = _to_pixels(c1, iw1, width, height)
        tx2, ty2 = _to_pixels(c2, iw2, width, height)
        m = wp.float64(_BBOX_MARGIN)
        lo = wp.float64(-2.0)
        xmax = wp.float64(width + 1)
        ymax = wp.float64(height + 1)
        k = wp.float64(width + height + 8)
        x0 = wp.max(_ceil_i(wp.clamp(wp.min(tx0, wp.min(tx1, tx2)) - m, lo, xmax), k), 0)
        x1 = wp.min(_floor_i(wp.clamp(wp.max(tx0, wp.max(tx1, tx2)) + m, lo, xmax), k), width - 1)
        y0 = wp.max(_ceil_i(wp.clamp(wp.min(ty0, wp.min(ty1, ty2)) - m, lo, ymax), k), 0)
        y1 = wp.min(_floor_i(wp.clamp(wp.max(ty0, wp.max(ty1, ty2)) + m, lo, ymax), k), height - 1)
        if x0 > x1:
            y0 = 1
            y1 = 0
        zmin = wp.min(wp.float64(zc[0]) * iw0, wp.min(wp.float64(zc[1]) * iw1, wp.float64(zc[2]) * iw2))
    bbox[t, 0] = x0
    bbox[t, 1] = x1
    bbox[t, 2] = y0
    bbox[t, 3] = y1
    zp = _z_plane(c0, c1, c2, zc)
    for c in range(3):
        rec[t, c] = r0[c]
        rec[t, 3 + c] = r1[c]
        rec[t, 6 + c] = r2[c]
        rec[t, 9 + c] = zp[c]
    # A lower bound of the triangle's z_ndc (affine on screen: its minimum is at a corner),
    # minus the rounding of the per-pixel plane evaluation; -inf-like when w crosses 0.
    zmin = zmin - wp.float64(_ZMIN_TOL) * (wp.float64(wp.abs(zp[0]) + wp.abs(zp[1]) + wp.abs(zp[2])) + wp.abs(zmin))
    rec[t, 12] = pos.dtype(zmin)
    # Phase 0 (drawn first): det > 0, i.e. counter-clockwise in y-up NDC, the OpenGL front face.
    rec[t, 13] = pos.dtype(wp.where(det > zero, 0.0, 1.0))
    return y0, y1


@wp.kernel
def setup_kernel(
    offset: int, pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), nf: int, nv: int,
    height: int, width: int,
    bbox: wp.array2d(dtype=wp.int32),  # [B*F, 4] out: x0, x1, y0, y1 (empty when y0 > y1)
    rec: wp.array2d(dtype=Any),  # [B*F, REC] out: see _load_rec and _setup_tri
):
    _setup_tri(pos, tri, wp.tid() + offset, nf, nv, height, width, bbox, rec)


@wp.kernel
def setup_count_kernel(
    offset: int, n_chunks: int, n_tris: int, band_rows: int, bands_per_img: int,
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), nf: int, nv: int, height: int, width: int,
    bbox: wp.array2d(dtype=wp.int32), rec: wp.array2d(dtype=Any),
    counts: wp.array2d(dtype=wp.int32),  # [n_bands, n_chunks], zeroed
):
    """CPU: setup_kernel over chunk c of the triangles, counting them per band (column c of counts)."""
    c = wp.tid() + offset
    for t in range(n_tris * c // n_chunks, n_tris * (c + 1) // n_chunks):
        y0, y1 = _setup_tri(pos, tri, t, nf, nv, height, width, bbox, rec)
        if y0 <= y1:
            g0 = (t // nf) * bands_per_img
            for band in range(y0 // band_rows, y1 // band_rows + 1):
                counts[g0 + band, c] = counts[g0 + band, c] + 1


@wp.kernel
def bin_fill_kernel(
    offset: int, n_chunks: int, n_tris: int, nf: int, band_rows: int, bands_per_img: int,
    bbox: wp.array2d(dtype=wp.int32),
    cursor: wp.array2d(dtype=wp.int32),  # [n_bands, n_chunks] exclusive prefix sums, advanced in place
    tlist: wp.array(dtype=wp.int32),  # [total] out: triangles per band, ascending
):
    c = wp.tid() + offset
    for t in range(n_tris * c // n_chunks, n_tris * (c + 1) // n_chunks):
        y0 = bbox[t, 2]
        y1 = bbox[t, 3]
        if y0 <= y1:
            g0 = (t // nf) * bands_per_img
            for band in range(y0 // band_rows, y1 // band_rows + 1):
                k = cursor[g0 + band, c]
                tlist[k] = t
                cursor[g0 + band, c] = k + 1


@wp.func
def _depth_test(zbuf: wp.array2d(dtype=Any), ibuf: wp.array2d(dtype=wp.int32), slot: int, q: int, z: Any, fid: int):
    # Sequential within a band: nearest z wins, ties go to the smaller id (ibuf 0 = empty).
    cur = ibuf[slot, q]
    if cur == 0 or z < zbuf[slot, q] or (z == zbuf[slot, q] and fid < cur):
        zbuf[slot, q] = z
        ibuf[slot, q] = fid


@wp.func
def _raster_tri(
    rec: wp.array2d(dtype=Any), t: int, fid: int, x0: int, x1: int, i0: int, i1: int, row0: int, width: int,
    xs: wp.array(dtype=Any), ys: wp.array(dtype=Any), zbuf: wp.array2d(dtype=Any), ibuf: wp.array2d(dtype=wp.int32),
    slot: int, tol: float,
):
    """Depth-test triangle t over rows i0..i1 and columns x0..x1 into this task's band scratch."""
    r0, r1, r2, zp = _load_rec(rec, t)
    zero = xs.dtype(0.0)
    one = xs.dtype(1.0)
    half = wp.float64(0.5)
    onep = wp.float64(1.0)
    hw = wp.float64(width) * half
    slack = wp.float64(_SPAN_SLACK)
    k = wp.float64(3 * width + 8)  # span ends lie in [-4, 4] NDC: |column| < 3 W
    # Lines bounding each row's span from the left (lX) and right (hX).
    lb0, lo0, li0, hb0, ho0, hi0 = _edge_lines(r0, tol)
    lb1, lo1, li1, hb1, ho1, hi1 = _edge_lines(r1, tol)
    lb2, lo2, li2, hb2, ho2, hi2 = _edge_lines(r2, tol)
    flat = r0[0] == zero or r1[0] == zero or r2[0] == zero
    for i in range(i0, i1 + 1):
        py = ys[i]
        y = wp.float64(py)
        lo = wp.max(lb0 * y + lo0, wp.max(lb1 * y + lo1, lb2 * y + lo2))
        hi = wp.min(hb0 * y + ho0, wp.min(hb1 * y + ho1, hb2 * y + ho2))
        lo_in = wp.max(lb0 * y + li0, wp.max(lb1 * y + li1, lb2 * y + li2))
        hi_in = wp.min(hb0 * y + hi0, wp.min(hb1 * y + hi1, hb2 * y + hi2))
        if flat:
            f = wp.min(_flat_edge(r0, py), wp.min(_flat_edge(r1, py), _flat_edge(r2, py)))
            if f == 0:
                continue
            if f == 1:
                hi_in = lo_in - onep
        ja = wp.max(x0, _ceil_i((lo + onep) * hw - half - slack, k))
        jb = wp.min(x1, _floor_i((hi + onep) * hw - half + slack, k))
        if ja > jb:
            continue
        # Inner span [ia, ib]: centres strictly inside every edge, no test needed.
        ia = wp.max(ja, _ceil_i((lo_in + onep) * hw - half + slack, k))
        ib = wp.min(jb, _floor_i((hi_in + onep) * hw - half - slack, k))
        q0 = (i - row0) * width
        zrow = zp[1] * py + zp[2]
        for j in range(ja, jb + 1):
            px = xs[j]
            if j < ia or j > ib:
                if not _inside(_edge(r0, px, py), _edge(r1, px, py), _edge(r2, px, py), r0, r1, r2):
                    continue
            z = zp[0] * px + zrow
            if z >= -one and z <= one:
                _depth_test(zbuf, ibuf, slot, q0 + j, z, fid)


@wp.func
def _tile_max_depth(
    zbuf: wp.array2d(dtype=Any), ibuf: wp.array2d(dtype=wp.int32), tmax: wp.array2d(dtype=Any), slot: int,
    rows: int, width: int,
):
    """Farthest depth per tile of the band so far; an empty pixel counts as infinitely far."""
    for tile in range((width + _TILE - 1) // _TILE):
        far = zbuf.dtype(-8.0)
        for i in range(rows):
            for j in range(tile * _TILE, wp.min(tile * _TILE + _TILE, width)):
                z = zbuf[slot, i * width + j]
                if ibuf[slot, i * width + j] == 0:
                    z = zbuf.dtype(_EMPTY_Z)
                far = wp.max(far, z)
        tmax[slot, tile] = far


@wp.kernel
def raster_bands_kernel(
    offset: int, stride: int, n_bands: int, band_rows: int, bands_per_img: int, height: int, width: int, nf: int,
    xs: wp.array(dtype=Any),  # [W] pixel-centre x_ndc
    ys: wp.array(dtype=Any),  # [H] pixel-centre y_ndc
    rec: wp.array2d(dtype=Any), bbox: wp.array2d(dtype=wp.int32),
    band_start: wp.array(dtype=wp.int32),  # [n_bands + 1] CSR offsets into tlist
    tlist: wp.array(dtype=wp.int32),
    zbuf: wp.array2d(dtype=Any),  # [tasks, band_rows * W] scratch depth; row `offset` is this task's
    ibuf: wp.array2d(dtype=wp.int32),  # [tasks, band_rows * W] scratch id + 1 (0 = empty)
    tmax: wp.array2d(dtype=Any),  # [tasks, ceil(W / _TILE)] scratch max depth per tile
    rast: wp.array(dtype=Any),  # [B*H*W] vec4 out
    db: wp.array(dtype=Any),  # [B*H*W] vec4 out (untouched unless want_db)
    want_db: int, tol: float,
):
    # Band g = offset + tid * stride. One launch is one task that runs its bands in
    # order, so the plain read-compare-write depth test has no races.
    g = offset + wp.tid() * stride
    if g >= n_bands:
        return
    slot = offset
    b = g // bands_per_img
    row0 = (g - b * bands_per_img) * band_rows
    row1 = wp.min(row0 + band_rows, height)
    zero = xs.dtype(0.0)
    for q in range((row1 - row0) * width):
        ibuf[slot, q] = 0
    # Two passes over the band's triangles: front faces (phase 0), then the rest, skipping
    # any whose z lower bound is behind everything already drawn in the tiles it spans.
    # For closed meshes this drops most back faces before any per-row work. Order does
    # not change the result: the depth test breaks ties by id explicitly.
    for phase in range(2):
        if phase == 1:
            _tile_max_depth(zbuf, ibuf, tmax, slot, row1 - row0, width)
        for k in range(band_start[g], band_start[g + 1]):
            t = tlist[k]
            if int(rec[t, 13]) != phase:
                continue
            x0 = bbox[t, 0]
            x1 = bbox[t, 1]
            if phase == 1:
                far = xs.dtype(-8.0)
                for tile in range(x0 // _TILE, x1 // _TILE + 1):
                    far = wp.max(far, tmax[slot, tile])
                if rec[t, 12] > far:
                    continue
            _raster_tri(rec, t, t - b * nf + 1, x0, x1, wp.max(bbox[t, 2], row0), wp.min(bbox[t, 3], row1 - 1),
                        row0, width, xs, ys, zbuf, ibuf, slot, tol)
    sx = xs.dtype(2.0) / xs.dtype(width)
    sy = -xs.dtype(2.0) / xs.dtype(height)
    z4 = wp.vector(zero, zero, zero, zero)
    for i in range(row0, row1):
        py = ys[i]
        prow = (b * height + i) * width
        q0 = (i - row0) * width
        for j in range(width):
            p = prow + j
            fid = ibuf[slot, q0 + j]
            if fid != 0:
                _resolve(rast, db, p, xs[j], py, rec, b * nf + fid - 1, zbuf[slot, q0 + j], xs.dtype(fid), want_db, sx, sy)
            else:
                rast[p] = z4
                if want_db != 0:
                    db[p] = z4


@wp.kernel
def depth_atomic_kernel(
    offset: int, height: int, width: int, nf: int, xs: wp.array(dtype=Any), ys: wp.array(dtype=Any),
    rec: wp.array2d(dtype=Any), bbox: wp.array2d(dtype=wp.int32),
    rast: wp.array2d(dtype=Any),  # [B*H*W, 4] scalar view; column 2 starts at _EMPTY_Z
    id_pass: int,
):
    """Pass 0: atomic min of z. Pass 1: atomic min of the id where z equals the winner."""
    t = wp.tid() + offset
    y0 = bbox[t, 2]
    y1 = bbox[t, 3]
    if y0 > y1:
        return
    r0, r1, r2, zp = _load_rec(rec, t)
    b = t // nf
    fid = xs.dtype(t - b * nf + 1)
    for i in range(y0, y1 + 1):
        py = ys[i]
        prow = (b * height + i) * width
        for j in range(bbox[t, 0], bbox[t, 1] + 1):
            hit, z = _fragment(xs[j], py, r0, r1, r2, zp)
            if hit:
                if id_pass == 0:
                    wp.atomic_min(rast, prow + j, 2, z)
                elif z == rast[prow + j, 2]:
                    wp.atomic_min(rast, prow + j, 3, fid)


@wp.kernel
def resolve_kernel(
    offset: int, height: int, width: int, nf: int, xs: wp.array(dtype=Any), ys: wp.array(dtype=Any),
    rec: wp.array2d(dtype=Any),
    rast: wp.array(dtype=Any),  # [B*H*W] vec4: in (., ., z, id) from the atomic passes; out final
    db: wp.array(dtype=Any), want_db: int,
):
    p = wp.tid() + offset
    zero = xs.dtype(0.0)
    v = rast[p]
    if v[2] > xs.dtype(1.5):
        rast[p] = wp.vector(zero, zero, zero, zero)
        if want_db != 0:
            db[p] = wp.vector(zero, zero, zero, zero)
        return
    hw = height * width
    b = p // hw
    i = (p - b * hw) // width
    j = p - b * hw - i * width
    sx = xs.dtype(2.0) / xs.dtype(width)
    sy = -xs.dtype(2.0) / xs.dtype(height)
    _resolve(rast, db, p, xs[j], ys[i], rec, b * nf + int(v[3]) - 1, v[2], v[3], want_db, sx, sy)


@wp.func
def _pixel_grad(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, nf: int, nv: int,
    px: Any, py: Any, gr: Any, gd: Any, want_db: int,
):
    """d loss / d clip (x, y, z, w) of the three corners of triangle ``t`` at one pixel.

    ``gr`` = d loss / d (u, v, z, id) and ``gd`` = d loss / d (du/dX, du/dY, dv/dX, dv/dY)
    already scaled to NDC (used when ``want_db``). With c = (x, y, w),
    r_k = sign(det) (c_i x c_j), e_k = r_k . p, s = sum(e):
    u = e0 / s, v = e1 / s, z = sum(e z) / sum(e w), and
    d b_k / d p_a = (r_k[a] - b_k R[a]) / s with R = sum(r). Returns one vec4 per corner.
    """
    c0, c1, c2, zc, r0, r1, r2, det, scale = _load_tri(pos, tri, t, nf, nv)
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
    # For r = sign * (c_i x c_j) and gradient g on r: d/dc_i = sign * (c_j x g), d/dc_j = sign * (g x c_i).
    sg = wp.sign(det)
    g0 = (wp.cross(gq1, c2) + wp.cross(c1, gq2)) * sg
    g1 = (wp.cross(c2, gq0) + wp.cross(gq2, c0)) * sg
    g2 = (wp.cross(gq0, c1) + wp.cross(c0, gq1)) * sg
    # z also depends on clip z and w directly: dz/dz_k = e_k / den, dz/dw_k = -z e_k / den.
    # The outputs do not change with the triangle's scale, so d/d pos = scale * d/d (scaled corners).
    gzd = gz / den
    return (
        wp.vector(g0[0], g0[1], gzd * e0, g0[2] - gzd * e0 * z) * scale,
        wp.vector(g1[0], g1[1], gzd * e1, g1[2] - gzd * e1 * z) * scale,
        wp.vector(g2[0], g2[1], gzd * e2, g2[2] - gzd * e2 * z) * scale,
    )


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


@wp.kernel
def grad_tasks_kernel(
    offset: int, stride: int, height: int, width: int, nf: int, nv: int,
    xs: wp.array(dtype=Any), ys: wp.array(dtype=Any), pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32),
    rast: wp.array(dtype=Any),  # [B*H*W] vec4
    grad: wp.array(dtype=Any),  # [B*H*W] vec4 d loss / d rast (component 3 ignored)
    gdb: wp.array(dtype=Any),  # [B*H*W] vec4 d loss / d rast_db, or [1] unused unless want_db
    want_db: int,
    gbuf: wp.array(dtype=Any),  # [tasks * B*V] vec4, zeroed: this task's gradient w.r.t. pos
):
    """CPU backward: one launch per task over image rows offset, offset + stride, ...;
    sequential within the launch, so the gradient accumulation has no races."""
    k = wp.tid()
    row = offset + (k // width) * stride  # global row over B*H
    j = k - (k // width) * width
    p = row * width + j
    v = rast[p]
    if v[3] == xs.dtype(0.0):
        return
    b = row // height
    i = row - b * height
    f = int(v[3]) - 1
    gd = _db_cotangent(gdb, p, want_db, xs.dtype(2.0) / xs.dtype(width), -xs.dtype(2.0) / xs.dtype(height))
    g0, g1, g2 = _pixel_grad(pos, tri, b * nf + f, nf, nv, xs[j], ys[i], grad[p], gd, want_db)
    base = offset * (pos.shape[0]) + b * nv
    _add4(gbuf, base + tri[f, 0], g0)
    _add4(gbuf, base + tri[f, 1], g1)
    _add4(gbuf, base + tri[f, 2], g2)


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
