"""Procedural test objects with known ground truth: torus knot, textured Spot, body and garment."""
from __future__ import annotations

import math
from importlib import resources

import torch

from lumigrad.scene.io import read_mesh
from lumigrad.scene.mesh import Mesh

__all__ = ["torus_knot", "spot_textured", "procedural_texture", "body_and_garment", "ellipsoid_inside"]


def _tube(curve: torch.Tensor, radius: float, n_sides: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed tube of ``radius`` around the closed polyline ``curve [N, 3]`` (float64)."""
    n = curve.shape[0]
    tangent = torch.nn.functional.normalize(torch.roll(curve, -1, 0) - torch.roll(curve, 1, 0), dim=-1)
    # A smooth normal field: project a fixed reference off the tangent (fine for curves never parallel to it).
    ref = torch.nn.functional.normalize(curve - curve.mean(0), dim=-1)
    normal = torch.nn.functional.normalize(ref - (ref * tangent).sum(-1, keepdim=True) * tangent, dim=-1)
    binormal = torch.linalg.cross(tangent, normal)
    a = torch.arange(n_sides, dtype=torch.float64) * (2 * math.pi / n_sides)
    ring = torch.cos(a)[None, :, None] * normal[:, None] + torch.sin(a)[None, :, None] * binormal[:, None]
    verts = (curve[:, None] + radius * ring).reshape(-1, 3)
    i = torch.arange(n)[:, None]
    j = torch.arange(n_sides)[None, :]
    v00 = i * n_sides + j
    v10 = ((i + 1) % n) * n_sides + j
    v01 = i * n_sides + (j + 1) % n_sides
    v11 = ((i + 1) % n) * n_sides + (j + 1) % n_sides
    faces = torch.cat([torch.stack([v00, v10, v11], -1).reshape(-1, 3), torch.stack([v00, v11, v01], -1).reshape(-1, 3)])
    return verts, faces


def _outward(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    f = faces.long()
    vol = (verts[f[:, 0]] * torch.linalg.cross(verts[f[:, 1]], verts[f[:, 2]])).sum()
    return faces if vol > 0 else faces[:, [0, 2, 1]]


def torus_knot(p: int = 2, q: int = 3, segments: int = 160, sides: int = 12, tube: float = 0.13,
               dtype=torch.float32) -> Mesh:
    """A (p, q) torus knot tube, centred, scaled to unit bounding radius, outward winding."""
    t = torch.arange(segments, dtype=torch.float64) * (2 * math.pi / segments)
    r = 2 + torch.cos(q * t)
    curve = torch.stack([r * torch.cos(p * t), -torch.sin(q * t) * 1.2, r * torch.sin(p * t)], -1) / 3.0
    verts, faces = _tube(curve, tube, sides)
    verts = verts - verts.mean(0)
    verts = verts / verts.norm(dim=-1).max()
    faces = _outward(verts, faces)
    return Mesh(verts.to(dtype), faces.to(torch.int32))


def procedural_texture(size: int = 128, dtype=torch.float32) -> torch.Tensor:
    """A smooth, colourful ``[size, size, 3]`` albedo texture (bands and blobs) in [0.1, 0.9]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size, dtype=torch.float64), torch.linspace(0, 1, size, dtype=torch.float64),
                          indexing="ij")
    r = 0.5 + 0.4 * torch.sin(2 * math.pi * 3 * x) * torch.cos(2 * math.pi * 2 * y)
    g = 0.5 + 0.4 * torch.sin(2 * math.pi * (2 * x + 3 * y))
    b = 0.5 + 0.4 * torch.cos(2 * math.pi * 4 * y) * torch.sin(2 * math.pi * 1 * x + 1.0)
    return torch.stack([r, g, b], -1).clamp(0.1, 0.9).to(dtype)


