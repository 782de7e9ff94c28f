"""Attached camera hits (TraceSettings(interior="attached"), and "auto" where it applies;
lumigrad.render._attached) against central differences
and against the detached estimator.

Scene: a smooth-shaded low-poly sphere that translates, a point light beside the camera. With shadows, the sphere
shadows itself past its terminator (smooth normals on flat faces), a discontinuity the shadow sampler does not
find; the detached estimator misses its whole motion there, the attached one only its motion relative to the
surface: at 32^2 it was 3.5 / 4.3 standard errors off central differences while the attached one agreed to
0.1 %, with 30x less spread (bench/results_trace13.md).
"""
import pytest
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import prepare_trace, render_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.lights import PointLight
from lumigrad.scene.materials import GGXMaterial, LambertMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings

DT = torch.float64
RES = 16
QUAD = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
SV, SF = icosphere(2, dtype=DT)
CAM = Camera.look_at(torch.tensor([0.0, 0.4, 3.0], dtype=DT), torch.zeros(3, dtype=DT), width=RES, height=RES)


def _quad(c, u, v):
    c, u, v = (torch.as_tensor(x, dtype=DT) for x in (c, u, v))
    return torch.stack([c - u - v, c + u - v, c + u + v, c - u + v])


def _scene(t, wall=False, occluder=False):
    shapes = [Shape(Mesh(SV * 0.6 + t, SF), LambertMaterial(0.8))]
    if wall:  # lit, behind the sphere: the outline's far side is not black
        shapes.append(Shape(Mesh(_quad((0, 0, -1.2), (3, 0, 0), (0, 3, 0)), QUAD), LambertMaterial(0.5)))
    if occluder:  # still, in front of part of the moving sphere
        shapes.append(Shape(Mesh(_quad((0.35, 0.35, 1.0), (0.25, 0, 0), (0, 0.25, 0)), QUAD), LambertMaterial(0.3)))
    return shapes


def _light():
    return [PointLight(torch.tensor([0.3, 0.6, 3.0], dtype=DT), intensity=25.0)]


def _grads(interior, seeds, shadows=True, weights=None, **kw):
    accel = prepare_trace(_scene(torch.zeros(3, dtype=DT), **kw))
    out = []
    for seed in seeds:
        t = torch.zeros(3, dtype=DT, requires_grad=True)
        st = TraceSettings(spp=4, seed=seed, shadows=shadows, interior=interior)
        img = render_trace(_scene(t, **kw), CAM, _light(), st, accel=accel).image[0].mean(-1)
        (img * (1.0 if weights is None else weights)).sum().backward()
        out.append(t.grad)
    return torch.stack(out)


def test_attached_matches_central_differences_where_the_detached_misses_the_self_shadow():
    g = _grads("attached", range(16))
    h, fds = 5e-3, []
    accel = prepare_trace(_scene(torch.zeros(3, dtype=DT)))
    with torch.no_grad():
        for seed in range(6):  # common random numbers at +-h
            row = []
            for axis in (0, 2):
                e = torch.zeros(3, dtype=DT)
                e[axis] = h
                f = [float(render_trace(_scene(s * e), CAM, _light(), TraceSettings(spp=512, seed=100 + seed,
                     boundary="none"), accel=accel).image.mean(-1).sum()) for s in (1, -1)]
                row.append((f[0] - f[1]) / (2 * h))
            fds.append(row)
    fd = torch.tensor(fds, dtype=DT)
    ga = g[:, [0, 2]]
    se = (ga.var(0) / ga.shape[0] + fd.var(0) / fd.shape[0]).sqrt()
    assert (ga.mean(0) - fd.mean(0)).abs().le(4 * se + 0.005 * fd.mean(0).abs()).all(), (ga.mean(0), fd.mean(0), se)


