"""Boundary terms of what planar mirrors show (lumigrad.render._trace_edges_mirror) vs finite differences.

Scene: a large mirror floor (y = 0) fills the view of a camera looking down at it at 45 degrees; an
emissive quad above the floor, outside the view, is seen only in the mirror. With one bounce the
camera -> mirror -> emitter path is found by the mirror's (delta) BSDF sample, so every pixel is
``reflectance * emission`` or 0: moving the quad, the camera or the mirror changes the image *only*
through the reflected outline, interior gradients are exactly zero, and all of the gradient must come
from the mirror term. Variants: a small mirror whose edge hides part of the reflection, an orthographic
camera, a lit (Lambert) quad whose shading moves too, and a shadow on the quad seen only in the mirror.
"""
import warnings

import pytest
import torch

import lumigrad.render._trace_edges_mirror as mirror_edges
from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import _Scene, prepare_trace, render_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.lights import DirectionalLight, PointLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import MirrorMaterial, Shape, TraceSettings

DT = torch.float64
RES = 16
QUAD_FACES = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def _t(*x):
    return torch.tensor(x, dtype=DT)


def _quad(c, u, v):
    c, u, v = (torch.as_tensor(x, dtype=DT) for x in (c, u, v))
    return torch.stack([c - u - v, c + u - v, c + u + v, c - u + v])


def _scene(quad=None, mirror=None, eye=None, quad_centre=(0.1, 2.0, -2.0), orthographic=False, small=False,
           views=1, corner=None):
    """``quad`` / ``mirror`` / ``eye``: ``[3]`` translations of the emitter, the mirror, the camera (and its
    target). The quad faces the mirror point the camera looks at; its reflection covers about 4 x 5 pixels.
    ``small``: a mirror of about 9 x 9 pixels whose left edge hides the reflection's left side. ``views``: that
    many copies of the view (a batched camera). ``corner``: ``[3]`` translation of the mirror's first vertex
    alone (bending it)."""
    mv = _quad((0, 0, -1.25), (3, 0, 0), (0, 0, -2.75))  # x in [-3, 3], z in [-4, 1.5]: covers the view
    if small:
        mv = _quad((0.45, 0, 0), (0.5, 0, 0), (0, 0, -0.6))
    qv = _quad(quad_centre, (0.35, 0, 0), (0, 0.3, 0.3))
    e, target = _t(0.0, 2.0, 2.0), _t(0.0, 0.0, 0.0)
    if quad is not None:
        qv = qv + quad
    if mirror is not None:
        mv = mv + mirror
    if corner is not None:
        mv = torch.cat([mv[:1] + corner, mv[1:]])
    if eye is not None:
        e, target = e + eye, target + eye
    cam = Camera.look_at(e, target, width=RES, height=RES, fov_y_deg=30.0)
    if orthographic:  # same pose, about the same footprint on the mirror
        k = cam.K.clone()
        k[:, 0, 0] = k[:, 1, 1] = RES / 2.0
        cam = Camera(cam.world_to_cam, k, RES, RES, 0.01, 100.0, "orthographic")
    if views > 1:
        cam = Camera(cam.world_to_cam.expand(views, 4, 4), cam.K.expand(views, 3, 3), RES, RES, 0.01, 100.0)
    shapes = [Shape(Mesh(mv, QUAD_FACES), MirrorMaterial(0.5)),
              Shape(Mesh(qv, QUAD_FACES), LambertMaterial(0.0), emission=_t(2.0, 2.0, 2.0))]
    return shapes, cam


