"""Central finite differences (float64) vs autograd through the whole pipeline:
project -> rasterize -> interpolate -> texture -> shade -> antialias.

The scene is a small textured pyramid partly in front of a background quad, so
the image has silhouette edges against the background and an occlusion edge of
one surface over another; antialiasing makes the image continuous in the
vertex positions, so finite differences are meaningful there.
"""
from __future__ import annotations

import pytest
import torch

from lumigrad.geometry import compose_rigid, intrinsics_from_fov, matrix_to_rotation_6d, rotation_6d_to_matrix, look_at_world_to_cam
from lumigrad.render import RasterSettings, render_mesh
from lumigrad.scene import AmbientLight, Camera, DirectionalLight, GGXMaterial, Mesh, PointLight, TextureParam

D = torch.float64
RES = 12


def _scene():
    g = torch.Generator().manual_seed(3)
    verts = torch.tensor(
        [
            [-0.55, -0.5, 0.1], [0.5, -0.45, 0.05], [0.05, 0.55, 0.0], [0.02, -0.05, 0.6],  # pyramid
            [-0.9, -0.8, -0.5], [0.85, -0.85, -0.5], [0.9, 0.3, -0.55], [-0.8, 0.35, -0.5],  # background quad
        ],
        dtype=D,
    )
    faces = torch.tensor([[0, 1, 3], [1, 2, 3], [2, 0, 3], [0, 2, 1], [4, 5, 6], [4, 6, 7]], dtype=torch.int32)
    uvs = torch.rand(8, 2, generator=g, dtype=D) * 0.8 + 0.1
    colors = torch.rand(8, 3, generator=g, dtype=D) * 0.5 + 0.5
    tex = torch.rand(4, 4, 3, generator=g, dtype=D)
    eye = torch.tensor([[0.3, 0.2, 3.0]], dtype=D)
    w2c = look_at_world_to_cam(eye, torch.zeros(1, 3, dtype=D), torch.tensor([[0.0, 1.0, 0.0]], dtype=D))
    return dict(
        verts=verts, faces=faces, uvs=uvs, colors=colors, tex=tex,
        rot6d=matrix_to_rotation_6d(w2c[:, :3, :3]), trans=w2c[:, :3, 3].clone(),
        to_light=torch.tensor([0.3, 0.5, 0.8], dtype=D), intensity=torch.tensor(2.0, dtype=D),
        light_pos=torch.tensor([0.5, 1.0, 2.0], dtype=D),
        roughness=torch.tensor([0.45], dtype=D), metallic=torch.tensor([0.3], dtype=D),
    )


def _render(p: dict) -> torch.Tensor:
    mesh = Mesh(verts=p["verts"], faces=p["faces"], uvs=p["uvs"], faces_uvs=p["faces"], vert_colors=p["colors"])
    K = intrinsics_from_fov(35.0, RES, RES, dtype=D)
    cam = Camera(world_to_cam=compose_rigid(rotation_6d_to_matrix(p["rot6d"]), p["trans"]), K=K, width=RES, height=RES)
    material = GGXMaterial(base_color=TextureParam(p["tex"], filter_mode="linear"), roughness=p["roughness"], metallic=p["metallic"])
    lights = [
        AmbientLight(color=torch.tensor([0.1, 0.1, 0.1], dtype=D)),
        DirectionalLight(to_light=p["to_light"], color=torch.tensor([1.0, 0.9, 0.8], dtype=D), intensity=p["intensity"]),
        PointLight(position=p["light_pos"], color=torch.tensor([0.5, 0.5, 0.6], dtype=D), intensity=torch.tensor(3.0, dtype=D)),
    ]
    out = render_mesh(mesh, cam, material, lights, RasterSettings(visibility="antialias", background=(0.2, 0.3, 0.4)))
    return out.image


PARAMS = ["verts", "colors", "tex", "rot6d", "trans", "to_light", "intensity", "light_pos", "roughness", "metallic"]


