"""Warp kernels for :mod:`lumigrad.ops.trace` (one Warp module, forward only).

Ray queries against a ``wp.Mesh`` BVH. They return integer ids and distances
and are not differentiable: :func:`lumigrad.ops.trace.reattach` recomputes the
hit differentiably in torch. Every thread writes only its own ray's outputs, so
chunks launched in parallel by :func:`lumigrad._runtime.launch.launch` never race.
"""
from __future__ import annotations

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["trace_closest", "trace_occluded"]


@wp.kernel
def trace_closest(
    offset: int,
    mesh: wp.uint64,
    origins: wp.array(dtype=wp.vec3),  # [R]
    dirs: wp.array(dtype=wp.vec3),  # [R]
    tmax: wp.array(dtype=wp.float32),  # [R]
    out_face: wp.array(dtype=wp.int32),  # [R], -1 on a miss
    out_t: wp.array(dtype=wp.float32),  # [R], tmax on a miss
):
    i = wp.tid() + offset
    q = wp.mesh_query_ray(mesh, origins[i], dirs[i], tmax[i])
    if q.result:
        out_face[i] = q.face
        out_t[i] = q.t
    else:
        out_face[i] = -1
        out_t[i] = tmax[i]


@wp.kernel
def trace_occluded(
    offset: int,
    mesh: wp.uint64,
    origins: wp.array(dtype=wp.vec3),  # [R]
    dirs: wp.array(dtype=wp.vec3),  # [R]
    tmax: wp.array(dtype=wp.float32),  # [R]
    out_hit: wp.array(dtype=wp.int32),  # [R] 1 when something lies in (0, tmax)
):
    i = wp.tid() + offset
    # Any hit ends the traversal (no search for the closest one).
    out_hit[i] = wp.where(wp.mesh_query_ray_anyhit(mesh, origins[i], dirs[i], tmax[i]), 1, 0)
