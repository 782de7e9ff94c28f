"""Visual hulls carved from alpha masks: initial Gaussians for 3DGS and the initial occupancy grid for NeRF."""
from __future__ import annotations

import logging
import math

import torch

from lumigrad.fields.gaussians import SH_C0, GaussianModel
from lumigrad.scene.camera import Camera

__all__ = ["carve", "visual_hull", "hull_init"]

log = logging.getLogger(__name__)


def _project(camera: Camera, b: int, pts: torch.Tensor):
    """Pixel indices ``(ix, iy)`` and an in-image mask of world points ``pts [M, 3]`` in view ``b``."""
    w2c, K = camera.world_to_cam[b].float(), camera.K[b].float()
    pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    zs = torch.where(z > 1e-6, z, torch.ones_like(z))
    u = K[0, 0] * pc[:, 0] / zs + K[0, 2]
    v = K[1, 1] * pc[:, 1] / zs + K[1, 2]
    inside = (z > 1e-6) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    ix = u.clamp(0, camera.width - 1).long()
    iy = v.clamp(0, camera.height - 1).long()
    return ix, iy, inside


def carve(camera: Camera, alpha: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, grid: int,
          threshold: float = 0.3) -> torch.Tensor:
    """``[grid, grid, grid]`` bool (x-major): cells of the box ``[lo, hi]`` whose centre survives carving.

    A centre survives when no view sees it on a pixel with alpha below
    ``threshold`` and at least one view sees it.
    """
    axes = [(torch.arange(grid, dtype=torch.float32) + 0.5) / grid * float(hi[i] - lo[i]) + float(lo[i])
            for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    keep = torch.ones(pts.shape[0], dtype=torch.bool)
    seen = torch.zeros(pts.shape[0], dtype=torch.bool)
    for b in range(camera.batch_size):
        ix, iy, inside = _project(camera, b, pts)
        a = alpha[b][iy, ix]
        keep &= ~(inside & (a < threshold))
        seen |= inside
    return (keep & seen).view(grid, grid, grid)


def visual_hull(camera: Camera, alpha: torch.Tensor, bound: float, grid: int = 80,
                threshold: float = 0.3) -> tuple[torch.Tensor, float]:
    """Carve a ``grid^3`` voxel grid over ``[-bound, bound]^3`` with the masks ``alpha [B, H, W]``.

    Returns the centres of the surviving voxels that touch a carved one (the
    hull's surface shell), ``[M, 3]``, and the voxel edge length.
    """
    step = 2 * bound / grid
    lo, hi = torch.full((3,), -bound), torch.full((3,), bound)
    occ = carve(camera, alpha, lo, hi, grid, threshold).view(1, 1, grid, grid, grid).float()
    # shell: occupied voxels with an empty neighbour (3x3x3 max-pool of the empty set)
    empty_near = torch.nn.functional.max_pool3d(1.0 - occ, 3, stride=1, padding=1) > 0
    shell = ((occ > 0) & empty_near).flatten()
    axis = (torch.arange(grid, dtype=torch.float32) + 0.5) * step - bound
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return pts[shell], step


def hull_init(camera: Camera, images: torch.Tensor, n: int, bound: float, opacity: float = 0.3,
              grid: int = 80, generator: torch.Generator | None = None) -> GaussianModel | None:
    """``n`` Gaussians on the visual-hull shell of RGBA ``images [B, H, W, 4]``, coloured from the views.

    Each Gaussian starts isotropic at the voxel size, jittered inside its voxel,
    with the mean colour (on white) of the views whose mask covers it. Returns
    None when the masks carve nothing useful (no alpha channel, empty hull).
    """
    alpha = images[..., 3]
    if bool((alpha > 0.999).all()):
        return None
    centres, step = visual_hull(camera, alpha, bound, grid)
    if centres.shape[0] < 8:
        log.warning("hull_init(): the visual hull is empty (%d voxels); falling back", centres.shape[0])
        return None
    idx = torch.randint(0, centres.shape[0], (n,), generator=generator)
    means = centres[idx] + (torch.rand(n, 3, generator=generator) - 0.5) * step
    rgb_sum = torch.zeros(n, 3)
    cnt = torch.zeros(n, 1)
    white = images[..., :3] * alpha[..., None] + (1 - alpha[..., None])
    for b in range(camera.batch_size):
        ix, iy, inside = _project(camera, b, means)
        ok = (inside & (alpha[b][iy, ix] > 0.5)).float()[:, None]
        rgb_sum += white[b][iy, ix] * ok
        cnt += ok
    rgb = torch.where(cnt > 0, rgb_sum / cnt.clamp(min=1), torch.full_like(rgb_sum, 0.5))
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    # Shell area ~ voxels * step^2 shared by n Gaussians: spacing ~ step * sqrt(voxels / n).
    spacing = step * math.sqrt(max(centres.shape[0] / n, 0.25))
    log_s = torch.full((n, 3), math.log(0.5 * spacing))
    logit = math.log(opacity / (1 - opacity))
    log.info("hull_init(): %d shell voxels (edge %.3f), %d Gaussians", centres.shape[0], step, n)
    return GaussianModel(means, log_s, quats, torch.full((n,), logit), ((rgb - 0.5) / SH_C0)[:, None],
                         torch.zeros(n, 15, 3))