# Pixel weights: constant over the reflected quad's outline pixels (columns 6 and 10, rows 5 and 10) so
# that finite differences of box-filtered pixels are smooth there, and different on either side so that
# the outline's sides do not cancel.
_W = (torch.where(torch.arange(RES) < RES // 2, 1.0, 0.5)[:, None]
      * torch.where(torch.arange(RES) < RES // 2, 1.0, 0.3)[None, :]).to(DT)[None, :, :, None].expand(1, RES, RES, 3)


def _loss(x, which, st):
    axis = {"x": 0, "y": 1, "z": 2}[which[-1]]
    shift = torch.stack([x if a == axis else x * 0 for a in range(3)])
    kind = which.split("_")[0]
    kw = {"quad": dict(quad=shift), "ortho": dict(quad=shift, orthographic=True), "camera": dict(eye=shift),
          "mirror": dict(mirror=shift), "small": dict(quad=shift, small=True),
          "batch": dict(quad=shift, views=2), "bend": dict(corner=shift)}[kind]
    shapes, cam = _scene(**kw)
    return (render_trace(shapes, cam, [], st).image * _W).sum()


def _grad(which, st):
    x = torch.zeros((), dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(_loss(x, which, st), x, allow_unused=True)
    return 0.0 if g is None else float(g)


def _fd(which, h=0.05, spp=1024):
    with torch.no_grad():
        st = TraceSettings(spp=spp, boundary="none")
        diff = _loss(torch.tensor(h, dtype=DT), which, st) - _loss(torch.tensor(-h, dtype=DT), which, st)
        return float(diff) / (2 * h)


EDGE = TraceSettings(spp=1, edge_samples=16000, shadow_light_samples=0)


def test_scene_is_seen_only_in_the_mirror():
    shapes, cam = _scene()
    with torch.no_grad():
        img = render_trace(shapes, cam, [], TraceSettings(spp=16, boundary="none")).image[0, ..., 0]
        direct = render_trace(shapes[1:], cam, [], TraceSettings(spp=16, boundary="none")).image
    assert float(direct.abs().max()) == 0.0  # the emitter is outside the view
    assert float(img.max()) == pytest.approx(1.0) and 10 < int((img > 0.99).sum()) < 30


# FD: 1024 spp, h = 0.05 agree with 4096 spp (h = 0.05 and 0.1, or 0.02) within 2 % (small_y: 6 %); the edge
# estimates (16000 samples) scatter by about 3 % between seeds. ``small_*``: the mirror is a 9 x 9 pixel patch
# (samples clipped to it, scaled down to its share of the image) whose edge hides part of the reflection.
# ``batch_x``: two identical views (each with its own samples), so twice ``quad_x``. ``bend_y``: one corner of
# the mirror moves up, tilting its triangles and their vertex normals (FD 24.3-24.5, edge 23.8-24.8 over seeds).
@pytest.mark.parametrize("which", ["quad_x", "quad_y", "camera_y", "mirror_y", "ortho_x", "small_x", "small_y",
                                   "batch_x", "bend_y"])
def test_reflected_silhouette_gradient_matches_fd(which):
    assert _grad(which, TraceSettings(spp=1, boundary="none")) == 0.0  # no interior gradient at all
    g, fd = _grad(which, EDGE), _fd(which)
    assert abs(fd) > 5
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)


def test_lit_quad_seen_in_the_mirror_matches_fd():
    """A Lambert quad lit by a point light instead of the emitter (two bounces): its shading moves too, so the
    gradient is interior plus reflected outline; the interior part alone is about half of it."""
    light = [PointLight(_t(0.5, 1.0, 0.0), intensity=8.0)]

    def loss(y, st):
        shapes, cam = _scene(quad=torch.stack([y * 0, y, y * 0]))
        shapes[1] = Shape(shapes[1].mesh, LambertMaterial(0.8))
        return (render_trace(shapes, cam, light, st).image * _W).sum()

    def grad(st):
        y = torch.zeros((), dtype=DT, requires_grad=True)
        return float(torch.autograd.grad(loss(y, st), y)[0])

    g = grad(TraceSettings(spp=4, max_bounces=2, edge_samples=16000))
    g_int = grad(TraceSettings(spp=4, max_bounces=2, boundary="none"))
    h = 0.05
    with torch.no_grad():
        st = TraceSettings(spp=1024, max_bounces=2, boundary="none")
        fd = float(loss(torch.tensor(h, dtype=DT), st) - loss(torch.tensor(-h, dtype=DT), st)) / (2 * h)
    assert abs(fd) > 2
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)
    assert abs(g_int - fd) > 0.3 * abs(fd), (g_int, fd)


_LIGHTS = {"point": PointLight(_t(0.1, 2.0, 0.5), intensity=8.0), "directional": DirectionalLight(_t(0.0, 0.1, 1.0),
                                                                                                 intensity=2.0)}


def _shadow_loss(x, st, light="point"):
    """The quad, now Lambert, lit by a light in front of it, half in the shadow of a black triangle that
    ``x`` moves sideways (the triangle's reflection is in view but black on black). The shadow's outline on
    the quad is seen only in the mirror, and nothing else depends on ``x``."""
    shapes, cam = _scene()
    shapes[1] = Shape(shapes[1].mesh, LambertMaterial(0.8))
    occ = _t(0.1, 1.4, -0.75) + torch.tensor([[0.0, 0, 0], [0.9, 0, 0], [0.2, 1.3, 0]], dtype=DT)
    occ = occ + torch.stack([x, x * 0, x * 0])
    shapes.append(Shape(Mesh(occ, torch.tensor([[0, 1, 2]], dtype=torch.int32)), LambertMaterial(0.0)))
    if light == "area":  # a 0.2 x 0.2 emitter where the point light is, facing the quad (out of every view)
        lamp = _quad((0.1, 2.0, 0.5), (0.1, 0, 0), (0, 0.1, 0))
        shapes.append(Shape(Mesh(lamp, QUAD_FACES.flip(1)), LambertMaterial(0.0), emission=_t(200.0, 200.0, 200.0)))
        return (render_trace(shapes, cam, [], st).image * _W).sum()
    return (render_trace(shapes, cam, [_LIGHTS[light]], st).image * _W).sum()


@pytest.mark.parametrize("light", ["point", "directional"])
def test_shadow_seen_in_the_mirror_matches_fd(monkeypatch, light):
    """Light-silhouette samples are picked by 3D length, and most edges' shadows are not in view: 64000 samples
    scatter by 3.4 % between seeds (mean of 6 seeds 3.565 vs FD 3.53 (4096 spp: 3.53 at h = 0.05 and 0.02);
    16000 samples: 5 %; directional: 4 seeds 2.50-2.58 vs FD 2.54 / 2.56). With the mirror's shadow sampler
    off, the gradient is zero."""
    def grad(st):
        x = torch.zeros((), dtype=DT, requires_grad=True)
        (g,) = torch.autograd.grad(_shadow_loss(x, st, light), x, allow_unused=True)
        return 0.0 if g is None else float(g)

    st = TraceSettings(spp=4, max_bounces=2, edge_samples=64000, indirect_samples=0)
    g = grad(st)
    assert grad(TraceSettings(spp=4, max_bounces=2, boundary="none")) == 0.0
    h = 0.05
    with torch.no_grad():
        fd_st = TraceSettings(spp=1024, max_bounces=2, boundary="none")
        fd = float(_shadow_loss(torch.tensor(h, dtype=DT), fd_st, light)
                   - _shadow_loss(torch.tensor(-h, dtype=DT), fd_st, light))
        fd /= 2 * h
    assert abs(fd) > 2
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)
    monkeypatch.setattr(mirror_edges, "_shadow_boundary", lambda *a, **k: None)
    assert grad(TraceSettings(spp=1, max_bounces=2, edge_samples=1000, indirect_samples=0)) == 0.0


def test_penumbra_seen_in_the_mirror_matches_fd(monkeypatch):
    """The point light replaced by a small emitter: the penumbra's term (64 light samples, as boundary_term's
    own penumbrae) seen in the mirror. 4 seeds of 32 light / 32000 edge samples: 3.35-3.59; 64 / 64000:
    3.51, 3.53; FD 3.41 (1024 spp, h = 0.05), 3.42-3.49 (4096 spp, h = 0.02-0.05)."""
    def grad(st):
        x = torch.zeros((), dtype=DT, requires_grad=True)
        (g,) = torch.autograd.grad(_shadow_loss(x, st, "area"), x, allow_unused=True)
        return 0.0 if g is None else float(g)

    g = grad(TraceSettings(spp=4, max_bounces=2, edge_samples=64000, shadow_light_samples=64, indirect_samples=0))
    assert grad(TraceSettings(spp=4, max_bounces=2, boundary="none")) == 0.0
    h = 0.05
    with torch.no_grad():
        fd_st = TraceSettings(spp=1024, max_bounces=2, boundary="none")
        fd = float(_shadow_loss(torch.tensor(h, dtype=DT), fd_st, "area")
                   - _shadow_loss(torch.tensor(-h, dtype=DT), fd_st, "area")) / (2 * h)
    assert abs(fd) > 2
    assert abs(g - fd) < 0.1 * abs(fd), (g, fd)
    monkeypatch.setattr(mirror_edges, "_shadow_boundary", lambda *a, **k: None)
    assert grad(TraceSettings(spp=1, max_bounces=2, edge_samples=1000, shadow_light_samples=4,
                              indirect_samples=0)) == 0.0


def test_without_the_mirror_term_the_gradient_is_missing(monkeypatch):
    """The term is what carries the gradient: the boundary term without it gives none here."""
    monkeypatch.setattr(mirror_edges, "mirror_silhouettes", lambda *a: None)
    assert _grad("quad_x", EDGE) == 0.0
    assert abs(_fd("quad_x")) > 10


def _render_scene(shapes, cam):
    """The per-render scene the boundary term sees (face data as ``boundary_term`` builds it)."""
    sc = _Scene(shapes, cam, [], EDGE, prepare_trace(shapes))
    tri = sc.verts.detach()[sc.faces_long.reshape(-1)].reshape(-1, 3, 3)
    sc.accel._face_data = (torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1), tri[:, 0])
    c2w = torch.linalg.inv(cam.world_to_cam.detach())
    return sc, (0, cam.world_to_cam[0], cam.K[0], c2w[0], True)


