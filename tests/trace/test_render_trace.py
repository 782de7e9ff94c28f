"""render_trace: agreement with render_mesh, lights, bounces, and gradients vs finite differences."""

import pytest
import torch

from lumigrad.geometry.primitives import plane
from lumigrad.render.path import TraceSettings, prepare_trace, render_trace
from lumigrad.render.raster import render_mesh
from lumigrad.scene import Mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight
from lumigrad.scene.materials import GGXMaterial, LambertMaterial
from lumigrad.scene.trace_types import MirrorMaterial, Shape

from trace_scenes import DT, shadow_scene, sphere_scene


def _t(*x):
    return torch.tensor(x, dtype=DT)


@pytest.mark.parametrize("material", [LambertMaterial(_t(0.8, 0.5, 0.3)), GGXMaterial(_t(0.7, 0.6, 0.5), 0.7, 0.2)])
def test_matches_render_mesh_without_shadows(material):
    mesh, cam = sphere_scene(res=20)
    lights = [PointLight(_t(1.0, 2.0, 3.0), intensity=10.0), DirectionalLight(_t(-1.0, 0.5, 1.0), intensity=1.5),
              AmbientLight(_t(0.05, 0.05, 0.05))]
    out = render_trace([Shape(mesh, material)], cam, lights, TraceSettings(spp=16, shadows=False, boundary="none"))
    ref = render_mesh(mesh, cam, material, lights)
    interior = (ref.alpha[..., 0] == 1) & (out.alpha[..., 0] == 1)
    assert interior.sum() > 100
    # Box-filtered pixel means vs pixel-centre values: equal up to second-order shading variation.
    d = (out.image - ref.image).abs()[interior]
    peak = float(ref.image.max())
    assert float(d.max()) < 0.05 * peak and float(d.mean()) < 0.005 * peak
    # Total coverage (the sphere's projected area) agrees with the antialiased rasterizer's.
    assert abs(float(out.alpha.sum() / ref.alpha.sum()) - 1) < 0.03


def test_shadow_darkens_and_area_light_matches_point_light():
    shapes, cam = shadow_scene(torch.zeros((), dtype=DT))
    light = PointLight(_t(2.5, 2.5, 0.0), intensity=20.0)
    lit = render_trace(shapes, cam, [light], TraceSettings(spp=4, shadows=False, boundary="none")).image
    sh = render_trace(shapes, cam, [light], TraceSettings(spp=4, boundary="none")).image
    dark = sh[..., 0] < 0.5 * lit[..., 0]
    assert 10 < int(dark.sum()) < 200 and bool((sh <= lit + 1e-9).all())
    # A small, far emissive square facing the plane acts like a point light of intensity Le * area.
    s = 0.05
    qv = _t(-s, 0, -s) + torch.tensor([[0, 0, 0], [2 * s, 0, 0], [0, 0, 2 * s], [2 * s, 0, 2 * s]], dtype=DT)
    qv = qv + _t(0.0, 4.0, 0.0)
    qf = torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)  # normal -y: faces the plane
    emitter = Shape(Mesh(qv, qf), LambertMaterial(0.0), emission=_t(100.0, 100.0, 100.0))
    pl = PointLight(_t(0.0, 4.0, 0.0), intensity=100.0 * (2 * s) ** 2)
    floor = shapes[:1]
    a = render_trace(floor + [emitter], cam, [], TraceSettings(spp=16, boundary="none")).image
    b = render_trace(floor, cam, [pl], TraceSettings(spp=1, boundary="none")).image
    # Centre pixels only: an area emitter's intensity falls off as cos(theta), a point light's does not.
    c = slice(5, 11)
    torch.testing.assert_close(a[:, c, c], b[:, c, c], rtol=0.02, atol=1e-4)


def test_path_tracing_convex_object_in_uniform_environment():
    # A convex Lambertian object under uniform radiance 1 reflects exactly its albedo, at any bounce count.
    mesh, cam = sphere_scene(res=12, level=3)
    shapes = [Shape(mesh, LambertMaterial(0.6))]
    out = render_trace(shapes, cam, [AmbientLight(_t(1.0, 1.0, 1.0))], TraceSettings(spp=4, max_bounces=3, boundary="none"))
    inside = out.alpha[..., 0] == 1
    assert inside.sum() > 30
    torch.testing.assert_close(out.image[inside], torch.full_like(out.image[inside], 0.6), rtol=0.03, atol=0.0)


