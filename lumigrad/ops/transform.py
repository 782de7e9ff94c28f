"""Homogeneous transform of 3D points by 4x4 matrices (Warp kernels, CPU), the hot path of
:func:`lumigrad.geometry.transforms.transform_points` (and so of ``Camera.project``).

In torch, ``p @ M[:3].T + M[3]`` over ``[V, 3]`` points is a batched GEMM with an inner size of
3 plus a broadcast add, and its backward another GEMM and a sum: at 655k vertices (icosphere 8,
W2 step, 1 thread, thread CPU, ``bench/w2_profile.py`` stage ``project``) 10.5 ms forward and
5.7 ms backward, against 3.9 + 3.6 ms for one pass each way here; from ~10k rows the kernel wins
(microbench, 2 threads: 10k rows fwd+bwd 0.43 vs 0.44 ms, 41k 0.78 vs 1.18, 2.6k 0.35 vs 0.25).
The kernel runs on CPU only: on CUDA torch's batched GEMM is already one launch. The matrices' gradient (needed only when the camera is
optimised) stays in torch, as does any backward with ``create_graph=True`` (so double
backward and forward-mode AD work as with the torch formula). Spec:
:mod:`lumigrad.ops._transform_ref`.
"""
from __future__ import annotations

import torch
import warp as wp
from torch import Tensor

from lumigrad.geometry.transforms import _KERNEL_MIN_ROWS
from lumigrad.ops._common import launch, per_thread_chunk, to_warp, warp_device
from lumigrad.ops import _transform_kernels as _k

__all__ = ["transform_points_fused", "use_kernel"]

# Rows from which the kernel beats torch's GEMM (a Warp launch costs ~30 us of Python; below
# ~10k rows torch's call wins, see the module docstring): transform_points' own threshold, kept there
# so that small inputs never import this module.
_MIN_ROWS = _KERNEL_MIN_ROWS
# Rows per CPU kernel thread (a Warp CPU thread copies every kernel argument: amortise it).
_SPAN = 256


def use_kernel(mats: Tensor, pts: Tensor) -> bool:
    """Whether :func:`transform_points_fused` takes these (already validated, broadcastable) inputs."""
    return (
        pts.device.type == "cpu"
        and pts.dtype in (torch.float32, torch.float64)
        and mats.shape[0] * pts.shape[1] >= _MIN_ROWS
    )


def transform_points_fused(mats: Tensor, pts: Tensor) -> Tensor:
    """``[B, V, 4]`` = ``mats[b] @ (pts[b or 0, v], 1)``.

    Args:
        mats: ``[B, 4, 4]`` float32/float64 (column vectors).
        pts: ``[1, V, 3]`` (shared) or ``[B, V, 3]``, same dtype and device (cpu).

    Inputs are not validated here (:func:`lumigrad.geometry.transforms.transform_points` does
    that). Gradients flow to both inputs; first and second order, and forward mode.
    """
    return _TransformFn.apply(mats, pts)


def _vec(t: Tensor, n: int):
    f64 = t.dtype == torch.float64
    return {3: wp.vec3d if f64 else wp.vec3f, 4: wp.vec4d if f64 else wp.vec4f, 16: wp.mat44d if f64 else wp.mat44f}[n]


def _forward(mats: Tensor, pts: Tensor) -> Tensor:
    B, V = mats.shape[0], pts.shape[1]
    out = torch.empty(B, V, 4, dtype=pts.dtype, device=pts.device)
    tpb = (V + _SPAN - 1) // _SPAN  # threads per batch: a span never crosses one
    threads = B * tpb
    args = [_SPAN, tpb, V, int(pts.shape[0] == 1), to_warp(mats.reshape(B, 4, 4), _vec(mats, 16)),
            to_warp(pts.reshape(-1, 3), _vec(pts, 3)), to_warp(out.view(B * V, 4), _vec(out, 4))]
    launch(_k.transform_fwd, threads, args, warp_device(pts), min_chunk=per_thread_chunk(threads, 8))
    return out


def _grad_points(mats: Tensor, grad: Tensor, bp: int) -> Tensor:
    B, V = grad.shape[0], grad.shape[1]
    out = torch.empty(bp, V, 3, dtype=grad.dtype, device=grad.device)
    tpb = (V + _SPAN - 1) // _SPAN
    threads = bp * tpb
    args = [_SPAN, tpb, V, B, int(bp == 1), to_warp(mats.reshape(B, 4, 4), _vec(mats, 16)),
            to_warp(grad.reshape(B * V, 4), _vec(grad, 4)), to_warp(out.view(bp * V, 3), _vec(out, 3))]
    launch(_k.transform_bwd, threads, args, warp_device(grad), min_chunk=per_thread_chunk(threads, 8))
    return out


def _grad_mats(grad: Tensor, pts: Tensor) -> Tensor:
    """``d loss / d mats [B, 4, 4]``: ``g^T (p, 1)`` summed over the points (torch)."""
    B = grad.shape[0]
    gt = grad.transpose(1, 2)
    return torch.cat([torch.matmul(gt, pts.expand(B, -1, -1)), gt.sum(-1, keepdim=True)], dim=-1)


class _TransformFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mats, pts):
        ctx.save_for_backward(mats, pts)
        ctx.save_for_forward(mats, pts)
        return _forward(mats.detach().contiguous(), pts.detach().contiguous())

    @staticmethod
    def backward(ctx, grad):
        mats, pts = ctx.saved_tensors
        want_mats, want_pts = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: the torch formula, differentiable again
            g_pts = torch.matmul(grad, mats[:, :, :3]) if want_pts else None
            if g_pts is not None and pts.shape[0] == 1 and mats.shape[0] > 1:
                g_pts = g_pts.sum(0, keepdim=True)
            return (_grad_mats(grad, pts) if want_mats else None), g_pts
        grad = grad.contiguous()
        g_pts = _grad_points(mats.detach().contiguous(), grad, pts.shape[0]) if want_pts else None
        return (_grad_mats(grad, pts.detach()) if want_mats else None), g_pts

    @staticmethod
    def jvp(ctx, d_mats, d_pts):
        mats, pts = ctx.saved_tensors
        out = 0
        if d_mats is not None:
            out = out + torch.matmul(pts, d_mats[:, :, :3].transpose(1, 2)) + d_mats[:, None, :, 3]
        if d_pts is not None:
            out = out + torch.matmul(d_pts, mats[:, :, :3].transpose(1, 2))
        return out
