"""Warp kernels for :func:`lumigrad.ops.march.march_grid` (one Warp module).

One thread per ray. Both kernels replay the same fixed-step march
(``t0 = t_near + (k + offset) step``, ``t1 = t0 + step``, sample at the
midpoint, stop at ``t_far``) and test the midpoint's occupancy-grid cell:
:func:`march_count` counts the kept steps, :func:`march_fill` writes them at
the ray's packed start (exclusive cumsum of the counts). Sampling has no
gradient, so no backward.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["march_count", "march_fill"]


@wp.func
def _occupied(occ: wp.array(dtype=wp.uint8), res: int, aabb: wp.array(dtype=Any), px: Any, py: Any, pz: Any):
    if px < aabb[0] or py < aabb[1] or pz < aabb[2] or px > aabb[3] or py > aabb[4] or pz > aabb[5]:
        return False
    r = aabb.dtype(float(res))
    ix = wp.clamp(int((px - aabb[0]) / (aabb[3] - aabb[0]) * r), 0, res - 1)
    iy = wp.clamp(int((py - aabb[1]) / (aabb[4] - aabb[1]) * r), 0, res - 1)
    iz = wp.clamp(int((pz - aabb[2]) / (aabb[5] - aabb[2]) * r), 0, res - 1)
    return occ[(ix * res + iy) * res + iz] != wp.uint8(0)


@wp.kernel
def march_count(
    offset: int,
    origins: wp.array2d(dtype=Any),  # [R, 3]
    dirs: wp.array2d(dtype=Any),  # [R, 3]
    t_near: wp.array(dtype=Any),  # [R]
    t_far: wp.array(dtype=Any),  # [R]
    offs: wp.array(dtype=Any),  # [R] start offset in [0, 1) steps
    step: Any,
    n_max: int,
    occ: wp.array(dtype=wp.uint8),  # [res^3] x-major
    res: int,
    aabb: wp.array(dtype=Any),  # [6] the grid's box
    counts: wp.array(dtype=wp.int32),  # [R]
):
    i = wp.tid() + offset
    half = t_near.dtype(0.5)
    c = int(0)
    for k in range(n_max):
        t0 = t_near[i] + (t_near.dtype(float(k)) + offs[i]) * step
        t1 = t0 + step
        mid = half * (t0 + t1)
        if mid >= t_far[i]:
            break
        if _occupied(occ, res, aabb, origins[i, 0] + dirs[i, 0] * mid, origins[i, 1] + dirs[i, 1] * mid,
                     origins[i, 2] + dirs[i, 2] * mid):
            c = c + 1
    counts[i] = c


@wp.kernel
def march_fill(
    offset: int,
    origins: wp.array2d(dtype=Any),
    dirs: wp.array2d(dtype=Any),
    t_near: wp.array(dtype=Any),
    t_far: wp.array(dtype=Any),
    offs: wp.array(dtype=Any),
    step: Any,
    n_max: int,
    occ: wp.array(dtype=wp.uint8),
    res: int,
    aabb: wp.array(dtype=Any),
    starts: wp.array(dtype=wp.int32),  # [R] exclusive cumsum of counts
    ray_ids: wp.array(dtype=wp.int64),  # [S]
    t_starts: wp.array(dtype=Any),  # [S]
    t_ends: wp.array(dtype=Any),  # [S]
):
    i = wp.tid() + offset
    half = t_near.dtype(0.5)
    j = starts[i]
    for k in range(n_max):
        t0 = t_near[i] + (t_near.dtype(float(k)) + offs[i]) * step
        t1 = t0 + step
        mid = half * (t0 + t1)
        if mid >= t_far[i]:
            break
        if _occupied(occ, res, aabb, origins[i, 0] + dirs[i, 0] * mid, origins[i, 1] + dirs[i, 1] * mid,
                     origins[i, 2] + dirs[i, 2] * mid):
            ray_ids[j] = wp.int64(i)
            t_starts[j] = t0
            t_ends[j] = t1
            j = j + 1
