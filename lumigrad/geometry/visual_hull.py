"""Visual hulls carved from masks: one voxel carving for `fit shape`, NeRF's occupancy grid and 3DGS's start.

A voxel centre is projected into every view. ``unseen="carve"``: it survives
only when every view sees it inside the mask (a point outside an image or
behind its camera counts as outside), the classic silhouette-consistent hull
for full-view datasets. ``unseen="keep"``: views that do not see it say
nothing, and it survives when at least one view sees it and none sees it on
the background (datasets whose objects leave some frames).
"""
from __future__ import annotations

import numpy as np
import torch

from lumigrad.scene.camera import Camera

__all__ = ["carve", "hull_mesh", "hull_shell"]


def voxel_centres(lo: torch.Tensor, hi: torch.Tensor, grid: int) -> torch.Tensor:
    """``[grid^3, 3]`` float64 centres of the cells of the box ``[lo, hi]`` (x-major)."""
    axes = [(torch.arange(grid, dtype=torch.float64) + 0.5) / grid * float(hi[i] - lo[i]) + float(lo[i]) for i in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def project_to_mask(camera: Camera, b: int, pts: torch.Tensor):
    """Pixel ``(col, row)`` and an in-front, in-image flag of world points ``pts [M, 3]`` in view ``b``."""
    w2c, K = camera.world_to_cam[b].double(), camera.K[b].double()
    pc = pts.double() @ w2c[:3, :3].T + w2c[:3, 3]
    if camera.projection == "perspective":
        z = pc[:, 2]
        zs = torch.where(z > 1e-9, z, torch.ones_like(z))
        u = K[0, 0] * pc[:, 0] / zs + K[0, 1] * pc[:, 1] / zs + K[0, 2]
        v = K[1, 1] * pc[:, 1] / zs + K[1, 2]
        front = z > 1e-9
    else:
        u = K[0, 0] * pc[:, 0] + K[0, 1] * pc[:, 1] + K[0, 2]
        v = K[1, 1] * pc[:, 1] + K[1, 2]
        front = torch.ones_like(u, dtype=torch.bool)
    seen = front & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    col = u.clamp(0, camera.width - 1).floor().long()
    row = v.clamp(0, camera.height - 1).floor().long()
    return col, row, seen


def carve(
    camera: Camera,
    masks: torch.Tensor,  # [B, H, W] coverage in [0, 1]
    lo: torch.Tensor,  # [3]
    hi: torch.Tensor,  # [3]
    grid: int,
    *,
    threshold: float = 0.5,
    unseen: str = "carve",
) -> torch.Tensor:
    """``[grid, grid, grid]`` bool (x-major): cells of the box ``[lo, hi]`` whose centre survives carving."""
    if unseen not in ("carve", "keep"):
        raise ValueError(f"carve(): unseen must be 'carve' or 'keep', got {unseen!r}")
    if masks.ndim != 3 or masks.shape[0] != camera.batch_size or tuple(masks.shape[1:]) != (camera.height, camera.width):
        raise ValueError(
            f"carve(): masks must be [B, H, W] = [{camera.batch_size}, {camera.height}, {camera.width}], got {list(masks.shape)}"
        )
    if not isinstance(grid, int) or grid < 2:
        raise ValueError(f"carve(): grid must be an int >= 2, got {grid!r}")
    pts = voxel_centres(torch.as_tensor(lo), torch.as_tensor(hi), grid)
    inside = masks.detach().cpu() >= threshold
    keep = torch.ones(pts.shape[0], dtype=torch.bool)
    seen_any = torch.zeros(pts.shape[0], dtype=torch.bool)
    cam = camera.to(device="cpu")
    for b in range(camera.batch_size):
        col, row, seen = project_to_mask(cam, b, pts)
        hit = inside[b][row, col] & seen
        keep &= hit if unseen == "carve" else (hit | ~seen)
        seen_any |= seen
    if unseen == "keep":
        keep &= seen_any
    return keep.view(grid, grid, grid)


def hull_mesh(occ: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed triangle mesh ``(verts [V, 3], faces [F, 3] int32)`` around the occupied cells, wound outwards.

    The grid is padded by one empty cell and meshed by scikit-image's marching
    cubes at level 0.5 (surfaces half-way between kept and carved centres).
    Only the largest connected piece is kept: real masks leave small islands
    (DTU scan 65: 7 of 8 pieces under 20 faces), which remeshing refuses.
    """
    from skimage.measure import marching_cubes

    if not bool(occ.any()):
        raise ValueError("hull_mesh(): no occupied cell: the masks and cameras carve everything")
    g = occ.shape[0]
    vol = np.zeros((g + 2,) * 3, dtype=np.float32)
    vol[1:-1, 1:-1, 1:-1] = occ.cpu().numpy().astype(np.float32)
    verts, faces, _, _ = marching_cubes(vol, level=0.5)
    lo64, hi64 = torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)
    step = (hi64 - lo64) / g
    verts = lo64 + (torch.from_numpy(verts.copy()).double() - 0.5) * step  # padded index -> world
    verts, faces = _largest_component(verts, torch.from_numpy(faces.copy()).long())
    centre = verts.mean(0)
    a, b, c = (verts[faces[:, k]] - centre for k in range(3))
    if float((a * torch.linalg.cross(b, c)).sum()) < 0:  # signed volume: make the normals point out
        faces = faces[:, [0, 2, 1]]
    return verts.to(dtype), faces.to(torch.int32)


def hull_shell(occ: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres ``[M, 3]`` of the occupied cells that touch a carved one, and the cell size ``[3]``."""
    g = occ.shape[0]
    o = occ.view(1, 1, g, g, g).float()
    empty_near = torch.nn.functional.max_pool3d(1.0 - o, 3, stride=1, padding=1) > 0
    shell = ((o > 0) & empty_near).flatten()
    lo64, hi64 = torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)
    return voxel_centres(lo64, hi64, g)[shell], (hi64 - lo64) / g


def _largest_component(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The connected piece with the most faces, its vertices renumbered."""
    import trimesh

    pieces = trimesh.Trimesh(verts.numpy(), faces.numpy(), process=False).split(only_watertight=False)
    if len(pieces) <= 1:
        return verts, faces
    big = max(pieces, key=lambda m: len(m.faces))
    return torch.from_numpy(np.asarray(big.vertices, dtype=np.float64)), torch.from_numpy(np.asarray(big.faces, dtype=np.int64))