@pytest.mark.parametrize("case", [dict(wall=True), dict(wall=True, occluder=True)])
def test_attached_and_detached_agree_without_shadows(case):
    """Both are unbiased here: the far side of the outline (a lit wall) and a still occluder's outline in front of
    the moving sphere (a term only the attached estimator has) included. Per-pixel weights make the pixel-border
    flux count (it cancels between neighbours in a plain sum)."""
    w = torch.rand(RES, RES, generator=torch.Generator().manual_seed(1), dtype=DT)
    a = _grads("attached", range(48), shadows=False, weights=w, **case)
    d = _grads("detached", range(48), shadows=False, weights=w, **case)
    se = (a.var(0) / 48 + d.var(0) / 48).sqrt()
    assert float(d.mean(0).abs().max()) > 1.0
    assert (a.mean(0) - d.mean(0)).abs().le(4 * se).all(), (a.mean(0), d.mean(0), se)


def test_attached_has_less_spread_on_a_smooth_mesh():
    """The detached interior's 1 / cos tail at the outline: a finer sphere, the image sum."""
    global SV, SF
    old = SV, SF
    SV, SF = icosphere(4, dtype=DT)
    try:
        a, d = _grads("attached", range(12), shadows=False), _grads("detached", range(12), shadows=False)
    finally:
        SV, SF = old
    assert (a.std(0) < 0.5 * d.std(0)).all(), (a.std(0), d.std(0))


def test_attached_image_is_the_detached_one():
    t = torch.zeros(3, dtype=DT, requires_grad=True)
    imgs = [render_trace(_scene(t), CAM, _light(), TraceSettings(spp=2, interior=i)).image for i in ("attached", "detached")]
    torch.testing.assert_close(imgs[0], imgs[1], rtol=1e-12, atol=1e-14)


def _central_differences(loss, axes, h=1e-2, seeds=6):
    """``[seeds, len(axes)]`` central differences of ``loss(t, **settings)`` along ``axes``, 512 spp, without
    boundary terms, with common random numbers at ``+-h``."""
    fds = []
    with torch.no_grad():
        for seed in range(seeds):
            row = []
            for axis in axes:
                e = torch.zeros(3, dtype=DT)
                e[axis] = h
                f = [float(loss(s * e, spp=512, seed=100 + seed, boundary="none")) for s in (1, -1)]
                row.append((f[0] - f[1]) / (2 * h))
            fds.append(row)
    return torch.tensor(fds, dtype=DT)


def _floor_and_card(t):
    """A lit card standing on a floor that moves by ``t``: the floor's camera hits see the card's outline against the
    black sky, a discontinuity of their indirect light."""
    floor = _quad((0, -0.5, 0), (0, 0, 1.2), (1.2, 0, 0)) + t
    card = _quad((0.0, 0.2, 0), (0, 0.5, 0), (0, 0, 0.5))  # plane x = 0, facing the light
    return [Shape(Mesh(floor, QUAD), LambertMaterial(0.8)), Shape(Mesh(card, QUAD), LambertMaterial(0.9))]


def test_attached_under_global_illumination_matches_central_differences():
    """Two bounces: the indirect edge term at an attached camera hit must see the card's outline move relative to
    the moving point. Sliding the floor in its own plane moves no detached hit, so with the hits detached in that
    term alone d/dz was 5.6 standard errors off (38.4 +- 0.6 for 34.83 +- 0.07)."""
    cam = Camera.look_at(torch.tensor([0.0, 2.0, 3.0], dtype=DT), torch.zeros(3, dtype=DT), width=RES, height=RES)
    light = [PointLight(torch.tensor([1.5, 0.8, 0.5], dtype=DT), intensity=20.0)]
    w = torch.rand(RES, RES, generator=torch.Generator().manual_seed(1), dtype=DT)
    accel = prepare_trace(_floor_and_card(torch.zeros(3, dtype=DT)))

    def loss(t, **st):
        img = render_trace(_floor_and_card(t), cam, light, TraceSettings(shadows=False, max_bounces=2, **st),
                           accel=accel).image[0].mean(-1)
        return (img * w).sum()

    gs = []
    for seed in range(32):
        t = torch.zeros(3, dtype=DT, requires_grad=True)
        loss(t, spp=4, seed=seed, interior="attached").backward()
        gs.append(t.grad[1:])
    g = torch.stack(gs)
    fd = _central_differences(loss, (1, 2))  # axes y (normal) and z (in the floor's plane)
    se = (g.var(0) / g.shape[0] + fd.var(0) / fd.shape[0]).sqrt()
    assert (g.mean(0) - fd.mean(0)).abs().le(4 * se).all(), (g.mean(0), fd.mean(0), se)