@pytest.mark.parametrize("name", PARAMS)
def test_full_chain_matches_finite_differences(name):
    p = _scene()
    weights = torch.rand(1, RES, RES, 3, generator=torch.Generator().manual_seed(7), dtype=D)
    x = p[name].clone().requires_grad_(True)

    def loss(t):
        return (_render({**p, name: t}) * weights).sum()

    assert torch.autograd.gradcheck(loss, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)
    (g,) = torch.autograd.grad(loss(x), x)
    assert g.abs().max() > 1e-4, f"gradient w.r.t. {name} is zero: the test would be vacuous"


def test_scene_has_silhouette_and_occlusion():
    p = _scene()
    mesh = Mesh(verts=p["verts"], faces=p["faces"])
    cam = Camera(world_to_cam=compose_rigid(rotation_6d_to_matrix(p["rot6d"]), p["trans"]), K=intrinsics_from_fov(35.0, RES, RES, dtype=D), width=RES, height=RES)
    from lumigrad.ops import rasterize

    rast, _ = rasterize(cam.project(mesh.verts), mesh.faces, (RES, RES))
    ids = rast[0, ..., 3].long()
    assert (ids == 0).any(), "background visible"
    assert ((ids >= 1) & (ids <= 4)).any() and (ids >= 5).any(), "pyramid and quad both visible"


def _mip_chain_scene():
    """Float64 triangles with UVs over a 64x64 texture seen at 5x6 pixels, so trilinear filtering
    blends interior mip levels; pixel centres stay >= 1e-3 NDC from every edge (as in
    tests/ops/test_rasterize.py), one triangle crosses the camera plane, one occludes the other."""
    pos = torch.tensor(
        [
            [-0.91, -0.83, 0.2, 1.0], [0.87, -0.79, 0.3, 1.1], [0.04, 0.93, 0.1, 0.9],
            [-0.6, -0.55, -0.4, 1.0], [0.62, -0.45, -0.3, 1.0], [0.01, 0.4, 0.9, -0.5],
        ],
        dtype=D,
    )
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    res = (5, 6)
    g = torch.Generator().manual_seed(5)
    uv = torch.rand(pos.shape[0], 2, generator=g, dtype=D) * 0.9 + 0.05
    tex = torch.rand(64, 64, 3, generator=g, dtype=D)
    weights = torch.rand(1, *res, 3, generator=g, dtype=D)
    return pos, tri, res, uv, tex, weights


def _mip_chain_loss(pos, tri, res, uv, tex, weights, freeze_db=False):
    from lumigrad.ops import interpolate, rasterize, texture

    rast, rast_db = rasterize(pos, tri, res)
    if freeze_db:
        rast_db = rast_db.detach()
    uvi, uv_da = interpolate(uv, rast, tri, rast_db=rast_db, diff_attrs="all")
    col = texture(tex, uvi, uv_da, filter_mode="linear-mipmap-linear")
    return (col * weights).sum()


def test_trilinear_chain_position_gradient_includes_mip_level_term():
    """rasterize -> interpolate(uv, rast_db) -> texture(trilinear): d loss / d pos vs central
    differences, which see the mip level move with the positions (issue 9 item 3)."""
    from lumigrad.ops._texture_ref import mip_level_ref
    from lumigrad.ops import interpolate, rasterize

    pos, tri, res, uv, tex, weights = _mip_chain_scene()
    rast, db = rasterize(pos, tri, res)
    _, uv_da = interpolate(uv, rast, tri, rast_db=db, diff_attrs="all")
    lev = mip_level_ref(uv_da, 64, 64, 6)[rast[..., 3] > 0]
    assert ((lev > 0.05) & (lev < 5.95)).float().mean() > 0.9, "most pixels must blend two interior mip levels"
    x = pos.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p: _mip_chain_loss(p, tri, res, uv, tex, weights), (x,), eps=1e-6, atol=1e-6, rtol=1e-4
    )
    # Without the rast_db path the gradient is measurably wrong: the term is exercised.
    (g,) = torch.autograd.grad(_mip_chain_loss(x, tri, res, uv, tex, weights), x)
    (g_frozen,) = torch.autograd.grad(_mip_chain_loss(x, tri, res, uv, tex, weights, freeze_db=True), x)
    assert (g - g_frozen).norm() > 0.01 * g.norm()
