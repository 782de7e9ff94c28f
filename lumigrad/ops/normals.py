"""Area-weighted vertex normals of triangle meshes (Warp kernels, CPU and CUDA).

``vertex_normal_sums(verts, faces)`` adds each face's ``(v1 - v0) x (v2 - v0)`` (twice its
area times its unit normal) to its three vertices; ``vertex_normals(verts, faces)`` is the
same sum normalised (:func:`lumigrad.geometry.normals.safe_normalize` semantics: zero where the
sum is zero), in one autograd node with a fused reduce-and-normalise pass: the torch
normalisation (about ten ops each way over ``[V, 3]``) cost as much as the sums at 1.3M faces. Spec: :mod:`lumigrad.ops._normals_ref`. In torch this is a gather, a
cross product and three ``index_add_`` per direction, which on CPU cost about 290 ms forward +
backward at 1.3M faces (2 threads); the kernels do one pass over the faces each way, scattering
into one buffer per CPU task (atomics on CUDA). Forward-mode AD (``jvp``) is supported.

CPU figures (``bench/vertex_normals.py``, icosphere(6) = 82k faces and icosphere(8) = 1.3M faces,
float32, median ms, 1 / 2 threads), before -> after the kernels took vec3 rows and stopped dividing
per face: fwd 1.65 -> 1.28 / 1.63 -> 1.33 (82k), 24.4 -> 19.0 / 16.7 -> 12.0 (1.3M); fwd+bwd
3.71 -> 2.75 / 4.05 -> 3.30 (82k), 55.9 -> 42.2 / 38.6 -> 26.1 (1.3M). A gather formulation (a
cached vertex -> corner CSR, each vertex summing its faces' cross products, no zeroed buffers or
reduction) was measured and dropped: 2.5-3x slower at 1.3M faces (fused: fwd 51-60 ms, bwd
67-78 ms vs 18 / 23 for the scatter; two passes through a per-face buffer: 42 / 87 ms), even with
vertices visited in first-face order, since each face is then loaded three times; and its cache
hit (a contents compare of the faces) alone cost 3 ms.
"""
from __future__ import annotations

import torch
import warp as wp
from torch import Tensor

from lumigrad._runtime.checks import check_faces, check_float_tensor, check_same_device
from lumigrad.ops._common import first_order, launch, launch_chunks, num_threads, reduce_tasks, to_warp, warp_device
from lumigrad.ops import _normals_kernels as _k

__all__ = ["unit_vectors", "vertex_normal_sums", "vertex_normals"]

_FN = "vertex_normal_sums"
# Faces per kernel thread on CUDA (one thread per face would be too fine for the atomics to pay off).
_CUDA_SPAN = 4
# Faces per CPU task at least: each task zeroes, fills and has summed a [B * V, 3] buffer; on 2
# threads, 2 tasks took 1.7 vs 1.2 ms fwd+bwd at 20k faces, 3.1 vs 3.2 at 82k, 7.1 vs 9.4 at 328k.
_MIN_TASK_FACES = 16384
# The backward skips faces whose three corners' gradients sum to zero (with finite vertices they
# add exact zeros, so the result is bitwise the same; a non-finite vertex of such a face no longer
# spreads NaN): a rendered loss reaches only the vertices of visible triangles. W2 step at
# icosphere 8 / 512^2 (bench/w2_profile.py A/B): vertex_normals bwd 22.2 -> 16.8 ms (1 thread,
# thread CPU), 24.7 -> 19.0 ms (2 threads, wall, loaded machine). A module global so tests compare both.
_SKIP_ZERO_GRAD = 1
# vertex_normals' backward pulls each visible face's corner gradients through the normalisation in
# the faces pass (unit_normal_sums_bwd) instead of a separate unit_bwd pass over all vertices and a
# [B*V, 3] buffer; bitwise the same (same formula per corner). Backward alone with the W2 step's
# gradient (1 thread, thread CPU, 30 alternating calls): 0.725 -> 0.577 ms at icosphere 4 (887 of
# 2562 vertices get a gradient), 27.8 -> 27.7 ms at icosphere 8 (170k of 655k; the corners' extra
# loads cost what the saved pass did).
_FUSED_UNIT_BWD = 1


def vertex_normal_sums(verts: Tensor, faces: Tensor) -> Tensor:
    """``[..., V, 3]`` sums of ``(v1 - v0) x (v2 - v0)`` over the faces at each vertex.

    Args:
        verts: ``[V, 3]`` or ``[B, V, 3]`` float32/float64 positions (cpu or cuda).
        faces: ``[F, 3]`` integer vertex indices, ``0 <= faces < V``.

    Returns:
        Same shape and dtype as ``verts``; differentiable w.r.t. ``verts`` (first order,
        and forward mode).
    """
    faces32 = _check(_FN, verts, faces)
    if faces32 is None:
        return torch.zeros_like(verts)
    v3 = verts if verts.ndim == 3 else verts[None]
    out = _NormalSumsFn.apply(v3, faces32)
    return out if verts.ndim == 3 else out[0]