@pytest.mark.parametrize("settings, camera_grad, match", [
    (dict(boundary="none"), False, "boundary='edge'"),
    ({}, True, "camera without gradient"),
])
def test_attached_rejects_what_it_does_not_support(settings, camera_grad, match):
    eye = torch.tensor([0.0, 0.4, 3.0], dtype=DT, requires_grad=camera_grad)
    cam = Camera.look_at(eye, torch.zeros(3, dtype=DT), width=RES, height=RES)
    with pytest.raises(ValueError, match=match):
        render_trace(_scene(torch.zeros(3, dtype=DT)), cam, _light(), TraceSettings(interior="attached", **settings))
    with pytest.raises(ValueError, match="interior must be"):
        TraceSettings(interior="both")


def test_auto_attaches_where_it_applies():
    from lumigrad.render._attached import attached_shapes
    from lumigrad.render.path import _Scene

    t = torch.zeros(3, dtype=DT, requires_grad=True)
    shapes = _scene(t, wall=True)
    accel = prepare_trace(shapes)
    auto = TraceSettings(interior="auto")
    assert attached_shapes(_Scene(shapes, CAM, _light(), auto, accel)).tolist() == [True, False]
    assert attached_shapes(_Scene(shapes, CAM, _light(), TraceSettings(max_bounces=3, interior="auto"),
                                  accel)).tolist() == [True, False]
    for st in (TraceSettings(boundary="none", interior="auto"), TraceSettings()):  # the default is detached
        assert attached_shapes(_Scene(shapes, CAM, _light(), st, accel)) is None
    eye = torch.tensor([0.0, 0.4, 3.0], dtype=DT, requires_grad=True)
    cam = Camera.look_at(eye, torch.zeros(3, dtype=DT), width=RES, height=RES)
    assert attached_shapes(_Scene(shapes, cam, _light(), auto, accel)) is None
    # and a render with camera gradients under "auto" runs (detached) where "attached" refuses
    render_trace(_scene(t), cam, _light(), TraceSettings(spp=1, interior="auto")).image.sum().backward()
    assert eye.grad is not None and t.grad is not None


@pytest.mark.parametrize("variant", ["orthographic", "two_views", "float32", "ggx"])
def test_attached_on_other_cameras_dtypes_and_materials(variant):
    """Orthographic projection (area change without perspective), a batch of views (per-view projection), float32
    and a view-dependent BSDF (the direction to the camera follows the attached point): finite, and the same as
    the detached estimate (both unbiased here: no shadows)."""
    from lumigrad.scene.materials import GGXMaterial

    dt = torch.float32 if variant == "float32" else DT
    cam = Camera.look_at(torch.tensor([0.0, 0.4, 3.0], dtype=dt), torch.zeros(3, dtype=dt), width=RES, height=RES)
    if variant == "orthographic":
        k = cam.K.clone()
        k[:, 0, 0] = k[:, 1, 1] = RES / 2.0
        cam = Camera(cam.world_to_cam, k, RES, RES, 0.01, 100.0, "orthographic")
    if variant == "two_views":
        other = Camera.look_at(torch.tensor([0.6, 0.4, 3.0], dtype=dt), torch.zeros(3, dtype=dt), width=RES, height=RES)
        cam = Camera(torch.cat([cam.world_to_cam, other.world_to_cam]), cam.K.expand(2, 3, 3), RES, RES, 0.01, 100.0)
    mat = GGXMaterial(torch.tensor([0.7, 0.5, 0.3], dtype=dt), roughness=0.4) if variant == "ggx" else LambertMaterial(0.8)
    wall = _quad((0, 0, -1.2), (3, 0, 0), (0, 3, 0)).to(dt)
    light = PointLight(torch.tensor([1.0, 3.0, 2.0], dtype=dt), intensity=25.0)
    out = {}
    for interior in ("attached", "detached"):
        gs = []
        for seed in range(12):
            t = torch.zeros(3, dtype=dt, requires_grad=True)
            shapes = [Shape(Mesh(SV.to(dt) * 0.6 + t, SF), mat), Shape(Mesh(wall, QUAD), LambertMaterial(0.5))]
            st = TraceSettings(spp=4, seed=seed, shadows=False, interior=interior)
            render_trace(shapes, cam, [light], st).image.sum().backward()
            gs.append(t.grad.double())
        out[interior] = torch.stack(gs)
    a, d = out["attached"], out["detached"]
    assert torch.isfinite(a).all()
    se = (a.var(0) / 12 + d.var(0) / 12).sqrt()
    assert (a.mean(0) - d.mean(0)).abs().le(4 * se + 1e-3 * d.mean(0).abs().max()).all(), (a.mean(0), d.mean(0), se)


