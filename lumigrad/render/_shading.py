"""G-buffer construction and shading shared by :func:`render_mesh` and :func:`render_scene`.

Shading modes (``shading=``):

* ``"phong"``: per-pixel shading of interpolated vertex normals (the default).
* ``"flat"``: per-pixel shading with each triangle's own normal.
* ``"gouraud"``: shading evaluated at the vertices and interpolated (the
  material must be constant: no :class:`TextureParam`).

A mesh's ``texture`` (sampled at the interpolated UVs) and ``vert_colors``
multiply the shaded colour in every mode.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from lumigrad.geometry.normals import face_cross, safe_normalize, vertex_normals
from lumigrad.ops.interpolate import interpolate
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import PointLight
from lumigrad.scene.materials import LambertMaterial, TextureParam
from lumigrad.shade import sample_param, shade

SHADING_MODES = ("phong", "flat", "gouraud")


def check_shading(fn: str, shading) -> str:
    if shading not in SHADING_MODES:
        raise ValueError(f"{fn}(): shading must be 'phong', 'flat' or 'gouraud', got {shading!r}")
    return shading


def default_material(material, dtype):
    """``None`` -> Lambert with albedo 1, so a mesh's texture / vertex colours are its albedo."""
    return LambertMaterial(albedo=1.0) if material is None else material


def _has_texture(material) -> bool:
    return any(isinstance(v, TextureParam) for v in vars(material).values())


def _needs_points(parts, lights, shading: str) -> bool:
    """Whether shading reads the surface points: point lights, and view directions for any material but
    Lambert. Without them the G-buffer skips the positions (an interpolated channel triple and a view-direction
    buffer, each way)."""
    light_list = list(lights) if isinstance(lights, Sequence) else [lights]
    return (shading == "gouraud" or any(isinstance(x, PointLight) for x in light_list)
            or any(not isinstance(m, LambertMaterial) for m, _, _ in parts))


def shade_pixels(
    fn: str,
    verts_b: Tensor,  # [B, V, 3] world
    faces: Tensor,  # [F, 3] int32
    rast: Tensor,  # [B, H, W, 4]
    rast_db: Tensor,  # [B, H, W, 4]
    camera: Camera,
    parts: Sequence[tuple[object, int, int]],  # (material, first face, end face) per object
    lights,
    *,
    shading: str = "phong",
    uvs: Tensor | None = None,  # [T, 2]
    faces_uvs: Tensor | None = None,  # [F, 3]
    textures: Sequence[tuple[Tensor, int, int]] = (),  # (texture [Ht, Wt, C], first face, end face)
    vert_colors: Tensor | None = None,  # [V, 3] or [B, V, 3]
) -> tuple[Tensor, Tensor, Tensor]:
    """Shade every covered pixel; returns ``(rgb [B,H,W,3] masked, normals [B,H,W,3], mask [B,H,W,1])``."""
    B = rast.shape[0]
    dtype = verts_b.dtype
    tri = rast[..., 3:4]
    mask = (tri > 0).to(dtype)
    need_points = _needs_points(parts, lights, shading)
    attrs = [verts_b] if need_points else []
    if shading != "flat":
        attrs.append(vertex_normals(verts_b, faces))
    if vert_colors is not None:
        vc = vert_colors[..., :3]
        attrs.append(vc.expand(B, -1, -1) if vc.ndim == 2 else vc)
    gbuf = interpolate(torch.cat(attrs, dim=-1), rast, faces)[0] if attrs else None
    col = 0
    points = view_dirs = None
    if need_points:
        points, col = gbuf[..., 0:3], 3
        eye = camera.camera_center()  # [B, 3]
        view_dirs = eye[:, None, None, :] - points  # shade() normalises
    if shading == "flat":
        fnorm = safe_normalize(face_cross(verts_b, faces))  # [B, F, 3]
        idx = (tri[..., 0].long() - 1).clamp_min(0).reshape(B, -1, 1).expand(-1, -1, 3)
        normals = shade_normals = torch.gather(fnorm, 1, idx).reshape(*tri.shape[:3], 3)
    else:
        normals = safe_normalize(gbuf[..., col:col + 3])  # the output's normals
        shade_normals = gbuf[..., col:col + 3]  # shade() normalises: no second backward through safe_normalize
        col += 3
    uv = uv_da = None
    if uvs is not None:
        uv, uv_da = interpolate(uvs, rast, faces_uvs, rast_db=rast_db, diff_attrs="all")

    face_id = tri[..., 0] - 1  # [B, H, W], -1 on background
    rgb = torch.zeros_like(normals)
    for material, f0, f1 in parts:
        if shading == "gouraud":
            if _has_texture(material):
                raise ValueError(f"{fn}(): shading='gouraud' needs a constant material (no TextureParam); "
                                 "use shading='phong' for textured materials")
            vn = vertex_normals(verts_b, faces)
            vdir = safe_normalize(camera.camera_center()[:, None, :] - verts_b)
            vrgb = shade(material, lights, points=verts_b[:, :, None, :], normals=vn[:, :, None, :],
                         view_dirs=vdir[:, :, None, :])[:, :, 0, :]
            part_rgb, _ = interpolate(vrgb, rast, faces)
        else:
            part_rgb = shade(material, lights, points=points, normals=shade_normals, view_dirs=view_dirs, uv=uv,
                             uv_da=uv_da, mask=mask)
        if len(parts) == 1:
            rgb = part_rgb
        else:
            sel = ((face_id >= f0) & (face_id < f1)).to(dtype)[..., None]
            rgb = rgb + part_rgb * sel
    if vert_colors is not None:
        # Vertex colours modulate the shaded colour (e.g. baked albedo variation).
        rgb = rgb * gbuf[..., col:col + 3]
    for tex, f0, f1 in textures:
        if uv is None:
            raise ValueError(f"{fn}(): a mesh texture needs uvs")
        texel = sample_param(TextureParam(tex[..., :3] if tex.shape[-1] >= 3 else tex[..., :1]), normals, uv, uv_da,
                             name="mesh.texture", fn=fn)
        if len(parts) == 1 and len(textures) == 1:
            rgb = rgb * texel
        else:
            sel = ((face_id >= f0) & (face_id < f1)).to(dtype)[..., None]
            rgb = rgb * (1 - sel + sel * texel)
    return rgb * mask, normals * mask, mask
