"""Every visibility method of render_mesh and render_silhouette: images, alpha and silhouette gradients."""
import pytest
import torch

from lumigrad.geometry import icosphere
from lumigrad.render.raster import VISIBILITY_METHODS, RasterSettings, render_mesh, render_silhouette
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import AmbientLight, DirectionalLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.mesh import Mesh

RES = 32


def _scene(dtype=torch.float64):
    v, f = icosphere(2)
    mesh = Mesh(verts=v.to(dtype) * 0.8, faces=f)
    cam = Camera.look_at(torch.tensor([0.0, 0.3, 3.0], dtype=dtype), torch.zeros(3, dtype=dtype), width=RES, height=RES, fov_y_deg=40.0, dtype=dtype)
    lights = [DirectionalLight(torch.tensor([0.2, 1.0, 0.5], dtype=dtype)), AmbientLight(torch.tensor([0.2, 0.2, 0.2], dtype=dtype))]
    return mesh, cam, LambertMaterial(0.7), lights


def test_default_visibility_is_edge():
    assert RasterSettings().visibility == "edge"
    with pytest.raises(ValueError, match="visibility must be one of"):
        RasterSettings(visibility="blur")


@pytest.mark.parametrize("visibility", VISIBILITY_METHODS)
def test_render_mesh_every_mode(visibility):
    mesh, cam, mat, lights = _scene()
    verts = mesh.verts.clone().requires_grad_(True)
    # Black background: the silhouette gradient must come from the object's colour alone.
    out = render_mesh(mesh, cam, mat, lights, RasterSettings(visibility=visibility), verts=verts)
    assert out.image.shape == (1, RES, RES, 3) and out.alpha.shape == (1, RES, RES, 1)
    assert torch.isfinite(out.image).all() and (out.alpha >= 0).all() and (out.alpha <= 1 + 1e-9).all()
    hard = render_mesh(mesh, cam, mat, lights, RasterSettings(visibility="hard"))
    if visibility in ("edge", "hard"):
        torch.testing.assert_close(out.image, hard.image)  # edge gradients leave the image as rendered
    # A loss that rewards growing the object: its gradient points outwards (positive radial component).
    grad = torch.autograd.grad(out.image.sum() + out.alpha.sum(), verts)[0]
    radial = (grad * verts.detach()).sum()
    if visibility == "hard":
        # No visibility gradient: only shading changes, no systematic outward push from the silhouette.
        soft_like = torch.autograd.grad(render_mesh(mesh, cam, mat, lights, RasterSettings(visibility="edge"), verts=verts).alpha.sum(), verts)[0]
        assert (soft_like * verts.detach()).sum() > 0
    else:
        assert radial > 0, visibility


@pytest.mark.parametrize("visibility", VISIBILITY_METHODS)
def test_render_silhouette_every_mode(visibility):
    mesh, cam, _, _ = _scene()
    verts = mesh.verts.clone().requires_grad_(True)
    alpha = render_silhouette(verts, mesh.faces, cam, RasterSettings(visibility=visibility))
    assert alpha.shape == (1, RES, RES, 1)
    assert 0.1 < float(alpha.detach().mean()) < 0.9
    if visibility == "hard":
        assert not alpha.requires_grad
        return
    grad = torch.autograd.grad(alpha.sum(), verts)[0]
    assert (grad * verts.detach()).sum() > 0  # more coverage = bigger sphere


def test_soft_mode_has_silhouette_gradient_on_black_background():
    """d image / d alpha must be (colour - background), not -background (zero on black)."""
    mesh, cam, mat, lights = _scene()
    verts = mesh.verts.clone().requires_grad_(True)
    out = render_mesh(mesh, cam, mat, lights, RasterSettings(visibility="soft", sigma=1e-4), verts=verts)
    grad = torch.autograd.grad(out.image.sum(), verts)[0]
    assert (grad * verts.detach()).sum() > 0
    # Away from the edge the soft image equals the hard one.
    hard = render_mesh(mesh, cam, mat, lights, RasterSettings(visibility="hard"))
    inner = hard.alpha[..., 0] > 0
    inner = inner & torch.roll(inner, 2, 1) & torch.roll(inner, -2, 1) & torch.roll(inner, 2, 2) & torch.roll(inner, -2, 2)
    assert (out.image[inner] - hard.image[inner]).abs().mean() < 0.01


