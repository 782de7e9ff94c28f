"""Alpha compositing of packed ragged ray samples (NeRF volume rendering).

Samples are packed as nerfacc packs them: ray ``r`` owns the contiguous samples
``packed_info[r, 0] : packed_info[r, 0] + packed_info[r, 1]``, ordered near to
far. Pure-torch spec: :mod:`lumigrad.ops._volume_render_ref`. Kernels:
:mod:`lumigrad.ops._volume_kernels`.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import warp as wp

from lumigrad._runtime.checks import check_finite, check_float_tensor, check_same_device
from lumigrad._runtime.launch import launch, to_warp, warp_device
from lumigrad.ops import _volume_kernels as _k

__all__ = ["VolumeRendered", "volume_render", "packed_info_from_ray_indices", "ray_aabb_intersect"]

log = logging.getLogger(__name__)
_FN = "volume_render"


class VolumeRendered(NamedTuple):
    """Result of :func:`volume_render`."""

    colors: torch.Tensor  # [R, C] sum_i w_i c_i
    opacities: torch.Tensor  # [R] sum_i w_i = 1 - final transmittance
    depths: torch.Tensor  # [R] sum_i w_i (t_start_i + t_end_i) / 2 (not normalised)


def _desc(t: torch.Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}"


def volume_render(
    sigmas: torch.Tensor,  # [S] densities >= 0
    rgbs: torch.Tensor,  # [S, C]
    t_starts: torch.Tensor,  # [S]
    t_ends: torch.Tensor,  # [S]
    packed_info: torch.Tensor,  # [R, 2] int (start, count)
    transmittance_threshold: float = 1e-4,
) -> VolumeRendered:
    """Composite ray samples front to back: ``w_i = T_i (1 - exp(-sigma_i delta_i))``.

    ``T_i = exp(-sum_{j<i} sigma_j delta_j)`` with ``delta_i = t_end_i - t_start_i``.
    A ray stops (early ray termination) at the first sample whose transmittance
    ``T_i`` is below ``transmittance_threshold``; that sample and the rest get
    zero weight. Composite a background outside: ``colors + (1 - opacities)[:, None] * bg``.

    The backward pass is a hand-written kernel that recomputes each ray's
    transmittance instead of storing a per-sample autograd graph (memory is
    ``O(S)`` for the inputs only). Torch equivalent: ``_volume_render_ref``.

    Args:
        sigmas: ``[S]`` float32/float64 densities, ``>= 0``.
        rgbs: ``[S, C]`` per-sample values (colour, features...), same dtype.
        t_starts: ``[S]`` sample interval starts along the ray (no gradient).
        t_ends: ``[S]`` interval ends, ``>= t_starts`` (no gradient).
        packed_info: ``[R, 2]`` int32/int64 ``(start, count)`` per ray; the
            ranges must lie in ``[0, S]`` and not overlap. See :func:`packed_info_from_ray_indices`.
        transmittance_threshold: early termination threshold in ``[0, 1)``.

    Returns:
        :class:`VolumeRendered` ``(colors [R, C], opacities [R], depths [R])``.
        Gradients flow to ``sigmas`` and ``rgbs``.

    Example:
        >>> import torch
        >>> from lumigrad.ops.volume_render import volume_render
        >>> out = volume_render(torch.tensor([1e9]), torch.tensor([[0.2, 0.4, 0.6]]),
        ...                     torch.tensor([1.0]), torch.tensor([1.5]), torch.tensor([[0, 1]]))
        >>> out.colors, out.opacities
        (tensor([[0.2000, 0.4000, 0.6000]]), tensor([1.]))
    """
    check_float_tensor(_FN, "sigmas", sigmas, (1,), expected="float [S]")
    S = sigmas.shape[0]
    check_float_tensor(_FN, "rgbs", rgbs, (2,), expected=f"float [S={S}, C]")
    for name, t in (("rgbs", rgbs), ("t_starts", t_starts), ("t_ends", t_ends)):
        if name != "rgbs":
            check_float_tensor(_FN, name, t, (1,), expected=f"float [S={S}]")
        if t.shape[0] != S or t.dtype != sigmas.dtype:
            raise ValueError(f"{_FN}(): {name} must have sigmas' dtype and S={S} rows, got {_desc(t)}")
    if rgbs.shape[1] == 0:
        raise ValueError(f"{_FN}(): rgbs must have at least one channel, got {_desc(rgbs)}")
    if not isinstance(packed_info, torch.Tensor):
        raise TypeError(f"{_FN}(): packed_info must be an int torch.Tensor [R, 2], got {type(packed_info).__name__}")
    if packed_info.dtype not in (torch.int32, torch.int64) or packed_info.ndim != 2 or packed_info.shape[1] != 2:
        raise ValueError(f"{_FN}(): packed_info must be int32/int64 [R, 2] (start, count), got {_desc(packed_info)}")
    check_same_device(_FN, sigmas=sigmas, rgbs=rgbs, t_starts=t_starts, t_ends=t_ends, packed_info=packed_info)
    if not (isinstance(transmittance_threshold, (int, float)) and 0.0 <= transmittance_threshold < 1.0):
        raise ValueError(f"{_FN}(): transmittance_threshold must be in [0, 1), got {transmittance_threshold!r}")
    if packed_info.shape[0]:
        pi = packed_info.detach()
        lo_start, lo_count = int(pi[:, 0].min()), int(pi[:, 1].min())
        hi_end = int((pi[:, 0] + pi[:, 1]).max())
        if lo_start < 0 or lo_count < 0 or hi_end > S:
            raise ValueError(
                f"{_FN}(): packed_info ranges must lie in [0, S={S}] with counts >= 0, got starts >= {lo_start}, "
                f"counts >= {lo_count}, ends <= {hi_end}"
            )
    for name, t in (("sigmas", sigmas), ("rgbs", rgbs), ("t_starts", t_starts), ("t_ends", t_ends)):
        check_finite(_FN, name, t)
    if S and bool((t_ends.detach() < t_starts.detach()).any()):
        raise ValueError(f"{_FN}(): t_ends must be >= t_starts for every sample")
    return VolumeRendered(*_CompositeFn.apply(sigmas, rgbs, t_starts, t_ends, packed_info.to(torch.int32).contiguous(),
                                              float(transmittance_threshold)))


def packed_info_from_ray_indices(
    ray_indices: torch.Tensor,  # [S] int, sorted ascending
    n_rays: int,
) -> torch.Tensor:
    """``[R, 2]`` int32 ``(start, count)`` from sorted per-sample ray ids (nerfacc's ``pack_info``)."""
    if not isinstance(ray_indices, torch.Tensor) or ray_indices.dtype.is_floating_point or ray_indices.ndim != 1:
        raise ValueError("packed_info_from_ray_indices(): ray_indices must be an int tensor [S]")
    if ray_indices.numel() and (int(ray_indices.min()) < 0 or int(ray_indices.max()) >= n_rays):
        raise ValueError(f"packed_info_from_ray_indices(): ray_indices must lie in [0, {n_rays})")
    if ray_indices.numel() > 1 and bool((ray_indices[1:] < ray_indices[:-1]).any()):
        raise ValueError("packed_info_from_ray_indices(): ray_indices must be sorted ascending")
    counts = torch.bincount(ray_indices.long(), minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    return torch.stack([starts, counts], 1).to(torch.int32)


def ray_aabb_intersect(
    origins: torch.Tensor,  # [R, 3]
    dirs: torch.Tensor,  # [R, 3]
    aabb: torch.Tensor,  # [6] (xmin, ymin, zmin, xmax, ymax, zmax)
    near: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test: ``(t_near [R], t_far [R], hit [R] bool)``; ``t_near >= near``.

    Pure torch (differentiable almost everywhere, no kernel needed).
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (aabb[:3] - origins) * inv
    t1 = (aabb[3:] - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp(min=near)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far, t_far > t_near


def _scalar(x: float, dtype: torch.dtype):
    return wp.float64(x) if dtype == torch.float64 else wp.float32(x)


class _CompositeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, rgbs, t_starts, t_ends, packed, threshold):
        R, C = packed.shape[0], rgbs.shape[1]
        opts = dict(dtype=sigmas.dtype, device=sigmas.device)
        color = torch.empty(R, C, **opts)
        opacity = torch.empty(R, **opts)
        depth = torch.empty(R, **opts)
        used = torch.empty(R, dtype=torch.int32, device=sigmas.device)
        sig, rgb, ts, te = (t.detach().contiguous() for t in (sigmas, rgbs, t_starts, t_ends))
        launch(
            _k.composite_fwd, R,
            [to_warp(packed), to_warp(sig), to_warp(rgb), to_warp(ts), to_warp(te), _scalar(threshold, sig.dtype),
             to_warp(color), to_warp(opacity), to_warp(depth), to_warp(used)],
            warp_device(sig), min_chunk=256,
        )
        ctx.save_for_backward(sig, rgb, ts, te, packed, color, opacity, depth, used)
        return color, opacity, depth

    @staticmethod
    def backward(ctx, g_color, g_opacity, g_depth):
        sig, rgb, ts, te, packed, color, opacity, depth, used = ctx.saved_tensors
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return None, None, None, None, None, None
        R = packed.shape[0]
        S = sig.shape[0]
        g_color = torch.zeros_like(color) if g_color is None else g_color.contiguous()
        g_opacity = torch.zeros_like(opacity) if g_opacity is None else g_opacity.contiguous()
        g_depth = torch.zeros_like(depth) if g_depth is None else g_depth.contiguous()
        # Samples outside every ray's range get no gradient; rays overwrite their own.
        grad_sig = torch.zeros(S, dtype=sig.dtype, device=sig.device)
        grad_rgb = torch.zeros_like(rgb)
        launch(
            _k.composite_bwd, R,
            [to_warp(packed), to_warp(sig), to_warp(rgb), to_warp(ts), to_warp(te), to_warp(color), to_warp(opacity),
             to_warp(depth), to_warp(used), to_warp(g_color), to_warp(g_opacity), to_warp(g_depth),
             to_warp(grad_sig), to_warp(grad_rgb)],
            warp_device(sig), min_chunk=256,
        )
        return (grad_sig if ctx.needs_input_grad[0] else None), (grad_rgb if ctx.needs_input_grad[1] else None), \
            None, None, None, None
