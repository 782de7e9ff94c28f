"""Shared Warp functions and constants of the rasterizer (no kernels: they compile into the
kernel modules that use them, :mod:`lumigrad.ops._rasterize_kernels` and
:mod:`lumigrad.ops._rasterize_grad_kernels`).

Warp kernels for :func:`lumigrad.ops.rasterize` (generic over float32 / float64).

Per triangle, ``setup_kernel`` writes a pixel bounding box and a record: the
sign-normalised edge rows r_k (coverage test e_k = r_k . (x, y, 1) >= 0 with the
top-left rule, as in the reference) and the plane of z_ndc over the screen.

Two forward paths share the per-triangle and per-pixel functions, so their
results are bitwise identical:

* ``bands`` (CPU): per-vertex pixel bounds first (``vertex_px_kernel``: the
  per-triangle bbox is then a min / max of its corners' bounds, bitwise the
  bbox of ``_screen_bbox``), then triangles are set up and binned to bands of
  image rows (CSR lists; a back face is stored as ``-1 - t`` with its tile
  range and z lower bound beside it), and each thread task runs whole bands one
  after another in a cache-sized depth / id scratch: draw the front faces,
  then the back faces not hidden behind the tiles drawn so far; a triangle
  whose clipped box has at most ``_SMALL_BOX`` pixels is tested pixel by pixel
  (``_fragment``, as the atomic path), a larger one row by row over a
  conservative span (exact edge tests only near the span ends); keep the
  nearest fragment with a plain compare-and-write, then resolve (u, v) and
  ``rast_db`` once per pixel (or, for the tracer's ``_rasterize_ids``, write
  only the triangle id). An empty scratch pixel holds depth ``_EMPTY_Z``
  (behind any accepted fragment), so the depth test and the tile depths read
  one value and the ids need no clearing; the resolve puts ``_EMPTY_Z`` back,
  so a task clears its scratch once, before its first band. Bands write
  disjoint rows, so there are no atomics and no races.

Where a call's time goes (CPU, one thread, ``bench/raster_profile.py``, tables in
``bench/results_cpu5.md``): at 1024^2 with 5k-82k triangles the band pass (drawing
~260k triangle rows and ~0.7M pixels, then resolving ~0.6M covered pixels) is 70-80 %;
with 1.3M triangles the per-triangle setup (~50 ns a triangle: vertex gathers, edge rows
and the float64 z plane of the ~1.2M triangles with a non-empty box, two thirds of them
back faces) is half and binning and culling most of the rest; at 256^2 the fixed per-call
costs (validation, views of the buffers, launches) were about a third before the
workspace kept its views (now ~0.4 ms). Tried and dropped (no gain, measured A/B):
fragments emitted by the setup for triangles of <= 4 box pixels (the tests moved from the
band pass to the setup, 5-15 % slower at 1.3M), runs found by exact tests from both row
ends for narrow triangles, the last resolved record kept in registers, 16-column tiles.
Session 9 (``bench/results_raster_setup.md``, A/B in one process with ``bench/raster_ab.py``):
at 1.3M / 1024^2 the setup's ~63 ms split, by removing parts, into ~25 ms for the box from
the corners' bounds (3 gathers of vertex rows scattered over the mesh: perf puts 12-15 %
of the setup's samples on the first of them), bbox writes and counting, ~21 ms corner
gathers and edge rows, ~9 ms record writes, ~5.5 ms z plane, ~3 ms z / w gathers. None
of these fixes moved it by more than the noise (2-3 %): one 32-byte row per vertex
(bounds and pos; slower), int16 bounds, one cross product per edge, the record as one
vector store, software prefetch of corner rows 8 triangles ahead (slower), non-temporal
record stores, huge pages, gathering 64-triangle blocks into scratch first (30 % slower),
a compact list of non-empty triangles for the bin fill (faster at 512^2, slower at 1024^2).
Culling, in the setup, triangles of boxes <= 1-8 pixels that cover no pixel centre (the
test of ``_fragment``) made the band pass 20-30 % faster at 1.3M but the setup slower by
more (+7 to +37 ms): its outcome is random, and its mispredictions amid the gathers and
divisions cost far more than the same test in the band pass. Kept for one-pixel boxes in
meshes of >= 8 triangles a pixel only, as a kernel of its own (``setup_count_cull_kernel``;
an option in ``setup_count_kernel`` slowed that 3-6 % when off): 1.3M at 256^2 -8 to -11 %
(band pass 9.2 -> 5.1 ms), ``_rasterize_ids`` -10 %; bitwise the same output.
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
# Marks a vertex with w <= 0 in the per-vertex pixel bounds (see _vertex_px).
_BEHIND = 1 << 30
# Depth written before the atomic depth test; any accepted z_ndc is <= 1.
_EMPTY_Z = 3.0
# Per-triangle record width: edge rows (9), z plane (3). (16, one record per 64-byte line in float32,
# was slower at 1.3M triangles: more bytes to write in setup and to read in the band pass.)
REC = 12
# Relative rounding allowance of the z lower bound (above float32 epsilon).
_ZMIN_TOL = 1e-5
# Columns per tile of the per-band max-depth grid used to skip hidden triangles.
_TILE = 32
# A triangle whose edge rows or det overflow, or whose |det| is below this, is rescaled by a
# power of two in _load_tri (float32's smallest normal is about 2**-126).
_DET_TINY = 2.0**-100


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
    return _load_tri_bf(pos, tri, b, t - b * nf, nv)


@wp.func
def _load_tri_bf(pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), b: int, f: int, nv: int):
    """:func:`_load_tri` of face f in batch item b."""
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
    r0 = _cross_canon(c1, c2, v1, v2)
    r1 = _cross_canon(c2, c0, v2, v0)
    r2 = _cross_canon(c0, c1, v0, v1)
    det = c0[0] * r0[0] + c0[1] * r0[1] + c0[2] * r0[2]
    # Edge rows are quadratic and det cubic in the coordinates: far from 1 they overflow
    # (float32: |coord| ~ 1e13) or underflow. Rasterization is invariant under scaling a
    # triangle's corners by one factor, so such a triangle is scaled by a power of two and
    # redone (exact: in range the results are bitwise those of the unscaled triangle). The
    # test is on the results, so ordinary triangles pay one sum, not a scan of 12 values.
    scale = type(det)(1.0)
    chk = det + (r0[0] + r0[1] + r0[2]) + (r1[0] + r1[1] + r1[2]) + (r2[0] + r2[1] + r2[2])
    if not wp.isfinite(chk) or wp.abs(det) < type(det)(_DET_TINY):
        m = wp.max(wp.max(_vmax_abs(c0), _vmax_abs(c1)), wp.max(_vmax_abs(c2), _vmax_abs(zc)))
        if m > type(m)(0.0):
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
def _to_pixels(cx: Any, cy: Any, iw: wp.float64, width: int, height: int):
    """Pixel-centre coordinates (column, row) of a homogeneous point (x, y, w) with iw = 1 / w > 0."""
    half = wp.float64(0.5)
    one = wp.float64(1.0)
    x = (wp.float64(cx) * iw + one) * wp.float64(width) * half - half
    y = (one - wp.float64(cy) * iw) * wp.float64(height) * half - half
    return x, y


@wp.func
def _screen_bbox(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, nf: int, nv: int, height: int, width: int,
):
    """Inclusive pixel bbox (x0, x1, y0, y1) of triangle t (empty when y0 > y1) and a lower bound of its z_ndc.

    From the raw corners, before any edge row is formed: most triangles of a dense mesh
    cover no pixel centre, and for them this is all the setup there is. The result equals
    the one from rescaled corners (_load_tri), since x / w is invariant under a power-of-two
    scale.
    """
    b = t // nf
    f = t - b * nf
    i0 = b * nv + tri[f, 0]
    i1 = b * nv + tri[f, 1]
    i2 = b * nv + tri[f, 2]
    zero = pos.dtype(0.0)
    w0 = pos[i0, 3]
    w1 = pos[i1, 3]
    w2 = pos[i2, 3]
    x0 = int(0)
    x1 = width - 1
    y0 = int(0)
    y1 = height - 1
    zmin = wp.float64(-8.0)  # none when w crosses 0
    if w0 <= zero and w1 <= zero and w2 <= zero:
        # No pixel ray can hit a triangle with every w <= 0 (see the reference).
        y0 = 1
        y1 = 0
    elif w0 > zero and w1 > zero and w2 > zero:
        # The corners' bounds (_vertex_px), combined exactly as _bbox_from_vertices does.
        ax0, ax1, ay0, ay1, az = _vertex_px(pos, i0, height, width)
        bx0, bx1, by0, by1, bz = _vertex_px(pos, i1, height, width)
        cx0, cx1, cy0, cy1, cz = _vertex_px(pos, i2, height, width)
        x0 = wp.max(wp.min(ax0, wp.min(bx0, cx0)), 0)
        x1 = wp.min(wp.max(ax1, wp.max(bx1, cx1)), width - 1)
        y0 = wp.max(wp.min(ay0, wp.min(by0, cy0)), 0)
        y1 = wp.min(wp.max(ay1, wp.max(by1, cy1)), height - 1)
        if x0 > x1:
            y0 = 1
            y1 = 0
        zmin = wp.min(az, wp.min(bz, cz))
    return x0, x1, y0, y1, zmin


@wp.func
def _vertex_px(pos: wp.array2d(dtype=Any), i: int, height: int, width: int):
    """Per-vertex part of :func:`_screen_bbox` for vertex row i: the clamped pixel-index bounds
    (ceil(tx - m), floor(tx + m), ceil(ty - m), floor(ty + m)) and z / w; (_BEHIND, ...) when w <= 0.

    ceil, floor, the clamps and the rounding of tx - m are all monotone, so the min (max)
    over a triangle's corners of these bounds equals the bound of the min (max) of tx, ty.
    :func:`_screen_bbox` combines them per triangle; the CPU setup computes them once per
    vertex (a vertex is shared by about six triangles) and :func:`_bbox_from_vertices`
    combines them the same way.
    """
    w = pos[i, 3]
    x0 = _BEHIND
    x1 = int(0)
    y0 = int(0)
    y1 = int(0)
    zw = wp.float64(0.0)
    if w > pos.dtype(0.0):
        iw = wp.float64(1.0) / wp.float64(w)
        tx, ty = _to_pixels(pos[i, 0], pos[i, 1], iw, width, height)
        m = wp.float64(_BBOX_MARGIN)
        lo = wp.float64(-2.0)
        xmax = wp.float64(width + 1)
        ymax = wp.float64(height + 1)
        k = wp.float64(width + height + 8)
        x0 = _ceil_i(wp.clamp(tx - m, lo, xmax), k)
        x1 = _floor_i(wp.clamp(tx + m, lo, xmax), k)
        y0 = _ceil_i(wp.clamp(ty - m, lo, ymax), k)
        y1 = _floor_i(wp.clamp(ty + m, lo, ymax), k)
        zw = wp.float64(pos[i, 2]) * iw
    return x0, x1, y0, y1, zw


@wp.func
def _bbox_from_vertices(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), b: int, f: int, nf: int, nv: int, height: int,
    width: int, vpx: wp.array2d(dtype=wp.int32), vz: wp.array(dtype=wp.float64),
):
    """:func:`_screen_bbox` of face f in batch item b from the per-vertex bounds of :func:`_vertex_px`."""
    i0 = b * nv + tri[f, 0]
    i1 = b * nv + tri[f, 1]
    i2 = b * nv + tri[f, 2]
    a0 = vpx[i0, 0]
    a1 = vpx[i1, 0]
    a2 = vpx[i2, 0]
    if wp.max(a0, wp.max(a1, a2)) == _BEHIND:
        # A corner with w <= 0: the general case (rare in practice).
        return _screen_bbox(pos, tri, b * nf + f, nf, nv, height, width)
    x0 = wp.max(wp.min(a0, wp.min(a1, a2)), 0)
    x1 = wp.min(wp.max(vpx[i0, 1], wp.max(vpx[i1, 1], vpx[i2, 1])), width - 1)
    y0 = wp.max(wp.min(vpx[i0, 2], wp.min(vpx[i1, 2], vpx[i2, 2])), 0)
    y1 = wp.min(wp.max(vpx[i0, 3], wp.max(vpx[i1, 3], vpx[i2, 3])), height - 1)
    zmin = wp.float64(-8.0)
    if x0 > x1:
        y0 = 1
        y1 = 0
    elif y0 <= y1:
        zmin = wp.min(vz[i0], wp.min(vz[i1], vz[i2]))
    return x0, x1, y0, y1, zmin


@wp.func
def _setup_tri(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, nf: int, nv: int, height: int,
    width: int, bbox: wp.array2d(dtype=wp.int32), rec: wp.array2d(dtype=Any),
):
    """Write triangle t's pixel bbox (empty when y0 > y1) and, when not empty, its record; see _setup_rec."""
    x0, x1, y0, y1, zmin = _screen_bbox(pos, tri, t, nf, nv, height, width)
    b = t // nf
    return _setup_rec(pos, tri, t, b, t - b * nf, nv, x0, x1, y0, y1, zmin, bbox, rec)


