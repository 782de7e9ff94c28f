"""Visual hull of a dataset's masks as a starting mesh for `fit shape` (carving: :mod:`lumigrad.geometry.visual_hull`).

A voxel centre is kept when it projects inside the mask of every view (a
point outside an image, or behind its camera, counts as outside); the kept
region becomes a closed, outward-wound mesh by marching cubes.
"""
from __future__ import annotations

import torch

from lumigrad.geometry.visual_hull import carve, hull_mesh
from lumigrad.scene.datasets import ImageDataset

__all__ = ["visual_hull", "auto_extent"]


def auto_extent(ds: ImageDataset) -> float:
    """Half-size of a cube about the origin that every camera sees whole (its inscribed-sphere radius, x 0.95)."""
    cam = ds.camera
    centers = cam.camera_center().double()  # [B, 3]
    dist = centers.norm(dim=-1)
    k = cam.K.double()
    half = torch.minimum(torch.atan(cam.width / (2 * k[:, 0, 0])), torch.atan(cam.height / (2 * k[:, 1, 1])))
    return 0.95 * float((dist * torch.sin(half)).min()) if cam.projection == "perspective" else float(
        0.95 * min(cam.width / k[:, 0, 0].max(), cam.height / k[:, 1, 1].max()) / 2)


def visual_hull(ds: ImageDataset, resolution: int = 48, extent: float | None = None, dtype=torch.float32):
    """``(verts [V, 3], faces [F, 3] int32)`` of the visual hull of ``ds.masks``.

    Args:
        ds: dataset with masks.
        resolution: voxels per side of the cube ``[-extent, extent]^3``.
        extent: half-size of the cube; default :func:`auto_extent`.

    Raises:
        ValueError: no masks, or no voxel survives the carving (masks and cameras disagree).
    """
    if ds.masks is None:
        raise ValueError("visual_hull(): the dataset has no masks")
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"visual_hull(): resolution must be an int >= 8, got {resolution!r}")
    r = auto_extent(ds) if extent is None else float(extent)
    box = torch.full((3,), r, dtype=torch.float64)
    occ = carve(ds.camera, ds.masks[..., 0], -box, box, resolution, threshold=0.5, unseen="carve")
    if not bool(occ.any()):
        raise ValueError("visual_hull(): no voxel projects inside every mask; check the cameras and masks")
    return hull_mesh(occ, -box, box, dtype=dtype)