def spot_textured(dtype=torch.float32, texture_size: int = 128) -> Mesh:
    """Keenan Crane's Spot (public domain) with its UVs and :func:`procedural_texture`, unit radius."""
    with resources.as_file(resources.files("lumigrad.assets") / "spot.obj") as path:
        mesh = read_mesh(path, dtype=torch.float64)
    verts = mesh.verts
    lo, hi = verts.min(0).values, verts.max(0).values
    verts = verts - (lo + hi) / 2
    verts = verts / verts.norm(dim=-1).max()
    return Mesh(verts.to(dtype), mesh.faces, uvs=mesh.uvs.to(dtype), faces_uvs=mesh.faces_uvs,
                texture=procedural_texture(texture_size, dtype))


# -- body and garment -------------------------------------------------------------------------

BODY_AXES = (0.32, 0.75, 0.22)  # ellipsoid torso half-axes (x, y, z)


def ellipsoid_inside(verts: torch.Tensor, axes=BODY_AXES) -> torch.Tensor:
    """Signed, scale-aware penetration depth into the ellipsoid body (> 0 inside), per vertex."""
    a = torch.tensor(axes, dtype=verts.dtype, device=verts.device)
    k = ((verts / a) ** 2).sum(-1).clamp_min(1e-12).sqrt()  # 1 on the surface
    return (1 - k) * min(axes)


def _ellipsoid(axes, subdiv: int = 3, dtype=torch.float64) -> Mesh:
    from lumigrad.geometry.primitives import icosphere

    v, f = icosphere(subdiv, dtype=torch.float64)
    return Mesh((v * torch.tensor(axes, dtype=torch.float64)).to(dtype), f)


def _garment_grid(rings: int, sides: int, y0: float, y1: float, radius_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Open tube (no caps) from height y0 to y1 with radius ``radius_fn(y, angle) -> (rx, rz)``."""
    ys = torch.linspace(y0, y1, rings, dtype=torch.float64)
    a = torch.arange(sides, dtype=torch.float64) * (2 * math.pi / sides)
    Y, A = torch.meshgrid(ys, a, indexing="ij")
    rx, rz = radius_fn(Y, A)
    verts = torch.stack([rx * torch.cos(A), Y, rz * torch.sin(A)], -1).reshape(-1, 3)
    i = torch.arange(rings - 1)[:, None]
    j = torch.arange(sides)[None, :]
    v00, v01 = i * sides + j, i * sides + (j + 1) % sides
    v10, v11 = (i + 1) * sides + j, (i + 1) * sides + (j + 1) % sides
    # Winding with normals pointing away from the axis.
    faces = torch.cat([torch.stack([v00, v11, v10], -1).reshape(-1, 3), torch.stack([v00, v01, v11], -1).reshape(-1, 3)])
    return verts, faces.to(torch.int32)


def body_and_garment(rings: int = 14, sides: int = 32, dtype=torch.float32) -> tuple[Mesh, Mesh, Mesh]:
    """``(body, template_garment, target_garment)``: a procedurally generated torso and a tube garment.

    The body is an ellipsoid torso (``BODY_AXES``). The target garment is a
    tube hugging the torso 2 cm above its surface with a flared hem; the
    template has the same topology but is a loose straight cylinder, so the
    fit must shrink it onto the body without entering it.
    """
    ax, ay, az = BODY_AXES
    y0, y1 = -0.55, 0.5

    def hug(Y, A):
        s = (1 - (Y / ay) ** 2).clamp_min(0.05).sqrt()
        flare = 1 + 0.35 * ((y1 - Y) / (y1 - y0)) ** 3  # wider at the hem
        return (ax * s + 0.02) * flare, (az * s + 0.02) * flare

    def loose(Y, A):
        return torch.full_like(Y, ax + 0.12), torch.full_like(Y, ax + 0.12)

    vt, f = _garment_grid(rings, sides, y0, y1, hug)
    v0, _ = _garment_grid(rings, sides, y0, y1, loose)
    body = _ellipsoid(BODY_AXES, 3, dtype)
    return body, Mesh(v0.to(dtype), f), Mesh(vt.to(dtype), f)
