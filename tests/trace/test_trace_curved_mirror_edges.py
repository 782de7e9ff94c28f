"""Silhouettes seen in curved mirrors (lumigrad.render._trace_edges_curved) vs finite differences.

Scene: a chrome ball (smooth-shaded level-2 icosphere, ``MirrorMaterial``) in front of the camera; behind the
camera a large emitter faces the ball, and between them (also behind the camera, so out of view) a black
quad hides part of it. With one bounce every pixel is the emission seen in the ball or 0: the image depends
on the quad, the camera and the ball *only* through outlines seen in the ball (the ball's own outline is
black on black), so interior gradients are exactly zero and the whole gradient is the curved-mirror term.
"""
import pytest
import torch

import lumigrad.render._trace_edges_curved as curved
import lumigrad.render._trace_edges_mirror as mirror_edges
from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import _Scene, prepare_trace, render_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import MirrorMaterial, Shape, TraceSettings

DT = torch.float64
RES = 16
QUAD_FACES = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def _rect(x0, x1, y0, y1, z):
    return torch.tensor([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=DT)


def _sheet(n=12, radius=1.6, angle=1.2, height=1.6):
    """A cylindrical sheet (axis y, concave towards +z), smooth-shaded: ``n`` columns of quads."""
    a = torch.linspace(-angle / 2, angle / 2, n + 1, dtype=DT)
    x, z = radius * torch.sin(a), radius * (1 - torch.cos(a)) - 0.6
    top = torch.stack([x, torch.full_like(x, height / 2), z], -1)
    bot = torch.stack([x, torch.full_like(x, -height / 2), z], -1)
    verts = torch.cat([bot, top], 0)
    i = torch.arange(n)
    faces = torch.cat([torch.stack([i, i + 1, i + n + 2], -1), torch.stack([i, i + n + 2, i + n + 1], -1)], 0)
    return verts, faces.to(torch.int32)


def _scene(quad=None, eye=None, ball=None, mirror="ball", with_quad=True, orthographic=False):
    """``quad`` / ``eye`` / ``ball``: ``[3]`` translations of the black quad, the camera (and its target), the
    mirror. ``mirror``: ``"ball"`` or ``"sheet"`` (a concave cylindrical sheet). The ball sits a little off
    the view's axis: centred, the outline's extreme points lay on pixel borders, where the weighted image's
    derivative has kinks and central differences are off by O(h) (2 % at h = 0.02, 0.5 % at h = 0.001)."""
    if mirror == "ball":
        mv, mf = icosphere(2, dtype=DT)
        mv = mv + torch.tensor([0.11, 0.07, 0.0], dtype=DT)
    else:
        mv, mf = _sheet()
    if ball is not None:
        mv = mv + ball
    dark = _rect(0.4, 5.4, -2.6, 2.6, 4.5)
    if quad is not None:
        dark = dark + quad
    e, target = torch.tensor([0.0, 0.0, 3.5], dtype=DT), torch.zeros(3, dtype=DT)
    if eye is not None:
        e, target = e + eye, target + eye
    cam = Camera.look_at(e, target, width=RES, height=RES, fov_y_deg=40.0)
    if orthographic:  # same pose, about the same footprint on the ball
        k = cam.K.clone()
        k[:, 0, 0] = k[:, 1, 1] = RES / 2.6
        cam = Camera(cam.world_to_cam, k, RES, RES, 0.01, 100.0, "orthographic")
    emitter = Shape(Mesh(_rect(-12, 12, -12, 12, 6.0), QUAD_FACES.flip(1)), LambertMaterial(0.0),
                    emission=torch.ones(3, dtype=DT))
    shapes = [Shape(Mesh(mv, mf), MirrorMaterial(1.0)), emitter, Shape(Mesh(dark, QUAD_FACES), LambertMaterial(0.0))]
    return shapes if with_quad else shapes[:2], cam


# Pixel weights: a smooth ramp, so that the reflected outline's sides (whose jumps have opposite signs) do
# not cancel.
_W = (1.0 + torch.arange(RES, dtype=DT)[None, :] / RES
      + 0.5 * torch.arange(RES, dtype=DT)[:, None] / RES)[None, :, :, None].expand(1, RES, RES, 3)


def _shift(x, which):
    axis = which.split("_")[1]
    return torch.stack([x if a == "xyz".index(axis) else x * 0 for a in range(3)])


def _moved(x, which, with_quad=True):
    """The scene with ``x`` applied: ``which`` is ``<what>_<axis>``, what moves (``quad``, ``eye``, ``ball``;
    ``sheet``: the quad, with the cylindrical sheet as the mirror; ``ortho``: the quad, orthographic camera)
    along which axis."""
    kind = which.split("_")[0]
    if kind == "sheet":
        return _scene(quad=_shift(x, which), mirror="sheet")
    if kind == "ortho":  # the quad, seen by an orthographic camera
        return _scene(quad=_shift(x, which), orthographic=True)
    return _scene(**{kind: _shift(x, which)}, with_quad=with_quad)


def _loss(x, which, st, with_quad=True):
    shapes, cam = _moved(x, which, with_quad)
    return (render_trace(shapes, cam, [], st).image * _W).mean()


def _grad(which, st, with_quad=True):
    x = torch.zeros((), dtype=DT, requires_grad=True)
    (g,) = torch.autograd.grad(_loss(x, which, st, with_quad), x, allow_unused=True)
    return 0.0 if g is None else float(g)


def _fd(which, h=0.05, spp=4096, seed=0):
    """Central differences of box-filtered renders with common random numbers (same seed, same sub-pixel
    samples either side)."""
    with torch.no_grad():
        st = TraceSettings(spp=spp, boundary="none", seed=seed)
        diff = _loss(torch.tensor(h, dtype=DT), which, st) - _loss(torch.tensor(-h, dtype=DT), which, st)
        return float(diff) / (2 * h)


# Closed form of the scene without the quad: the lit region is the emitter seen in the ball, bounded by the
# emitter's outline seen in it. That outline, solved point by point (4 x 2000 points, ordered along the
# emitter's rim), is a polygon whose weighted area (Green's theorem on half-planes: _W is a sum of a column
# and a row ramp) is the loss up to the polygon's discretisation; its derivative by central differences
# with h = 1e-5 is deterministic. This checks the term's sampling, weights, jumps and velocities against
# geometry alone (the solve itself is checked against the renderer by the loss values).
_EMITTER = torch.tensor([[-12.0, -12, 6], [-12, 12, 6], [12, 12, 6], [12, -12, 6]], dtype=DT)


def _outline(x, which, n=2000):
    """``(ids [k], pixels [k, 2])``: the emitter's rim points seen in the ball and their pixels (the
    solver's), in order along the rim."""
    sc, view = _render_scene(*_moved(torch.tensor(x, dtype=DT), which, with_quad=False))
    s = (torch.arange(n, dtype=DT) + 0.5) / n
    p = torch.cat([a + s[:, None] * (b - a) for a, b in zip(_EMITTER, _EMITTER.roll(-1, 0))])
    sol = curved._solve_all(sc, view, 0, p, view[3][:3, 3].detach(), True)
    # A few rim points have no solution: the renderer's reflected rays start eps off the mirror along the
    # face normal, which jumps across the mirror's edges (an eps-wide gap in the reflection, reproduced here).
    assert sol.sample.numel() > 0.99 * p.shape[0]
    order = sol.sample.argsort()
    x = curved._project(view[1].detach(), view[2].detach(), curved._point(sol.pairs.tri, sol.b), True)[0]
    return sol.sample[order], x[order]


def _clipped_area(x, c, axis):
    """Signed area of polygon ``x [k, 2]`` where coordinate ``axis <= c`` (Green's theorem on the clipped
    boundary; the pieces along the line ``u = c`` close it)."""
    p, q = x, x.roll(-1, 0)
    a, b = p[:, axis], q[:, axis]
    safe = torch.where(a == b, torch.ones_like(a), b - a)
    ta = torch.where(a > c, (c - a) / safe, torch.zeros_like(a))
    tb = torch.where(b > c, (c - a) / safe, torch.ones_like(b))
    keep = ~((a > c) & (b > c))
    s0, s1 = (p + ta[:, None] * (q - p))[keep], (p + tb[:, None] * (q - p))[keep]
    inner = 0.5 * (s0[:, 0] * s1[:, 1] - s1[:, 0] * s0[:, 1]).sum()
    close = -0.5 * c * (s1[:, 1] - s0[:, 1]).sum() if axis == 0 else 0.5 * c * (s1[:, 0] - s0[:, 0]).sum()
    return float(inner + close)


def _polygon_loss(poly):
    """The loss of the quad-less scene whose lit region is polygon ``poly [k, 2]`` (mean over pixels)."""
    area = _clipped_area(poly, 1e9, 0)
    sign = 1.0 if area > 0 else -1.0
    total = abs(area)
    for i in range(RES):  # _W = 1 + column / RES + 0.5 row / RES
        total += sign * (i / RES) * (_clipped_area(poly, i + 1, 0) - _clipped_area(poly, i, 0))
        total += sign * 0.5 * (i / RES) * (_clipped_area(poly, i + 1, 1) - _clipped_area(poly, i, 1))
    return total / (RES * RES)


def _outline_loss(x, which):
    return _polygon_loss(_outline(x, which)[1])


def _outline_grad(which, h=1e-5):
    """Central differences of the outline polygon's loss, over the rim points solved on both sides (a point
    dropping out would move the polygon by more than the step)."""
    (i0, x0), (i1, x1) = _outline(h, which), _outline(-h, which)
    both = torch.isin(i0, i1) & torch.isin(i0, i1)
    common = i0[both]
    return (_polygon_loss(x0[torch.isin(i0, common)]) - _polygon_loss(x1[torch.isin(i1, common)])) / (2 * h)


EDGE = TraceSettings(spp=1, edge_samples=4000, shadow_light_samples=0)
# The renderer starts a mirror's reflected ray ray_eps (of the scene's size) off the surface along the face
# normal, which jumps across the mirror's edges: the reflection steps by about that much there, and the
# outline gets short pieces along the mirror's creases that the term does not sample. Here (eps = 0.35 % of
# the ball's radius at the default ray_eps) they are 0.5-1.7 % of the gradient (ball_y: term -0.04128 vs
# closed form -0.04200; ray_eps 1e-5: -0.04180 vs -0.04194; 1e-6: -0.04185 vs -0.04191), so the closed-form
# comparisons run at ray_eps = 1e-6.
FINE = TraceSettings(spp=1, edge_samples=4000, shadow_light_samples=0, ray_eps=1e-6)


def test_scene_shows_the_quad_only_in_the_ball():
    shapes, cam = _scene()
    with torch.no_grad():
        img = render_trace(shapes, cam, [], TraceSettings(spp=16, boundary="none")).image[0, ..., 0]
        direct = render_trace(shapes[1:], cam, [], TraceSettings(spp=16, boundary="none")).image
        bare = render_trace(shapes[:2], cam, [], TraceSettings(spp=16, boundary="none")).image[0, ..., 0]
    assert float(direct.abs().max()) == 0.0  # emitter and quad are behind the camera
    assert int((img > 0.99).sum()) > 20  # the emitter seen in the ball
    assert int((bare - img > 0.9).sum()) >= 4  # and the quad hiding part of it


def test_solved_outline_is_the_rendered_one():
    """The loss of the quad-less scene from the solved outline polygon equals the render's (1024 spp, 2 seeds).
    The renders' own error: relative -2.8e-4 .. 1.8e-4 (independent sampler) and -1.4e-4 .. 3.5e-4 (Sobol) over
    seeds 0-3, hence the mean of two and a tolerance of 4e-4."""
    with torch.no_grad():
        rendered = sum(float(_loss(torch.zeros((), dtype=DT), "eye_x",
                                   TraceSettings(spp=1024, boundary="none", ray_eps=FINE.ray_eps, seed=seed),
                                   with_quad=False)) for seed in (0, 1)) / 2
    outline = _outline_loss(0.0, "eye_x")
    assert abs(outline - rendered) < 4e-4 * rendered, (outline, rendered)


@pytest.mark.parametrize("which", ["eye_x", "eye_z", "ball_x", "ball_y"])
def test_gradient_matches_the_outline_closed_form(which):
    """Camera and mirror (vertices and, through them, shading normals) gradients vs the outline polygon's."""
    assert _grad(which, TraceSettings(spp=1, boundary="none"), with_quad=False) == 0.0  # interior: none
    g = _grad(which, FINE, with_quad=False)
    ref = _outline_grad(which)
    assert abs(ref) > 0.01
    assert abs(g - ref) < 0.01 * abs(ref), (g, ref)


@pytest.mark.parametrize("which", ["quad_x", "quad_z", "ortho_x"])
def test_chrome_ball_gradient_matches_fd(which):
    """The quad seen in the ball (its outline and the emitter's): central differences of renders (4096 spp,
    h = 0.05, about 2 % noise). Measured: quad_x 0.01671 +- 0.00001 vs 0.01672 +- 0.00015, quad_z 0.02224 vs
    0.02181 +- 0.00015; orthographic quad_x 0.01057-0.01058 vs 0.01054 (16384 spp, h = 0.02)."""
    assert _grad(which, TraceSettings(spp=1, boundary="none")) == 0.0  # no interior gradient at all
    g, fd = _grad(which, EDGE), _fd(which)
    assert abs(fd) > 0.01
    assert abs(g - fd) < 0.06 * abs(fd), (g, fd)


def test_without_the_curved_term_the_gradient_is_missing(monkeypatch):
    monkeypatch.setattr(curved, "curved_silhouettes", lambda *a: None)
    assert _grad("eye_x", EDGE) == 0.0
    assert abs(_fd("eye_x", spp=256)) > 0.05


def _render_scene(shapes, cam, st=FINE):
    sc = _Scene(shapes, cam, [], st, prepare_trace(shapes))
    tri = sc.verts.detach()[sc.faces_long.reshape(-1)].reshape(-1, 3, 3)
    sc.accel._face_data = (torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1), tri[:, 0])
    c2w = torch.linalg.inv(cam.world_to_cam.detach())
    return sc, (0, cam.world_to_cam[0], cam.K[0], c2w[0], True)


