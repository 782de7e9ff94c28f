"""Camera rigs, object transforms and multi-object scenes."""
import math

import pytest
import torch

from lumigrad.geometry.primitives import cube, icosphere
from lumigrad.render import RasterSettings, object_ids, render_mesh, render_scene
from lumigrad.scene import AmbientLight, Camera, LambertMaterial, Mesh, ObjectTransform, Scene, SceneObject
from lumigrad.scene.rigs import orbit_cameras, turntable_cameras


def test_rigs_look_at_origin():
    for cam in (orbit_cameras(7, 16), turntable_cameras(5, 16, distance=2.0)):
        px = cam.project_to_pixels(torch.zeros(1, 3))
        torch.testing.assert_close(px, torch.full_like(px, 8.0))
    with pytest.raises(ValueError, match="orbit_cameras"):
        orbit_cameras(0, 16)
    # reconstruct still exports the rig (the demo uses it).
    from lumigrad.tasks.reconstruct import orbit_cameras as oc
    assert oc is orbit_cameras


def test_object_transform_parameterisations_agree():
    aa = torch.tensor([0.2, -0.4, 0.9], dtype=torch.float64)
    from lumigrad.geometry.rotations import axis_angle_to_matrix, matrix_to_quaternion, matrix_to_rotation_6d
    m = axis_angle_to_matrix(aa)
    t = torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64)
    p = torch.randn(6, 3, dtype=torch.float64)
    want = (2.0 * p) @ m.T + t
    for rot in (aa, m, matrix_to_quaternion(m), matrix_to_rotation_6d(m)):
        torch.testing.assert_close(ObjectTransform(rot, t, 2.0).apply(p), want)
    batched = ObjectTransform(torch.stack([aa, -aa]), t)
    assert batched.apply(p).shape == (2, 6, 3)
    with pytest.raises(ValueError, match="ObjectTransform"):
        ObjectTransform(torch.zeros(5))


def _cam(res=32):
    return Camera.look_at(torch.tensor([0.0, 0.0, 6.0]), torch.zeros(3), width=res, height=res, fov_y_deg=30.0)


def test_render_mesh_transform_moves_the_object_and_gets_gradients():
    v, f = icosphere(1, radius=0.5)
    mesh = Mesh(v, f)
    t = torch.tensor([0.6, 0.0, 0.0], requires_grad=True)
    out = render_mesh(mesh, _cam(), LambertMaterial(1.0), [AmbientLight(torch.ones(3))],
                      transform=ObjectTransform(translation=t))
    cols = out.alpha[0, ..., 0].detach().sum(0)
    centre = float((cols * torch.arange(32)).sum() / cols.sum())
    assert centre > 16.5  # moved right (+x world is right in the image)
    out.alpha.sum().backward()
    assert t.grad is not None and float(t.grad.abs().sum()) > 0


def test_render_mesh_uses_the_mesh_texture():
    v, f = icosphere(1, radius=0.8)
    uvs = torch.rand(v.shape[0], 2)
    red = torch.zeros(4, 4, 3)
    red[..., 0] = 1.0
    mesh = Mesh(v, f, uvs=uvs, texture=red)
    out = render_mesh(mesh, _cam(), None, [AmbientLight(torch.ones(3))], RasterSettings(visibility="hard"))
    inside = out.alpha[..., 0] > 0
    img = out.image[inside]
    assert float(img[:, 0].min()) > 0.99 and float(img[:, 1:].max()) < 1e-6


@pytest.mark.parametrize("shading", ["flat", "gouraud", "phong"])
def test_shading_modes_render_and_differ(shading):
    v, f = icosphere(1, radius=0.9)
    from lumigrad.scene import DirectionalLight
    sun = DirectionalLight(torch.tensor([0.3, 0.5, 1.0]))
    out = render_mesh(Mesh(v, f), _cam(), LambertMaterial(0.8), [sun], RasterSettings(visibility="hard"), shading=shading)
    ref = render_mesh(Mesh(v, f), _cam(), LambertMaterial(0.8), [sun], RasterSettings(visibility="hard"), shading="phong")
    inside = out.alpha[..., 0] > 0
    diff = float((out.image - ref.image)[inside].abs().mean())
    assert (diff == 0.0) == (shading == "phong")
    if shading == "flat":  # one normal per triangle: few distinct colours
        assert torch.unique(out.image[inside][:, 0]).numel() <= f.shape[0]
    with pytest.raises(ValueError, match="shading"):
        render_mesh(Mesh(v, f), _cam(), LambertMaterial(0.8), [sun], shading="smooth")


def test_scene_of_two_objects_in_one_pass_matches_separate_renders():
    v1, f1 = cube(0.6)
    v2, f2 = icosphere(1, radius=0.4)
    a = SceneObject(Mesh(v1, f1), LambertMaterial(torch.tensor([1.0, 0.0, 0.0])), ObjectTransform(translation=torch.tensor([-0.7, 0.0, 0.0])))
    b = SceneObject(Mesh(v2, f2), LambertMaterial(torch.tensor([0.0, 0.0, 1.0])), ObjectTransform(translation=torch.tensor([0.7, 0.0, 0.0])))
    lights = [AmbientLight(torch.ones(3))]
    scene = Scene([a, b], lights=lights)
    out = render_scene(scene, _cam(), RasterSettings(visibility="hard"))
    ids = object_ids(scene, out.rast)
    assert set(torch.unique(ids).tolist()) == {-1, 0, 1}
    red = out.image[ids == 0]
    blue = out.image[ids == 1]
    assert float(red[:, 0].min()) > 0.99 and float(red[:, 2].max()) < 1e-6
    assert float(blue[:, 2].min()) > 0.99 and float(blue[:, 0].max()) < 1e-6
    single = render_mesh(a.mesh, _cam(), a.material, lights, RasterSettings(visibility="hard"), transform=a.transform)
    torch.testing.assert_close((ids == 0).float(), single.alpha[..., 0])
