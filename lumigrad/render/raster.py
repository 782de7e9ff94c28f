"""Deferred rasterization pipeline: project -> rasterize -> interpolate -> shade -> visibility.

Everything is differentiable: vertex positions (through barycentrics and, with
every visibility method but "hard", through silhouettes and occlusion edges),
camera pose and intrinsics, vertex attributes, textures, materials and lights.

Visibility methods (``RasterSettings.visibility``), see docs/visibility.md:
    "edge" (default): :func:`lumigrad.ops.edge_grad`, pixel-pair edge gradients
        (DRTK's estimator); right whatever the triangle size, silhouettes,
        occlusion boundaries and intersections; the image is the hard render.
    "antialias": :func:`lumigrad.ops.antialias` (nvdiffrast); blends the image
        across outline edges; loses most silhouette gradient on dense meshes.
    "soft": SoftRas coverage (blurred silhouettes, wider basin of attraction).
    "hard": no visibility gradients.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, Sequence

import torch

from lumigrad.geometry.normals import safe_normalize, vertex_normals
from lumigrad.ops.antialias import AntialiasTopology, antialias
from lumigrad.ops.edge_grad import edge_grad
from lumigrad.ops.interpolate import interpolate
from lumigrad.ops.rasterize import rasterize
from lumigrad.ops.soft_rasterize import soft_rasterize
from lumigrad.scene.camera import Camera
from lumigrad.scene.mesh import Mesh
from lumigrad.shade import shade

__all__ = ["RasterSettings", "RenderOutput", "render_mesh", "render_silhouette", "VISIBILITY_METHODS"]

VISIBILITY_METHODS = ("edge", "antialias", "soft", "hard")


@dataclass(frozen=True)
class RasterSettings:
    """How :func:`render_mesh` turns geometry into pixels.

    Attributes:
        visibility: "edge" (hard rasterization + pixel-pair edge gradients,
            right on meshes of any density), "antialias" (nvdiffrast's analytic
            antialiasing), "soft" (SoftRas coverage with ``sigma``/``gamma``;
            the shaded colour is extended outwards under the soft edge) or
            "hard" (no visibility gradients).
        background: RGB colour composited where alpha < 1.
        sigma: soft-rasterizer edge sharpness (NDC^2 units).
        gamma: soft-rasterizer depth aggregation temperature.
    """

    visibility: Literal["edge", "antialias", "soft", "hard"] = "edge"
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sigma: float = 1e-4
    gamma: float = 1e-4

    def __post_init__(self) -> None:
        if self.visibility not in VISIBILITY_METHODS:
            raise ValueError(
                f"RasterSettings(): visibility must be one of {', '.join(map(repr, VISIBILITY_METHODS))}, "
                f"got {self.visibility!r}"
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
    rast, _ = rasterize(pos, faces, res, grad_db=False)
    alpha = (rast[..., 3:4] > 0).to(pos.dtype)
    if settings.visibility == "antialias":
        alpha = antialias(alpha, rast, pos, faces, topology=topology)
    elif settings.visibility == "edge":
        alpha = edge_grad(alpha, rast, pos, faces, topology=topology)
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
            for the "edge" and "antialias" methods (built on every call when None).

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

    bg = torch.tensor(settings.background, dtype=rgb.dtype, device=rgb.device)
    if settings.visibility == "soft":
        alpha = soft_rasterize(pos, faces, res, sigma=settings.sigma, gamma=settings.gamma).alpha
        # Unpremultiplied colour wherever the soft edge reaches, so d image / d alpha = colour - background.
        reach = math.ceil(_soft_reach_pixels(settings.sigma, res)) + 1
        image = alpha * _extend_colors(rgb, mask, reach) + (1 - alpha) * bg
        return RenderOutput(image=image, alpha=alpha, rast=rast, normals=normals)
    # Colours are premultiplied by coverage (rgb was masked above).
    image = rgb + (1 - mask) * bg
    if settings.visibility == "antialias":
        rgba = antialias(torch.cat([rgb, mask], dim=-1), rast, pos, faces, topology=topology)
        alpha = rgba[..., 3:4]
        image = rgba[..., :3] + (1 - alpha) * bg
    elif settings.visibility == "edge":
        rgba = edge_grad(torch.cat([image, mask], dim=-1), rast, pos, faces, topology=topology)
        image, alpha = rgba[..., :3], rgba[..., 3:4]
    else:
        alpha = mask
    return RenderOutput(image=image, alpha=alpha, rast=rast, normals=normals)


def _soft_reach_pixels(sigma: float, resolution: tuple[int, int]) -> float:
    """How far (pixels) SoftRas coverage reaches outside a triangle (its default distance cutoff)."""
    return math.sqrt(sigma * math.log(1e4 - 1)) * 0.5 * max(resolution)


def _extend_colors(rgb: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Fill uncovered pixels of ``rgb [B, H, W, C]`` with the mean of covered neighbours, ``steps`` rings out."""
    x = (rgb * mask).permute(0, 3, 1, 2)
    m = mask.permute(0, 3, 1, 2)
    for _ in range(steps):
        total = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        count = torch.nn.functional.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False)
        grown = count > 0
        x = torch.where(m > 0, x, total / count.clamp(min=1e-12) * grown)
        m = torch.maximum(m, grown.to(m.dtype))
    return x.permute(0, 2, 3, 1)