def test_mirror_reflects_emitter():
    # Camera looks down at a mirror floor; an emissive quad above the camera is seen in it.
    pv, pf = plane(4.0, dtype=DT)
    shapes, cam = shadow_scene(torch.zeros((), dtype=DT), res=8)
    qv = torch.tensor([[-9, 5, -9], [9, 5, -9], [-9, 5, 9], [9, 5, 9]], dtype=DT)
    qf = torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)
    sc = [Shape(Mesh(pv, pf), MirrorMaterial(0.5)), Shape(Mesh(qv, qf), emission=_t(2.0, 2.0, 2.0))]
    # Paths have at most max_bounces + 1 segments (Mitsuba's max_depth): camera -> mirror -> emitter
    # is a direct-lighting path, found by the mirror's (delta) BSDF sample, with or without MIS.
    for mis in (True, False):
        one = render_trace(sc, cam, [], TraceSettings(spp=1, max_bounces=1, boundary="none", mis=mis)).image
        torch.testing.assert_close(one, torch.full_like(one, 1.0))
    # A diffuse floor under the same emitter, without MIS, sees it only by light sampling.
    sc[0] = Shape(Mesh(pv, pf), LambertMaterial(0.5))
    nee = render_trace(sc, cam, [], TraceSettings(spp=1, max_bounces=1, boundary="none", mis=False)).image
    assert float(nee.min()) > 0.0


def test_bad_inputs():
    mesh, cam = sphere_scene(res=4)
    with pytest.raises(TypeError, match="render_trace"):
        render_trace([mesh], cam)
    with pytest.raises(ValueError, match="spp"):
        TraceSettings(spp=0)
    with pytest.raises(TypeError, match="lights"):
        render_trace([Shape(mesh)], cam, [object()])
    with pytest.raises(ValueError, match="accel"):
        render_trace([Shape(mesh)], cam, [], accel=prepare_trace(shadow_scene(torch.zeros((), dtype=DT))[0]))
    with pytest.raises(ValueError, match="dtype"):
        render_trace([Shape(mesh)], cam.to(dtype=torch.float32))


# --- gradients vs central finite differences of high-spp renders -------------------------------------

def _fd(fn, x0: float, h: float) -> float:
    with torch.no_grad():
        return float((fn(torch.tensor(x0 + h, dtype=DT)) - fn(torch.tensor(x0 - h, dtype=DT))) / (2 * h))


def _grad(fn, x0: float) -> float:
    x = torch.tensor(x0, dtype=DT, requires_grad=True)
    fn(x).backward()
    return float(x.grad)


def _weights(res):
    return torch.rand(1, res, res, 3, dtype=DT, generator=torch.Generator().manual_seed(1))


def test_shadow_boundary_gradient_matches_fd():
    """The occluder is outside the view: all of the gradient comes from the shadow boundary."""
    res = 16
    w = _weights(res)
    light = PointLight(_t(2.5, 2.5, 0.0), intensity=20.0)

    def loss(tx, st):
        shapes, cam = shadow_scene(tx, res)
        return (render_trace(shapes, cam, [light], st).image * w).sum()

    interior_only = _grad(lambda x: loss(x, TraceSettings(spp=4, boundary="none")), 0.0)
    assert interior_only == 0.0
    g = _grad(lambda x: loss(x, TraceSettings(spp=1, edge_samples=8000)), 0.0)
    fd = _fd(lambda x: loss(x, TraceSettings(spp=100, boundary="none")), 0.0, 0.03)
    assert abs(fd) > 10
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)