def test_object_behind_the_mirror_plane_gives_no_samples():
    gen = torch.Generator().manual_seed(0)
    for centre, expect in (((0.1, 2.0, -2.0), True), ((0.1, -2.0, -2.0), False)):
        sc, view = _render_scene(*_scene(quad_centre=centre))
        (plane,) = mirror_edges.planar_mirrors(sc)
        smp = mirror_edges.mirror_samples(sc, view, plane, 2000, gen)
        assert (smp is not None and smp.weight.numel() > 1000) == expect, centre
    x = torch.zeros((), dtype=DT, requires_grad=True)
    shapes, cam = _scene(quad=torch.stack([x, x, x]), quad_centre=(0.1, -2.0, -2.0))
    (g,) = torch.autograd.grad(render_trace(shapes, cam, [], EDGE).image.sum(), x, allow_unused=True)
    assert g is None or float(g) == 0.0


def test_mirror_plane_tolerance():
    v = _quad((0, 0, 0), (1, 0, 0), (0, 0, 1))
    p0, n = mirror_edges.mirror_plane(v, QUAD_FACES)
    torch.testing.assert_close(p0, torch.zeros(3, dtype=DT))
    assert abs(float(n[1])) == pytest.approx(1.0)
    bump = torch.zeros_like(v)
    bump[2, 1] = 1e-7  # within 1e-5 of the size: planar
    assert mirror_edges.mirror_plane(v + bump, QUAD_FACES) is not None
    bump[2, 1] = 1e-3  # bent
    assert mirror_edges.mirror_plane(v + bump, QUAD_FACES) is None
    flipped = QUAD_FACES.clone()
    flipped[1] = flipped[1].flip(0)  # faces oriented both ways: their vertex normals are not the plane's
    assert mirror_edges.mirror_plane(v, flipped) is None


