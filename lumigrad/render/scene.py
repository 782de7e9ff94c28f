"""Render a :class:`~lumigrad.scene.Scene` of several meshes in one rasterization pass."""
from __future__ import annotations

import logging

import torch

from lumigrad.ops.antialias import AntialiasTopology
from lumigrad.ops.rasterize import rasterize
from lumigrad.render._shading import check_shading, default_material, shade_pixels
from lumigrad.render.raster import RasterSettings, RenderOutput, composite, downsampled, rim_for, supersampled
from lumigrad.scene.camera import Camera
from lumigrad.scene.scene import Scene

__all__ = ["render_scene", "object_ids"]

log = logging.getLogger(__name__)


def render_scene(
    scene: Scene,
    camera: Camera,
    settings: RasterSettings = RasterSettings(),
    *,
    shading: str = "phong",
    topology: AntialiasTopology | None = None,
) -> RenderOutput:
    """Render every object of ``scene`` from every view of ``camera``, in one pass.

    The objects' world-space vertices (after their :class:`ObjectTransform`)
    are concatenated into one packed triangle list that is rasterized once, so
    objects occlude each other correctly; each pixel is then shaded with the
    material of the object its triangle belongs to, and multiplied by that
    object's texture and vertex colours (if any). Objects without UVs or vertex
    colours get neutral ones.

    Args:
        scene: the objects and the lights.
        camera: batched camera (B views).
        settings: visibility mode and background, as for :func:`render_mesh`
            (``"edge"``, ``"antialias"``, ``"soft"`` or ``"hard"``).
        shading: ``"phong"``, ``"flat"`` or ``"gouraud"``.
        topology: cached :func:`lumigrad.ops.prepare_topology` of the packed
            faces (see :func:`object_ids` for the packing order).

    Returns:
        :class:`RenderOutput`. Gradients flow to every object's vertices,
        transform, material and texture, to the lights and to the camera.

    Example:
        >>> scene = Scene([SceneObject(Mesh(*cube()), LambertMaterial(0.5))], lights=[sun])
        >>> out = render_scene(scene, Camera.look_at([0., 0., 5.], [0., 0., 0.], width=64, height=64))
    """
    if settings.supersample > 1:
        one, big = supersampled(settings, camera)
        return downsampled(render_scene(scene, big, one, shading=shading, topology=topology), settings.supersample)
    fn = "render_scene"
    if not isinstance(scene, Scene):
        raise TypeError(f"{fn}(): scene must be a Scene, got {type(scene).__name__}")
    if not scene.objects:
        raise ValueError(f"{fn}(): scene has no objects")
    check_shading(fn, shading)
    world = scene.world_verts()
    B = camera.batch_size
    dtype, device = world[0].dtype, world[0].device
    verts_b = torch.cat([v if v.ndim == 3 else v[None].expand(B, -1, -1) for v in world], dim=1)
    faces, parts, textures, uvs, fuvs, colors = [], [], [], [], [], []
    any_uv = any(o.mesh.uvs is not None for o in scene.objects)
    any_color = any(o.mesh.vert_colors is not None for o in scene.objects)
    v0 = f0 = t0 = 0
    for o in scene.objects:
        m = o.mesh
        faces.append(m.faces + v0)
        parts.append((default_material(o.material, dtype), f0, f0 + m.num_faces))
        if m.texture is not None:
            textures.append((m.texture, f0, f0 + m.num_faces))
        if any_uv:
            if m.uvs is not None:
                uvs.append(m.uvs)
                fuvs.append(m.faces_uvs + t0)
                t0 += m.uvs.shape[0]
            else:  # one dummy UV for meshes without texture coordinates
                uvs.append(torch.zeros(1, 2, dtype=dtype, device=device))
                fuvs.append(torch.full_like(m.faces, t0))
                t0 += 1
        if any_color:
            c = m.vert_colors[:, :3] if m.vert_colors is not None else torch.ones(m.num_verts, 3, dtype=dtype, device=device)
            if c.shape[1] < 3:
                c = c[:, :1].expand(-1, 3)
            colors.append(c)
        v0 += m.num_verts
        f0 += m.num_faces
    faces = torch.cat(faces).to(torch.int32)
    pos = camera.project(verts_b)
    res = (camera.height, camera.width)
    rast, rast_db = rasterize(pos, faces, res)
    rim = rim_for(settings, rast, rast_db, pos, faces)
    rgb, normals, mask = shade_pixels(
        fn, verts_b, faces, rast if rim is None else rim.rast, rast_db, camera, parts, scene.lights, shading=shading,
        uvs=torch.cat(uvs) if any_uv else None, faces_uvs=torch.cat(fuvs).to(torch.int32) if any_uv else None,
        textures=textures, vert_colors=torch.cat(colors) if any_color else None,
    )
    image, alpha = composite(rgb, mask, rast, pos, faces, settings, topology, rim)
    return RenderOutput(image=image, alpha=alpha, rast=rast, normals=normals)

def object_ids(scene: Scene, rast: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` int64 index of the object seen at each pixel (``-1`` on the background)."""
    ends = torch.tensor([o.mesh.num_faces for o in scene.objects], device=rast.device).cumsum(0)
    tri = rast[..., 3].long() - 1
    ids = torch.searchsorted(ends, tri, right=True)
    return torch.where(tri < 0, torch.full_like(ids, -1), ids)