def _edge_points(sc, n, seed=0, exclude=0):
    gen = torch.Generator().manual_seed(seed)
    e = sc.accel.edges[sc.owner[sc.accel.edge_faces[:, 0]] != exclude]
    vd = sc.verts.detach()
    pick = torch.randint(0, e.shape[0], (n,), generator=gen)
    s = torch.rand(n, generator=gen, dtype=DT)
    return vd[e[pick, 0]] + s[:, None] * (vd[e[pick, 1]] - vd[e[pick, 0]])


@pytest.mark.parametrize("mirror", ["ball", "sheet"])
def test_newton_solutions_obey_the_reflection_law(mirror):
    """Each solution lies inside its face, and the renderer's ray (camera -> m, reflected about the
    interpolated shading normal, leaving from m + sigma eps g) passes through the edge point."""
    sc, view = _render_scene(*_scene(mirror=mirror))
    p = _edge_points(sc, 500)
    eye = view[3][:3, 3]
    sol = curved._solve_all(sc, view, 0, p, eye, True)
    assert sol is not None and sol.sample.numel() > 50
    fc = sol.pairs
    w = torch.cat([1 - sol.b.sum(-1, keepdim=True), sol.b], -1)
    assert bool((w >= 0).all())
    m = (w[..., None] * fc.tri).sum(1)
    n = curved._unit((w[..., None] * fc.nrm).sum(1))
    g = curved._unit(torch.linalg.cross(fc.tri[:, 1] - fc.tri[:, 0], fc.tri[:, 2] - fc.tri[:, 0], dim=-1))
    wo = curved._unit(eye - m)
    refl = 2 * (n * wo).sum(-1, keepdim=True) * n - wo
    to_p = curved._unit(p[sol.sample] - (m + (fc.sigma * sc.eps)[:, None] * g))
    assert float(torch.linalg.cross(refl, to_p, dim=-1).norm(dim=-1).max()) < 1e-9
    assert bool(((refl * to_p).sum(-1) > 0).all())


