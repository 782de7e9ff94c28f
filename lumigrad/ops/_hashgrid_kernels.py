"""Warp kernels for :func:`lumigrad.ops.hashgrid.hash_encode` (one Warp module).

Forward: one thread per (level, point), level-major, trilinear interpolation of the level's
8 corner features. Backward: the same threads scatter ``weight * grad`` into a
gradient table. Points share table entries, so the wrapper gives every CPU
chunk its own table copy (reduced in torch afterwards); within one launch CPU
threads run in sequence and CUDA uses atomics, so ``wp.atomic_add`` is exact.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["hash_fwd", "hash_bwd"]

_PRIME_Y = wp.constant(wp.uint32(2654435761))
_PRIME_Z = wp.constant(wp.uint32(805459861))


@wp.func
def _corner_index(ix: int, iy: int, iz: int, res: int, dense: int, table_size: int):
    if dense != 0:
        v = res + 1
        return ix + iy * v + iz * v * v
    h = wp.uint32(ix) ^ (wp.uint32(iy) * _PRIME_Y) ^ (wp.uint32(iz) * _PRIME_Z)
    return int(h % wp.uint32(table_size))


@wp.kernel
def hash_fwd(
    offset: int,
    x: wp.array2d(dtype=Any),  # [N, 3] in [0, 1]
    table: wp.array3d(dtype=Any),  # [L, T, F]
    res: wp.array(dtype=wp.int32),  # [L] cells per axis
    dense: wp.array(dtype=wp.int32),  # [L] 1 = direct indexing
    out: wp.array2d(dtype=Any),  # [N, L*F]
):
    tid = wp.tid() + offset
    # Level-major thread order: consecutive threads read one level's table (cache-friendly).
    N = x.shape[0]
    lvl = tid // N
    n = tid - lvl * N
    r = res[lvl]
    T = table.shape[1]
    F = table.shape[2]
    one = x.dtype(1.0)
    rf = x.dtype(float(r))
    px = wp.clamp(x[n, 0], x.dtype(0.0), one) * rf
    py = wp.clamp(x[n, 1], x.dtype(0.0), one) * rf
    pz = wp.clamp(x[n, 2], x.dtype(0.0), one) * rf
    ix = wp.min(int(wp.floor(px)), r - 1)
    iy = wp.min(int(wp.floor(py)), r - 1)
    iz = wp.min(int(wp.floor(pz)), r - 1)
    fx = px - x.dtype(float(ix))
    fy = py - x.dtype(float(iy))
    fz = pz - x.dtype(float(iz))
    for f in range(F):
        out[n, lvl * F + f] = x.dtype(0.0)
    for c in range(8):
        dx = c & 1
        dy = (c >> 1) & 1
        dz = (c >> 2) & 1
        wx = fx
        if dx == 0:
            wx = one - fx
        wy = fy
        if dy == 0:
            wy = one - fy
        wz = fz
        if dz == 0:
            wz = one - fz
        w = wx * wy * wz
        idx = _corner_index(ix + dx, iy + dy, iz + dz, r, dense[lvl], T)
        for f in range(F):
            out[n, lvl * F + f] = out[n, lvl * F + f] + w * table[lvl, idx, f]


@wp.kernel
def hash_bwd(
    offset: int,
    buf: int,
    x: wp.array2d(dtype=Any),  # [N, 3]
    res: wp.array(dtype=wp.int32),
    dense: wp.array(dtype=wp.int32),
    grad_out: wp.array2d(dtype=Any),  # [N, L*F]
    grad_table: wp.array3d(dtype=Any),  # [n_buf * L, T, F]
):
    tid = wp.tid() + offset
    L = res.shape[0]
    N = x.shape[0]
    lvl = tid // N
    n = tid - lvl * N
    r = res[lvl]
    T = grad_table.shape[1]
    F = grad_table.shape[2]
    one = x.dtype(1.0)
    rf = x.dtype(float(r))
    px = wp.clamp(x[n, 0], x.dtype(0.0), one) * rf
    py = wp.clamp(x[n, 1], x.dtype(0.0), one) * rf
    pz = wp.clamp(x[n, 2], x.dtype(0.0), one) * rf
    ix = wp.min(int(wp.floor(px)), r - 1)
    iy = wp.min(int(wp.floor(py)), r - 1)
    iz = wp.min(int(wp.floor(pz)), r - 1)
    fx = px - x.dtype(float(ix))
    fy = py - x.dtype(float(iy))
    fz = pz - x.dtype(float(iz))
    row = buf * L + lvl
    for c in range(8):
        dx = c & 1
        dy = (c >> 1) & 1
        dz = (c >> 2) & 1
        wx = fx
        if dx == 0:
            wx = one - fx
        wy = fy
        if dy == 0:
            wy = one - fy
        wz = fz
        if dz == 0:
            wz = one - fz
        w = wx * wy * wz
        idx = _corner_index(ix + dx, iy + dy, iz + dz, r, dense[lvl], T)
        for f in range(F):
            wp.atomic_add(grad_table, row, idx, f, w * grad_out[n, lvl * F + f])
