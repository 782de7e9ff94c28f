"""Warp kernels of :func:`lumigrad.ops.transform.transform_points` (one Warp module).

A kernel thread handles a span of rows of one matrix's batch (threads ``b * tpb .. (b + 1) * tpb - 1``
cover batch b), so it loads its matrix once and runs a tight loop with no per-row division or branch:
that loop ran in 2.4 ms against 3.9 ms for one that carried ``(b, v)`` along a span crossing batches
(655k rows, 1 thread). Matrices are ``mat44``/``mat44d`` rows, points ``vec3``, results ``vec4``. The
sums run in the order of torch's ``p @ M[:3].T + M[3]`` (x, y, z terms, then the translation), so the
results match torch's to rounding (bitwise for one matrix per point set, in the tests).
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["transform_fwd", "transform_bwd"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.func
def _apply(m: Any, p: Any):
    """``M @ (p, 1)``."""
    return wp.vector(
        m[0, 0] * p[0] + m[0, 1] * p[1] + m[0, 2] * p[2] + m[0, 3],
        m[1, 0] * p[0] + m[1, 1] * p[1] + m[1, 2] * p[2] + m[1, 3],
        m[2, 0] * p[0] + m[2, 1] * p[1] + m[2, 2] * p[2] + m[2, 3],
        m[3, 0] * p[0] + m[3, 1] * p[1] + m[3, 2] * p[2] + m[3, 3],
    )


@wp.func
def _pull(m: Any, g: Any):
    """``M[:, :3]^T g``: a result row's gradient pulled back to its point."""
    return wp.vector(
        g[0] * m[0, 0] + g[1] * m[1, 0] + g[2] * m[2, 0] + g[3] * m[3, 0],
        g[0] * m[0, 1] + g[1] * m[1, 1] + g[2] * m[2, 1] + g[3] * m[3, 1],
        g[0] * m[0, 2] + g[1] * m[1, 2] + g[2] * m[2, 2] + g[3] * m[3, 2],
    )


@wp.kernel
def transform_fwd(
    offset: int, span: int, tpb: int, nv: int,  # thread t: batch t // tpb, rows (t % tpb) * span onwards, < nv
    shared: int,  # 1: one point set for every matrix
    mats: wp.array(dtype=Any),  # [B] mat44 / mat44d
    pts: wp.array(dtype=Any),  # [Bp * V] vec3 / vec3d, Bp = 1 (shared) or B
    out: wp.array(dtype=Any),  # [B * V] vec4 / vec4d: M @ (p, 1)
):
    t = wp.tid() + offset
    b = t // tpb
    j0 = (t - b * tpb) * span
    j1 = wp.min(j0 + span, nv)
    m = mats[b]
    o = b * nv
    if shared != 0:
        for j in range(j0, j1):
            out[o + j] = _apply(m, pts[j])
    else:
        for j in range(j0, j1):
            out[o + j] = _apply(m, pts[o + j])


@wp.kernel
def transform_bwd(
    offset: int, span: int, tpb: int, nv: int, nb: int,  # thread t: point set t // tpb; nb = B matrices
    shared: int,  # 1: Bp = 1, each point sums the gradients of all B results
    mats: wp.array(dtype=Any),  # [B] mat44 / mat44d
    grad: wp.array(dtype=Any),  # [B * V] vec4 / vec4d d loss / d out
    out: wp.array(dtype=Any),  # [Bp * V] vec3 / vec3d d loss / d pts
):
    t = wp.tid() + offset
    bp = t // tpb
    j0 = (t - bp * tpb) * span
    j1 = wp.min(j0 + span, nv)
    o = bp * nv
    if shared == 0 or nb == 1:
        m = mats[bp]
        for j in range(j0, j1):
            out[o + j] = _pull(m, grad[o + j])
    else:
        for j in range(j0, j1):
            acc = _pull(mats[0], grad[j])
            for b in range(1, nb):
                acc = acc + _pull(mats[b], grad[b * nv + j])
            out[j] = acc