def test_soft_shadow_boundary_gradient_matches_fd():
    """As above under an area light (out of view): the gradient is the penumbra's boundary term."""
    res = 16
    w = _weights(res)
    s = 0.3
    quad = _t(2.5 - s, 2.5, -s) + torch.tensor([[0, 0, 0], [2 * s, 0, 0], [0, 0, 2 * s], [2 * s, 0, 2 * s]], dtype=DT)
    lamp = Shape(Mesh(quad, torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)), LambertMaterial(0.0),
                 emission=_t(40.0, 40.0, 40.0))

    def loss(tx, st):
        shapes, cam = shadow_scene(tx, res)
        return (render_trace(shapes + [lamp], cam, [], st).image * w).sum()

    assert _grad(lambda x: loss(x, TraceSettings(spp=4, boundary="none")), 0.0) == 0.0
    assert _grad(lambda x: loss(x, TraceSettings(spp=1, edge_samples=8000, shadow_light_samples=0)), 0.0) == 0.0
    g = _grad(lambda x: loss(x, TraceSettings(spp=1, edge_samples=32000, shadow_light_samples=64)), 0.0)
    fd = _fd(lambda x: loss(x, TraceSettings(spp=256, boundary="none")), 0.0, 0.03)
    assert abs(fd) > 5
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)


@pytest.mark.parametrize("which", ["vertex", "camera"])
def test_silhouette_gradient_matches_fd(which):
    res = 12
    # A left-to-right ramp: the two sides of the outline do not cancel.
    w = torch.linspace(0.0, 1.0, res, dtype=DT)[None, None, :, None].expand(1, res, res, 3)
    light = [DirectionalLight(_t(0.3, 0.5, 1.0), intensity=3.0)]

    def loss(x, st):
        if which == "vertex":
            mesh, cam = sphere_scene(res, level=1, shift=torch.stack([x, x * 0, x * 0]))
        else:
            mesh, cam = sphere_scene(res, level=1, eye_x=x)
        st = TraceSettings(spp=st.spp, boundary=st.boundary, edge_samples=st.edge_samples, background=(0.2, 0.3, 0.4))
        return (render_trace([Shape(mesh, LambertMaterial(0.8))], cam, light, st).image * w).sum()

    # Interior derivatives at grazing hits next to an outline are heavy-tailed (they scale as
    # 1 / cos of the hit angle): 64 spp keeps this test's error near 6 %.
    g = _grad(lambda x: loss(x, TraceSettings(spp=64, edge_samples=4000)), 0.0)
    g_int = _grad(lambda x: loss(x, TraceSettings(spp=64, boundary="none")), 0.0)
    fd = _fd(lambda x: loss(x, TraceSettings(spp=196, boundary="none")), 0.0, 0.02)
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)
    assert abs(g_int - fd) > 0.2 * abs(fd)  # the edge term matters here


def test_interior_gradients_light_and_albedo_match_fd():
    mesh, cam = sphere_scene(res=10)

    def loss(x, what):
        pos = _t(1.0, 2.0, 3.0) + (torch.stack([x, x * 0, x * 0]) if what == "light" else 0)
        alb = 0.5 + x if what == "albedo" else 0.5
        st = TraceSettings(spp=2, boundary="none", decorrelate=False)
        return render_trace([Shape(mesh, LambertMaterial(alb))], cam, [PointLight(pos, intensity=10.0)], st).image.sum()

    for what in ("light", "albedo"):
        torch.testing.assert_close(_grad(lambda x: loss(x, what), 0.0), _fd(lambda x: loss(x, what), 0.0, 1e-5),
                                   rtol=1e-4, atol=1e-6)


def test_accel_caches_follow_vertex_values():
    """TraceAccel skips the refit and reuses normals only while the vertex *values* are unchanged."""
    shapes, cam = shadow_scene(torch.zeros((), dtype=DT))
    light = PointLight(_t(2.5, 2.5, 0.0), intensity=20.0)
    st = TraceSettings(spp=2, boundary="edge")
    accel = prepare_trace(shapes)
    a = render_trace(shapes, cam, [light], st, accel=accel).image
    b = render_trace(shapes, cam, [light], st, accel=accel).image  # cached refit, normals and face data
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Move the occluder through .data (no version bump): the render must see the new positions.
    moved = [shapes[0], Shape(Mesh(shapes[1].mesh.verts.clone(), shapes[1].mesh.faces), shapes[1].material)]
    c0 = render_trace(moved, cam, [light], st, accel=accel).image
    moved[1].mesh.verts.data += _t(0.4, 0.0, 0.0)
    c = render_trace(moved, cam, [light], st, accel=accel).image
    fresh = render_trace(moved, cam, [light], st, accel=prepare_trace(moved)).image
    torch.testing.assert_close(c0, a, rtol=0, atol=0)
    assert float((c - a).abs().max()) > 0.05
    torch.testing.assert_close(c, fresh, rtol=1e-6, atol=1e-9)