@pytest.mark.parametrize("mirror", ["ball", "sheet"])
def test_seeds_find_every_solution(monkeypatch, mirror):
    """The seed search (cone test, linearised zero within the margin) finds what Newton from every face
    finds."""
    sc, view = _render_scene(*_scene(mirror=mirror))
    p = _edge_points(sc, 150, seed=3)
    eye = view[3][:3, 3]
    found = curved._solve_all(sc, view, 0, p, eye, True)
    monkeypatch.setattr(curved, "_SEED_MARGIN", 1e9)
    monkeypatch.setattr(curved, "_CONE", 1e9)
    every = curved._solve_all(sc, view, 0, p, eye, True)
    assert every is not None and every.sample.numel() > 15
    key = lambda s: sorted(zip(s.sample.tolist(), s.face.tolist()))  # noqa: E731
    assert key(found) == key(every)


def test_planar_mirror_agrees_with_the_virtual_camera():
    """On a planar mirror the solve's pixel is the planar module's virtual-camera projection."""
    mv = torch.tensor([[-3.0, -2, -1], [3, -2, -1], [3, 2, -1], [-3, 2, -1]], dtype=DT)
    shapes, cam = _scene()
    shapes[0] = Shape(Mesh(mv, QUAD_FACES), MirrorMaterial(1.0))
    sc, view = _render_scene(shapes, cam)
    (plane,) = mirror_edges.planar_mirrors(sc)
    p = _edge_points(sc, 300, seed=5)
    sol = curved._solve_all(sc, view, 0, p, view[3][:3, 3], True)
    assert sol is not None and sol.sample.numel() > 100
    x = curved._project(view[1].detach(), view[2].detach(), curved._point(sol.pairs.tri, sol.b), True)[0]
    x_virtual = mirror_edges.MirrorView(sc, view, plane).project(p[sol.sample])[0]
    assert float((x - x_virtual).abs().max()) < 1e-6
    assert curved.curved_mirrors(sc) == []  # and the term leaves planar mirrors to the planar module


@pytest.mark.slow
@pytest.mark.parametrize("which,tol", [("sheet_x", 0.03), ("sheet_z", 0.05), ("eye_y", 0.08)])
def test_more_curved_mirror_gradients_match_fd(which, tol):
    """The quad seen in the concave cylindrical sheet (measured: term 0.0720-0.0722 vs FD 0.0721, and
    -0.00703 to -0.00705 vs -0.0071), and the camera moving up in the ball scene with the quad, whose sides'
    terms nearly cancel (4000 samples: 0.0302-0.0322 over seeds; FD 0.0325 at h = 0.02, 0.0302-0.0315 at
    h = 0.005, 16384 spp)."""
    assert _grad(which, TraceSettings(spp=1, boundary="none")) == 0.0
    st = TraceSettings(spp=1, edge_samples=16000, shadow_light_samples=0)
    g, fd = _grad(which, st), _fd(which, h=0.02, spp=16384)
    assert abs(fd) > 0.005
    assert abs(g - fd) < tol * abs(fd), (g, fd)
