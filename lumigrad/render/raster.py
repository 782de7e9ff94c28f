"""Deferred rasterization pipeline: project -> rasterize -> interpolate -> shade -> antialias.

Everything is differentiable: vertex positions (through barycentrics and, with
antialiasing or soft rasterization, through silhouettes), camera pose and
intrinsics, vertex attributes, textures, materials and lights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Sequence

import torch

from lumigrad.geometry.normals import safe_normalize, vertex_normals
from lumigrad.ops.antialias import AntialiasTopology, antialias
from lumigrad.ops.interpolate import interpolate
from lumigrad.ops.rasterize import rasterize
from lumigrad.ops.soft_rasterize import soft_rasterize
from lumigrad.scene.camera import Camera
from lumigrad.scene.mesh import Mesh
from lumigrad.shade import shade

__all__ = ["RasterSettings", "RenderOutput", "render_mesh", "render_silhouette"]


@dataclass(frozen=True)
class RasterSettings:
    """How :func:`render_mesh` turns geometry into pixels.

    Attributes:
        visibility: "antialias" (hard rasterization + analytic edge antialiasing,
            gradients at silhouettes), "hard" (no visibility gradients) or
            "soft" (SoftRas coverage with ``sigma``/``gamma``; alpha only).
        background: RGB colour composited where alpha < 1.
        sigma: soft-rasterizer edge sharpness (NDC^2 units).
        gamma: soft-rasterizer depth aggregation temperature.
    """

    visibility: Literal["antialias", "hard", "soft"] = "antialias"
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sigma: float = 1e-4
    gamma: float = 1e-4

    def __post_init__(self) -> None:
        if self.visibility not in ("antialias", "hard", "soft"):
            raise ValueError(
                f"RasterSettings(): visibility must be 'antialias', 'hard' or 'soft', got {self.visibility!r}"
            )


class RenderOutput(NamedTuple):
    """Result of :func:`render_mesh` (all ``[B, H, W, C]``)."""

    image: torch.Tensor  # [B, H, W, 3] shaded, composited over the background
    alpha: torch.Tensor  # [B, H, W, 1] coverage (antialiased or soft)
    rast: torch.Tensor  # [B, H, W, 4] (u, v, z_ndc, tri_id + 1)
    normals: torch.Tensor  # [B, H, W, 3] world-space unit normals (0 where empty)


def render_silhouette(
    verts: torch.Tensor,  # [V, 3] or [B, V, 3] world
    faces: torch.Tensor,  # [F, 3] int32
    camera: Camera,
    settings: RasterSettings = RasterSettings(),
    topology: AntialiasTopology | None = None,
) -> torch.Tensor:
    """Coverage image ``[B, H, W, 1]`` with visibility gradients to ``verts`` and the camera.

    ``topology`` (from :func:`lumigrad.ops.prepare_topology`) saves rebuilding
    the edge adjacency on every call when the faces do not change.
    """
    pos = camera.project(verts)
    res = (camera.height, camera.width)
    if settings.visibility == "soft":
        return soft_rasterize(pos, faces, res, sigma=settings.sigma, gamma=settings.gamma).alpha
    rast, _ = rasterize(pos, faces, res)
    alpha = (rast[..., 3:4] > 0).to(pos.dtype)
    if settings.visibility == "antialias":
        alpha = antialias(alpha, rast, pos, faces, topology=topology)
    return alpha


def render_mesh(
    mesh: Mesh,
    camera: Camera,
    material,
    lights: Sequence,
    settings: RasterSettings = RasterSettings(),
    verts: torch.Tensor | None = None,  # [V, 3] or [B, V, 3] world; overrides mesh.verts (same topology)
    topology: AntialiasTopology | None = None,
) -> RenderOutput:
    """Render a shaded mesh from every view of ``camera``.

    Args:
        mesh: geometry, topology, optional UVs (``mesh.uvs``/``mesh.faces_uvs``)
            and optional vertex colours, which multiply the shaded colour.
        camera: batched camera (B views).
        material: a material from :mod:`lumigrad.scene.materials`.
        lights: lights from :mod:`lumigrad.scene.lights`.
        settings: visibility mode and background.
        verts: optional vertex positions replacing ``mesh.verts`` (for fitting).
        topology: cached :func:`lumigrad.ops.prepare_topology` of ``mesh.faces``
            for antialiasing (built on every call when None).

    Returns:
        :class:`RenderOutput`; ``image`` receives gradients w.r.t. vertices,
        camera, material, lights and textures.
    """
    verts = mesh.verts if verts is None else verts
    faces = mesh.faces
    res = (camera.height, camera.width)
    pos = camera.project(verts)  # [B, V, 4]
    rast, rast_db = rasterize(pos, faces, res)
    B = rast.shape[0]
    verts_b = verts if verts.ndim == 3 else verts[None].expand(B, -1, -1)

    # One interpolation pass for every per-vertex attribute.
    attrs = [verts_b, vertex_normals(verts_b, faces)]
    if mesh.vert_colors is not None:
        attrs.append(mesh.vert_colors[..., :3].expand(B, -1, -1) if mesh.vert_colors.ndim == 2 else mesh.vert_colors[..., :3])
    gbuf, _ = interpolate(torch.cat(attrs, dim=-1), rast, faces)
    points, normals = gbuf[..., 0:3], safe_normalize(gbuf[..., 3:6])
    uv = uv_da = None
    if mesh.uvs is not None:
        uv, uv_da = interpolate(mesh.uvs, rast, mesh.faces_uvs, rast_db=rast_db, diff_attrs="all")
    mask = (rast[..., 3:4] > 0).to(verts.dtype)
    eye = camera.camera_center()[:, None, None, :]  # [B, 1, 1, 3]
    view_dirs = safe_normalize(eye - points)
    rgb = shade(material, lights, points=points, normals=normals, view_dirs=view_dirs, uv=uv, uv_da=uv_da, mask=mask)
    if mesh.vert_colors is not None:
        # Vertex colours modulate the shaded colour (e.g. baked albedo variation).
        rgb = rgb * gbuf[..., 6:9]
    rgb = rgb * mask
    normals = normals * mask

    if settings.visibility == "soft":
        alpha = soft_rasterize(pos, faces, res, sigma=settings.sigma, gamma=settings.gamma).alpha
        rgba = torch.cat([rgb, alpha], dim=-1)
    else:
        rgba = torch.cat([rgb, mask], dim=-1)
        if settings.visibility == "antialias":
            rgba = antialias(rgba, rast, pos, faces, topology=topology)
    bg = torch.tensor(settings.background, dtype=rgba.dtype, device=rgba.device)
    alpha = rgba[..., 3:4]
    # Colours are premultiplied by coverage (rgb was masked before antialiasing).
    image = rgba[..., :3] + (1 - alpha) * bg
    return RenderOutput(image=image, alpha=alpha, rast=rast, normals=normals)

