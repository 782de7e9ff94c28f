"""Fixed-step ray marching through an occupancy grid (empty-space skipping), as nerfacc's grid sampler.

Kernels: :mod:`lumigrad.ops._march_kernels`; pure-torch spec:
:mod:`lumigrad.ops._march_ref`. Sampling is not differentiable.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from lumigrad._runtime.checks import check_finite, check_float_tensor, check_same_device
from lumigrad._runtime.launch import launch, to_warp, warp_device
from lumigrad.ops import _march_kernels as _k

__all__ = ["MarchedSamples", "march_grid"]

_FN = "march_grid"


class MarchedSamples(NamedTuple):
    """Packed samples: ray ``r`` owns ``packed_info[r, 0] : packed_info[r, 0] + packed_info[r, 1]``."""

    ray_indices: torch.Tensor  # [S] int64, ascending
    t_starts: torch.Tensor  # [S]
    t_ends: torch.Tensor  # [S]
    packed_info: torch.Tensor  # [R, 2] int32


def march_grid(
    origins: torch.Tensor,  # [R, 3]
    dirs: torch.Tensor,  # [R, 3]
    t_near: torch.Tensor,  # [R]
    t_far: torch.Tensor,  # [R]
    offsets: torch.Tensor,  # [R] in [0, 1): start of the march, in steps
    step_size: float,
    occupied: torch.Tensor,  # [res, res, res] bool, x-major
    grid_aabb: torch.Tensor,  # [6] (xmin, ymin, zmin, xmax, ymax, zmax)
) -> MarchedSamples:
    """March every ray from ``t_near`` in steps of ``step_size``; keep steps whose midpoint's cell is occupied.

    Step ``k`` of ray ``r`` is ``[t0, t0 + step)`` with ``t0 = t_near + (k +
    offsets) * step`` and is kept when its midpoint lies before ``t_far``,
    inside ``grid_aabb`` and in an occupied cell. Every ray marches the same
    number of candidate steps, ``ceil(max(t_far - t_near) / step)``.

    Returns:
        :class:`MarchedSamples` (packed, rays in order, samples in increasing t).

    Example:
        >>> import torch
        >>> from lumigrad.ops.march import march_grid
        >>> occ = torch.ones(4, 4, 4, dtype=torch.bool)
        >>> s = march_grid(torch.tensor([[-2.0, 0.1, 0.1]]), torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([1.0]),
        ...                torch.tensor([3.0]), torch.tensor([0.5]), 0.25, occ, torch.tensor([-1.0, -1, -1, 1, 1, 1]))
        >>> int(s.packed_info[0, 1])
        8
    """
    check_float_tensor(_FN, "origins", origins, (2,), 3, expected="float [R, 3]")
    R = origins.shape[0]
    check_float_tensor(_FN, "dirs", dirs, (2,), 3, expected=f"float [R={R}, 3]")
    for name, t in (("t_near", t_near), ("t_far", t_far), ("offsets", offsets)):
        check_float_tensor(_FN, name, t, (1,), expected=f"float [R={R}]")
    check_float_tensor(_FN, "grid_aabb", grid_aabb, (1,), expected="float [6]")
    for name, t in (("dirs", dirs), ("t_near", t_near), ("t_far", t_far), ("offsets", offsets), ("grid_aabb", grid_aabb)):
        if t.dtype != origins.dtype:
            raise ValueError(f"{_FN}(): {name} must have origins' dtype {origins.dtype}, got {t.dtype}")
    if dirs.shape[0] != R or t_near.shape[0] != R or t_far.shape[0] != R or offsets.shape[0] != R:
        raise ValueError(f"{_FN}(): dirs, t_near, t_far, offsets must have R={R} rows, got "
                         f"{dirs.shape[0]}, {t_near.shape[0]}, {t_far.shape[0]}, {offsets.shape[0]}")
    if grid_aabb.shape[0] != 6 or not bool((grid_aabb[:3] < grid_aabb[3:]).all()):
        raise ValueError(f"{_FN}(): grid_aabb must be [6] with min < max, got {grid_aabb.tolist()}")
    if (not isinstance(occupied, torch.Tensor) or occupied.dtype != torch.bool or occupied.ndim != 3
            or len(set(occupied.shape)) != 1 or occupied.shape[0] < 1):
        raise ValueError(f"{_FN}(): occupied must be a bool [res, res, res] grid, got "
                         f"{getattr(occupied, 'dtype', type(occupied))} {list(getattr(occupied, 'shape', []))}")
    if not (isinstance(step_size, (int, float)) and not isinstance(step_size, bool) and step_size > 0
            and math.isfinite(step_size)):
        raise ValueError(f"{_FN}(): step_size must be a finite float > 0, got {step_size!r}")
    check_same_device(_FN, origins=origins, dirs=dirs, t_near=t_near, t_far=t_far, offsets=offsets,
                      occupied=occupied, grid_aabb=grid_aabb)
    for name, t in (("origins", origins), ("dirs", dirs), ("t_near", t_near), ("t_far", t_far), ("offsets", offsets)):
        check_finite(_FN, name, t)
    dev = origins.device
    span = float((t_far - t_near).max()) if R else 0.0
    n_max = max(int(math.ceil(span / step_size)), 1)
    res = occupied.shape[0]
    args = [to_warp(origins.contiguous()), to_warp(dirs.contiguous()), to_warp(t_near.contiguous()),
            to_warp(t_far.contiguous()), to_warp(offsets.contiguous()), _scalar(step_size, origins.dtype), n_max,
            to_warp(occupied.contiguous().view(torch.uint8).view(-1)), res, to_warp(grid_aabb.contiguous())]
    wdev = warp_device(origins)
    counts = torch.zeros(R, dtype=torch.int32, device=dev)
    launch(_k.march_count, R, [*args, to_warp(counts)], wdev, min_chunk=256)
    starts = torch.cumsum(counts, 0, dtype=torch.int64) - counts
    total = int(counts.sum())
    ray_ids = torch.empty(total, dtype=torch.int64, device=dev)
    ts = torch.empty(total, dtype=origins.dtype, device=dev)
    te = torch.empty(total, dtype=origins.dtype, device=dev)
    if total:
        launch(_k.march_fill, R, [*args, to_warp(starts.to(torch.int32)), to_warp(ray_ids), to_warp(ts), to_warp(te)],
               wdev, min_chunk=256)
    packed = torch.stack([starts, counts.long()], 1).to(torch.int32)
    return MarchedSamples(ray_ids, ts, te, packed)


def _scalar(x: float, dtype: torch.dtype):
    import warp as wp

    return wp.float64(x) if dtype == torch.float64 else wp.float32(x)
