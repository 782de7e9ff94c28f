"""Warp kernels of :func:`lumigrad.ops.normals.vertex_normal_sums` and ``vertex_normals`` (one Warp module).

A kernel thread handles a span of faces ``t = b * F + f`` (batch-major; ``start + (tid + offset) * span``
onwards, below ``end``) and adds into the
accumulation buffer ``slot``: on CPU each thread-pool task owns a slot (no races; the tasks'
buffers are summed in torch), on CUDA every thread adds into slot 0 with atomics. Warp's
``atomic_add`` is a plain add inside a sequential CPU launch, so one source serves both.

Rows are ``vec3``/``vec3d`` and faces ``vec3i`` (one indexed load or add per row instead of three:
about 15 % faster on CPU), and a thread carries its batch index along its span instead of
dividing ``t // F`` per face (the division cost about a quarter of the CPU forward kernel).
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["normal_sums_fwd", "normal_sums_bwd", "unit_normal_sums_bwd", "unit_fwd", "unit_bwd"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.func
def _face_edges(verts: wp.array(dtype=Any), faces: wp.array(dtype=wp.vec3i), f: int, vo: int):
    """Face f's corner indices, their rows (batch offset ``vo``) and its edges ``v1 - v0``, ``v2 - v0``."""
    fi = faces[f]
    i0 = vo + fi[0]
    i1 = vo + fi[1]
    i2 = vo + fi[2]
    p0 = verts[i0]
    return fi, i0, i1, i2, verts[i1] - p0, verts[i2] - p0


@wp.func
def _span_start(t0: int, nf: int, nv: int, slot_row: int):
    """``(t0, f, vo, o)`` of a thread whose span starts at global face ``t0``: its face in the batch, the batch's
    first vertex row, and that vertex's output row in this task's slot (``slot_row = slot * B*V``). The loop
    then advances ``f``, ``vo`` and ``o`` itself (no division per face)."""
    b = t0 // nf
    return t0, t0 - b * nf, b * nv, slot_row + b * nv


@wp.func
def _scatter_face_grad(verts: wp.array(dtype=Any), faces: wp.array(dtype=wp.vec3i), f: int, vo: int, o: int, gc: Any,
                       out: wp.array(dtype=Any)):
    """Adds d loss / d corners of face ``f``'s cross product ``e1 x e2`` given its gradient ``gc``."""
    fi, _i0, _i1, _i2, e1, e2 = _face_edges(verts, faces, f, vo)
    g1 = wp.cross(e2, gc)  # d/d e1 of (e1 x e2) . gc
    g2 = wp.cross(gc, e1)
    wp.atomic_add(out, o + fi[1], g1)
    wp.atomic_add(out, o + fi[2], g2)
    wp.atomic_sub(out, o + fi[0], g1 + g2)


@wp.kernel
def normal_sums_fwd(
    offset: int, span: int, start: int, end: int, slot: int,  # faces start + (tid + offset) * span, < end
    verts: wp.array(dtype=Any),  # [B*V] vec3 / vec3d
    faces: wp.array(dtype=wp.vec3i),  # [F]
    nf: int, nv: int,
    out: wp.array(dtype=Any),  # [slots * B*V] like verts, zeroed: sum of (v1 - v0) x (v2 - v0) per vertex
):
    t0, f, vo, o = _span_start(start + (wp.tid() + offset) * span, nf, nv, slot * verts.shape[0])
    for _t in range(t0, wp.min(t0 + span, end)):
        fi, i0, i1, i2, e1, e2 = _face_edges(verts, faces, f, vo)
        c = wp.cross(e1, e2)
        wp.atomic_add(out, o + fi[0], c)
        wp.atomic_add(out, o + fi[1], c)
        wp.atomic_add(out, o + fi[2], c)
        f += 1
        if f == nf:  # next batch: no division per face
            f = 0
            vo += nv
            o += nv


