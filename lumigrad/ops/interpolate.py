"""Interpolate per-vertex attributes over rasterized pixels (nvdiffrast's ``interpolate``).

Pure-torch spec: :mod:`lumigrad.ops._interpolate_ref`. Kernels:
:mod:`lumigrad.ops._interpolate_kernels`.
"""
from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import torch
import warp as wp

from lumigrad._runtime.launch import empty

from lumigrad._runtime.checks import check_faces, check_finite, check_float_tensor, check_rast_ids, check_same_device
from lumigrad.ops._common import (
    cpu_layout, first_order, launch, launch_chunks, num_threads, per_thread_chunk, placeholder, reduce_tasks, to_warp, warp_device,
)
from lumigrad.ops import _interpolate_kernels as _k

__all__ = ["Interpolated", "interpolate"]

log = logging.getLogger(__name__)
_FN = "interpolate"
# CPU backward tasks per worker thread (each owns a [Ba*V, C] gradient buffer); interleaved rows balance
# the load, and every launch costs ~0.1 ms of argument packing.
_TASKS_PER_THREAD = 1
# Pixels per CPU kernel thread in the forward (a Warp CPU thread copies every kernel argument: amortise
# it), and pixels per parallel chunk.
_PIXELS_PER_THREAD = 256
_MIN_CHUNK = 16384


_cpu_layout = cpu_layout  # a module global, so tests can force the CUDA layout here


class Interpolated(NamedTuple):
    """Result of :func:`interpolate`."""

    out: torch.Tensor  # [B, H, W, C] interpolated attributes, 0 where no triangle
    out_da: torch.Tensor | None  # [B, H, W, 2*D] (d/dX, d/dY) per chosen channel, or None


def interpolate(
    attr: torch.Tensor,  # [B, V, C] or [V, C]
    rast: torch.Tensor,  # [B, H, W, 4] (u, v, z_ndc, tri_id + 1)
    tri: torch.Tensor,  # [F, 3] int
    rast_db: torch.Tensor | None = None,  # [B, H, W, 4] (du/dX, du/dY, dv/dX, dv/dY)
    diff_attrs: Sequence[int] | str | None = None,
) -> Interpolated:
    """Interpolate vertex attributes with the rasterizer's barycentrics.

    ``out = u * a0 + v * a1 + (1 - u - v) * a2`` for the pixel's triangle
    ``tri[tri_id]``, and 0 where ``rast[..., 3] == 0``.

    Args:
        attr: ``[B, V, C]`` or ``[V, C]`` float32/float64 per-vertex attributes
            (``[V, C]`` and ``[1, V, C]`` broadcast over the batch).
        rast: ``[B, H, W, 4]`` output of :func:`rasterize`, same dtype as ``attr``.
        tri: ``[F, 3]`` integer vertex indices into ``attr`` (may differ from the
            rasterized triangles' indices, e.g. UV seams, as long as F matches).
        rast_db: optional ``[B, H, W, 4]`` barycentric screen derivatives
            (du/dX, du/dY, dv/dX, dv/dY) in pixels, X right, Y down.
        diff_attrs: channel indices (or ``"all"``) whose screen derivatives to
            return in ``out_da``; needs ``rast_db``.

    Returns:
        :class:`Interpolated` ``(out [B, H, W, C], out_da [B, H, W, 2*D] or None)``;
        ``out_da[..., 2k:2k+2]`` = (d/dX, d/dY) of channel ``diff_attrs[k]``.
        Gradients flow to ``attr``, to ``rast[..., 0:2]`` (hence to positions
        through :func:`rasterize`) and, via ``out_da``, to ``rast_db``.

    Example:
        >>> import torch
        >>> from lumigrad.ops.interpolate import interpolate
        >>> rast = torch.tensor([[[[0.2, 0.3, 0.0, 1.0]]]])
        >>> attr = torch.tensor([[1.0], [2.0], [4.0]])
        >>> interpolate(attr, rast, torch.tensor([[0, 1, 2]])).out.flatten()
        tensor([2.8000])
    """
    check_float_tensor(_FN, "attr", attr, (2, 3), expected="float [B, V, C] or [V, C]")
    check_float_tensor(_FN, "rast", rast, (4,), 4, expected="float [B, H, W, 4]")
    if rast.dtype != attr.dtype:
        raise ValueError(f"{_FN}(): rast must have attr's dtype {_dt(attr)}, got {_dt(rast)} {list(rast.shape)}")
    check_same_device(_FN, attr=attr, rast=rast, tri=tri, rast_db=rast_db)
    attr3 = attr if attr.ndim == 3 else attr[None]
    B, H, W = rast.shape[:3]
    Ba, V, C = attr3.shape
    if Ba not in (1, B):
        raise ValueError(f"{_FN}(): attr batch must be 1 or rast's batch {B}, got attr [{Ba}, {V}, {C}]")
    if C == 0 or B * H * W == 0:
        raise ValueError(f"{_FN}(): attr and rast must be non-empty, got attr {list(attr.shape)}, rast {list(rast.shape)}")
    tri = check_faces(_FN, tri, V)
    F = tri.shape[0]
    check_finite(_FN, "attr", attr)
    check_finite(_FN, "rast", rast)
    check_rast_ids(_FN, rast, F)
    diff = _diff_channels(diff_attrs, C, rast_db is not None)
    if diff is None:
        out = _InterpolateFn.apply(attr3, rast, tri)
        return Interpolated(out, None)
    check_float_tensor(_FN, "rast_db", rast_db, (4,), 4, expected="float [B, H, W, 4]")
    if rast_db.shape != rast.shape or rast_db.dtype != rast.dtype:
        raise ValueError(
            f"{_FN}(): rast_db must match rast ({_dt(rast)} {list(rast.shape)}), "
            f"got {_dt(rast_db)} {list(rast_db.shape)}"
        )
    check_finite(_FN, "rast_db", rast_db)
    diff_t = torch.tensor(diff, dtype=torch.int32, device=rast.device)
    out, out_da = _InterpolateDaFn.apply(attr3, rast, rast_db, tri, diff_t)
    return Interpolated(out, out_da)


