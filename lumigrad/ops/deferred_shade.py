"""Direct lighting of G-buffers in one Warp pass each way (the fast path of :func:`lumigrad.shade.shade`).

``shade()`` in torch runs about twenty elementwise ops per light over ``[B, H, W, 3]`` buffers
forward and as many backward; on CPU they were most of a ``render_mesh`` step (Blinn-Phong, two
lights, 256^2: about 40 of 56 ms single-threaded). This op evaluates the same formulas per pixel
(kernels: :mod:`lumigrad.ops._deferred_shade_kernels`, spec: :mod:`lumigrad.ops._deferred_shade_ref`).

The material and lights come as small tables that ``shade()`` builds with torch ops (so gradients
reach light colours, intensities, directions and positions, and material constants or textures
through ordinary autograd); this op differentiates w.r.t. the tables and the per-pixel buffers.
Forward-mode AD runs the torch spec.

Measured (``bench/shading.py``, ``shade()`` fwd+bwd at 256^2, fused / torch time): 0.59-0.73 on one
thread (Lambert with one light the least), 0.25-0.56 on two (the kernels split over the cores where
torch's ops on 65k-pixel buffers do not); a whole ``render_mesh`` step 0.75-0.83 and 0.47-0.85
(``bench/results_shading.md``). Per pixel the gain is bounded: Warp's CPU code runs one pixel at a
time where torch's elementwise ops use SIMD lanes, so the fused pass wins by doing fewer passes over
memory and sharing work between terms, not per operation. One kernel per material kind (a
runtime branch on the kind made every pixel about twice as slow: the three BRDFs in one function
were not inlined); Blinn-Phong's ``pow`` is ``exp(s log nh)`` with the log shared with its gradient.

Session 9: a kernel thread runs one pass per light over its block of pixels, each pass compiled for
its light kind, and when neither the material, the lights nor the mask need a gradient (fitting
geometry) a backward that computes only the normal, view-direction and position gradients runs
(``shade_bwd_geo``). Lambert, one directional light, 512^2, one thread, kernels alone: forward 3.56 ->
2.06 ms, full backward 7.48 -> 5.37, geometry-only backward 3.08; the op's forward + backward w.r.t. the
normals 12.7 -> 6.4 ms (outputs now from ``_runtime.launch.empty``: huge pages, fewer page faults).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from lumigrad._runtime.checks import _desc, check_float_tensor
from lumigrad._runtime.launch import empty
from lumigrad.ops._common import cpu_layout, first_order, launch, per_thread_chunk, placeholder, to_warp, warp_device
from lumigrad.ops import _deferred_shade_kernels as _k
from lumigrad.ops._deferred_shade_ref import deferred_shade_ref

__all__ = ["deferred_shade", "MATERIALS", "LIGHT_KINDS"]

_FN = "deferred_shade"
MATERIALS = {"lambert": _k.LAMBERT, "blinn_phong": _k.BLINN_PHONG, "ggx": _k.GGX}
LIGHT_KINDS = {"directional": _k.DIRECTIONAL, "point": _k.POINT, "ambient": _k.AMBIENT}
# Pixels per kernel thread: on CPU a thread runs a block (Warp copies the arguments per thread), and a
# block's constant-material and light gradients are one row for torch to sum; on CUDA small blocks.
_CPU_BLOCK, _CUDA_BLOCK = 256, 16
_MIN_CHUNK_PIXELS = 131072

_cpu_layout = cpu_layout  # a module global, so tests can force the CUDA layout here


def deferred_shade(
    material: str,
    normals: Tensor,  # [N, 3]
    view_dirs: Tensor,  # [N, 3]
    points: Tensor | None,  # [N, 3]; needed with point lights
    mat: Tensor,  # [N, 8] or [1, 8]
    light_kinds: Sequence[str],  # L names
    light_data: Tensor,  # [L, 6]: direction to the light (unit) or position, then colour * intensity
    light_falloff: Tensor | None = None,  # [L, 3] point lights' (constant, linear, quadratic) falloff
    mask: Tensor | None = None,  # [N]
) -> Tensor:
    """Radiance ``[N, 3]`` of N pixels under L lights (formulas: :func:`lumigrad.shade.shade`).

    Args:
        material: ``"lambert"``, ``"blinn_phong"`` or ``"ggx"``.
        normals, view_dirs: ``[N, 3]`` (normalised here; zero rows stay zero).
        points: ``[N, 3]`` world positions, used by point lights (``None`` when there are none).
        mat: ``[N, 8]`` per pixel or ``[1, 8]`` for all: diffuse colour / albedo / base colour (0-2),
            Blinn-Phong specular colour (3-5), shininess or GGX roughness (6), GGX metallic (7).
        light_kinds: ``"directional"``, ``"point"`` or ``"ambient"`` per light.
        light_data: ``[L, 6]`` unit direction to a directional light or a point light's position
            (ignored for ambient), then its colour times intensity (an ambient light's colour).
        light_falloff: ``[L, 3]`` point lights' falloff ``1 / (c + l d + q d^2)``; default ``(0, 0, 1)``.
        mask: optional ``[N]`` coverage multiplying the result.

    Returns:
        ``[N, 3]``; differentiable (first order) w.r.t. every tensor but ``light_falloff``.
    """
    kind, kinds = _check(material, normals, view_dirs, points, mat, light_kinds, light_data, light_falloff, mask)
    n_lights = len(kinds)
    fo = light_falloff
    if fo is None:
        fo = torch.zeros(n_lights, 3, dtype=normals.dtype, device=normals.device)
        fo[:, 2] = 1.0
    tensors = (normals, view_dirs, points, mat, light_data, mask)
    if any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors):
        return deferred_shade_ref(kind, normals, view_dirs, points, mat, kinds, light_data, fo, mask)
    return _ShadeFn.apply(normals, view_dirs, points, mat, light_data, mask, fo.detach(), kind, tuple(kinds))


def _check(material, normals, view_dirs, points, mat, light_kinds, light_data, light_falloff, mask):
    if material not in MATERIALS:
        raise ValueError(f"{_FN}(): material must be one of {sorted(MATERIALS)}, got {material!r}")
    kinds = []
    for j, k in enumerate(light_kinds):
        if k not in LIGHT_KINDS:
            raise ValueError(f"{_FN}(): light_kinds[{j}] must be one of {sorted(LIGHT_KINDS)}, got {k!r}")
        kinds.append(LIGHT_KINDS[k])
    check_float_tensor(_FN, "normals", normals, (2,), 3, expected="float32/float64 [N, 3]")
    n, dt, dev = normals.shape[0], normals.dtype, normals.device
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{_FN}(): normals must be on a cpu or cuda device, got {dev}")

    def like(name, t, shape):
        if not isinstance(t, Tensor):
            raise TypeError(f"{_FN}(): {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != dt or t.device != dev or tuple(t.shape) not in shape:
            want = " or ".join(str(list(s)) for s in shape)
            raise ValueError(f"{_FN}(): {name} must be {str(dt).replace('torch.', '')} {want} on {dev} like normals, "
                             f"got {_desc(t)} on {t.device}")

    like("view_dirs", view_dirs, [(n, 3)])
    like("mat", mat, [(n, _k.MAT_COLS), (1, _k.MAT_COLS)])
    like("light_data", light_data, [(len(kinds), _k.LIGHT_COLS)])
    if light_falloff is not None:
        like("light_falloff", light_falloff, [(len(kinds), 3)])
    if mask is not None:
        like("mask", mask, [(n,)])
    if points is None and _k.POINT in kinds:
        raise ValueError(f"{_FN}(): points are required with point lights")
    if points is not None:
        like("points", points, [(n, 3)])
    return MATERIALS[material], kinds


def _min_chunk(blocks: int, block: int) -> int:
    """One CPU chunk per thread, none under ``_MIN_CHUNK_PIXELS``: a thread-pool hand-off costs more than it saves
    below that. Session 9, Lambert, one light, forward, two threads, wall: 128^2 0.62 ms on eight chunks vs 0.36
    on one, 256^2 0.71 vs 0.72, 512^2 1.72 vs 2.27 (two chunks: 1.75, on a busier machine)."""
    return per_thread_chunk(blocks, max(1, _MIN_CHUNK_PIXELS // block))


def _block(dev: str) -> int:
    return _CPU_BLOCK if _cpu_layout(dev) else _CUDA_BLOCK


def _common_args(n, v, p, mat, mask, kinds, ldata, fo, block):
    has_point = _k.POINT in kinds
    lk = torch.tensor(kinds if kinds else [0], dtype=torch.int32, device=n.device)
    return [block, to_warp(n), to_warp(v), to_warp(p if has_point else placeholder(n, 1, 3)),
            to_warp(mat), int(mat.shape[0] > 1 or n.shape[0] == 1), to_warp(mask if mask is not None else placeholder(n)),
            int(mask is not None), to_warp(lk[:len(kinds)]), to_warp(ldata if kinds else placeholder(n, 1, 6)),
            to_warp(fo if kinds else placeholder(n, 1, 3))]


class _ShadeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, normals, view_dirs, points, mat, light_data, mask, fo, kind, kinds):
        n, v = normals.detach().contiguous(), view_dirs.detach().contiguous()
        p = points.detach().contiguous() if points is not None else None
        m, ld = mat.detach().contiguous(), light_data.detach().contiguous()
        mk = mask.detach().contiguous() if mask is not None else None
        dev = warp_device(n)
        block = _block(dev)
        npix = n.shape[0]
        out = empty(n.shape, n.dtype, n.device)
        if npix:
            blocks = -(-npix // block)
            args = _common_args(n, v, p, m, mk, kinds, ld, fo, block)
            launch(_k.KERNELS[kind][0], blocks, args + [to_warp(out)], dev, min_chunk=_min_chunk(blocks, block))
        ctx.save_for_backward(n, v, p, m, ld, mk, fo)
        ctx.kind, ctx.kinds = kind, kinds
        return out

    @staticmethod
    @first_order
    def backward(ctx, grad):
        n, v, p, m, ld, mk, fo = ctx.saved_tensors
        kind, kinds = ctx.kind, ctx.kinds
        dev = warp_device(n)
        block = _block(dev)
        npix = n.shape[0]
        blocks = max(1, -(-npix // block))
        has_point = _k.POINT in kinds
        g_n = empty(n.shape, n.dtype, n.device)
        g_v = empty(n.shape, n.dtype, n.device) if kind != _k.LAMBERT else placeholder(n, 1, 3)  # Lambert: no view dependence
        g_p = empty(n.shape, n.dtype, n.device) if has_point else placeholder(n, 1, 3)
        geo_only = not any(ctx.needs_input_grad[3:6])  # no gradient to the material, lights or mask
        if geo_only:
            if npix:
                args = _common_args(n, v, p, m, mk, kinds, ld, fo, block)
                outs = [to_warp(grad.contiguous()), to_warp(g_n), to_warp(g_v), to_warp(g_p)]
                launch(_k.KERNELS[kind][2], blocks, args + outs, dev, min_chunk=_min_chunk(blocks, block))
            return (g_n, g_v if kind != _k.LAMBERT else None, g_p if has_point else None, None, None, None,
                    None, None, None)
        per_pixel_mat = m.shape[0] > 1 or npix == 1
        g_mask = torch.empty(npix, dtype=n.dtype, device=n.device) if mk is not None else placeholder(n)
        g_mat = torch.empty(npix, _k.MAT_COLS, dtype=n.dtype, device=n.device) if per_pixel_mat else placeholder(n, 1, 1)
        rows = torch.empty(blocks, _k.MAT_COLS + _k.LIGHT_COLS * len(kinds), dtype=n.dtype, device=n.device)
        if npix:
            args = _common_args(n, v, p, m, mk, kinds, ld, fo, block)
            outs = [to_warp(grad.contiguous()), to_warp(g_n), to_warp(g_v), to_warp(g_p), to_warp(g_mask), to_warp(g_mat),
                    to_warp(rows)]
            launch(_k.KERNELS[kind][1], blocks, args + outs, dev, min_chunk=_min_chunk(blocks, block))
        else:
            rows.zero_()
        sums = rows.sum(0)
        grad_mat = g_mat if per_pixel_mat else sums[:_k.MAT_COLS][None]
        grad_ld = sums[_k.MAT_COLS:].view(len(kinds), _k.LIGHT_COLS)
        return (g_n, g_v if kind != _k.LAMBERT else None, g_p if has_point else None, grad_mat, grad_ld, g_mask if mk is not None else None,
                None, None, None)