def test_fused_direct_path_matches_generic_path(monkeypatch):
    """The fused Lambert / point + directional light path (_radiance_direct) equals the general one, with grads."""
    import lumigrad.render.path as path

    shapes, cam = shadow_scene(torch.zeros((), dtype=DT))
    pos = _t(2.5, 2.5, 0.0).requires_grad_(True)
    to_l = _t(0.2, 1.0, 0.3).requires_grad_(True)
    amb = _t(0.05, 0.1, 0.02).requires_grad_(True)
    alb = _t(0.7, 0.6, 0.4).requires_grad_(True)
    v0 = shapes[0].mesh.verts.detach().clone().requires_grad_(True)
    lights = [PointLight(pos, intensity=20.0), PointLight(_t(-1.0, 3.0, 1.0), intensity=5.0, falloff=(0.5, 0.2, 0.3)),
              DirectionalLight(to_l, intensity=0.8), AmbientLight(amb)]

    def run():
        sh = [Shape(shapes[0].mesh.with_verts(v0), LambertMaterial(alb))] + list(shapes[1:])
        img = render_trace(sh, cam, lights, TraceSettings(spp=2)).image
        w = torch.linspace(0.5, 1.5, img.numel(), dtype=DT).reshape(img.shape)
        return img.detach(), torch.autograd.grad((img * w).sum(), [v0, pos, to_l, amb, alb])

    assert path._fused_ok(path._Scene(shapes, cam, lights, TraceSettings(), prepare_trace(shapes)))
    img_f, g_f = run()
    monkeypatch.setattr(path, "_fused_ok", lambda sc: False)
    img_g, g_g = run()
    assert img_g.max() > 0.1
    torch.testing.assert_close(img_f, img_g, rtol=1e-9, atol=1e-10)
    for a, b in zip(g_f, g_g):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_boundary_term_skipped_without_gradients(monkeypatch):
    """The edge-sampled term is zero-valued: renders that need no gradient do not compute it."""
    import lumigrad.render._trace_edges as edges

    shapes, cam = shadow_scene(torch.zeros((), dtype=DT), res=8)
    lights = [PointLight(_t(2.5, 2.5, 0.0), intensity=20.0)]
    calls = []
    real = edges.boundary_term
    monkeypatch.setattr(edges, "boundary_term", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        img = render_trace(shapes, cam, lights, TraceSettings(spp=1)).image
    assert not calls and img.max() > 0
    v0 = shapes[0].mesh.verts.detach().clone().requires_grad_(True)
    sh = [Shape(shapes[0].mesh.with_verts(v0), shapes[0].material)] + list(shapes[1:])
    img2 = render_trace(sh, cam, lights, TraceSettings(spp=1)).image
    assert calls and torch.equal(img2.detach(), img)
    # Forward-mode AD (dual tensors, under no_grad too) needs the term.
    import torch.autograd.forward_ad as fwAD

    calls.clear()
    with torch.no_grad(), fwAD.dual_level():
        v1 = fwAD.make_dual(shapes[0].mesh.verts, torch.ones_like(shapes[0].mesh.verts))
        sh = [Shape(shapes[0].mesh.with_verts(v1), shapes[0].material)] + list(shapes[1:])
        assert fwAD.unpack_dual(render_trace(sh, cam, lights, TraceSettings(spp=1)).image).tangent is not None
    assert calls


@pytest.mark.parametrize("chunk", [96, 97])  # whole-pixel chunks (pixel rows) and chunks that split pixels
def test_fused_path_replay_gives_the_same_gradients(chunk):
    mesh, cam = sphere_scene(res=8, level=1)
    verts = mesh.verts.clone().requires_grad_(True)
    pos = _t(1.0, 2.0, 3.0).requires_grad_(True)
    out = []
    for replay in (False, True):
        st = TraceSettings(spp=4, replay=replay, chunk_rays=chunk, edge_samples=64)
        img = render_trace([Shape(Mesh(verts, mesh.faces), LambertMaterial(0.6))], cam, [PointLight(pos, intensity=9.0)],
                           st).image
        out.append((img.detach(), torch.autograd.grad((img ** 2).sum(), [verts, pos])))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=0, atol=0)
    for a, b in zip(out[0][1], out[1][1]):
        assert float(a.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
