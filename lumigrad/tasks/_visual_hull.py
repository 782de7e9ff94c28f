"""Visual hull from masks: voxel carving and marching cubes, as a starting mesh for `fit shape`.

A voxel centre is kept when it projects inside the mask of every view (a
pixel with mask > 0.5; a point outside an image, or behind its camera, counts
as outside). The kept region, padded by one empty voxel, is turned into a
closed triangle mesh by scikit-image's marching cubes, with outward winding.
"""
from __future__ import annotations

import math

import numpy as np
import torch

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
    from skimage.measure import marching_cubes

    if ds.masks is None:
        raise ValueError("visual_hull(): the dataset has no masks")
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"visual_hull(): resolution must be an int >= 8, got {resolution!r}")
    r = auto_extent(ds) if extent is None else float(extent)
    t = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution * 2 * r - r
    grid = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    inside = torch.ones(grid.shape[0], dtype=torch.bool)
    cam = ds.camera.to(dtype=torch.float64)
    masks = ds.masks[..., 0] > 0.5
    h, w = masks.shape[1:]
    for b in range(len(ds)):
        c = cam[b : b + 1]
        px = c.project_to_pixels(grid)[0]
        zc = (grid - c.camera_center()[0]) @ c.world_to_cam[0, 2, :3]  # depth along the optical axis
        col, row = torch.floor(px[:, 0]).long(), torch.floor(px[:, 1]).long()
        ok = (zc > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        hit = torch.zeros_like(ok)
        hit[ok] = masks[b, row[ok], col[ok]]
        inside &= hit
    if not bool(inside.any()):
        raise ValueError("visual_hull(): no voxel projects inside every mask; check the cameras and masks")
    vol = np.zeros((resolution + 2,) * 3, dtype=np.float32)
    vol[1:-1, 1:-1, 1:-1] = inside.reshape((resolution,) * 3).numpy().astype(np.float32)
    verts, faces, _, _ = marching_cubes(vol, level=0.5)
    step = 2 * r / resolution
    verts = torch.from_numpy(verts.copy()).double() * step - r - 0.5 * step  # padded index -> world
    faces = torch.from_numpy(faces.copy()).long()
    f = faces
    signed = (verts[f[:, 0]] * torch.linalg.cross(verts[f[:, 1]], verts[f[:, 2]])).sum()
    if signed < 0:
        faces = faces[:, [0, 2, 1]]
    return verts.to(dtype), faces.to(torch.int32)
