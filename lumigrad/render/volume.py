"""NeRF volume rendering pipeline: ray sampling (stratified or occupancy-guided) + compositing.

Sampling is torch on top of the :func:`lumigrad.ops.volume_render.volume_render`
kernel, as nerfacc does it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from lumigrad.ops.march import march_grid
from lumigrad.ops.volume_render import packed_info_from_ray_indices, ray_aabb_intersect, volume_render

__all__ = ["RaySamples", "stratified_samples", "occupancy_samples", "grid_samples", "RenderedRays", "render_rays"]


class RaySamples(NamedTuple):
    """Packed samples: ray ``r`` owns ``packed_info[r, 0] : packed_info[r, 0] + packed_info[r, 1]``."""

    ray_indices: torch.Tensor  # [S] int64, ascending
    t_starts: torch.Tensor  # [S]
    t_ends: torch.Tensor  # [S]
    packed_info: torch.Tensor  # [R, 2] int32


class RenderedRays(NamedTuple):
    colors: torch.Tensor  # [R, 3] background composited
    opacities: torch.Tensor  # [R]
    depths: torch.Tensor  # [R]
    n_samples: int


def stratified_samples(
    t_near: torch.Tensor,  # [R]
    t_far: torch.Tensor,  # [R]
    n_samples: int,
    generator: torch.Generator | None = None,
    jitter: bool = True,
) -> RaySamples:
    """``n_samples`` equal bins per ray between near and far, each with one uniformly jittered cut.

    The intervals tile ``[t_near, t_far]``; with ``jitter`` every interior cut is
    drawn uniformly in its bin (stratified sampling), else cuts sit at the bin edges.
    """
    R = t_near.shape[0]
    u = torch.linspace(0.0, 1.0, n_samples + 1, dtype=t_near.dtype, device=t_near.device).expand(R, n_samples + 1)
    if jitter:
        noise = (torch.rand(R, n_samples + 1, generator=generator, dtype=t_near.dtype) - 0.5) / n_samples
        noise[:, 0] = 0.0
        noise[:, -1] = 0.0
        u = u + noise.to(t_near.device)
    t = t_near[:, None] + (t_far - t_near)[:, None] * u
    ray_ids = torch.arange(R, device=t.device).repeat_interleave(n_samples)
    packed = torch.stack([torch.arange(R) * n_samples, torch.full((R,), n_samples)], 1).to(torch.int32).to(t.device)
    return RaySamples(ray_ids, t[:, :-1].reshape(-1), t[:, 1:].reshape(-1), packed)


def occupancy_samples(
    origins: torch.Tensor,  # [R, 3]
    dirs: torch.Tensor,  # [R, 3] unit
    aabb: torch.Tensor,  # [6]
    occupied: Callable[[torch.Tensor], torch.Tensor],  # [..., 3] -> [...] bool
    step_size: float,
    near: float = 0.0,
    generator: torch.Generator | None = None,
    jitter: bool = True,
    offsets: torch.Tensor | None = None,  # [R, 1] in [0, 1): explicit start offsets (overrides jitter)
) -> RaySamples:
    """March each ray through the AABB with a fixed step; keep the steps whose midpoint is occupied.

    The march starts at a (per ray, stratified) random offset in ``[0, step)``
    from ``t_near``; empty space (per the occupancy function) gets no samples.
    """
    t_near, t_far, hit = ray_aabb_intersect(origins, dirs, aabb, near)
    t_far = torch.where(hit, t_far, t_near)
    R = origins.shape[0]
    n_max = max(int(torch.ceil(((t_far - t_near).max() / step_size))) if R else 0, 1)
    if offsets is not None:
        off = offsets
    else:
        off = torch.rand(R, 1, generator=generator, dtype=origins.dtype) if jitter else torch.full((R, 1), 0.5)
    t0 = t_near[:, None] + (torch.arange(n_max, dtype=origins.dtype) + off.to(origins.dtype)) * step_size
    t1 = t0 + step_size
    mid = 0.5 * (t0 + t1)
    valid = mid < t_far[:, None]
    pts = origins[:, None, :] + dirs[:, None, :] * mid[..., None]
    valid &= occupied(pts)
    ray_ids, slot = valid.nonzero(as_tuple=True)
    ts, te = t0[ray_ids, slot], t1[ray_ids, slot]
    return RaySamples(ray_ids, ts, te, packed_info_from_ray_indices(ray_ids, R))


def grid_samples(
    origins: torch.Tensor,  # [R, 3]
    dirs: torch.Tensor,  # [R, 3] unit
    occupied: torch.Tensor,  # [res, res, res] bool (e.g. OccupancyGrid.occupied)
    aabb: torch.Tensor,  # [6] the grid's box
    step_size: float,
    near: float = 0.0,
    generator: torch.Generator | None = None,
    jitter: bool = True,
    offsets: torch.Tensor | None = None,  # [R, 1] in [0, 1): explicit start offsets (overrides jitter)
) -> RaySamples:
    """:func:`occupancy_samples` for a boolean grid, marched in a kernel (:func:`lumigrad.ops.march.march_grid`).

    Same samples as ``occupancy_samples(origins, dirs, aabb, grid.query, ...)``
    without materialising every candidate step of every ray in torch.
    """
    t_near, t_far, hit = ray_aabb_intersect(origins, dirs, aabb, near)
    t_far = torch.where(hit, t_far, t_near)
    R = origins.shape[0]
    if offsets is not None:
        off = offsets.reshape(R)
    else:
        off = torch.rand(R, generator=generator, dtype=origins.dtype) if jitter else torch.full((R,), 0.5)
    s = march_grid(origins, dirs, t_near, t_far, off.to(origins.dtype), step_size, occupied, aabb.to(origins.dtype))
    return RaySamples(s.ray_indices, s.t_starts, s.t_ends, s.packed_info)


def render_rays(
    field: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    origins: torch.Tensor,  # [R, 3]
    dirs: torch.Tensor,  # [R, 3]
    samples: RaySamples,
    background: torch.Tensor,  # [3] or [R, 3]
    transmittance_threshold: float = 1e-4,
) -> RenderedRays:
    """Evaluate ``field(points, dirs) -> (sigma [S], rgb [S, 3])`` at sample midpoints and composite."""
    ids = samples.ray_indices
    mid = 0.5 * (samples.t_starts + samples.t_ends)
    if ids.numel() == 0:
        R = origins.shape[0]
        zero = origins.new_zeros(R)
        return RenderedRays(background.expand(R, 3).clone(), zero, zero, 0)
    d = dirs[ids]
    sigma, rgb = field(origins[ids] + d * mid[:, None], d)
    out = volume_render(sigma, rgb, samples.t_starts, samples.t_ends, samples.packed_info, transmittance_threshold)
    colors = out.colors + (1.0 - out.opacities)[:, None] * background
    return RenderedRays(colors, out.opacities, out.depths, int(ids.numel()))
