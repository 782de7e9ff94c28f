"""Soft rasterization (Liu et al. 2019, "Soft Rasterizer"): probabilistic coverage and aggregation.

The exact formulation (distances, depth, background term, culling) is written out
in ``_soft_rasterize_ref.py``, the pure-torch spec; this module validates inputs,
bins triangles to image tiles and runs the Warp kernels.
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import NamedTuple

import torch

from lumigrad._runtime.checks import (
    check_faces,
    check_finite,
    check_float_tensor,
    check_resolution,
    check_same_device,
)
from lumigrad.ops._common import first_order, launch, placeholder, reduce_rows, to_warp, warp_device
from lumigrad.ops._soft_rasterize_kernels import soft_bwd_kernel, soft_fwd_kernel
from lumigrad.ops._soft_rasterize_ref import default_dist_cutoff, screen_vertices

__all__ = ["SoftRasterized", "soft_rasterize"]

log = logging.getLogger(__name__)

_FN = "soft_rasterize"
_TILE = 8  # tile side in pixels for binning


class SoftRasterized(NamedTuple):
    """Output of :func:`soft_rasterize`."""

    color: torch.Tensor | None  # [B, H, W, C] blended colours (background included), None without colors
    alpha: torch.Tensor  # [B, H, W, 1] soft coverage 1 - prod(1 - D_j)


def _real(name: str, value, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_FN}(): {name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{_FN}(): {name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return v


def _bin_triangles(ts: torch.Tensor, B: int, F: int, H: int, W: int, cut: float):
    """CSR lists of the triangles whose cutoff-grown screen bbox touches each tile.

    Returns ``tile_start [B*ntiles + 1]``, ``entry_tri [E]``, ``entry_tile [E]`` (int32,
    entries sorted by tile, then triangle) and ``(ntx, nty)``.
    """
    ntx, nty = -(-W // _TILE), -(-H // _TILE)
    c = ts.detach().reshape(B * F, 3, 4)
    ax, ay = c[..., 0], c[..., 1]
    front = (c[..., 3] > 0).all(-1)
    # NDC -> pixel index (centre at +0.5, row 0 at y = +1); one pixel of slack each side.
    c0 = ((ax.amin(-1) - cut + 1) * (0.5 * W) - 0.5).floor() - 1
    c1 = ((ax.amax(-1) + cut + 1) * (0.5 * W) - 0.5).ceil() + 1
    r0 = ((1 - ay.amax(-1) - cut) * (0.5 * H) - 0.5).floor() - 1
    r1 = ((1 - ay.amin(-1) + cut) * (0.5 * H) - 0.5).ceil() + 1
    front &= (c1 >= 0) & (c0 <= W - 1) & (r1 >= 0) & (r0 <= H - 1)
    tx0 = c0.clamp(0, W - 1).long() // _TILE
    tx1 = c1.clamp(0, W - 1).long() // _TILE
    ty0 = r0.clamp(0, H - 1).long() // _TILE
    ty1 = r1.clamp(0, H - 1).long() // _TILE
    nx = tx1 - tx0 + 1
    count = torch.where(front, nx * (ty1 - ty0 + 1), torch.zeros_like(nx))  # [B*F]
    total = int(count.sum())
    owner = torch.repeat_interleave(torch.arange(B * F, device=ts.device), count)  # [E] b*F + f
    local = torch.arange(total, device=ts.device) - (torch.cumsum(count, 0) - count)[owner]
    tx = tx0[owner] + local % nx[owner]
    ty = ty0[owner] + local // nx[owner]
    key = ((owner // F) * nty + ty) * ntx + tx
    key, order = torch.sort(key, stable=True)
    entry_tri = (owner[order] % F).to(torch.int32)
    counts = torch.bincount(key, minlength=B * ntx * nty)
    tile_start = torch.zeros(B * ntx * nty + 1, dtype=torch.int32, device=ts.device)
    tile_start[1:] = torch.cumsum(counts, 0).to(torch.int32)
    return tile_start, entry_tri, key.to(torch.int32), (ntx, nty)


class _SoftRasterizeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ts, tc, tile_start, entry_tri, entry_tile, dims, prm):
        B, H, W, F, C, ntx, nty = dims
        dev = warp_device(ts)
        ts = ts.detach().contiguous()
        tc_k = tc.detach().contiguous() if tc is not None else placeholder(ts, 1, 1)
        out = ts.new_empty(B * H * W, C + 2)
        aux = ts.new_empty(B * H * W, 3)
        launch(
            soft_fwd_kernel,
            B * H * W,
            [to_warp(ts), to_warp(tc_k), to_warp(tile_start), to_warp(entry_tri), to_warp(prm),
             H, W, F, C, ntx, nty, _TILE, to_warp(out), to_warp(aux)],
            dev,
            min_chunk=256,
        )
        ctx.save_for_backward(ts, tc_k, entry_tri, entry_tile, prm, out, aux)
        ctx.dims = dims
        ctx.has_tc = tc is not None
        return out.reshape(B, H, W, C + 2)

    @staticmethod
    @first_order
    def backward(ctx, grad_out):
        ts, tc_k, entry_tri, entry_tile, prm, out, aux = ctx.saved_tensors
        B, H, W, F, C, ntx, nty = ctx.dims
        need_ts, need_tc = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and ctx.has_tc
        if not (need_ts or need_tc) or entry_tri.numel() == 0:
            grad_ts = torch.zeros_like(ts) if need_ts else None
            grad_tc = torch.zeros_like(tc_k) if need_tc else None
            return grad_ts, grad_tc, None, None, None, None, None
        E = entry_tri.numel()
        g_ts = ts.new_zeros(E, 12)
        g_tc = ts.new_zeros(E, 3 * C) if C > 0 else placeholder(ts, 1, 1)
        gout = grad_out.reshape(B * H * W, C + 2).contiguous()
        launch(
            soft_bwd_kernel,
            E,
            [to_warp(ts), to_warp(tc_k), to_warp(entry_tri), to_warp(entry_tile), to_warp(prm),
             H, W, F, C, ntx, nty, _TILE, to_warp(out), to_warp(aux), to_warp(gout), to_warp(g_ts), to_warp(g_tc)],
            warp_device(ts),
            min_chunk=16,
        )
        owner = (entry_tile.long() // (ntx * nty)) * F + entry_tri.long()
        grad_ts = reduce_rows(g_ts, owner, B * F) if need_ts else None
        grad_tc = reduce_rows(g_tc, owner, B * F) if need_tc else None
        return grad_ts, grad_tc, None, None, None, None, None


def soft_rasterize(
    pos: torch.Tensor,  # [B, V, 4] or [V, 4] clip
    tri: torch.Tensor,  # [F, 3] int32
    resolution,
    colors: torch.Tensor | None = None,  # [B, V, C] or [V, C]
    *,
    sigma: float = 1e-4,
    gamma: float = 1e-4,
    background: torch.Tensor | None = None,  # [C] or broadcastable to [B, H, W, C]
    dist_cutoff: float | None = None,
    z_eps: float = 1e-3,
) -> SoftRasterized:
    """Soft Rasterizer silhouette and colour (SoftRas, Liu et al. 2019).

    Per pixel and triangle j: D_j = sigmoid(sign_j * d_j^2 / sigma) with d_j the
    NDC distance from the pixel centre to the projected triangle's boundary (sign
    +1 inside). alpha = 1 - prod_j (1 - D_j). Colours are blended with softmax
    weights D_j * exp(z'_j / gamma) and a background weight exp(z_eps / gamma),
    where z'_j = (1 - z_ndc) / 2 at the pixel's closest point on the triangle
    (normalised inverse depth: 1 at the near plane, 0 at the far one); triangles
    whose z_ndc there is outside [-1, 1] take part in alpha only. Colours are
    interpolated with perspective-correct barycentrics of that closest point.
    Triangles with a vertex at w <= 0 are skipped (clip them first); both faces
    are drawn. See ``_soft_rasterize_ref.py`` for the exact formulas.

    Args:
        pos: ``[B, V, 4]`` or ``[V, 4]`` float32/float64 clip-space positions.
        tri: ``[F, 3]`` integer vertex indices (converted to int32).
        resolution: ``(H, W)`` output size in pixels.
        colors: ``[B, V, C]`` or ``[V, C]`` per-vertex colours (same dtype as
            ``pos``), or None for alpha only.
        sigma: sharpness of the coverage sigmoid, in NDC^2 units (> 0). The blur
            is about ``sqrt(sigma)`` NDC wide, i.e. ``sqrt(sigma) * W / 2`` pixels.
        gamma: softmax temperature over normalised depth (> 0).
        background: colour behind everything, ``[C]`` or broadcastable to
            ``[B, H, W, C]``; None means zeros. Needs ``colors``.
        dist_cutoff: NDC distance beyond which an outside triangle is skipped;
            default ``sqrt(sigma * ln(1e4 - 1))``, where D_j = 1e-4.
        z_eps: normalised depth of the background in the softmax (SoftRas ``eps``).

    Returns:
        :class:`SoftRasterized` ``(color, alpha)``: ``color [B, H, W, C]`` blended
        colours (None when ``colors`` is None) and ``alpha [B, H, W, 1]``.
        Differentiable w.r.t. ``pos`` (x, y, w through
        distances and barycentrics, z through depth), ``colors`` and ``background``.

    Example:
        >>> pos = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
        >>> tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
        >>> out = soft_rasterize(pos, tri, (16, 16), torch.eye(3), sigma=1e-3)
        >>> out.color.shape, out.alpha.shape
        (torch.Size([1, 16, 16, 3]), torch.Size([1, 16, 16, 1]))
    """
    check_float_tensor(_FN, "pos", pos, (2, 3), 4, "float [B, V, 4] or [V, 4] clip positions")
    if pos.shape[-2] == 0 or (pos.ndim == 3 and pos.shape[0] == 0):
        raise ValueError(f"{_FN}(): pos must be non-empty [B, V, 4], got {list(pos.shape)} (empty mesh)")
    num_verts = pos.shape[-2]
    tri = check_faces(_FN, tri, num_verts)
    H, W = check_resolution(_FN, resolution)
    sigma = _real("sigma", sigma, True)
    gamma = _real("gamma", gamma, True)
    z_eps = _real("z_eps", z_eps, False)
    cut = default_dist_cutoff(sigma) if dist_cutoff is None else _real("dist_cutoff", dist_cutoff, True)
    B = pos.shape[0] if pos.ndim == 3 else 1
    C = 0
    if colors is not None:
        check_float_tensor(_FN, "colors", colors, (2, 3), None, "float [B, V, C] or [V, C]")
        if colors.shape[-2] != num_verts or colors.shape[-1] == 0:
            raise ValueError(f"{_FN}(): colors must be [B, {num_verts}, C>0] or [{num_verts}, C>0] "
                             f"to match pos, got {list(colors.shape)}")
        if colors.dtype != pos.dtype:
            raise ValueError(f"{_FN}(): colors must have pos's dtype {pos.dtype}, got {colors.dtype}")
        if colors.ndim == 3:
            if pos.ndim == 3 and colors.shape[0] != B:
                raise ValueError(f"{_FN}(): batch sizes differ: pos has {B}, colors has {colors.shape[0]}")
            B = colors.shape[0]
            if B == 0:
                raise ValueError(f"{_FN}(): colors has an empty batch, got {list(colors.shape)}")
        C = colors.shape[-1]
    if background is not None:
        if colors is None:
            raise ValueError(f"{_FN}(): background needs colors (alpha-only output has no background)")
        check_float_tensor(_FN, "background", background, (1, 2, 3, 4), None, "float [C] or [B, H, W, C]")
        if background.dtype != pos.dtype:
            raise ValueError(f"{_FN}(): background must have pos's dtype {pos.dtype}, got {background.dtype}")
        try:
            ok = torch.broadcast_shapes(background.shape, (B, H, W, C)) == (B, H, W, C)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"{_FN}(): background must broadcast to [B, H, W, C] = {[B, H, W, C]}, "
                             f"got {list(background.shape)}")
        check_finite(_FN, "background", background)
    if B * H * W >= 2**31 or B * H * W * (C + 5) * pos.element_size() >= 2**40:
        # Refused before any allocation (the outputs alone would need B*H*W*(C+5) values).
        raise ValueError(f"{_FN}(): B*H*W must be < 2**31 pixels, got B={B}, H={H}, W={W}")
    check_same_device(_FN, pos=pos, tri=tri, colors=colors, background=background)
    check_finite(_FN, "pos", pos)
    if colors is not None:
        check_finite(_FN, "colors", colors)

    pos3 = pos if pos.ndim == 3 else pos[None]
    tl = tri.long()
    F = tri.shape[0]
    ts = screen_vertices(pos3)[:, tl].expand(B, -1, -1, -1).reshape(B * F, 12)
    tc = None
    if colors is not None:
        col3 = colors if colors.ndim == 3 else colors[None]
        tc = col3[:, tl].expand(B, -1, -1, -1).reshape(B * F, 3 * C)
    tile_start, entry_tri, entry_tile, (ntx, nty) = _bin_triangles(ts, B, F, H, W, cut)
    log.debug("soft_rasterize: %d tile entries for %d triangles x %d views", entry_tri.numel(), F, B)
    prm = torch.tensor([sigma, gamma, cut, z_eps], dtype=pos.dtype, device=pos.device)
    dims = (B, H, W, F, C, ntx, nty)
    out = _SoftRasterizeFn.apply(ts, tc, tile_start, entry_tri, entry_tile, dims, prm)
    alpha = out[..., C + 1:]
    if colors is None:
        return SoftRasterized(None, alpha)
    rgb = out[..., :C]
    if background is not None:
        rgb = rgb + out[..., C:C + 1] * background
    return SoftRasterized(rgb, alpha)