def _floor_wall_and_hidden_sphere(t, floor_material):
    """A floor and a lit wall seen by the camera, and a sphere (moved by ``t``) above the image: the sphere is seen
    only from the floor, where it reflects light and hides part of the wall."""
    floor = _quad((0, -0.5, 0), (0, 0, 1.5), (1.5, 0, 0))
    wall = _quad((0, 0.5, -1.2), (1.5, 0, 0), (0, 1.0, 0))
    sphere = SV * 0.35 + torch.tensor([0.0, 0.1, -0.5], dtype=DT) + t
    return [Shape(Mesh(floor, QUAD), floor_material), Shape(Mesh(wall, QUAD), LambertMaterial(0.9)),
            Shape(Mesh(sphere, SF), LambertMaterial(0.7))]


@pytest.mark.parametrize("floor", [LambertMaterial(0.8), GGXMaterial(0.8, 0.3, 0.5)], ids=["lambert", "ggx"])
def test_attached_hits_after_a_bounce_match_central_differences(floor):
    """The paths' later hits are attached too (attach_path_hits): their weights carry the change of BSDF, geometry
    term and area, and the indirect edge terms count the sphere's outline relative to the surfaces on either side.
    Without the weights the mean was 3-5 standard errors off, without the relative motion 10-40."""
    cam = Camera.look_at(torch.tensor([0.0, 1.0, 1.6], dtype=DT), torch.tensor([0.0, -0.5, 0.6], dtype=DT),
                         width=RES, height=RES, fov_y_deg=28.0)
    light = [PointLight(torch.tensor([0.8, 1.2, 0.4], dtype=DT), intensity=6.0)]
    w = torch.rand(RES, RES, generator=torch.Generator().manual_seed(1), dtype=DT)
    accel = prepare_trace(_floor_wall_and_hidden_sphere(torch.zeros(3, dtype=DT), floor))

    def loss(t, **st):
        shapes = _floor_wall_and_hidden_sphere(t, floor)
        img = render_trace(shapes, cam, light, TraceSettings(shadows=False, max_bounces=2, **st), accel=accel).image
        return (img[0].mean(-1) * w).sum()

    gs = []
    for seed in range(32):
        t = torch.zeros(3, dtype=DT, requires_grad=True)
        loss(t, spp=4, seed=seed, interior="attached").backward()
        gs.append(t.grad)
    g = torch.stack(gs)
    fd = _central_differences(loss, (0, 1, 2))
    assert float(fd.mean(0).norm()) > 1.0  # the hidden sphere matters
    se = (g.var(0) / g.shape[0] + fd.var(0) / fd.shape[0]).sqrt()
    assert (g.mean(0) - fd.mean(0)).abs().le(4 * se).all(), (g.mean(0), fd.mean(0), se)