# --- supersampling -------------------------------------------------------------------------------


def test_supersample_is_the_box_average_of_the_larger_render():
    import dataclasses

    from lumigrad.render.raster import box_downsample

    dt = torch.float64
    mesh = Mesh(*icosphere(2, dtype=dt))
    cam = Camera.look_at(torch.tensor([0.3, 0.2, 3.0], dtype=dt), torch.zeros(3, dtype=dt), width=12, height=10, dtype=dt)
    big = cam.scaled(3)
    assert (big.width, big.height) == (36, 30)
    pts = torch.rand(5, 3, dtype=dt) - 0.5
    torch.testing.assert_close(big.project_to_pixels(pts), 3 * cam.project_to_pixels(pts))
    light = [DirectionalLight(torch.tensor([0.3, 0.5, 1.0], dtype=dt))]
    st = RasterSettings(background=(0.2, 0.3, 0.4), supersample=3)
    verts = mesh.verts.clone().requires_grad_(True)
    out = render_mesh(mesh, cam, LambertMaterial(0.7), light, st, verts=verts)
    ref = render_mesh(mesh, big, LambertMaterial(0.7), light, dataclasses.replace(st, supersample=1), verts=verts)
    assert out.image.shape == (1, 10, 12, 3) and out.rast.shape == (1, 30, 36, 4)
    assert torch.equal(out.image, box_downsample(ref.image, 3)) and torch.equal(out.alpha, box_downsample(ref.alpha, 3))
    from lumigrad.render.scene import render_scene
    from lumigrad.scene.scene import Scene, SceneObject

    scene = Scene([SceneObject(mesh, LambertMaterial(0.7))], lights=light)
    got = render_scene(scene, cam, st)
    assert torch.equal(got.image, box_downsample(render_scene(scene, big, dataclasses.replace(st, supersample=1)).image, 3))
    sil = render_silhouette(verts, mesh.faces, cam, st)
    assert torch.equal(sil, box_downsample(render_silhouette(verts, mesh.faces, big, dataclasses.replace(st, supersample=1)), 3))
    # Partial coverage in the box average, and the gradient reaches the vertices.
    assert ((out.alpha > 0.05) & (out.alpha < 0.95)).any()
    out.image.sum().backward()
    assert verts.grad.abs().sum() > 0
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="supersample"):
            RasterSettings(supersample=bad)
    with pytest.raises(ValueError, match="factor"):
        cam.scaled(0)


@pytest.mark.parametrize("shading", ["phong", "flat"])
@pytest.mark.parametrize("extras", ["none", "vert_colors", "texture"])
def test_lambert_gbuffer_without_points_is_the_same(shading, extras):
    """Lambert without point lights skips the interpolated positions; a zero-intensity point light, which
    forces them, must change neither the image nor any gradient."""
    from lumigrad.scene.lights import PointLight

    mesh, cam, mat, lights = _scene()
    g = torch.Generator().manual_seed(0)
    if extras == "vert_colors":
        mesh = Mesh(verts=mesh.verts, faces=mesh.faces, vert_colors=torch.rand(mesh.verts.shape[0], 3, generator=g, dtype=torch.float64))
    elif extras == "texture":
        uvs = torch.rand(mesh.verts.shape[0], 2, generator=g, dtype=torch.float64)
        mesh = Mesh(verts=mesh.verts, faces=mesh.faces, uvs=uvs, faces_uvs=mesh.faces,
                    texture=torch.rand(8, 8, 3, generator=g, dtype=torch.float64))
    dark = PointLight(torch.tensor([0.0, 2.0, 2.0], dtype=torch.float64), intensity=0.0)
    outs = []
    for ls in (lights, lights + [dark]):
        verts = mesh.verts.clone().requires_grad_(True)
        albedo = torch.tensor([0.7, 0.6, 0.5], dtype=torch.float64, requires_grad=True)
        img = render_mesh(mesh, cam, LambertMaterial(albedo), ls, verts=verts, shading=shading).image
        w = torch.linspace(-1.0, 1.0, img.numel(), dtype=img.dtype).view_as(img)
        outs.append((img.detach(), torch.autograd.grad((img * w).sum(), (verts, albedo))))
    (img_a, g_a), (img_b, g_b) = outs
    torch.testing.assert_close(img_a, img_b, rtol=1e-12, atol=1e-13)
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