def _dt(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _diff_channels(diff_attrs, num_channels: int, have_db: bool) -> list[int] | None:
    if diff_attrs is None:
        return None
    if not have_db:
        raise ValueError(f"{_FN}(): diff_attrs needs rast_db (pass rasterize's second output)")
    if isinstance(diff_attrs, str):
        if diff_attrs != "all":
            raise ValueError(f"{_FN}(): diff_attrs must be 'all' or a list of channel indices, got {diff_attrs!r}")
        return list(range(num_channels))
    try:
        chans = [int(c) for c in diff_attrs]
        ok = all(float(c) == int(c) for c in diff_attrs)
    except (TypeError, ValueError):
        raise ValueError(f"{_FN}(): diff_attrs must be 'all' or a list of channel indices, got {diff_attrs!r}") from None
    if not ok or not chans or any(c < 0 or c >= num_channels for c in chans):
        raise ValueError(
            f"{_FN}(): diff_attrs must be a non-empty list of indices in [0, {num_channels}), got {diff_attrs!r}"
        )
    return chans


def _launch(attr3, rast, rast_db, tri, diff, grad_out=None, grad_out_da=None, want_attr=False):
    """Run the forward (``grad_out is None``) or backward kernel on contiguous views."""
    B, H, W, _ = rast.shape
    Ba, V, C = attr3.shape
    if C == 3 and rast_db is None:
        return _launch3(attr3, rast, tri, grad_out, want_attr)
    P = B * H * W
    dev = warp_device(rast)
    opts = dict(dtype=attr3.dtype, device=rast.device)
    has_da = rast_db is not None
    db = rast_db.contiguous().view(P, 4) if has_da else placeholder(rast, 1, 4)
    diff = diff if has_da else placeholder(rast, 1, dtype=torch.int32)
    common = [
        to_warp(attr3.contiguous().view(Ba * V, C)),
        to_warp(rast.contiguous().view(P, 4)),
        to_warp(db),
        to_warp(tri),
        to_warp(diff),
        H * W,
        V,
        int(Ba > 1),
        int(has_da),
    ]
    D = diff.shape[0]
    if grad_out is None:
        out = empty((P, C), attr3.dtype, rast.device)
        out_da = torch.empty(P, 2 * D, **opts) if has_da else placeholder(rast, 1, 1)
        span = _PIXELS_PER_THREAD if _cpu_layout(dev) else 1
        args = [span, *common, to_warp(out), to_warp(out_da)]
        n = (P + span - 1) // span
        launch(_k.interpolate_fwd, n, args, dev, min_chunk=per_thread_chunk(n, max(1, _MIN_CHUNK // span)))
        return out.view(B, H, W, C), (out_da.view(B, H, W, 2 * D) if has_da else None)
    g_da = grad_out_da.contiguous().view(P, 2 * D) if has_da else placeholder(rast, 1, 1)
    grad_rast = empty((P, 4), attr3.dtype, rast.device)
    grad_db = torch.empty(P, 4, **opts) if has_da else placeholder(rast, 1, 4)
    rows = B * H
    tasks = 1 if not _cpu_layout(dev) else min(rows, num_threads() * _TASKS_PER_THREAD)
    gbuf = torch.zeros(tasks * Ba * V, C, **opts) if want_attr else placeholder(rast, 1, C)
    args = [W, *common, int(want_attr), to_warp(grad_out.contiguous().view(P, C)), to_warp(g_da)]
    args += [to_warp(grad_rast), to_warp(grad_db), to_warp(gbuf)]
    span = W if _cpu_layout(dev) else 1
    launch_chunks(
        [(_k.interpolate_bwd, (rows - t + tasks - 1) // tasks * W // span, [t, tasks, span, *args]) for t in range(tasks)],
        dev,
    )
    grad_attr = reduce_tasks(gbuf.view(tasks, Ba * V, C)).view(Ba, V, C) if want_attr else None
    return grad_attr, grad_rast.view(B, H, W, 4), (grad_db.view(B, H, W, 4) if has_da else None)


def _launch3(attr3, rast, tri, grad_out=None, want_attr=False):
    """:func:`_launch` for three channels and no ``rast_db``: the vector kernels ``interpolate3_*``."""
    B, H, W, _ = rast.shape
    Ba, V, _ = attr3.shape
    P = B * H * W
    dev = warp_device(rast)
    vec3, vec4 = (wp.vec3d, wp.vec4d) if attr3.dtype == torch.float64 else (wp.vec3f, wp.vec4f)
    attr_w = to_warp(attr3.contiguous().view(Ba * V, 3), vec3)
    rast_w = to_warp(rast.contiguous().view(P, 4), vec4)
    tri_w = to_warp(tri, wp.vec3i)
    if grad_out is None:
        out = empty((P, 3), attr3.dtype, rast.device)
        span = _PIXELS_PER_THREAD if _cpu_layout(dev) else 1
        n = (P + span - 1) // span
        args = [span, attr_w, rast_w, tri_w, H * W, V, int(Ba > 1), to_warp(out, vec3)]
        launch(_k.interpolate3_fwd, n, args, dev, min_chunk=per_thread_chunk(n, max(1, _MIN_CHUNK // span)))
        return out.view(B, H, W, 3), None
    grad_rast = empty((P, 4), attr3.dtype, rast.device)
    rows = B * H
    tasks = 1 if not _cpu_layout(dev) else min(rows, num_threads() * _TASKS_PER_THREAD)
    gbuf = torch.zeros(tasks * Ba * V if want_attr else 1, 3, dtype=attr3.dtype, device=rast.device)
    args = [W, attr_w, rast_w, tri_w, H * W, V, int(Ba > 1), int(want_attr), to_warp(grad_out.contiguous().view(P, 3), vec3),
            to_warp(grad_rast, vec4), to_warp(gbuf, vec3)]
    span = W if _cpu_layout(dev) else 1
    launch_chunks(
        [(_k.interpolate3_bwd, (rows - t + tasks - 1) // tasks * W // span, [t, tasks, span, *args]) for t in range(tasks)],
        dev,
    )
    grad_attr = reduce_tasks(gbuf.view(tasks, Ba * V, 3)).view(Ba, V, 3) if want_attr else None
    return grad_attr, grad_rast.view(B, H, W, 4), None


class _InterpolateFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr3, rast, tri):
        out, _ = _launch(attr3.detach(), rast.detach(), None, tri, None)
        ctx.save_for_backward(attr3, rast, tri)
        return out

    @staticmethod
    @first_order
    def backward(ctx, grad_out):
        attr3, rast, tri = ctx.saved_tensors
        want_attr, want_rast = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (want_attr or want_rast):
            return None, None, None
        grad_attr, grad_rast, _ = _launch(attr3.detach(), rast.detach(), None, tri, None, grad_out, None, want_attr)
        return grad_attr, (grad_rast if want_rast else None), None


class _InterpolateDaFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr3, rast, rast_db, tri, diff):
        out, out_da = _launch(attr3.detach(), rast.detach(), rast_db.detach(), tri, diff)
        ctx.save_for_backward(attr3, rast, rast_db, tri, diff)
        return out, out_da

    @staticmethod
    @first_order
    def backward(ctx, grad_out, grad_out_da):
        attr3, rast, rast_db, tri, diff = ctx.saved_tensors
        want_attr, want_rast, want_db = ctx.needs_input_grad[:3]
        if not (want_attr or want_rast or want_db):
            return None, None, None, None, None
        # An unused output arrives as None (or zeros when materialised); both mean no gradient.
        if grad_out is None:
            grad_out = torch.zeros_like(rast[..., :1].expand(*rast.shape[:3], attr3.shape[2]))
        if grad_out_da is None:
            grad_out_da = torch.zeros(*rast.shape[:3], 2 * diff.shape[0], dtype=rast.dtype, device=rast.device)
        grad_attr, grad_rast, grad_db = _launch(
            attr3.detach(), rast.detach(), rast_db.detach(), tri, diff, grad_out, grad_out_da, want_attr
        )
        return grad_attr, (grad_rast if want_rast else None), (grad_db if want_db else None), None, None
