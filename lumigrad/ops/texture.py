"""Texture sampling with nearest, bilinear and trilinear (mipmap) filtering (nvdiffrast's ``texture``).

UV convention (OBJ/OpenGL): u to the right, v **up**, (0, 0) at the bottom-left
of the texture image. Texel row r (row 0 = top row of the image file) has its
centre at v = 1 - (r + 0.5) / Ht, column c at u = (c + 0.5) / Wt.

Pure-torch spec: :mod:`lumigrad.ops._texture_ref`. Kernels:
:mod:`lumigrad.ops._texture_kernels`.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from lumigrad._runtime.checks import check_finite, check_float_tensor, check_same_device
from lumigrad.ops._common import first_order, launch, placeholder, reduce_rows, to_warp, warp_device
from lumigrad.ops import _texture_kernels as _k

__all__ = ["build_mip", "texture", "FILTER_MODES", "BOUNDARY_MODES"]

log = logging.getLogger(__name__)

FILTER_MODES = ("auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear")
BOUNDARY_MODES = ("wrap", "clamp", "zero")
# Integer codes shared with the kernels.
_FILTER_CODE = {"nearest": 0, "linear": 1, "linear-mipmap-nearest": 2, "linear-mipmap-linear": 3}
_BOUNDARY_CODE = {"wrap": 0, "clamp": 1, "zero": 2}
_TAP_SLOTS = {0: 1, 1: 4, 2: 4, 3: 8}


def build_mip(
    tex: torch.Tensor,  # [B, Ht, Wt, C] or [Ht, Wt, C]
    max_mip_level: int | None = None,
) -> list[torch.Tensor]:
    """Build a mip chain by repeated 2x box filtering (differentiable w.r.t. ``tex``).

    Level k+1 has size ``(max(1, h_k // 2), max(1, w_k // 2))``; the chain stops at
    1x1 or at ``max_mip_level``. Each level is ``F.adaptive_avg_pool2d`` of the
    previous one: an exact 2x2 box filter for even sizes; for an odd size each
    output texel averages the (overlapping) window of input texels it covers.

    Args:
        tex: ``[B, Ht, Wt, C]`` or ``[Ht, Wt, C]`` float texture.
        max_mip_level: cap on the number of levels after the base (None = full chain).

    Returns:
        ``[tex, level1, level2, ...]``; element 0 *is* ``tex``; all have tex's rank.
        Pass it to :func:`texture` as ``mip=`` to reuse it for a fixed texture.

    Example:
        >>> import torch
        >>> from lumigrad.ops.texture import build_mip
        >>> [m.shape[0] for m in build_mip(torch.rand(8, 4, 3))]
        [8, 4, 2, 1]
    """
    check_float_tensor("build_mip", "tex", tex, (3, 4), expected="float [B, Ht, Wt, C] or [Ht, Wt, C]")
    max_level = _check_max_level("build_mip", max_mip_level)
    x = tex if tex.ndim == 4 else tex[None]
    if min(x.shape) == 0:
        raise ValueError(f"build_mip(): tex must be non-empty, got {list(tex.shape)}")
    levels = [tex]
    h, w = x.shape[1:3]
    while (h > 1 or w > 1) and (max_level is None or len(levels) <= max_level):
        if h % 2 == 0 and w % 2 == 0:
            # Same as the pooling below for even sizes, and several times faster channels-last.
            q = x.reshape(x.shape[0], h // 2, 2, w // 2, 2, x.shape[3])
            x = (q[:, :, 0, :, 0] + q[:, :, 0, :, 1] + q[:, :, 1, :, 0] + q[:, :, 1, :, 1]) * 0.25
            h, w = h // 2, w // 2
        else:
            h, w = max(1, h // 2), max(1, w // 2)
            x = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), (h, w)).permute(0, 2, 3, 1)
        levels.append(x if tex.ndim == 4 else x[0])
    return levels


def texture(
    tex: torch.Tensor,  # [B, Ht, Wt, C] or [Ht, Wt, C]
    uv: torch.Tensor,  # [B, H, W, 2]
    uv_da: torch.Tensor | None = None,  # [B, H, W, 4] (du/dX, du/dY, dv/dX, dv/dY)
    *,
    filter_mode: str = "auto",
    boundary_mode: str = "wrap",
    max_mip_level: int | None = None,
    mip: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sample a texture at per-pixel UVs.

    Args:
        tex: ``[B, Ht, Wt, C]`` or ``[Ht, Wt, C]`` float32/float64 texture, row 0
            = top of the image (``[Ht, Wt, C]`` and batch 1 broadcast over B).
        uv: ``[B, H, W, 2]`` texture coordinates (u right, v up, [0, 1] spans
            the texture), same dtype as ``tex``.
        uv_da: ``[B, H, W, 4]`` screen derivatives (du/dX, du/dY, dv/dX, dv/dY)
            in pixels, e.g. ``interpolate(..., diff_attrs="all").out_da`` of a
            2-channel UV attribute. Selects the mip level; needed by the
            mipmap filters.
        filter_mode: ``"nearest"``, ``"linear"`` (bilinear),
            ``"linear-mipmap-nearest"``, ``"linear-mipmap-linear"`` (trilinear) or
            ``"auto"`` (trilinear if ``uv_da`` is given, else bilinear). The mip
            level is 0.5 * log2 of the squared major axis of the footprint
            in base-level texels, clamped to [0, max level], as in nvdiffrast.
        boundary_mode: ``"wrap"`` (repeat), ``"clamp"`` (edge texels) or
            ``"zero"`` (texels outside read as 0).
        max_mip_level: cap on the mip level (None = down to 1x1).
        mip: a cached chain from :func:`build_mip`. Level 0 is always ``tex``
            itself (``mip[0]`` must have its shape); coarser levels come from
            ``mip`` and receive its gradients. Ignored without mipmaps.

    Returns:
        ``[B, H, W, C]`` samples. Gradients flow to ``tex`` (through every mip
        level), to ``uv`` (bilinear derivative; zero for ``"nearest"``) and, for
        ``"linear-mipmap-linear"``, to ``uv_da`` through the level blend weight.
        Forward-mode AD (``torch.autograd.forward_ad``) runs the torch reference
        :func:`lumigrad.ops._texture_ref.texture_ref` (same values) instead of the kernel.

    Example:
        >>> import torch
        >>> from lumigrad.ops.texture import texture
        >>> tex = torch.tensor([[[1.0], [2.0]]])  # 1 x 2 texels
        >>> texture(tex, torch.tensor([[[[0.5, 0.5]]]]), boundary_mode="clamp").flatten()
        tensor([1.5000])
    """
    fn = "texture"
    check_float_tensor(fn, "tex", tex, (3, 4), expected="float [B, Ht, Wt, C] or [Ht, Wt, C]")
    check_float_tensor(fn, "uv", uv, (4,), 2, expected="float [B, H, W, 2]")
    if uv.dtype != tex.dtype:
        raise ValueError(f"{fn}(): uv must have tex's dtype {_dt(tex)}, got {_dt(uv)} {list(uv.shape)}")
    check_same_device(fn, tex=tex, uv=uv, uv_da=uv_da)
    tex4 = tex if tex.ndim == 4 else tex[None]
    Bt, Ht, Wt, C = tex4.shape
    B, H, W, _ = uv.shape
    if min(Bt, Ht, Wt, C) == 0 or B * H * W == 0:
        raise ValueError(f"{fn}(): tex and uv must be non-empty, got tex {list(tex.shape)}, uv {list(uv.shape)}")
    if Bt not in (1, B):
        raise ValueError(f"{fn}(): tex batch must be 1 or uv's batch {B}, got tex {list(tex.shape)}")
    if filter_mode not in FILTER_MODES:
        raise ValueError(f"{fn}(): filter_mode must be one of {', '.join(FILTER_MODES)}, got {filter_mode!r}")
    if boundary_mode not in BOUNDARY_MODES:
        raise ValueError(f"{fn}(): boundary_mode must be one of {', '.join(BOUNDARY_MODES)}, got {boundary_mode!r}")
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if uv_da is not None else "linear"
    mode = _FILTER_CODE[filter_mode]
    max_level = _check_max_level(fn, max_mip_level)
    check_finite(fn, "tex", tex)
    check_finite(fn, "uv", uv)
    if mode < 2:
        levels = [tex4]
    else:
        if uv_da is None:
            raise ValueError(f"{fn}(): filter_mode {filter_mode!r} needs uv_da [B, H, W, 4]")
        check_float_tensor(fn, "uv_da", uv_da, (4,), 4, expected="float [B, H, W, 4]")
        if uv_da.shape[:3] != uv.shape[:3] or uv_da.dtype != uv.dtype:
            raise ValueError(
                f"{fn}(): uv_da must be {_dt(uv)} {[B, H, W, 4]}, got {_dt(uv_da)} {list(uv_da.shape)}"
            )
        check_finite(fn, "uv_da", uv_da)
        levels = _mip_levels(fn, tex, mip, max_level)
    if any(x is not None and fwAD.unpack_dual(x).tangent is not None for x in (*levels, uv, uv_da)):
        # Forward-mode AD (jvp): the torch spec, which autograd differentiates in both modes.
        from lumigrad.ops._texture_ref import texture_ref

        return texture_ref(tex, uv, uv_da, filter_mode=filter_mode, boundary_mode=boundary_mode,
                           max_mip_level=max_level, mip=mip)
    packed, lvl = _pack(levels)
    meta = (mode, _BOUNDARY_CODE[boundary_mode], Bt > 1)
    if mode < 2:
        return _TextureFn.apply(packed, uv, lvl, meta)
    return _TextureMipFn.apply(packed, uv, uv_da, lvl, meta)


def _dt(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _check_max_level(fn: str, max_mip_level) -> int | None:
    if max_mip_level is None:
        return None
    if isinstance(max_mip_level, bool) or not isinstance(max_mip_level, int) or max_mip_level < 0:
        raise ValueError(f"{fn}(): max_mip_level must be None or an int >= 0, got {max_mip_level!r}")
    return max_mip_level


def _mip_levels(fn: str, tex: torch.Tensor, mip, max_level: int | None) -> list[torch.Tensor]:
    """Levels as ``[Bt, h, w, C]`` tensors, level 0 = tex."""
    if mip is None:
        levels = build_mip(tex, max_level)
    else:
        if not isinstance(mip, (list, tuple)) or not mip or not all(isinstance(m, torch.Tensor) for m in mip):
            raise TypeError(f"{fn}(): mip must be a list of tensors from build_mip(), got {type(mip).__name__}")
        if mip[0].shape != tex.shape:
            raise ValueError(f"{fn}(): mip[0] must have tex's shape {list(tex.shape)}, got {list(mip[0].shape)}")
        for k, m in enumerate(mip[1:], 1):
            ok = m.ndim == tex.ndim and m.shape[:-3] == tex.shape[:-3] and m.shape[-1] == tex.shape[-1]
            if not ok or min(m.shape) == 0 or m.dtype != tex.dtype or m.device != tex.device:
                lead = f"{tex.shape[0]}, " if tex.ndim == 4 else ""
                raise ValueError(
                    f"{fn}(): mip[{k}] must be {_dt(tex)} [{lead}h, w, {tex.shape[-1]}] on {tex.device}, "
                    f"got {_dt(m)} {list(m.shape)} on {m.device}"
                )
        levels = [tex, *mip[1:]]
        if max_level is not None:
            levels = levels[: max_level + 1]
    return [m if m.ndim == 4 else m[None] for m in levels]


def _pack(levels: list[torch.Tensor]):
    """Concatenate levels into ``[N, C]`` rows plus int32 offsets/heights/widths."""
    C = levels[0].shape[-1]
    dev = levels[0].device
    sizes = [(m.shape[1], m.shape[2]) for m in levels]
    offs, n = [], 0
    for m in levels:
        offs.append(n)
        n += m.shape[0] * m.shape[1] * m.shape[2]
    packed = torch.cat([m.reshape(-1, C) for m in levels]) if len(levels) > 1 else levels[0].reshape(-1, C)
    lvl = torch.tensor([offs, [s[0] for s in sizes], [s[1] for s in sizes]], dtype=torch.int32, device=dev)
    return packed, lvl


def _launch(packed, uv, uv_da, lvl, meta, grad_out=None, want_tex=False):
    """Forward (``grad_out is None``) or backward launch on contiguous views."""
    mode, boundary, tex_batched = meta
    B, H, W, _ = uv.shape
    P, C = B * H * W, packed.shape[1]
    opts = dict(dtype=packed.dtype, device=packed.device)
    da = uv_da.contiguous().view(P, 4) if uv_da is not None else placeholder(packed, 1, 4)
    lvl = lvl.contiguous()
    inputs = [
        to_warp(packed.contiguous()),
        to_warp(lvl[0]),
        to_warp(lvl[1]),
        to_warp(lvl[2]),
        to_warp(uv.contiguous().view(P, 2)),
        to_warp(da),
        H * W,
        int(tex_batched),
        mode,
        boundary,
        lvl.shape[1] - 1,
    ]
    dev = warp_device(packed)
    if grad_out is None:
        out = torch.empty(P, C, **opts)
        launch(_k.texture_fwd, P, [*inputs, to_warp(out)], dev)
        return out.view(B, H, W, C)
    S = _TAP_SLOTS[mode]
    g = grad_out.contiguous().view(P, C)
    grad_uv = torch.empty(P, 2, **opts)
    grad_da = torch.empty(P, 4, **opts) if mode == 3 else placeholder(packed, 1, 4)
    # The kernel always records its taps (cheap); they are reduced only when tex needs a gradient.
    rows = torch.empty(P, S, dtype=torch.int32, device=packed.device)
    wts = torch.empty(P, S, **opts)
    outs = [to_warp(g), to_warp(grad_uv), to_warp(grad_da), to_warp(rows), to_warp(wts)]
    launch(_k.texture_bwd, P, [*inputs, *outs], dev)
    grad_packed = None
    if want_tex:
        contrib = (wts[:, :, None] * g[:, None, :]).view(-1, C)
        grad_packed = reduce_rows(contrib, rows, packed.shape[0])
    return grad_packed, grad_uv.view(B, H, W, 2), (grad_da.view(B, H, W, 4) if mode == 3 else None)


class _TextureFn(torch.autograd.Function):
    """nearest / linear: one level, no uv_da."""

    @staticmethod
    def forward(ctx, packed, uv, lvl, meta):
        ctx.meta = meta
        ctx.save_for_backward(packed, uv, lvl)
        return _launch(packed.detach(), uv.detach(), None, lvl, meta)

    @staticmethod
    @first_order
    def backward(ctx, grad_out):
        packed, uv, lvl = ctx.saved_tensors
        want_tex, want_uv = ctx.needs_input_grad[:2]
        if not (want_tex or want_uv):
            return None, None, None, None
        g_tex, g_uv, _ = _launch(packed.detach(), uv.detach(), None, lvl, ctx.meta, grad_out, want_tex)
        return g_tex, (g_uv if want_uv else None), None, None


class _TextureMipFn(torch.autograd.Function):
    """linear-mipmap-nearest / linear-mipmap-linear: packed mip chain, level from uv_da."""

    @staticmethod
    def forward(ctx, packed, uv, uv_da, lvl, meta):
        ctx.meta = meta
        ctx.save_for_backward(packed, uv, uv_da, lvl)
        return _launch(packed.detach(), uv.detach(), uv_da.detach(), lvl, meta)

    @staticmethod
    @first_order
    def backward(ctx, grad_out):
        packed, uv, uv_da, lvl = ctx.saved_tensors
        want_tex, want_uv, want_da = ctx.needs_input_grad[:3]
        if not (want_tex or want_uv or want_da):
            return None, None, None, None, None
        g_tex, g_uv, g_da = _launch(packed.detach(), uv.detach(), uv_da.detach(), lvl, ctx.meta, grad_out, want_tex)
        if want_da and g_da is None:  # mipmap-nearest: the level choice is piecewise constant
            g_da = torch.zeros_like(uv_da)
        return g_tex, (g_uv if want_uv else None), (g_da if want_da else None), None, None