@wp.func
def _setup_rec(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, b: int, f: int, nv: int,
    x0: int, x1: int, y0: int, y1: int, zmin: wp.float64, bbox: wp.array2d(dtype=wp.int32), rec: wp.array2d(dtype=Any),
):
    """Write triangle t's (= face f of batch item b) bbox (x0, x1, y0, y1) from _screen_bbox, emptied when
    det == 0, and when not empty its record; return (y0, y1, back, zlo).

    back is 0 when det > 0, i.e. counter-clockwise in y-up NDC (the OpenGL front face), else 1;
    zlo is a lower bound of the triangle's z_ndc at any pixel (valid when the bbox is not empty).
    """
    zero = pos.dtype(0.0)
    det = zero
    zlo = zero
    if y0 <= y1:
        c0, c1, c2, zc, r0, r1, r2, det, scale = _load_tri_bf(pos, tri, b, f, nv)
        if det == zero:
            y0 = 1
            y1 = 0
        else:
            zp = _z_plane(c0, c1, c2, zc)
            for c in range(3):
                rec[t, c] = r0[c]
                rec[t, 3 + c] = r1[c]
                rec[t, 6 + c] = r2[c]
                rec[t, 9 + c] = zp[c]
            # A lower bound of the triangle's z_ndc (affine on screen: its minimum is at a corner),
            # minus the rounding of the per-pixel plane evaluation; -inf-like when w crosses 0.
            zmin = zmin - wp.float64(_ZMIN_TOL) * (
                wp.float64(wp.abs(zp[0]) + wp.abs(zp[1]) + wp.abs(zp[2])) + wp.abs(zmin)
            )
            zlo = pos.dtype(zmin)
    bbox[t, 0] = x0
    bbox[t, 1] = x1
    bbox[t, 2] = y0
    bbox[t, 3] = y1
    return y0, y1, wp.where(det > zero, 0, 1), zlo
