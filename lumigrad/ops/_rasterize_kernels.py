"""Forward Warp kernels of :func:`lumigrad.ops.rasterize` (setup, binning, bands, atomic path).

The design is described in :mod:`lumigrad.ops._rasterize_funcs`, which holds the per-triangle
and per-pixel functions shared with the backward (:mod:`lumigrad.ops._rasterize_grad_kernels`).
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

from lumigrad.ops._rasterize_funcs import (  # noqa: F401 - REC, _EMPTY_Z, _TILE are read by rasterize.py
    REC,
    _EMPTY_Z,
    _SPAN_SLACK,
    _TILE,
    _ceil_i,
    _edge,
    _edge_lines,
    _flat_edge,
    _floor_i,
    _fragment,
    _inside,
    _load_tri_bf,
    _load_rec,
    _resolve,
    _bbox_from_vertices,
    _setup_rec,
    _setup_tri,
    _vertex_px,
)

__all__: list[str] = []  # private module

# Triangles whose clipped pixel box has at most this many pixels skip the row-span setup
# (4 and 64 measured within noise of 16 at 82k and 1.3M triangles, 1024^2).
_SMALL_BOX = 16
# back[t] of a triangle that setup_count_cull_kernel found to cover no pixel centre.
_CULLED = 2

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.kernel
def setup_kernel(
    offset: int, pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), nf: int, nv: int,
    height: int, width: int,
    bbox: wp.array2d(dtype=wp.int32),  # [B*F, 4] out: x0, x1, y0, y1 (empty when y0 > y1)
    rec: wp.array2d(dtype=Any),  # [B*F, REC] out: see _load_rec and _setup_tri
):
    _setup_tri(pos, tri, wp.tid() + offset, nf, nv, height, width, bbox, rec)


@wp.kernel
def vertex_px_kernel(
    offset: int, n_chunks: int, pos: wp.array2d(dtype=Any), height: int, width: int,
    vpx: wp.array2d(dtype=wp.int32),  # [B*V, 4] out: see _vertex_px
    vz: wp.array(dtype=wp.float64),  # [B*V] out: z / w
):
    """Chunk c of the vertices: a loop per thread, since a kernel thread per vertex costs more
    in per-thread launch overhead than the vertex's own work."""
    c = wp.tid() + offset
    n = pos.shape[0]
    for i in range(n * c // n_chunks, n * (c + 1) // n_chunks):
        x0, x1, y0, y1, zw = _vertex_px(pos, i, height, width)
        vpx[i, 0] = x0
        vpx[i, 1] = x1
        vpx[i, 2] = y0
        vpx[i, 3] = y1
        vz[i] = zw


@wp.func
def _setup_count(
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), t: int, b: int, f: int, nv: int,
    x0: int, x1: int, y0: int, y1: int, zmin: Any, bbox: wp.array2d(dtype=wp.int32), rec: wp.array2d(dtype=Any),
    back: wp.array(dtype=wp.int8), zlo: wp.array(dtype=Any), counts: wp.array2d(dtype=wp.int32), c: int,
    band_shift: int, bands_per_img: int,
):
    """Triangle t's record (_setup_rec), and one count in each band its box touches (chunk c's column)."""
    y0, y1, bk, zl = _setup_rec(pos, tri, t, b, f, nv, x0, x1, y0, y1, zmin, bbox, rec)
    if y0 <= y1:
        back[t] = wp.int8(bk)
        zlo[t] = zl
        g0 = b * bands_per_img
        for band in range(y0 >> band_shift, (y1 >> band_shift) + 1):
            counts[g0 + band, c] = counts[g0 + band, c] + 1


