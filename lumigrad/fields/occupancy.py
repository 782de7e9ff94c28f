"""Occupancy grid for empty-space skipping (Instant-NGP / nerfacc style)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["OccupancyGrid"]


class OccupancyGrid(nn.Module):
    """A ``res^3`` grid over an AABB holding an EMA of the field's density per cell.

    Samples whose cell is not occupied are skipped. :meth:`update` re-evaluates
    the density at one jittered point per cell (all cells during warm-up, then a
    random quarter of them) and decays the old values, so cells that become empty
    during training are eventually skipped.

    Args:
        aabb: ``[6]`` (xmin, ymin, zmin, xmax, ymax, zmax).
        resolution: cells per axis.
    """

    def __init__(self, aabb: torch.Tensor, resolution: int = 64):
        super().__init__()
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.resolution = int(resolution)
        self.register_buffer("density", torch.zeros((resolution,) * 3))
        # every cell counts as occupied until the first update
        self.register_buffer("occupied", torch.ones((resolution,) * 3, dtype=torch.bool))
        # cells that may ever be occupied (e.g. a visual hull from masks); all by default
        self.register_buffer("allowed", torch.ones((resolution,) * 3, dtype=torch.bool))

    def restrict(self, allowed: torch.Tensor) -> None:
        """Never occupy cells outside ``allowed [res, res, res]`` bool (x-major, like the grid)."""
        r = self.resolution
        if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool or tuple(allowed.shape) != (r, r, r):
            raise ValueError(f"OccupancyGrid.restrict(): allowed must be bool [{r}, {r}, {r}], got "
                             f"{getattr(allowed, 'dtype', type(allowed))} {list(getattr(allowed, 'shape', []))}")
        self.allowed.copy_(allowed)
        self.occupied &= self.allowed

    def cell_of(self, pts: torch.Tensor) -> torch.Tensor:
        """``[..., 3]`` integer cell indices (clamped) of world points."""
        lo, hi = self.aabb[:3].to(pts.dtype), self.aabb[3:].to(pts.dtype)
        u = (pts - lo) / (hi - lo)
        return (u * self.resolution).long().clamp(0, self.resolution - 1)

    def query(self, pts: torch.Tensor) -> torch.Tensor:
        """``[...]`` bool: the points' cells are occupied (False outside the AABB)."""
        lo, hi = self.aabb[:3].to(pts.dtype), self.aabb[3:].to(pts.dtype)
        inside = ((pts >= lo) & (pts <= hi)).all(-1)
        c = self.cell_of(pts)
        return self.occupied[c[..., 0], c[..., 1], c[..., 2]] & inside

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], step_size: float, *, warmup: bool,
               decay: float = 0.95, threshold: float = 0.01, generator: torch.Generator | None = None) -> float:
        """Refresh the grid; return the occupied fraction.

        A cell is occupied when its EMA density times ``step_size`` (the alpha of
        one sample, to first order) exceeds ``min(threshold, mean)``.
        """
        r = self.resolution
        cells = self.allowed.view(-1).nonzero().flatten()  # only cells that may be occupied are evaluated
        n = cells.shape[0]
        if warmup:
            idx = cells
        else:
            idx = cells[torch.randperm(n, generator=generator)[: max(n // 4, 1)]]
        ijk = torch.stack([idx // (r * r), (idx // r) % r, idx % r], -1)
        jitter = torch.rand(idx.shape[0], 3, generator=generator)
        lo, hi = self.aabb[:3], self.aabb[3:]
        pts = lo + (ijk + jitter) / r * (hi - lo)
        sig = torch.cat([density_fn(p).float().reshape(-1) for p in pts.split(65536)])
        flat = self.density.view(-1)
        flat.mul_(decay)
        flat[idx] = torch.maximum(flat[idx], sig)
        alpha = flat * step_size
        thr = min(threshold, float(alpha[cells].mean()) if n else threshold)
        self.occupied.copy_((alpha > thr).view(r, r, r) & self.allowed)
        return float(self.occupied.float().mean())
