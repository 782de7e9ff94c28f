"""Warp kernels of :func:`lumigrad.ops.transform.transform_points` (one Warp module).

A kernel thread handles a span of rows ``i = b * V + v`` (batch-major) and carries ``(b, v)``
along its span instead of dividing per row. Matrices are ``mat44``/``mat44d`` rows, points
``vec3``, results ``vec4``. The sums run in the order of torch's ``p @ M[:3].T + M[3]``
(x, y, z terms, then the translation), so the results match torch's to rounding.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["transform_fwd", "transform_bwd"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.kernel
def transform_fwd(
    offset: int, span: int, n: int, nv: int,  # rows (tid + offset) * span onwards, below n = B * V
    shared: int,  # 1: one point set for every matrix
    mats: wp.array(dtype=Any),  # [B] mat44 / mat44d
    pts: wp.array(dtype=Any),  # [Bp * V] vec3 / vec3d, Bp = 1 (shared) or B
    out: wp.array(dtype=Any),  # [B * V] vec4 / vec4d: M @ (p, 1)
):
    i0 = (wp.tid() + offset) * span
    b = i0 // nv
    v = i0 - b * nv
    m = mats[wp.min(b, mats.shape[0] - 1)]  # loaded once per matrix, not per row
    for i in range(i0, wp.min(i0 + span, n)):
        p = pts[v]
        if shared == 0:
            p = pts[i]
        out[i] = wp.vector(
            m[0, 0] * p[0] + m[0, 1] * p[1] + m[0, 2] * p[2] + m[0, 3],
            m[1, 0] * p[0] + m[1, 1] * p[1] + m[1, 2] * p[2] + m[1, 3],
            m[2, 0] * p[0] + m[2, 1] * p[1] + m[2, 2] * p[2] + m[2, 3],
            m[3, 0] * p[0] + m[3, 1] * p[1] + m[3, 2] * p[2] + m[3, 3],
        )
        v += 1
        if v == nv:
            v = 0
            b += 1
            if b < mats.shape[0]:
                m = mats[b]


@wp.func
def _pull(m: Any, g: Any):
    """``M[:, :3]^T g``: a result row's gradient pulled back to its point."""
    return wp.vector(
        g[0] * m[0, 0] + g[1] * m[1, 0] + g[2] * m[2, 0] + g[3] * m[3, 0],
        g[0] * m[0, 1] + g[1] * m[1, 1] + g[2] * m[2, 1] + g[3] * m[3, 1],
        g[0] * m[0, 2] + g[1] * m[1, 2] + g[2] * m[2, 2] + g[3] * m[3, 2],
    )


@wp.kernel
def transform_bwd(
    offset: int, span: int, n: int, nv: int, nb: int,  # point rows below n = Bp * V; nb = B matrices
    shared: int,  # 1: Bp = 1, each point sums the gradients of all B results
    mats: wp.array(dtype=Any),  # [B] mat44 / mat44d
    grad: wp.array(dtype=Any),  # [B * V] vec4 / vec4d d loss / d out
    out: wp.array(dtype=Any),  # [Bp * V] vec3 / vec3d d loss / d pts
):
    i0 = (wp.tid() + offset) * span
    for i in range(i0, wp.min(i0 + span, n)):
        if shared == 0:
            out[i] = _pull(mats[i // nv], grad[i])
        else:
            acc = _pull(mats[0], grad[i])
            for b in range(1, nb):
                acc = acc + _pull(mats[b], grad[b * nv + i])
            out[i] = acc