def test_curved_mirror_is_left_to_the_curved_term_without_warnings():
    sv, sf = icosphere(1, dtype=DT)
    x = torch.zeros((), dtype=DT, requires_grad=True)
    shapes, cam = _scene(quad=torch.stack([x, x * 0, x * 0]))
    shapes[0] = Shape(Mesh(sv * 0.8 + _t(0.0, -0.4, -0.3), sf), MirrorMaterial(0.5))
    sc, _ = _render_scene(shapes, cam)
    assert mirror_edges.planar_mirrors(sc) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = render_trace(shapes, cam, [], TraceSettings(spp=1, edge_samples=500, shadow_light_samples=0)).image
        (g,) = torch.autograd.grad(img.sum(), x, allow_unused=True)
    assert g is None or bool(torch.isfinite(g))


def test_penumbra_seen_in_the_mirror_is_not_counted_twice(monkeypatch):
    """With 3 bounces the indirect term samples the quad (the hit behind the mirror) too. The lamp's occlusion
    seen from there is the penumbra that the mirror's shadow sampler differentiates in screen space, so the
    indirect term must leave the lamp's emission out there: with the mirror's shadow sampler off, nothing
    else depends on the occluder (it is black, and so is the lamp's back), and the gradient must be zero.
    Counting the emission there (as at later vertices) gave 3.24 here: about the penumbra's whole derivative
    (finite differences 3.41-3.49), i.e. twice it with the mirror's sampler on."""
    monkeypatch.setattr(mirror_edges, "_shadow_boundary", lambda *a, **k: None)
    x = torch.zeros((), dtype=DT, requires_grad=True)
    st = TraceSettings(spp=1, max_bounces=3, edge_samples=1000, shadow_light_samples=4, indirect_samples=131072)
    (g,) = torch.autograd.grad(_shadow_loss(x, st, "area"), x, allow_unused=True)
    assert g is None or float(g) == 0.0
