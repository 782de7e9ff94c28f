"""Warp kernels of :func:`lumigrad.ops.normals.vertex_normal_sums` (one Warp module).

A kernel thread handles a span of faces ``t = b * F + f`` (batch-major; ``start + (tid + offset) * span``
onwards, below ``end``) and adds into the
accumulation buffer ``slot``: on CPU each thread-pool task owns a slot (no races; the tasks'
buffers are summed in torch), on CUDA every thread adds into slot 0 with atomics. Warp's
``atomic_add`` is a plain add inside a sequential CPU launch, so one source serves both.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["normal_sums_fwd", "normal_sums_bwd"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.func
def _corners(faces: wp.array2d(dtype=wp.int32), t: int, nf: int, nv: int):
    b = t // nf
    f = t - b * nf
    return b * nv + faces[f, 0], b * nv + faces[f, 1], b * nv + faces[f, 2]


@wp.func
def _row(verts: wp.array2d(dtype=Any), i: int):
    return wp.vector(verts[i, 0], verts[i, 1], verts[i, 2])


@wp.func
def _add3(buf: wp.array2d(dtype=Any), r: int, g: Any):
    wp.atomic_add(buf, r, 0, g[0])
    wp.atomic_add(buf, r, 1, g[1])
    wp.atomic_add(buf, r, 2, g[2])


@wp.kernel
def normal_sums_fwd(
    offset: int, span: int, start: int, end: int, slot: int,  # faces start + (tid + offset) * span, < end
    verts: wp.array2d(dtype=Any),  # [B*V, 3]
    faces: wp.array2d(dtype=wp.int32),  # [F, 3]
    nf: int, nv: int,
    out: wp.array2d(dtype=Any),  # [slots * B*V, 3], zeroed: sum of (v1 - v0) x (v2 - v0) per vertex
):
    t0 = start + (wp.tid() + offset) * span
    base = slot * verts.shape[0]
    for t in range(t0, wp.min(t0 + span, end)):
        i0, i1, i2 = _corners(faces, t, nf, nv)
        p0 = _row(verts, i0)
        c = wp.cross(_row(verts, i1) - p0, _row(verts, i2) - p0)
        _add3(out, base + i0, c)
        _add3(out, base + i1, c)
        _add3(out, base + i2, c)


@wp.kernel
def normal_sums_bwd(
    offset: int, span: int, start: int, end: int, slot: int,
    verts: wp.array2d(dtype=Any),  # [B*V, 3]
    faces: wp.array2d(dtype=wp.int32),
    nf: int, nv: int,
    grad: wp.array2d(dtype=Any),  # [B*V, 3] d loss / d sums
    out: wp.array2d(dtype=Any),  # [slots * B*V, 3], zeroed: d loss / d verts
):
    t0 = start + (wp.tid() + offset) * span
    base = slot * verts.shape[0]
    for t in range(t0, wp.min(t0 + span, end)):
        i0, i1, i2 = _corners(faces, t, nf, nv)
        p0 = _row(verts, i0)
        e1 = _row(verts, i1) - p0
        e2 = _row(verts, i2) - p0
        # The face's cross product reaches its three corners' sums: d loss / d c = g0 + g1 + g2.
        gc = _row(grad, i0) + _row(grad, i1) + _row(grad, i2)
        g1 = wp.cross(e2, gc)  # d/d e1 of (e1 x e2) . gc
        g2 = wp.cross(gc, e1)
        _add3(out, base + i1, g1)
        _add3(out, base + i2, g2)
        _add3(out, base + i0, -(g1 + g2))