def _check(fn: str, verts: Tensor, faces) -> Tensor | None:
    """Validated int32 faces, or None when there are no faces (every sum is empty)."""
    check_float_tensor(fn, "verts", verts, (2, 3), 3, expected="float32/float64 [V, 3] or [B, V, 3]")
    check_same_device(fn, verts=verts, faces=faces)
    if verts.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{fn}(): verts must be on a cpu or cuda device, got {verts.device}")
    if isinstance(faces, Tensor) and faces.ndim == 2 and faces.shape[0] == 0 and faces.shape[1] == 3:
        return None  # check_faces refuses empty meshes
    return check_faces(fn, faces, verts.shape[-2], name="faces")


def _run_tasks(kernel, v3: Tensor, faces: Tensor, extra: list) -> Tensor:
    """Launch ``kernel`` over all faces of all batches; returns the per-task ``[tasks, B * V, 3]`` buffers."""
    B, V, _ = v3.shape
    F = faces.shape[0]
    n = B * F
    dev = warp_device(v3)
    vec = _vec3(v3)
    vw = to_warp(v3.reshape(B * V, 3), vec)
    fw = to_warp(faces, wp.vec3i)
    if dev == "cpu":
        tasks = max(1, min(num_threads(), n // _MIN_TASK_FACES))
        bufs = torch.zeros(tasks, B * V, 3, dtype=v3.dtype, device=v3.device)
        ow = to_warp(bufs.view(tasks * B * V, 3), vec)
        bounds = [n * s // tasks for s in range(tasks + 1)]
        # Task s: one kernel thread over faces bounds[s] .. bounds[s + 1], into buffer s.
        launch_chunks(
            [(kernel, 1, [0, bounds[s + 1] - bounds[s], bounds[s], bounds[s + 1], s, vw, fw, F, V, *extra, ow])
             for s in range(tasks)],
            dev,
        )
        return bufs
    buf = torch.zeros(1, B * V, 3, dtype=v3.dtype, device=v3.device)
    threads = (n + _CUDA_SPAN - 1) // _CUDA_SPAN
    launch_chunks([(kernel, threads, [0, _CUDA_SPAN, 0, n, 0, vw, fw, F, V, *extra, to_warp(buf.view(B * V, 3), vec)])],
                  dev)
    return buf


def _vec3(t: Tensor):
    """Warp 3-vector type of ``t``'s dtype: the sums kernels index rows, not scalars (15 % faster on CPU)."""
    return wp.vec3d if t.dtype == torch.float64 else wp.vec3


def _run(kernel, v3: Tensor, faces: Tensor, extra: list) -> Tensor:
    """:func:`_run_tasks` with the task buffers summed: ``[B, V, 3]``."""
    return reduce_tasks(_run_tasks(kernel, v3, faces, extra)).view(v3.shape)


class _NormalSumsFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v3, faces):
        ctx.save_for_backward(v3, faces)
        ctx.save_for_forward(v3, faces)
        return _run(_k.normal_sums_fwd, v3.detach().contiguous(), faces, [])

    @staticmethod
    @first_order
    def backward(ctx, grad):
        v3, faces = ctx.saved_tensors
        g = _run(_k.normal_sums_bwd, v3.detach().contiguous(), faces,
                 [to_warp(grad.contiguous().view(-1, 3), _vec3(grad)), _SKIP_ZERO_GRAD])
        return g, None

    @staticmethod
    def jvp(ctx, dv, _dfaces):
        v3, faces = ctx.saved_tensors
        return _sums_jvp(v3, faces, dv)


def _sums_jvp(v3: Tensor, faces: Tensor, dv: Tensor) -> Tensor:
    """Tangent of the sums; linear in ``dv``: sum over faces of (dv1 - dv0) x (v2 - v0) + (v1 - v0) x (dv2 - dv0)."""
    f = faces.long()
    p = [v3.detach().index_select(-2, f[:, k]) for k in range(3)]
    d = [dv.index_select(-2, f[:, k]) for k in range(3)]
    c = torch.cross(d[1] - d[0], p[2] - p[0], dim=-1) + torch.cross(p[1] - p[0], d[2] - d[0], dim=-1)
    out = torch.zeros_like(dv)
    for k in range(3):
        out = out.index_add(-2, f[:, k], c)
    return out

def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """``[..., V, 3]`` area-weighted unit vertex normals: :func:`vertex_normal_sums` normalised.

    A vertex whose sum has ``|s|^2 <= finfo.tiny`` (only degenerate faces, or none) gets a zero
    normal with a zero gradient. Same arguments and gradients (first order, forward mode) as
    :func:`vertex_normal_sums`.
    """
    faces32 = _check("vertex_normals", verts, faces)
    if faces32 is None:
        return torch.zeros_like(verts)
    v3 = verts if verts.ndim == 3 else verts[None]
    out = _UnitNormalsFn.apply(v3, faces32)
    return out if verts.ndim == 3 else out[0]


# Rows per parallel chunk of the elementwise passes (a few ns each).
_UNIT_CHUNK = 16384


class _UnitNormalsFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v3, faces):
        v = v3.detach().contiguous()
        bufs = _run_tasks(_k.normal_sums_fwd, v, faces, [])
        tasks, n = bufs.shape[0], bufs.shape[1]
        unit = torch.empty(n, 3, dtype=v.dtype, device=v.device)
        inv = torch.empty(n, dtype=v.dtype, device=v.device)
        args = [tasks, n, wp.float64(torch.finfo(v.dtype).tiny), to_warp(bufs.view(tasks * n, 3), _vec3(v)),
                to_warp(unit, _vec3(v)), to_warp(inv)]
        launch(_k.unit_fwd, n, args, warp_device(v), min_chunk=_UNIT_CHUNK)
        ctx.save_for_backward(v3, faces, unit, inv)
        ctx.save_for_forward(v3, faces, unit, inv)
        return unit.view(v3.shape)

    @staticmethod
    @first_order
    def backward(ctx, grad):
        v3, faces, unit, inv = ctx.saved_tensors
        vec = _vec3(unit)
        g_unit = to_warp(grad.contiguous().view(-1, 3), vec)
        if _FUSED_UNIT_BWD and _SKIP_ZERO_GRAD:
            return _run(_k.unit_normal_sums_bwd, v3.detach().contiguous(), faces, [to_warp(unit, vec), to_warp(inv), g_unit]), None
        g_sum = torch.empty_like(unit)
        launch(_k.unit_bwd, unit.shape[0], [to_warp(unit, vec), to_warp(inv), g_unit, to_warp(g_sum, vec)], warp_device(unit),
               min_chunk=_UNIT_CHUNK)
        return _run(_k.normal_sums_bwd, v3.detach().contiguous(), faces, [to_warp(g_sum, _vec3(g_sum)), _SKIP_ZERO_GRAD]), None

    @staticmethod
    def jvp(ctx, dv, _dfaces):
        v3, faces, unit, inv = ctx.saved_tensors
        ds = _sums_jvp(v3, faces, dv).view(-1, 3)
        d = (ds - unit * (unit * ds).sum(-1, keepdim=True)) * inv[:, None]
        return d.view(v3.shape)



def unit_vectors(v: Tensor) -> Tensor:
    """``[..., 3]`` unit vectors along the last dim, in one Warp pass each way.

    :func:`lumigrad.geometry.normals.safe_normalize` semantics: a row with ``|v|^2 <= finfo.tiny``
    gives zero with a zero gradient. First-order and forward-mode AD. In torch the same is a
    reduction over a last dim of 3, two ``where`` and a division, each a few ms per 262k rows on
    CPU (the ray tracer normalises several such arrays per bounce).
    """
    check_float_tensor("unit_vectors", "v", v, range(1, 9), 3, expected="float32/float64 [..., 3]")
    if v.device.type not in ("cpu", "cuda"):
        raise ValueError(f"unit_vectors(): v must be on a cpu or cuda device, got {v.device}")
    return _UnitFn.apply(v)


class _UnitFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):
        rows = v.detach().contiguous().view(-1, 3)
        n = rows.shape[0]
        unit = torch.empty_like(rows)
        inv = torch.empty(n, dtype=v.dtype, device=v.device)
        if n:
            args = [1, n, wp.float64(torch.finfo(v.dtype).tiny), to_warp(rows, _vec3(v)), to_warp(unit, _vec3(v)), to_warp(inv)]
            launch(_k.unit_fwd, n, args, warp_device(v), min_chunk=_UNIT_CHUNK)
        ctx.save_for_backward(unit, inv)
        ctx.save_for_forward(unit, inv)
        ctx.shape = v.shape
        return unit.view(v.shape)

    @staticmethod
    @first_order
    def backward(ctx, grad):
        unit, inv = ctx.saved_tensors
        g = torch.empty_like(unit)
        if unit.shape[0]:
            vec = _vec3(unit)
            args = [to_warp(unit, vec), to_warp(inv), to_warp(grad.contiguous().view(-1, 3), vec), to_warp(g, vec)]
            launch(_k.unit_bwd, unit.shape[0], args, warp_device(unit), min_chunk=_UNIT_CHUNK)
        return g.view(ctx.shape)

    @staticmethod
    def jvp(ctx, dv):
        unit, inv = ctx.saved_tensors
        d = dv.reshape(-1, 3)
        return ((d - unit * (unit * d).sum(-1, keepdim=True)) * inv[:, None]).view(ctx.shape)
