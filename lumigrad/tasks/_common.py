"""Helpers shared by the task modules: ground truth from datasets, downscaling, metrics, turntables."""
from __future__ import annotations

from pathlib import Path

import torch

from lumigrad.geometry.chamfer import chamfer_distance, nearest_neighbor
from lumigrad.render.raster import RasterSettings, render_mesh
from lumigrad.scene.camera import Camera
from lumigrad.scene.datasets import ImageDataset, load_dataset
from lumigrad.scene.io import read_mesh
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.rigs import turntable_cameras
from lumigrad.scene.scene import ObjectTransform
from lumigrad.tasks._scenefile import lights_from_json, material_from_json

__all__ = [
    "as_dataset", "downscale", "gt_lights", "gt_material", "gt_mesh", "gt_pose", "shape_metrics", "psnr",
    "turntable_frames", "silhouette_iou",
]


def as_dataset(data, max_views: int | None = None) -> ImageDataset:
    """An :class:`ImageDataset` from a dataset or a path."""
    if isinstance(data, ImageDataset):
        return data
    return load_dataset(data, max_views=max_views)


def downscale(ds: ImageDataset, factor: int) -> ImageDataset:
    """Box-downsample images and masks by an integer factor and scale the intrinsics to match."""
    if factor == 1:
        return ds
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"downscale(): factor must be a positive int, got {factor!r}")
    n, h, w = ds.images.shape[:3]
    h2, w2 = h // factor, w // factor
    if h2 < 1 or w2 < 1:
        raise ValueError(f"downscale(): factor {factor} is too large for {w}x{h} images")

    def pool(x):
        x = x[:, : h2 * factor, : w2 * factor].permute(0, 3, 1, 2)
        return torch.nn.functional.avg_pool2d(x, factor).permute(0, 2, 3, 1).contiguous()

    k = ds.camera.K.clone()
    k[:, :2, :] = k[:, :2, :] / factor
    k[:, 2, 2] = 1.0
    cam = Camera(ds.camera.world_to_cam, k, w2, h2, ds.camera.near, ds.camera.far, ds.camera.projection)
    return ImageDataset(pool(ds.images), None if ds.masks is None else pool(ds.masks), cam, ds.names, ds.root,
                        ds.ground_truth, ds.layout, dict(ds.extra))


def _gt(ds: ImageDataset, key: str, what: str):
    if ds.ground_truth is None or key not in ds.ground_truth:
        return None
    return ds.ground_truth[key]


def gt_lights(ds: ImageDataset, dtype=torch.float32):
    d = _gt(ds, "lights", "lights")
    return None if d is None else lights_from_json(d, dtype, where=f"{ds.root / 'ground_truth.json'}: lights")


def gt_material(ds: ImageDataset, dtype=torch.float32):
    d = _gt(ds, "material", "material")
    return None if d is None else material_from_json(d, dtype, where=f"{ds.root / 'ground_truth.json'}: material")


def gt_mesh(ds: ImageDataset, dtype=torch.float32) -> Mesh | None:
    d = _gt(ds, "mesh", "mesh")
    if d is None:
        return None
    return read_mesh(Path(ds.root) / d, dtype=dtype)


def gt_pose(ds: ImageDataset, dtype=torch.float32) -> ObjectTransform | None:
    d = _gt(ds, "object_pose", "pose")
    if d is None:
        return None
    return ObjectTransform(torch.tensor(d["rotation"], dtype=dtype), torch.tensor(d["translation"], dtype=dtype))


def shape_metrics(fitted: Mesh, gt: Mesh, n: int = 20000, seed: int = 1) -> dict:
    """Chamfer distance over the GT bounding-box diagonal, and normal consistency (nearest-vertex normals)."""
    gen = torch.Generator().manual_seed(seed)
    a = fitted.sample_points(n, generator=gen).detach()
    b = gt.sample_points(n, generator=gen).detach()
    diag = float(gt.diagonal())
    chamfer = float(chamfer_distance(a, b)) / diag
    nf, ng = fitted.vertex_normals().detach(), gt.vertex_normals().detach()
    i = nearest_neighbor(fitted.verts.detach(), gt.verts.detach())
    j = nearest_neighbor(gt.verts.detach(), fitted.verts.detach())
    nc = 0.5 * (float((nf * ng[i]).sum(-1).abs().mean()) + float((ng * nf[j]).sum(-1).abs().mean()))
    return {"chamfer_over_diagonal": chamfer, "normal_consistency": nc}


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    err = (a - b) ** 2
    if mask is not None:
        m = mask.expand_as(err)
        mse = float((err * m).sum() / m.sum().clamp_min(1))
    else:
        mse = float(err.mean())
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


def silhouette_iou(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    p, t = pred > threshold, target > threshold
    union = (p | t).sum()
    return float((p & t).sum() / union.clamp_min(1))


def turntable_frames(meshes, materials, lights, n: int = 24, resolution: int = 96, distance: float = 3.0,
                     transforms=None) -> torch.Tensor:
    """``[n, H, W * len(meshes), 3]``: the meshes side by side on a turntable."""
    cams = turntable_cameras(n, resolution, distance=distance)
    cols = []
    with torch.no_grad():
        for i, (m, mat) in enumerate(zip(meshes, materials)):
            tr = None if transforms is None else transforms[i]
            cols.append(render_mesh(m, cams.to(dtype=m.dtype), mat, lights, RasterSettings(visibility="antialias",
                                    background=(1.0, 1.0, 1.0)), transform=tr).image)
    return torch.cat(cols, dim=2)
