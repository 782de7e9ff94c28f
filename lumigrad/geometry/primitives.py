"""Primitive meshes as ``(verts [V, 3], faces [F, 3] int32)`` tensors.

Faces are wound so that the right-hand normal ``(v1 - v0) x (v2 - v0)`` points
outwards (counter-clockwise seen from outside).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["icosphere", "cube", "plane"]


def _check_positive(fn: str, name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}(): {name} must be a positive float, got {value!r}") from None
    if not v > 0 or v == float("inf"):
        raise ValueError(f"{fn}(): {name} must be a positive float, got {value!r}")
    return v


def icosphere(
    subdivisions: int = 2, radius: float = 1.0, *, dtype: torch.dtype = torch.float32, device=None
) -> tuple[Tensor, Tensor]:
    """Geodesic sphere centred at the origin (``trimesh.creation.icosphere``).

    Args:
        subdivisions: 0 gives the icosahedron (12 verts, 20 faces); each level
            multiplies the face count by 4. At most 7.
        radius: sphere radius.
        dtype: float dtype of ``verts``.
        device: device of both outputs.

    Returns:
        ``verts [V, 3]`` with ``V = 10 * 4**s + 2`` and ``faces [F, 3]`` int32, ``F = 20 * 4**s``.
    """
    import trimesh  # local: trimesh is slow to import and only needed here and in scene.io

    if not isinstance(subdivisions, int) or isinstance(subdivisions, bool) or not 0 <= subdivisions <= 8:
        raise ValueError(f"icosphere(): subdivisions must be an int in [0, 8], got {subdivisions!r}")
    r = _check_positive("icosphere", "radius", radius)
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=r)
    verts = torch.as_tensor(m.vertices, dtype=dtype, device=device)
    faces = torch.as_tensor(m.faces, dtype=torch.int32, device=device)
    return verts.contiguous(), faces.contiguous()


def cube(size: float = 2.0, *, dtype: torch.dtype = torch.float32, device=None) -> tuple[Tensor, Tensor]:
    """Axis-aligned cube centred at the origin, 8 shared vertices and 12 triangles.

    Args:
        size: edge length (default 2: corners at +-1).
        dtype: float dtype of ``verts``.
        device: device of both outputs.

    Returns:
        ``verts [8, 3]`` and ``faces [12, 3]`` int32, outward-wound.
    """
    h = 0.5 * _check_positive("cube", "size", size)
    # Vertex i has coordinate bits (x, y, z) = (i & 1, i >> 1 & 1, i >> 2 & 1).
    verts = torch.tensor(
        [[(i & 1) * 2 - 1, (i >> 1 & 1) * 2 - 1, (i >> 2 & 1) * 2 - 1] for i in range(8)], dtype=dtype, device=device
    ) * h
    quads = [
        (0, 2, 3, 1),  # -z
        (4, 5, 7, 6),  # +z
        (0, 1, 5, 4),  # -y
        (2, 6, 7, 3),  # +y
        (0, 4, 6, 2),  # -x
        (1, 3, 7, 5),  # +x
    ]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return verts, torch.tensor(tris, dtype=torch.int32, device=device)


def plane(
    size: float = 2.0, resolution: int = 1, *, dtype: torch.dtype = torch.float32, device=None
) -> tuple[Tensor, Tensor]:
    """Square grid in the y = 0 plane (a ground plane for world +Y up), normal +Y.

    Args:
        size: edge length; x and z span ``[-size/2, size/2]``.
        resolution: quads per side (``(r+1)^2`` verts, ``2 r^2`` faces).
        dtype: float dtype of ``verts``.
        device: device of both outputs.

    Returns:
        ``verts [(r+1)^2, 3]`` (row-major over z then x) and ``faces [2 r^2, 3]`` int32.
    """
    h = 0.5 * _check_positive("plane", "size", size)
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ValueError(f"plane(): resolution must be a positive int, got {resolution!r}")
    r = resolution
    t = torch.linspace(-h, h, r + 1, dtype=dtype, device=device)
    gz, gx = torch.meshgrid(t, t, indexing="ij")
    verts = torch.stack([gx, torch.zeros_like(gx), gz], dim=-1).reshape(-1, 3)
    idx = torch.arange((r + 1) * (r + 1), device=device).reshape(r + 1, r + 1)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)  # (z, x), (z, x+1)
    c, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)  # (z+1, x), (z+1, x+1)
    # (x+1 - x) cross (z+1 - z) = e_x cross e_z = -e_y, so go a -> c -> d for +Y.
    faces = torch.cat([torch.stack([a, c, d], -1), torch.stack([a, d, b], -1)]).to(torch.int32)
    return verts, faces
