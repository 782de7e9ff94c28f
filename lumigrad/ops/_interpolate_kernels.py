"""Warp kernels for :func:`lumigrad.ops.interpolate.interpolate` (one Warp module).

All kernels run one thread per pixel over flattened views: ``rast [P, 4]`` with
P = B*H*W, ``attr [Ba*V, C]`` (Ba = 1 broadcasts over the batch). Every thread
writes only its own pixel's rows, so chunks launched in parallel never race.
The backward kernel runs one launch per task over interleaved image rows and
adds the vertex gradients into that task's own buffer slice (CPU; the wrapper
sums the slices), or atomically into one buffer (CUDA). Kernels write every
element of their per-pixel outputs (zeros for empty pixels), so the wrapper
allocates those with ``torch.empty``.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["interpolate_fwd", "interpolate_bwd", "interpolate3_fwd", "interpolate3_bwd"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.func
def _corner_rows(p: int, f: int, tri: wp.array2d(dtype=wp.int32), pix_per_batch: int, num_verts: int, attr_batched: int):
    base = int(0)
    if attr_batched != 0:
        base = (p // pix_per_batch) * num_verts
    return base + tri[f, 0], base + tri[f, 1], base + tri[f, 2]


@wp.func
def _fwd_pixel(
    p: int,
    attr: wp.array2d(dtype=Any),
    rast: wp.array2d(dtype=Any),
    rast_db: wp.array2d(dtype=Any),
    tri: wp.array2d(dtype=wp.int32),
    diff: wp.array(dtype=wp.int32),
    pix_per_batch: int,
    num_verts: int,
    attr_batched: int,
    has_da: int,
    out: wp.array2d(dtype=Any),
    out_da: wp.array2d(dtype=Any),
):
    t = int(rast[p, 3])
    if t <= 0:
        for c in range(out.shape[1]):
            out[p, c] = attr.dtype(0.0)
        if has_da != 0:
            for k in range(out_da.shape[1]):
                out_da[p, k] = attr.dtype(0.0)
    else:
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
def interpolate_fwd(
    offset: int,
    span: int,  # pixels per thread (a Warp CPU thread costs a copy of every argument)
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
    p0 = (wp.tid() + offset) * span
    for p in range(p0, wp.min(p0 + span, rast.shape[0])):
        _fwd_pixel(p, attr, rast, rast_db, tri, diff, pix_per_batch, num_verts, attr_batched, has_da, out, out_da)


@wp.func
def _bwd_pixel(
    p: int,
    base: int,
    attr: wp.array2d(dtype=Any),
    rast: wp.array2d(dtype=Any),
    rast_db: wp.array2d(dtype=Any),
    tri: wp.array2d(dtype=wp.int32),
    diff: wp.array(dtype=wp.int32),
    pix_per_batch: int,
    num_verts: int,
    attr_batched: int,
    has_da: int,
    want_attr: int,
    grad_out: wp.array2d(dtype=Any),
    grad_out_da: wp.array2d(dtype=Any),
    grad_rast: wp.array2d(dtype=Any),
    grad_rast_db: wp.array2d(dtype=Any),
    grad_attr: wp.array2d(dtype=Any),
):
    zero = attr.dtype(0.0)
    t = int(rast[p, 3])
    if t <= 0:
        for j in range(4):
            grad_rast[p, j] = zero
            if has_da != 0:
                grad_rast_db[p, j] = zero
    else:
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
                wp.atomic_add(grad_attr, base + i0, c, g * u)
                wp.atomic_add(grad_attr, base + i1, c, g * v)
                wp.atomic_add(grad_attr, base + i2, c, g * w)
        grad_rast[p, 0] = gu
        grad_rast[p, 1] = gv
        grad_rast[p, 2] = zero
        grad_rast[p, 3] = zero
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
                    wp.atomic_add(grad_attr, base + i0, c, ga)
                    wp.atomic_add(grad_attr, base + i1, c, gb)
                    wp.atomic_add(grad_attr, base + i2, c, -ga - gb)
            grad_rast_db[p, 0] = g0
            grad_rast_db[p, 1] = g1
            grad_rast_db[p, 2] = g2
            grad_rast_db[p, 3] = g3


@wp.kernel
def interpolate_bwd(
    task: int,
    tasks: int,
    span: int,  # pixels per thread: the image width on CPU (one row), 1 on CUDA
    width: int,
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
    grad_attr: wp.array2d(dtype=Any),  # [tasks*Ba*V, C] zeroed (CPU), [Ba*V, C] (CUDA), or dummy
):
    """One launch per task over image rows task, task + tasks, ... (global rows over B*H).

    The task adds its pixels' attribute gradients into its own slice of
    ``grad_attr`` (rows ``task*Ba*V ...``): on CPU a launch runs sequentially, so
    ``atomic_add`` is a plain add and tasks never share a slice; on CUDA there is
    one task and the adds are atomic.
    """
    j0 = wp.tid() * span
    row = task + (j0 // width) * tasks
    x0 = j0 - (j0 // width) * width
    base = task * attr.shape[0]
    for x in range(x0, x0 + span):
        _bwd_pixel(
            row * width + x, base, attr, rast, rast_db, tri, diff, pix_per_batch, num_verts, attr_batched, has_da,
            want_attr, grad_out, grad_out_da, grad_rast, grad_rast_db, grad_attr,
        )  # fmt: skip


# Three channels (normals, colours, positions: the common case) without screen derivatives:
# vector loads and stores, and in the backward the attribute gradients of a run of pixels on
# one triangle are summed before they are added to its three vertices (measured 2.1x faster
# forward, 1.7-2.3x backward than the per-channel kernels above at 256²-512²).


@wp.kernel
def interpolate3_fwd(
    offset: int,
    span: int,
    attr: wp.array(dtype=Any),  # [Ba*V] vec3
    rast: wp.array(dtype=Any),  # [P] vec4
    tri: wp.array(dtype=wp.vec3i),  # [F]
    pix_per_batch: int,
    num_verts: int,
    attr_batched: int,
    out: wp.array(dtype=Any),  # [P] vec3
):
    p0 = (wp.tid() + offset) * span
    for p in range(p0, wp.min(p0 + span, rast.shape[0])):
        r = rast[p]
        t = int(r[3])
        if t <= 0:
            out[p] = out.dtype()
        else:
            base = int(0)
            if attr_batched != 0:
                base = (p // pix_per_batch) * num_verts
            f = tri[t - 1]
            u = r[0]
            v = r[1]
            out[p] = u * attr[base + f[0]] + v * attr[base + f[1]] + (type(u)(1.0) - u - v) * attr[base + f[2]]


@wp.kernel
def interpolate3_bwd(
    task: int,
    tasks: int,
    span: int,  # pixels per thread: the image width on CPU (one row), 1 on CUDA
    width: int,
    attr: wp.array(dtype=Any),  # [Ba*V] vec3
    rast: wp.array(dtype=Any),  # [P] vec4
    tri: wp.array(dtype=wp.vec3i),
    pix_per_batch: int,
    num_verts: int,
    attr_batched: int,
    want_attr: int,
    grad_out: wp.array(dtype=Any),  # [P] vec3
    grad_rast: wp.array(dtype=Any),  # [P] vec4
    grad_attr: wp.array(dtype=Any),  # [tasks*Ba*V] vec3 zeroed (CPU), [Ba*V] (CUDA), or dummy
):
    """Rows as in ``interpolate_bwd``; a run of pixels on one triangle adds its sums once."""
    j0 = wp.tid() * span
    row = task + (j0 // width) * tasks
    x0 = j0 - (j0 // width) * width
    slot = task * attr.shape[0]
    pr = row * width
    base = int(0)
    if attr_batched != 0:
        base = (pr // pix_per_batch) * num_verts  # a row lies in one image
    zero3 = grad_out.dtype()
    cur = int(0)
    i0 = int(0)
    i1 = int(0)
    i2 = int(0)
    a0 = zero3
    a1 = zero3
    a2 = zero3
    s0 = zero3
    s1 = zero3
    s2 = zero3
    for x in range(x0, x0 + span):
        p = pr + x
        r = rast[p]
        t = int(r[3])
        if t <= 0:
            t = 0
        if t != cur:
            if cur > 0 and want_attr != 0:
                wp.atomic_add(grad_attr, slot + i0, s0)
                wp.atomic_add(grad_attr, slot + i1, s1)
                wp.atomic_add(grad_attr, slot + i2, s2)
            cur = t
            if t > 0:
                f = tri[t - 1]
                i0 = base + f[0]
                i1 = base + f[1]
                i2 = base + f[2]
                a0 = attr[i0]
                a1 = attr[i1]
                a2 = attr[i2]
                s0 = zero3
                s1 = zero3
                s2 = zero3
        zero = type(r[0])(0.0)
        if t == 0:
            grad_rast[p] = grad_rast.dtype()
        else:
            g = grad_out[p]
            u = r[0]
            v = r[1]
            s0 = s0 + g * u
            s1 = s1 + g * v
            s2 = s2 + g * (type(u)(1.0) - u - v)
            grad_rast[p] = grad_rast.dtype(wp.dot(g, a0 - a2), wp.dot(g, a1 - a2), zero, zero)
    if cur > 0 and want_attr != 0:
        wp.atomic_add(grad_attr, slot + i0, s0)
        wp.atomic_add(grad_attr, slot + i1, s1)
        wp.atomic_add(grad_attr, slot + i2, s2)
