"""Shared set-up of the appearance tasks (texture, material, lighting): known geometry and pose."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lumigrad.ops import prepare_topology
from lumigrad.optim import Convergence, fit
from lumigrad.render.raster import RasterSettings, render_mesh
from lumigrad.scene.datasets import ImageDataset
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.scene import ObjectTransform
from lumigrad.tasks._common import as_dataset, downscale, gt_pose
from lumigrad.tasks.pose import load_task_mesh

__all__ = ["AppearanceProblem", "setup_problem"]


@dataclass
class AppearanceProblem:
    """A dataset split into train / held-out views, with the mesh, its pose and a cached topology."""

    ds: ImageDataset
    train: ImageDataset
    held: ImageDataset | None
    mesh: Mesh
    transform: ObjectTransform | None
    topology: object

    def render(self, views: ImageDataset, material, lights, idx=None, mesh: Mesh | None = None):
        cams = views.camera if idx is None else views.camera[idx]
        return render_mesh(mesh or self.mesh, cams, material, lights, RasterSettings(), transform=self.transform,
                           topology=self.topology)

    @property
    def ldr(self) -> bool:
        """Whether the images are low dynamic range (PNG/JPEG: clipped to [0, 1])."""
        return bool(self.ds.images.max() <= 1.0)

    def compare(self, image: torch.Tensor) -> torch.Tensor:
        """A render as the camera recorded it: clipped to [0, 1] for LDR images.

        Without the clip, a highlight brighter than 1 that the file stores as 1
        pulls the fit (roughness, metallic, light intensity) away from the truth;
        with it, a saturated pixel only asks the render to be at least 1.
        """
        return image.clamp(0.0, 1.0) if self.ldr else image

    def fit(self, params: dict, make, *, iterations: int, lr, views_per_step: int, seed: int, progress: bool,
            desc: str, post_step=None, extra_loss=None, schedule=None, region=None):
        """Minimise the L1 image error of ``make() -> (material, lights)`` over random training views.

        ``region``: optional ``(weights [N, H, W, 1], targets [N, H, W, 3])`` for every training view; the loss
        is then the weighted L1 error against ``targets`` (goal-driven appearance).
        """
        gen = torch.Generator().manual_seed(seed)
        n = len(self.train)

        def closure(it):
            idx = torch.randperm(n, generator=gen)[:views_per_step]
            material, lights = make()
            out = self.render(self.train, material, lights, idx)
            if region is None:
                loss = (self.compare(out.image) - self.train.images[idx]).abs().mean()
            else:  # goal-driven: only the region counts, against its target look
                w, tgt = region[0][idx], region[1][idx]
                loss = ((self.compare(out.image) - tgt).abs() * w).sum() / (3 * w.sum().clamp_min(1))
            if extra_loss is not None:
                loss = loss + extra_loss()
            return loss

        return fit(params, closure, lr=lr, schedule=schedule, stop=Convergence(max_iters=iterations, patience=None), post_step=post_step,
                   progress=progress, desc=desc)


def setup_problem(fn: str, data, mesh, *, max_views: int, scale: int, holdout_every: int,
                  strip_texture: bool = False) -> AppearanceProblem:
    ds = downscale(as_dataset(data, max_views or None), scale)
    dtype = ds.images.dtype
    m = load_task_mesh(fn, mesh, ds, dtype)
    if strip_texture:
        m = Mesh(m.verts, m.faces, uvs=m.uvs, faces_uvs=m.faces_uvs if m.uvs is not None else None)
    if holdout_every > 0 and len(ds) > 1:
        held_idx = [i for i in range(len(ds)) if i % holdout_every == 0]
        train = ds.subset([i for i in range(len(ds)) if i % holdout_every != 0])
        held = ds.subset(held_idx)
    else:
        train, held = ds, None
    return AppearanceProblem(ds, train, held, m, gt_pose(ds, dtype), prepare_topology(m.faces, m.num_verts))
