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