@wp.kernel
def normal_sums_bwd(
    offset: int, span: int, start: int, end: int, slot: int,
    verts: wp.array(dtype=Any),  # [B*V] vec3 / vec3d
    faces: wp.array(dtype=wp.vec3i),
    nf: int, nv: int,
    grad: wp.array(dtype=Any),  # [B*V] d loss / d sums
    skip: int,  # 1: skip faces whose corners' gradients sum to zero (finite verts: they add exact zeros)
    out: wp.array(dtype=Any),  # [slots * B*V], zeroed: d loss / d verts
):
    t0, f, vo, o = _span_start(start + (wp.tid() + offset) * span, nf, nv, slot * verts.shape[0])
    for _t in range(t0, wp.min(t0 + span, end)):
        fi = faces[f]
        # The face's cross product reaches its three corners' sums: d loss / d c = g0 + g1 + g2.
        gc = grad[vo + fi[0]] + grad[vo + fi[1]] + grad[vo + fi[2]]
        # Faces whose corners get no gradient (a rendered image's are those off screen or hidden)
        # add exact zeros (finite vertices): skip their vertex loads and scatters.
        z = type(gc[0])(0.0)
        if gc[0] != z or gc[1] != z or gc[2] != z or skip == 0:
            _scatter_face_grad(verts, faces, f, vo, o, gc, out)
        f += 1
        if f == nf:
            f = 0
            vo += nv
            o += nv


@wp.kernel
def unit_fwd(
    offset: int, tasks: int, n: int, tiny: wp.float64,
    sums: wp.array(dtype=Any),  # [tasks * n] vec3 / vec3d per-task normal sums (summed here)
    out: wp.array(dtype=Any),  # [n] unit normals, 0 where |sum|^2 <= tiny
    inv: wp.array(dtype=Any),  # [n] 1 / |sum|, 0 there
):
    i = wp.tid() + offset
    s = sums[i]
    for k in range(1, tasks):
        s = s + sums[k * n + i]
    n2 = wp.dot(s, s)
    r = type(n2)(0.0)
    if wp.float64(n2) > tiny:
        r = type(n2)(1.0) / wp.sqrt(n2)
    inv[i] = r
    out[i] = s * r


@wp.kernel
def unit_bwd(
    offset: int,
    unit: wp.array(dtype=Any),  # [n] vec3 / vec3d forward output
    inv: wp.array(dtype=Any),  # [n]
    grad: wp.array(dtype=Any),  # [n] d loss / d unit
    out: wp.array(dtype=Any),  # [n] d loss / d sum = (g - u (u . g)) / |sum|
):
    i = wp.tid() + offset
    u = unit[i]
    g = grad[i]
    out[i] = (g - u * wp.dot(u, g)) * inv[i]


@wp.func
def _unit_grad(unit: wp.array(dtype=Any), inv: wp.array(dtype=Any), grad: wp.array(dtype=Any), i: int):
    """d loss / d sum at row i from d loss / d unit: unit_bwd's formula."""
    u = unit[i]
    g = grad[i]
    return (g - u * wp.dot(u, g)) * inv[i]


@wp.kernel
def unit_normal_sums_bwd(
    offset: int, span: int, start: int, end: int, slot: int,
    verts: wp.array(dtype=Any),  # [B*V] vec3 / vec3d
    faces: wp.array(dtype=wp.vec3i),
    nf: int, nv: int,
    unit: wp.array(dtype=Any),  # [B*V] vec3 / vec3d unit normals (forward output)
    inv: wp.array(dtype=Any),  # [B*V] 1 / |sum| (0 where the normal is 0)
    grad: wp.array(dtype=Any),  # [B*V] d loss / d unit
    out: wp.array(dtype=Any),  # [slots * B*V], zeroed: d loss / d verts
):
    """unit_bwd fused into normal_sums_bwd (skipping zero-gradient faces): each face pulls its corners'
    gradients back through the normalisation itself, so no [B*V] pass and no d loss / d sum buffer;
    a face whose three corners get no gradient is skipped before its corners' units are loaded."""
    t0, f, vo, o = _span_start(start + (wp.tid() + offset) * span, nf, nv, slot * verts.shape[0])
    for _t in range(t0, wp.min(t0 + span, end)):
        fi = faces[f]
        i0 = vo + fi[0]
        i1 = vo + fi[1]
        i2 = vo + fi[2]
        ga = grad[i0]
        gb = grad[i1]
        gd = grad[i2]
        z = type(ga[0])(0.0)
        if ga[0] != z or ga[1] != z or ga[2] != z or gb[0] != z or gb[1] != z or gb[2] != z or gd[0] != z or gd[1] != z or gd[2] != z:
            gc = _unit_grad(unit, inv, grad, i0) + _unit_grad(unit, inv, grad, i1) + _unit_grad(unit, inv, grad, i2)
            if gc[0] != z or gc[1] != z or gc[2] != z:
                _scatter_face_grad(verts, faces, f, vo, o, gc, out)
        f += 1
        if f == nf:
            f = 0
            vo += nv
            o += nv
