"""TraceSettings(decorrelate=True): the image's value from ``seed``, its derivatives from grad_seed(seed)'s samples.

With one set of samples the gradient of a nonlinear loss is biased by the covariance of the image's noise and its
derivative's (for ``sum((I - T)^2)``: ``2 Cov(I, dI)``); the scene below (a sphere over a floor, 1 spp) shows it in
d/dz at the loss's minimum: 4-5 standard errors off zero with one set, within 1.5 with two.
"""
import dataclasses

import pytest
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import prepare_trace, render_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.lights import PointLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings, grad_seed

DT = torch.float64
RES = 16
SV, SF = icosphere(3, dtype=DT)
QUAD = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
FLOOR = torch.tensor([[-3, -0.7, -3], [-3, -0.7, 3], [3, -0.7, 3], [3, -0.7, -3]], dtype=DT)
CAM = Camera.look_at(torch.tensor([0.0, 0.4, 3.0], dtype=DT), torch.zeros(3, dtype=DT), width=RES, height=RES)
LIGHT = [PointLight(torch.tensor([1.0, 2.5, 1.0], dtype=DT), intensity=30.0)]
# two quads facing each other under an area light: interreflection, material-only gradients (the fused kernel)
WALL = torch.tensor([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1]], dtype=DT)
LAMP = torch.tensor([[-0.3, 0.9, 0.3], [-0.3, 0.9, -0.3], [0.3, 0.9, -0.3], [0.3, 0.9, 0.3]], dtype=DT)


def _scene(t, albedo=0.8):
    return [Shape(Mesh(SV * 0.6 + t, SF), LambertMaterial(albedo)), Shape(Mesh(FLOOR, QUAD), LambertMaterial(0.5))]


def _lit_box(albedo):
    return [Shape(Mesh(WALL, QUAD), LambertMaterial(albedo)), Shape(Mesh(FLOOR, QUAD), LambertMaterial(0.6)),
            Shape(Mesh(LAMP, QUAD), LambertMaterial(0.0), emission=torch.full((3,), 8.0, dtype=DT))]


@pytest.mark.parametrize("bounces", [1, 2])
def test_value_is_the_seed_render_and_gradient_the_grad_seed_render(bounces):
    w = torch.rand(1, RES, RES, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    st = TraceSettings(spp=2, seed=5, max_bounces=bounces)
    with torch.no_grad():
        plain = render_trace(_scene(torch.zeros(3, dtype=DT)), CAM, LIGHT, st).image
    out = {}
    for name, s in (("decorrelated", st), ("grad seed", dataclasses.replace(st, decorrelate=False,
                                                                            seed=grad_seed(st.seed)))):
        t = torch.zeros(3, dtype=DT, requires_grad=True)
        img = render_trace(_scene(t), CAM, LIGHT, s).image
        (img * w).sum().backward()
        out[name] = (img.detach(), t.grad)
    torch.testing.assert_close(out["decorrelated"][0], plain, rtol=0, atol=0)
    torch.testing.assert_close(out["decorrelated"][1], out["grad seed"][1], rtol=1e-12, atol=1e-12)
    assert float(out["decorrelated"][1].abs().max()) > 1.0


@pytest.mark.parametrize("replay", [False, True])
def test_fused_kernel_gradient_comes_from_the_grad_seed(replay):
    """Material-only gradients (the fused path kernel): with replay its backward re-traces the paths from the grad
    seed (no extra pass), without it a second render does."""
    cam = Camera.look_at(torch.tensor([0.0, 0.0, 3.0], dtype=DT), torch.zeros(3, dtype=DT), width=8, height=8)
    w = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    st = TraceSettings(spp=4, seed=2, max_bounces=3, replay=replay)
    grads, imgs = {}, {}
    for name, s in (("decorrelated", st), ("grad seed", dataclasses.replace(st, decorrelate=False,
                                                                            seed=grad_seed(st.seed))),
                    ("seed", dataclasses.replace(st, decorrelate=False))):
        a = torch.tensor([0.7, 0.5, 0.3], dtype=DT, requires_grad=True)
        img = render_trace(_lit_box(a), cam, [], s).image
        (img * w).sum().backward()
        grads[name], imgs[name] = a.grad, img.detach()
    torch.testing.assert_close(imgs["decorrelated"], imgs["seed"], rtol=0, atol=0)
    torch.testing.assert_close(grads["decorrelated"], grads["grad seed"], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(grads["decorrelated"], grads["seed"])


def test_mse_gradient_at_the_optimum_is_unbiased_only_when_decorrelated():
    """The target is the scene itself (1024 spp): the expected loss is at its minimum, so the gradient of its MSE
    has mean ~0 (the target's own noise moves it by ~1/4 of the standard error here); with one set of samples the
    mean is ``2 Cov(I, dI)`` instead (d/dz: 4-5 standard errors off)."""
    accel = prepare_trace(_scene(torch.zeros(3, dtype=DT)))
    with torch.no_grad():
        target = render_trace(_scene(torch.zeros(3, dtype=DT)), CAM, LIGHT, TraceSettings(spp=1024, seed=77),
                              accel=accel).image
    n, z = 96, {}
    for decorrelate in (True, False):
        rows = []
        for seed in range(n):
            t = torch.zeros(3, dtype=DT, requires_grad=True)
            st = TraceSettings(spp=1, seed=seed, decorrelate=decorrelate)
            ((render_trace(_scene(t), CAM, LIGHT, st, accel=accel).image - target) ** 2).sum().backward()
            rows.append(t.grad)
        g = torch.stack(rows)
        z[decorrelate] = g.mean(0) / (g.std(0) / n ** 0.5)
    assert bool((z[True].abs() < 4).all()), z
    assert float(z[False].abs().max()) > 3, z  # the covariance bias this setting removes


def test_a_texture_alone_needing_a_gradient_is_decorrelated():
    """The texels sit three levels down (shape -> material -> TextureParam): still found."""
    from lumigrad.scene.materials import TextureParam

    from trace_scenes import smooth_texture, textured_plane_scene

    mesh, cam = textured_plane_scene(res=8)
    w = torch.rand(1, 8, 8, 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    st = TraceSettings(spp=2, seed=4, boundary="none")
    grads = {}
    for name, s in (("decorrelated", st), ("grad seed", dataclasses.replace(st, decorrelate=False,
                                                                            seed=grad_seed(st.seed))),
                    ("seed", dataclasses.replace(st, decorrelate=False))):
        tex = smooth_texture(3, 3, 3).requires_grad_(True)
        shape = Shape(mesh, LambertMaterial(TextureParam(tex, filter_mode="linear")))
        (render_trace([shape], cam, LIGHT, s).image * w).sum().backward()
        grads[name] = tex.grad
    torch.testing.assert_close(grads["decorrelated"], grads["grad seed"], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(grads["decorrelated"], grads["seed"])
