"""Deferred rasterization pipeline: project -> rasterize -> interpolate -> shade -> antialias.

Everything is differentiable: vertex positions (through barycentrics and, with
antialiasing or soft rasterization, through silhouettes), camera pose and
intrinsics, vertex attributes, textures, materials and lights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Sequence

import torch

from lumigrad.ops.antialias import AntialiasTopology, antialias
from lumigrad.ops.rasterize import rasterize
from lumigrad.ops.soft_rasterize import soft_rasterize
from lumigrad.scene.camera import Camera
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.scene import ObjectTransform
from lumigrad.render._shading import check_shading, default_material, shade_pixels

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
        return soft_rasterize(pos, faces, res, sigma=settings.sigma, gamma=settings.gamma)[..., -1:]
    rast, _ = rasterize(pos, faces, res)
    alpha = (rast[..., 3:4] > 0).to(pos.dtype)
    if settings.visibility == "antialias":
        alpha = antialias(alpha, rast, pos, faces, topology=topology)
    return alpha


def render_mesh(
    mesh: Mesh,
    camera: Camera,
    material=None,
    lights: Sequence = (),
    settings: RasterSettings = RasterSettings(),
    verts: torch.Tensor | None = None,  # [V, 3] or [B, V, 3] object frame; overrides mesh.verts (same topology)
    topology: AntialiasTopology | None = None,
    *,
    transform: ObjectTransform | None = None,
    shading: str = "phong",
) -> RenderOutput:
    """Render a shaded mesh from every view of ``camera``.

    Args:
        mesh: geometry, topology, optional UVs (``mesh.uvs``/``mesh.faces_uvs``),
            optional ``texture`` and vertex colours; the texture (sampled at the
            pixel UVs) and the vertex colours multiply the shaded colour.
        camera: batched camera (B views).
        material: a material from :mod:`lumigrad.scene.materials` or
            :class:`lumigrad.shade.PhongMaterial`; ``None`` is Lambert with
            albedo 1, so a textured OBJ/GLB renders with its own colours.
        lights: lights from :mod:`lumigrad.scene.lights`.
        settings: visibility mode and background.
        verts: optional vertex positions replacing ``mesh.verts`` (for fitting).
        topology: cached :func:`lumigrad.ops.prepare_topology` of ``mesh.faces``
            for antialiasing (built on every call when None).
        transform: optional object-to-world :class:`lumigrad.scene.ObjectTransform`
            applied to the vertices before projection (batched transforms give
            one pose per view).
        shading: ``"phong"`` (per-pixel, interpolated normals), ``"flat"``
            (per-face normals) or ``"gouraud"`` (per-vertex, interpolated colour).

    Returns:
        :class:`RenderOutput`; ``image`` receives gradients w.r.t. vertices,
        transform, camera, material, lights and textures.
    """
    check_shading("render_mesh", shading)
    material = default_material(material, mesh.dtype)
    verts = mesh.verts if verts is None else verts
    if transform is not None:
        verts = transform.apply(verts)
    faces = mesh.faces
    res = (camera.height, camera.width)
    pos = camera.project(verts)  # [B, V, 4]
    rast, rast_db = rasterize(pos, faces, res)
    B = rast.shape[0]
    verts_b = verts if verts.ndim == 3 else verts[None].expand(B, -1, -1)
    textures = [(mesh.texture, 0, mesh.num_faces)] if mesh.texture is not None else []
    rgb, normals, mask = shade_pixels(
        "render_mesh", verts_b, faces, rast, rast_db, camera, [(material, 0, mesh.num_faces)], lights,
        shading=shading, uvs=mesh.uvs, faces_uvs=mesh.faces_uvs, textures=textures, vert_colors=mesh.vert_colors,
    )

    if settings.visibility == "soft":
        alpha = soft_rasterize(pos, faces, res, sigma=settings.sigma, gamma=settings.gamma)[..., -1:]
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

