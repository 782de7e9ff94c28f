"""Bake per-vertex colours into a texture atlas, so a fitted mesh exports as a textured GLB.

No UV unwrapping is needed: every pair of triangles gets its own square cell
of ``cell x cell`` texels in the atlas (one triangle in each half of the cell,
split along the diagonal), and each texel takes the barycentric blend of its
triangle's vertex colours. Corners sit half a texel inside the cell, so
bilinear lookups stay (almost) inside their own triangle.
"""
from __future__ import annotations

import math

import torch

from lumigrad.scene.mesh import Mesh

__all__ = ["bake_vertex_colors"]


def bake_vertex_colors(mesh: Mesh, cell: int = 8) -> Mesh:
    """A copy of ``mesh`` with UVs and a ``[T, T, 3]`` texture holding its vertex colours (``vert_colors`` dropped).

    Args:
        mesh: a mesh with ``vert_colors [V, 3]``.
        cell: texels per side of the square cell shared by two triangles (>= 4).

    Raises:
        ValueError: no vertex colours, or ``cell`` < 4.
    """
    if mesh.vert_colors is None:
        raise ValueError("bake_vertex_colors(): mesh has no vert_colors to bake")
    if not isinstance(cell, int) or cell < 4:
        raise ValueError(f"bake_vertex_colors(): cell must be an int >= 4, got {cell!r}")
    dtype = mesh.verts.dtype
    f = mesh.faces.long()
    n_faces = f.shape[0]
    n_cells = (n_faces + 1) // 2
    side = math.ceil(math.sqrt(n_cells))
    size = side * cell
    # Corners of the two triangles of a cell in texel units (inset half a texel).
    lo, hi = 0.5, cell - 0.5
    tri_a = torch.tensor([[lo, lo], [hi, lo], [lo, hi]], dtype=torch.float64)  # x right, y down (texel rows)
    tri_b = torch.tensor([[hi, hi], [lo, hi], [hi, lo]], dtype=torch.float64)
    k = torch.arange(n_faces)
    cidx = k // 2
    origin = torch.stack([(cidx % side) * cell, (cidx // side) * cell], -1).double()  # [F, 2] texel x, y
    corners = torch.where((k % 2 == 0)[:, None, None], tri_a, tri_b) + origin[:, None, :]  # [F, 3, 2]
    # UVs: u = x / size, v = 1 - y / size (v up, texture row 0 at the top).
    uv_corners = torch.stack([corners[..., 0] / size, 1.0 - corners[..., 1] / size], -1)
    uvs = uv_corners.reshape(-1, 2)
    faces_uvs = torch.arange(3 * n_faces, dtype=torch.int32).reshape(n_faces, 3)

    # Bake: for each texel of each cell, barycentrics w.r.t. the triangle of its half.
    t = torch.arange(cell, dtype=torch.float64) + 0.5
    ty, tx = torch.meshgrid(t, t, indexing="ij")
    p = torch.stack([tx, ty], -1).reshape(-1, 2)  # [cell^2, 2] inside a cell
    in_b = (p[:, 0] + p[:, 1]) > cell  # below-right of the diagonal: triangle b

    def bary(tri):
        a, b, c = tri[0], tri[1], tri[2]
        m = torch.stack([b - a, c - a], -1)  # [2, 2]
        wbc = torch.linalg.solve(m, (p - a).T).T  # [cell^2, 2]
        return torch.cat([1 - wbc.sum(-1, keepdim=True), wbc], -1).clamp_min(0.0)

    wa, wb = bary(tri_a), bary(tri_b)
    wa, wb = wa / wa.sum(-1, keepdim=True), wb / wb.sum(-1, keepdim=True)
    colors = mesh.vert_colors.detach().double()[f]  # [F, 3, 3]
    tex = torch.zeros(size, size, 3, dtype=torch.float64)
    even, odd = torch.arange(0, n_faces, 2), torch.arange(1, n_faces, 2)
    cell_rgb = torch.zeros(n_cells, cell * cell, 3, dtype=torch.float64)
    cell_rgb[:] = torch.einsum("pk,fkc->fpc", wa, colors[even])
    if odd.numel():
        rgb_b = torch.einsum("pk,fkc->fpc", wb, colors[odd])
        cell_rgb[: odd.numel()][:, in_b] = rgb_b[:, in_b]
    cells = cell_rgb.reshape(n_cells, cell, cell, 3)
    for c0 in range(0, n_cells, side):  # one atlas row of cells at a time
        row = cells[c0:c0 + side]
        r = c0 // side
        tex[r * cell:(r + 1) * cell, : row.shape[0] * cell] = row.permute(1, 0, 2, 3).reshape(cell, -1, 3)
    return Mesh(mesh.verts, mesh.faces, uvs=uvs.to(dtype), faces_uvs=faces_uvs, texture=tex.to(dtype))
