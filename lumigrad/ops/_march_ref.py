"""Pure-torch reference of :func:`lumigrad.ops.march.march_grid` (the spec)."""
from __future__ import annotations

import math

import torch

from lumigrad.ops.march import MarchedSamples

__all__ = ["march_grid_ref"]


def march_grid_ref(origins, dirs, t_near, t_far, offsets, step_size, occupied, grid_aabb) -> MarchedSamples:
    """Same inputs and outputs as :func:`march_grid`: all ``[R, n_max]`` candidate steps at once."""
    R = origins.shape[0]
    res = occupied.shape[0]
    n_max = max(int(math.ceil(float((t_far - t_near).max()) / step_size)) if R else 1, 1)
    step = torch.tensor(step_size, dtype=origins.dtype)
    t0 = t_near[:, None] + (torch.arange(n_max, dtype=origins.dtype) + offsets[:, None]) * step
    t1 = t0 + step
    mid = 0.5 * (t0 + t1)
    pts = origins[:, None, :] + dirs[:, None, :] * mid[..., None]
    lo, hi = grid_aabb[:3], grid_aabb[3:]
    inside = ((pts >= lo) & (pts <= hi)).all(-1)
    cell = ((pts - lo) / (hi - lo) * res).long().clamp(0, res - 1)
    occ = occupied[cell[..., 0], cell[..., 1], cell[..., 2]]
    keep = (mid < t_far[:, None]).cumprod(1).bool() & inside & occ
    ray_ids, slot = keep.nonzero(as_tuple=True)
    counts = keep.sum(1)
    starts = torch.cumsum(counts, 0) - counts
    packed = torch.stack([starts, counts], 1).to(torch.int32)
    return MarchedSamples(ray_ids, t0[ray_ids, slot], t1[ray_ids, slot], packed)