@wp.kernel
def setup_count_kernel(
    offset: int, n_chunks: int, n_tris: int, band_shift: int, bands_per_img: int,
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), nf: int, nv: int, height: int, width: int,
    bbox: wp.array2d(dtype=wp.int32), rec: wp.array2d(dtype=Any),
    vpx: wp.array2d(dtype=wp.int32), vz: wp.array(dtype=wp.float64),  # from vertex_px_kernel
    back: wp.array(dtype=wp.int8),  # [B*F] out: 1 for a back face (see _setup_rec), set when bbox is not empty
    zlo: wp.array(dtype=Any),  # [B*F] out: z lower bound (see _setup_rec), set when bbox is not empty
    counts: wp.array2d(dtype=wp.int32),  # [n_bands, n_chunks], zeroed
):
    """CPU: setup_kernel over chunk c of the triangles, counting them per band (column c of counts).

    Bands have 2**band_shift rows (a shift, not an integer division, per triangle).
    """
    c = wp.tid() + offset
    t0 = n_tris * c // n_chunks
    b = t0 // nf
    f = t0 - b * nf
    for t in range(t0, n_tris * (c + 1) // n_chunks):
        x0, x1, y0, y1, zmin = _bbox_from_vertices(pos, tri, b, f, nf, nv, height, width, vpx, vz)
        _setup_count(pos, tri, t, b, f, nv, x0, x1, y0, y1, zmin, bbox, rec, back, zlo, counts, c, band_shift,
                     bands_per_img)
        f += 1
        if f == nf:
            f = 0
            b += 1


@wp.kernel
def setup_count_cull_kernel(
    offset: int, n_chunks: int, n_tris: int, band_shift: int, bands_per_img: int,
    pos: wp.array2d(dtype=Any), tri: wp.array2d(dtype=wp.int32), nf: int, nv: int, height: int, width: int,
    bbox: wp.array2d(dtype=wp.int32), rec: wp.array2d(dtype=Any),
    vpx: wp.array2d(dtype=wp.int32), vz: wp.array(dtype=wp.float64),
    back: wp.array(dtype=wp.int8), zlo: wp.array(dtype=Any), counts: wp.array2d(dtype=wp.int32),
    xs: wp.array(dtype=Any), ys: wp.array(dtype=Any),  # pixel centres, as in raster_bands_kernel
):
    """setup_count_kernel for meshes much denser than the pixels: a triangle whose box is one
    pixel and whose edge rows reject its centre (the test of _fragment, so the band pass would
    draw nothing) gets back = _CULLED and no z plane, record or band entry (bbox as setup_kernel).

    A kernel of its own: the test's outcome is random, and its mispredictions cost ~20 ns a
    tested triangle, which pays only where most boxes are one pixel (1.3M triangles at 256^2:
    -11 % in all; at 1024^2 +2 %); as an option of setup_count_kernel, the extra code alone made
    that 3-6 % slower with the option off.
    """
    c = wp.tid() + offset
    t0 = n_tris * c // n_chunks
    b = t0 // nf
    f = t0 - b * nf
    zero = rec.dtype(0.0)
    for t in range(t0, n_tris * (c + 1) // n_chunks):
        x0, x1, y0, y1, zmin = _bbox_from_vertices(pos, tri, b, f, nf, nv, height, width, vpx, vz)
        culled = int(0)
        if x0 == x1 and y0 == y1:
            c0, c1, c2, zc, r0, r1, r2, det, scale = _load_tri_bf(pos, tri, b, f, nv)
            px = xs[x0]
            py = ys[y0]
            if det != zero and not _inside(_edge(r0, px, py), _edge(r1, px, py), _edge(r2, px, py), r0, r1, r2):
                culled = 1
        if culled != 0:
            bbox[t, 0] = x0
            bbox[t, 1] = x1
            bbox[t, 2] = y0
            bbox[t, 3] = y1
            back[t] = wp.int8(_CULLED)
        else:
            _setup_count(pos, tri, t, b, f, nv, x0, x1, y0, y1, zmin, bbox, rec, back, zlo, counts, c, band_shift,
                         bands_per_img)
        f += 1
        if f == nf:
            f = 0
            b += 1


@wp.kernel
def bin_fill_kernel(
    offset: int, n_chunks: int, n_tris: int, nf: int, band_shift: int, bands_per_img: int,
    bbox: wp.array2d(dtype=wp.int32),
    back: wp.array(dtype=wp.int8),  # 0 front, 1 back face, _CULLED: not listed (setup_count_cull_kernel)
    zlo: wp.array(dtype=Any),
    cursor: wp.array2d(dtype=wp.int32),  # [n_bands, n_chunks] exclusive prefix sums, advanced in place
    tlist: wp.array(dtype=wp.int32),  # [total] out: triangles per band, ascending; a back face t as -1 - t
    tcull: wp.array2d(dtype=wp.int32),  # [total, 2] out, back faces only: first and last tile column
    tz: wp.array(dtype=Any),  # [total] out, back faces only: zlo
):
    c = wp.tid() + offset
    t0 = n_tris * c // n_chunks
    b = t0 // nf
    f = t0 - b * nf
    for t in range(t0, n_tris * (c + 1) // n_chunks):
        y0 = bbox[t, 2]
        y1 = bbox[t, 3]
        if y0 <= y1:
            b8 = back[t]
            if b8 != wp.int8(_CULLED):
                g0 = b * bands_per_img
                # What the band pass needs to skip a hidden back face rides in the list (read in
                # order there), so it touches no per-triangle array for the faces it skips.
                bk = b8 != wp.int8(0)
                e = wp.where(bk, -1 - t, t)
                for band in range(y0 >> band_shift, (y1 >> band_shift) + 1):
                    k = cursor[g0 + band, c]
                    tlist[k] = e
                    if bk:
                        tcull[k, 0] = bbox[t, 0] // _TILE
                        tcull[k, 1] = bbox[t, 1] // _TILE
                        tz[k] = zlo[t]
                    cursor[g0 + band, c] = k + 1
        f += 1
        if f == nf:
            f = 0
            b += 1


@wp.func
def _depth_test(zbuf: wp.array2d(dtype=Any), ibuf: wp.array2d(dtype=wp.int32), slot: int, q: int, z: Any, fid: int):
    # Sequential within a band: nearest z wins, ties go to the smaller id. An empty pixel holds
    # z = _EMPTY_Z, behind any accepted z (<= 1), so its id is never read and needs no clearing.
    zq = zbuf[slot, q]
    if z < zq or (z == zq and fid < ibuf[slot, q]):
        zbuf[slot, q] = z
        ibuf[slot, q] = fid


@wp.func
def _raster_spans(
    r0: Any, r1: Any, r2: Any, zp: Any, fid: int, x0: int, x1: int, i0: int, i1: int, row0: int, width: int,
    xs: wp.array(dtype=Any), ys: wp.array(dtype=Any), zbuf: wp.array2d(dtype=Any), ibuf: wp.array2d(dtype=wp.int32),
    slot: int, tol: float,
):
    """Depth-test a triangle row by row over conservative spans, exact edge tests only near the span ends."""
    zero = xs.dtype(0.0)
    one = xs.dtype(1.0)
    half = wp.float64(0.5)
    onep = wp.float64(1.0)
    hw = wp.float64(width) * half
    slack = wp.float64(_SPAN_SLACK)
    far = wp.float64(4.0)
    k = wp.float64(3 * width + 8)  # span ends lie in [-far, far] NDC: |column| < 3 W
    # Lines bounding each row's span from the left (lX) and right (hX).
    lb0, lo0, li0, hb0, ho0, hi0 = _edge_lines(r0, tol)
    lb1, lo1, li1, hb1, ho1, hi1 = _edge_lines(r1, tol)
    lb2, lo2, li2, hb2, ho2, hi2 = _edge_lines(r2, tol)
    flat = r0[0] == zero or r1[0] == zero or r2[0] == zero
    for i in range(i0, i1 + 1):
        py = ys[i]
        y = wp.float64(py)
        # Clamped to [-4, 4] NDC (the image is [-1, 1]) so that the column conversions below stay
        # in range: a nearly horizontal edge (tiny a) puts its line far outside, and an unclamped
        # value past int32 made the truncations wrap and draw pixels outside the triangle.
        lo = wp.clamp(wp.max(lb0 * y + lo0, wp.max(lb1 * y + lo1, lb2 * y + lo2)), -far, far)
        hi = wp.clamp(wp.min(hb0 * y + ho0, wp.min(hb1 * y + ho1, hb2 * y + ho2)), -far, far)
        lo_in = wp.clamp(wp.max(lb0 * y + li0, wp.max(lb1 * y + li1, lb2 * y + li2)), -far, far)
        hi_in = wp.clamp(wp.min(hb0 * y + hi0, wp.min(hb1 * y + hi1, hb2 * y + hi2)), -far, far)
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
def _raster_tri(
    rec: wp.array2d(dtype=Any), t: int, fid: int, x0: int, x1: int, i0: int, i1: int, row0: int, width: int,
    xs: wp.array(dtype=Any), ys: wp.array(dtype=Any), zbuf: wp.array2d(dtype=Any), ibuf: wp.array2d(dtype=wp.int32),
    slot: int, tol: float,
):
    """Depth-test triangle t over rows i0..i1 and columns x0..x1 into this task's band scratch."""
    r0, r1, r2, zp = _load_rec(rec, t)
    if (x1 - x0 + 1) * (i1 - i0 + 1) <= _SMALL_BOX:
        # Most triangles of a dense mesh: test each pixel exactly, as the atomic path does,
        # instead of setting up the row spans (which accept exactly the same pixels).
        for i in range(i0, i1 + 1):
            py = ys[i]
            q0 = (i - row0) * width
            for j in range(x0, x1 + 1):
                hit, z = _fragment(xs[j], py, r0, r1, r2, zp)
                if hit:
                    _depth_test(zbuf, ibuf, slot, q0 + j, z, fid)
    else:
        _raster_spans(r0, r1, r2, zp, fid, x0, x1, i0, i1, row0, width, xs, ys, zbuf, ibuf, slot, tol)


@wp.func
def _tile_max_depth(zbuf: wp.array2d(dtype=Any), tmax: wp.array2d(dtype=Any), slot: int, rows: int, width: int):
    """Farthest depth per tile of the band so far; an empty pixel (z = _EMPTY_Z) is farther than any."""
    for tile in range((width + _TILE - 1) // _TILE):
        far = zbuf.dtype(-8.0)
        for i in range(rows):
            for j in range(tile * _TILE, wp.min(tile * _TILE + _TILE, width)):
                far = wp.max(far, zbuf[slot, i * width + j])
        tmax[slot, tile] = far


@wp.kernel
def raster_bands_kernel(
    offset: int, stride: int, n_bands: int, band_rows: int, bands_per_img: int, height: int, width: int, nf: int,
    xs: wp.array(dtype=Any),  # [W] pixel-centre x_ndc
    ys: wp.array(dtype=Any),  # [H] pixel-centre y_ndc
    rec: wp.array2d(dtype=Any), bbox: wp.array2d(dtype=wp.int32),
    band_start: wp.array(dtype=wp.int32),  # [n_bands + 1] CSR offsets into tlist
    tlist: wp.array(dtype=wp.int32), tcull: wp.array2d(dtype=wp.int32), tz: wp.array(dtype=Any),  # see bin_fill_kernel
    zbuf: wp.array2d(dtype=Any),  # [tasks, band_rows * W] scratch depth (_EMPTY_Z: empty); row `offset` is this task's
    ibuf: wp.array2d(dtype=wp.int32),  # [tasks, band_rows * W] scratch id + 1, valid where zbuf is not empty
    tmax: wp.array2d(dtype=Any),  # [tasks, ceil(W / _TILE)] scratch max depth per tile
    rast: wp.array(dtype=Any),  # [B*H*W] vec4 out
    db: wp.array(dtype=Any),  # [B*H*W] vec4 out (untouched unless want_db)
    want_db: int, tol: float,
    ids: wp.array(dtype=wp.int32),  # [B*H*W] out when want_ids: triangle id (-1: empty), instead of rast and db
    want_ids: int,
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
    empty = xs.dtype(_EMPTY_Z)
    if wp.tid() == 0:
        # The task's first band; the resolve below leaves the scratch empty again for the next one.
        for q in range(band_rows * width):
            zbuf[slot, q] = empty
    nback = int(0)
    # Two passes over the band's triangles: front faces (phase 0), then the rest, skipping
    # any whose z lower bound is behind everything already drawn in the tiles it spans.
    # For closed meshes this drops most back faces before any per-row work. Order does
    # not change the result: the depth test breaks ties by id explicitly.
    for phase in range(2):
        if phase == 1 and nback == 0:
            continue  # no back faces: no tile depths to compute
        if phase == 1:
            _tile_max_depth(zbuf, tmax, slot, row1 - row0, width)
        for k in range(band_start[g], band_start[g + 1]):
            t = tlist[k]
            if (t < 0) != (phase == 1):
                nback += 1
                continue
            if t < 0:
                far = xs.dtype(-8.0)
                for tile in range(tcull[k, 0], tcull[k, 1] + 1):
                    far = wp.max(far, tmax[slot, tile])
                if tz[k] > far:
                    continue
                t = -1 - t
            x0 = bbox[t, 0]
            x1 = bbox[t, 1]
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
            zq = zbuf[slot, q0 + j]
            if zq != empty:
                zbuf[slot, q0 + j] = empty
                fid = ibuf[slot, q0 + j]
                if want_ids != 0:
                    ids[p] = fid - 1
                else:
                    _resolve(rast, db, p, xs[j], py, rec, b * nf + fid - 1, zq, xs.dtype(fid), want_db, sx, sy)
            elif want_ids != 0:
                ids[p] = -1
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
