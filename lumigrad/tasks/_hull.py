"""Initial Gaussians for 3DGS on the visual hull of the alpha masks (:mod:`lumigrad.geometry.visual_hull`)."""
from __future__ import annotations

import logging
import math

import torch

from lumigrad.fields.gaussians import SH_C0, GaussianModel
from lumigrad.geometry.visual_hull import carve, hull_shell, project_to_mask
from lumigrad.scene.camera import Camera

__all__ = ["hull_init"]

log = logging.getLogger(__name__)


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
    box = torch.full((3,), float(bound))
    occ = carve(camera, alpha, -box, box, grid, threshold=0.3, unseen="keep")
    centres, size = hull_shell(occ, -box, box)
    centres, step = centres.float(), float(size[0])
    if centres.shape[0] < 8:
        log.warning("hull_init(): the visual hull is empty (%d voxels); falling back", centres.shape[0])
        return None
    idx = torch.randint(0, centres.shape[0], (n,), generator=generator)
    means = centres[idx] + (torch.rand(n, 3, generator=generator) - 0.5) * step
    rgb_sum = torch.zeros(n, 3)
    cnt = torch.zeros(n, 1)
    white = images[..., :3] * alpha[..., None] + (1 - alpha[..., None])
    for b in range(camera.batch_size):
        ix, iy, inside = project_to_mask(camera, b, means)
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
