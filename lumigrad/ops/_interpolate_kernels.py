"""Warp kernels for :func:`lumigrad.ops.interpolate.interpolate` (one Warp module).

All kernels run one thread per pixel over flattened views: ``rast [P, 4]`` with
P = B*H*W, ``attr [Ba*V, C]`` (Ba = 1 broadcasts over the batch). Every thread
writes only its own pixel's rows, so chunks launched in parallel never race.
The backward kernel writes per-pixel vertex contributions that the wrapper
reduces with ``index_add_``. Kernels write every element of their outputs
(zeros for empty pixels), so the wrapper allocates them with ``torch.empty``.
"""
from __future__ import annotations

from typing import Any

import warp as wp

__all__ = ["interpolate_fwd", "interpolate_bwd"]

# Every kernel here has a hand-written backward; skip Warp's generated adjoints.
wp.set_module_options({"enable_backward": False})


@wp.func
def _corner_rows(p: int, f: int, tri: wp.array2d(dtype=wp.int32), pix_per_batch: int, num_verts: int, attr_batched: int):
    base = int(0)
    if attr_batched != 0:
        base = (p // pix_per_batch) * num_verts
    return base + tri[f, 0], base + tri[f, 1], base + tri[f, 2]


@wp.kernel
def interpolate_fwd(
    offset: int,
    attr: wp.array2d(dtype=Any),  # [Ba*V, C]
    rast: wp.array2d(dtype=Any),  # [P, 4]
    rast_db: wp.array2d(dtype=Any),  # [P, 4], or [1, 4] unused when has_da == 0
    tri: wp.array2d(dtype=wp.int32),  # [F, 3]
    diff: wp.array(dtype=wp.int32),  # [D] channel indices
    pix_per_batch: int,
    num_verts: int,
    attr_batched: int,
    has_da: int,
    out: wp.array2d(dtype=Any),  # [P, C]
    out_da: wp.array2d(dtype=Any),  # [P, 2D] or [1, 1] unused
):
    p = wp.tid() + offset
    t = int(rast[p, 3])
    if t <= 0:
        for c in range(out.shape[1]):
            out[p, c] = attr.dtype(0.0)
        if has_da != 0:
            for k in range(out_da.shape[1]):
                out_da[p, k] = attr.dtype(0.0)
        return
    i0, i1, i2 = _corner_rows(p, t - 1, tri, pix_per_batch, num_verts, attr_batched)
    u = rast[p, 0]
    v = rast[p, 1]
    w = attr.dtype(1.0) - u - v
    for c in range(out.shape[1]):
        out[p, c] = u * attr[i0, c] + v * attr[i1, c] + w * attr[i2, c]
    if has_da != 0:
        dudx = rast_db[p, 0]
        dudy = rast_db[p, 1]
        dvdx = rast_db[p, 2]
        dvdy = rast_db[p, 3]
        for k in range(diff.shape[0]):
            c = diff[k]
            e0 = attr[i0, c] - attr[i2, c]
            e1 = attr[i1, c] - attr[i2, c]
            out_da[p, 2 * k] = e0 * dudx + e1 * dvdx
            out_da[p, 2 * k + 1] = e0 * dudy + e1 * dvdy


@wp.kernel
def interpolate_bwd(
    offset: int,
    attr: wp.array2d(dtype=Any),  # [Ba*V, C]
    rast: wp.array2d(dtype=Any),  # [P, 4]
    rast_db: wp.array2d(dtype=Any),  # [P, 4] or dummy
    tri: wp.array2d(dtype=wp.int32),
    diff: wp.array(dtype=wp.int32),
    pix_per_batch: int,
    num_verts: int,
    attr_batched: int,
    has_da: int,
    want_attr: int,
    grad_out: wp.array2d(dtype=Any),  # [P, C]
    grad_out_da: wp.array2d(dtype=Any),  # [P, 2D] or dummy
    grad_rast: wp.array2d(dtype=Any),  # [P, 4]
    grad_rast_db: wp.array2d(dtype=Any),  # [P, 4] or dummy
    grad_attr_pix: wp.array2d(dtype=Any),  # [3P, C] or dummy
    attr_rows: wp.array(dtype=wp.int32),  # [3P] or dummy
):
    p = wp.tid() + offset
    zero = attr.dtype(0.0)
    for k in range(4):
        grad_rast[p, k] = zero
        if has_da != 0:
            grad_rast_db[p, k] = zero
    if want_attr != 0:
        for k in range(3):
            attr_rows[3 * p + k] = 0
            for c in range(grad_attr_pix.shape[1]):
                grad_attr_pix[3 * p + k, c] = zero
    t = int(rast[p, 3])
    if t <= 0:
        return
    i0, i1, i2 = _corner_rows(p, t - 1, tri, pix_per_batch, num_verts, attr_batched)
    u = rast[p, 0]
    v = rast[p, 1]
    w = attr.dtype(1.0) - u - v
    gu = zero
    gv = zero
    for c in range(grad_out.shape[1]):
        g = grad_out[p, c]
        gu += g * (attr[i0, c] - attr[i2, c])
        gv += g * (attr[i1, c] - attr[i2, c])
        if want_attr != 0:
            grad_attr_pix[3 * p, c] = g * u
            grad_attr_pix[3 * p + 1, c] = g * v
            grad_attr_pix[3 * p + 2, c] = g * w
    grad_rast[p, 0] = gu
    grad_rast[p, 1] = gv
    if want_attr != 0:
        attr_rows[3 * p] = i0
        attr_rows[3 * p + 1] = i1
        attr_rows[3 * p + 2] = i2
    if has_da != 0:
        dudx = rast_db[p, 0]
        dudy = rast_db[p, 1]
        dvdx = rast_db[p, 2]
        dvdy = rast_db[p, 3]
        g0 = zero
        g1 = zero
        g2 = zero
        g3 = zero
        for k in range(diff.shape[0]):
            c = diff[k]
            gx = grad_out_da[p, 2 * k]
            gy = grad_out_da[p, 2 * k + 1]
            e0 = attr[i0, c] - attr[i2, c]
            e1 = attr[i1, c] - attr[i2, c]
            g0 += gx * e0
            g1 += gy * e0
            g2 += gx * e1
            g3 += gy * e1
            if want_attr != 0:
                ga = gx * dudx + gy * dudy
                gb = gx * dvdx + gy * dvdy
                # Repeated channels in diff accumulate, hence += on this pixel's own rows.
                grad_attr_pix[3 * p, c] = grad_attr_pix[3 * p, c] + ga
                grad_attr_pix[3 * p + 1, c] = grad_attr_pix[3 * p + 1, c] + gb
                grad_attr_pix[3 * p + 2, c] = grad_attr_pix[3 * p + 2, c] - ga - gb
        grad_rast_db[p, 0] = g0
        grad_rast_db[p, 1] = g1
        grad_rast_db[p, 2] = g2
        grad_rast_db[p, 3] = g3
