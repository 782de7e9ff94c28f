"""The fused path tracer (lumigrad.render._path_fused, kernel lumigrad.ops._path_kernels) vs the torch path.

The torch general path (``lumigrad.render.path._radiance``) is the spec. The two draw different random
numbers, so images and gradients are compared within Monte Carlo noise: several independent renders
(seeds) of each give per-pixel means and standard errors, and the differences are z-scores. The
fused renders are deterministic given the seed, so their gradients are also checked against central
finite differences of the fused forward itself (float64, Russian roulette off, so that no sampling
decision depends on the parameters).
"""
import pytest
import torch

import lumigrad.render._path_fused as pf
from lumigrad.ops.path_trace import PathSettings, replay_paths, trace_paths
from lumigrad.render.path import TraceSettings, _Scene, prepare_trace, render_trace
from lumigrad.scene import Mesh
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import DirectionalLight, PointLight
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam
from lumigrad.scene.trace_types import EnvironmentLight, MirrorMaterial, Shape

DT = torch.float64


def _t(*x):
    return torch.tensor(x, dtype=DT)


def _quad(*corners):  # corners in order; normal (p1 - p0) x (p3 - p0)
    return Mesh(torch.tensor(corners, dtype=DT), torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32))


def box_scene(alb=None, emission=None, mirror=None, light=True, res=8, second_emitter=False):
    """A small closed Cornell-like box: floor, ceiling, back, red / green walls, a block (or a mirror quad)
    and a ceiling emitter; the camera looks in through the open front."""
    alb = _t(0.7, 0.6, 0.5) if alb is None else alb
    walls = [
        (_quad((-1, -1, 1), (1, -1, 1), (1, -1, -1), (-1, -1, -1)), LambertMaterial(alb)),
        (_quad((-1, 1, -1), (1, 1, -1), (1, 1, 1), (-1, 1, 1)), LambertMaterial(_t(0.7, 0.7, 0.7))),
        (_quad((-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1)), LambertMaterial(_t(0.7, 0.7, 0.7))),
        (_quad((-1, -1, 1), (-1, -1, -1), (-1, 1, -1), (-1, 1, 1)), LambertMaterial(_t(0.6, 0.1, 0.1))),
        (_quad((1, -1, -1), (1, -1, 1), (1, 1, 1), (1, 1, -1)), LambertMaterial(_t(0.1, 0.5, 0.1))),
    ]
    shapes = [Shape(m, mat) for m, mat in walls]
    # A tilted quad in the middle: a mirror, or a diffuse block face.
    tilt = _quad((-0.5, -1, 0.2), (0.5, -1, 0.2), (0.5, 0.0, -0.6), (-0.5, 0.0, -0.6))
    shapes.append(Shape(tilt, MirrorMaterial(mirror) if mirror is not None else LambertMaterial(_t(0.5, 0.5, 0.5))))
    if light:
        em = _t(8.0, 6.0, 3.0) if emission is None else emission
        shapes.append(Shape(_quad((-0.3, 0.99, -0.3), (0.3, 0.99, -0.3), (0.3, 0.99, 0.3), (-0.3, 0.99, 0.3)),
                            LambertMaterial(0.0), emission=em))
    if second_emitter:  # on the back wall, facing +z: three triangles of unequal areas (the CDF pick)
        v = torch.tensor([[-0.6, 0.2, -0.99], [0.6, 0.2, -0.99], [0.6, 0.5, -0.99], [-0.6, 0.3, -0.99],
                          [-0.8, 0.2, -0.99]], dtype=DT)
        f = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 0, 3]], dtype=torch.int32)
        shapes.append(Shape(Mesh(v, f), LambertMaterial(0.2), emission=_t(1.0, 3.0, 5.0)))
    cam = Camera.look_at(_t(0.0, 0.0, 3.5), _t(0.0, 0.0, 0.0), fov_y_deg=40.0, width=res, height=res)
    return shapes, cam


def _renders(shapes, cam, lights, seeds, fused, **kw):
    """``[K, H, W, 3]`` renders, one per seed, by the fused kernel or the torch path."""
    real = pf.fused_path_ok
    if not fused:
        pf.fused_path_ok = lambda sc: False
    try:
        return torch.stack([render_trace(shapes, cam, lights, TraceSettings(seed=s, boundary="none", **kw)).image[0]
                            for s in seeds])
    finally:
        pf.fused_path_ok = real


def _z(a, b):
    """Per-element z-scores of the means of samples ``a [K, ...]`` and ``b [K, ...]`` (independent)."""
    se2 = a.var(0) / a.shape[0] + b.var(0) / b.shape[0]
    return (a.mean(0) - b.mean(0)) / se2.clamp_min(1e-30).sqrt()


def _agree(a, b):
    z = _z(a, b)
    # The mean squared z-score of independent unbiased estimates is ~1 (K = 8: t-distributed, a bit more).
    assert float((z ** 2).mean()) < 2.0, float((z ** 2).mean())
    assert float(z.abs().max()) < 6.0


CASES = {
    "area_mis_rr": (dict(), [], dict(max_bounces=3, rr_depth=2, mis=True)),
    "area_no_mis": (dict(), [], dict(max_bounces=3, mis=False)),
    "mirror_point_area": (dict(mirror=_t(0.9, 0.8, 0.7)), [PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)],
                          dict(max_bounces=3, rr_depth=2)),
    "two_emitters": (dict(second_emitter=True), [], dict(max_bounces=2)),
    # The Sobol sampler (the torch path: its sub-pixel offsets, independent path numbers): unbiased too.
    "sobol_two_emitters_rr": (dict(second_emitter=True), [], dict(max_bounces=3, rr_depth=2, sampler="sobol")),
    "point_directional": (dict(light=False), [PointLight(_t(0.3, 0.8, 0.5), intensity=2.0),
                                              DirectionalLight(_t(0.2, 1.0, 0.3), intensity=0.5)],
                          dict(max_bounces=2)),
}


def _images_agree(shapes, cam, lights, st, min_mean=0.02):
    """The kernel takes the scene, and its images agree with the torch path's (8 seeds each, z-scores)."""
    sc = _Scene(shapes, cam, lights, TraceSettings(**st), prepare_trace(shapes))
    assert pf.fused_path_ok(sc)
    a = _renders(shapes, cam, lights, range(8), True, spp=16, **st)
    b = _renders(shapes, cam, lights, range(100, 108), False, spp=16, **st)
    assert float(a.mean()) > min_mean
    _agree(a, b)


@pytest.mark.parametrize("case", list(CASES))
def test_images_agree_with_torch_path(case):
    kw, lights, st = CASES[case]
    _images_agree(*box_scene(**kw), lights, st)


def _grads_by_seed(fused: bool, seeds, grads_of_seed):
    """``[K, n]`` flattened gradients, one row per seed, by the fused kernel or (``fused`` False) the torch path."""
    real = pf.fused_path_ok
    if not fused:
        pf.fused_path_ok = lambda sc: False
    try:
        return torch.stack([torch.cat([x.reshape(-1) for x in grads_of_seed(s)]) for s in seeds])
    finally:
        pf.fused_path_ok = real


def _params():
    alb = _t(0.7, 0.0, 0.5).requires_grad_(True)  # an albedo channel exactly 0
    em = _t(8.0, 6.0, 3.0).requires_grad_(True)
    refl = _t(0.9, 0.8, 0.0).requires_grad_(True)  # a reflectance channel exactly 0
    inten = torch.tensor(1.5, dtype=DT, requires_grad=True)
    return alb, em, refl, inten


def _loss(alb, em, refl, inten, seed=0, chunk=1 << 16, mis=True, res=6, spp=8, rr=9, replay=False,
          sampler="independent"):
    shapes, cam = box_scene(alb=alb, emission=em, mirror=refl, res=res)
    lights = [PointLight(_t(0.3, 0.8, 0.5), intensity=inten)]
    st = TraceSettings(spp=spp, max_bounces=3, rr_depth=rr, seed=seed, chunk_rays=chunk, mis=mis, replay=replay,
                       sampler=sampler, decorrelate=False)
    img = render_trace(shapes, cam, lights, st).image
    w = torch.linspace(0.5, 1.5, img.numel(), dtype=DT).reshape(img.shape)
    return (img * w).sum()


@pytest.mark.parametrize("chunk,replay,sampler", [(1 << 16, False, "independent"), (97, True, "independent"),
                                                   (97, True, "sobol")])  # whole-pixel chunks / split pixels
def test_gradients_match_finite_differences(chunk, replay, sampler):
    """Fused gradients (path replay) vs central differences of the fused forward (RR off: exact up to FD error)."""
    params = _params()
    assert torch.autograd.gradcheck(lambda *p: _loss(*p, chunk=chunk, replay=replay, sampler=sampler), params, eps=1e-6,
                                    atol=1e-6, rtol=1e-5)
    g = torch.autograd.grad(_loss(*params, chunk=chunk, replay=replay, sampler=sampler), params)
    # The zero channels get gradients (the 0 / 0 of path replay is handled) and they are not trivial.
    assert float(g[0][1]) > 1e-3 and float(g[2][2]) > 1e-3


def test_gradients_agree_with_torch_path():
    """Fused vs torch gradients (Russian roulette on) within Monte Carlo noise."""
    def of_seed(s):
        params = _params()
        return torch.autograd.grad(_loss(*params, seed=s, rr=2, res=6, spp=4), params)

    a, b = _grads_by_seed(True, range(8), of_seed), _grads_by_seed(False, range(100, 108), of_seed)
    assert float(a.abs().mean()) > 0.1
    z = _z(a, b)
    assert float(z.abs().max()) < 5.0, z


def test_replay_is_deterministic_and_chunking_free_of_races():
    params = _params()
    g1 = torch.autograd.grad(_loss(*params, chunk=200), params)
    g2 = torch.autograd.grad(_loss(*params, chunk=200), params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # With TraceSettings.replay the radiance is not kept but recomputed by the replay's first pass: same paths.
    g4 = torch.autograd.grad(_loss(*params, chunk=200, replay=True), params)
    for a, b in zip(g1, g4):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # The Sobol sampler's numbers are a function of (pixel, sample, dimension): replay re-draws them too.
    g5 = torch.autograd.grad(_loss(*params, chunk=200, sampler="sobol"), params)
    g6 = torch.autograd.grad(_loss(*params, chunk=200, replay=True, sampler="sobol"), params)
    for a, b, c in zip(g5, g6, g1):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert not torch.equal(a, c)
    # Without reflectance gradients the replay skips its radiance pass: the same emission / light gradients.
    alb, em, refl, inten = params
    g3 = torch.autograd.grad(_loss(alb.detach(), em, refl.detach(), inten, chunk=200, replay=True), [em, inten])
    torch.testing.assert_close(g3[0], g1[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(g3[1], g1[3], rtol=1e-12, atol=0)


def test_lean_kernel_equals_full_kernel(monkeypatch):
    """A scene without environment map, GGX or lights runs the kernel variant compiled without their code: the
    same image and gradients, bit for bit, as the full variant (forced here)."""
    import lumigrad.ops.path_trace as pt

    def render_and_grads(replay):
        alb, em, refl, _ = _params()
        shapes, cam = box_scene(alb=alb, emission=em, mirror=refl, res=5)
        st = TraceSettings(spp=4, max_bounces=3, rr_depth=2, seed=1, replay=replay)
        img = render_trace(shapes, cam, [], st).image
        return (img.detach(), *torch.autograd.grad(img.sum(), [alb, em, refl]))

    real, chosen = pt._full, []
    monkeypatch.setattr(pt, "_full", lambda sc, env: chosen.append(real(sc, env)) or chosen[-1])
    for replay in (False, True):
        lean = render_and_grads(replay)
        assert chosen and not any(chosen)  # the lean variant ran
        with monkeypatch.context() as m:
            m.setattr(pt, "_full", lambda sc, env: True)
            full = render_and_grads(replay)
        assert float(lean[1].abs().sum()) > 0
        for a, b in zip(lean, full):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_float32_replay_matches_float64():
    """Path replay in float32 (radiance minus what is accounted for) keeps the gradients' accuracy: the same
    paths (same seed) in float32 and float64 give gradients within float32 rounding of each other."""
    out = []
    for dt in (torch.float32, torch.float64):
        shapes, cam = box_scene(mirror=_t(0.9, 0.8, 0.7))
        alb = _t(0.7, 0.6, 0.5).to(dt).requires_grad_(True)
        shapes = [Shape(Mesh(s.mesh.verts.to(dt), s.mesh.faces), s.material, None if s.emission is None else
                        s.emission.to(dt)) for s in shapes]
        shapes[0] = Shape(shapes[0].mesh, LambertMaterial(alb))
        for s in shapes[1:]:
            for k, v in vars(s.material).items():
                if isinstance(v, torch.Tensor):
                    setattr(s.material, k, v.to(dt))
        img = render_trace(shapes, cam.to(dtype=dt), [], TraceSettings(spp=8, max_bounces=3, rr_depth=2)).image
        out.append(torch.autograd.grad(img.sum(), [alb])[0].double())
    assert float(out[1].min()) > 0.1
    torch.testing.assert_close(out[0], out[1], rtol=1e-3, atol=0)


def test_paths_that_miss_everything():
    shapes, cam = box_scene()
    away = Camera.look_at(_t(0.0, 0.0, 3.5), _t(0.0, 0.0, 9.0), width=4, height=4)
    alb = _t(0.5, 0.5, 0.5).requires_grad_(True)
    shapes[0] = Shape(shapes[0].mesh, LambertMaterial(alb))
    out = render_trace(shapes, away, [], TraceSettings(spp=4, max_bounces=3, background=(0.1, 0.2, 0.3)))
    torch.testing.assert_close(out.image, _t(0.1, 0.2, 0.3).expand(1, 4, 4, 3))
    assert float(out.alpha.max()) == 0.0
    (g,) = torch.autograd.grad(out.image.sum(), [alb], allow_unused=True)
    assert g is None or float(g.abs().max()) == 0.0


def test_predicate_scope():
    shapes, cam = box_scene()
    st = TraceSettings(max_bounces=3)
    assert pf.fused_path_ok(_Scene(shapes, cam, [], st, prepare_trace(shapes)))
    v = shapes[0].mesh.verts.clone().requires_grad_(True)
    moved = [Shape(Mesh(v, shapes[0].mesh.faces), shapes[0].material)] + shapes[1:]
    assert not pf.fused_path_ok(_Scene(moved, cam, [], st, prepare_trace(moved)))  # a geometric gradient
    with torch.no_grad():
        assert pf.fused_path_ok(_Scene(moved, cam, [], st, prepare_trace(moved)))
    vc = torch.ones(4, 3, dtype=DT, requires_grad=True)
    tinted = [Shape(Mesh(shapes[0].mesh.verts, shapes[0].mesh.faces, vert_colors=vc), shapes[0].material)] + shapes[1:]
    assert pf.fused_path_ok(_Scene(tinted, cam, [], st, prepare_trace(tinted)))  # vertex colours (with a gradient)
    pos = _t(0.3, 0.8, 0.5).requires_grad_(True)
    assert not pf.fused_path_ok(_Scene(shapes, cam, [PointLight(pos)], st, prepare_trace(shapes)))


@pytest.mark.parametrize("camera", ["pinhole", "orthographic", "two_views"])
def test_kernel_camera_rays_and_given_hits_equal_torch_rays(camera):
    """Rays made in the kernel equal the torch camera rays (same paths, same random numbers), and camera hits
    passed in (e.g. rasterized) give the same paths as the kernel's own BVH queries."""
    from lumigrad.ops.trace import intersect
    from lumigrad.render.path import _chunk_rays

    shapes, cam = box_scene(mirror=_t(0.9, 0.8, 0.7))
    if camera == "orthographic":
        cam = Camera(cam.world_to_cam, torch.tensor([[[3.0, 0.0, 4.0], [0.0, 3.0, 4.0], [0.0, 0.0, 1.0]]], dtype=DT),
                     cam.width, cam.height, projection="orthographic")
    elif camera == "two_views":
        other = Camera.look_at(_t(0.4, 0.3, 3.0), _t(0.0, -0.2, 0.0), fov_y_deg=50.0, width=8, height=8)
        k = cam.K.clone()
        k[0, 0, 1] = 0.3  # a skewed pixel grid
        cam = Camera(torch.cat([cam.world_to_cam, other.world_to_cam]), torch.cat([k, other.K]), 8, 8)
    # Given rays carry no pixel (the Sobol sampler makes each one a pixel of its own): independent numbers.
    sc = _Scene(shapes, cam, [PointLight(_t(0.3, 0.8, 0.5))], TraceSettings(max_bounces=3, spp=4, sampler="independent"),
                prepare_trace(shapes))
    first = 300 if camera == "two_views" else 40  # the second view starts at sample 256
    _, o, d, _ = _chunk_rays(sc, first, 200)
    face = intersect(sc.accel.bvh, o, d).face
    args = (sc.accel.bvh, pf._path_scene(sc), *(x.detach() for x in pf._rows(sc)[:3]))
    st = pf._settings(sc, 3)
    a, hit_a = trace_paths(*args, o, d, None, st)
    b, hit_b = trace_paths(*args, o, d, face, st)
    c, hit_c = trace_paths(*args, None, None, None, st, pf._camera(sc, first), 200)
    assert bool(hit_a.any()) and torch.equal(hit_a, hit_b) and torch.equal(hit_a, hit_c) and float(a.max()) > 0
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)


def test_bad_inputs():
    shapes, cam = box_scene()
    sc = _Scene(shapes, cam, [], TraceSettings(max_bounces=2), prepare_trace(shapes))
    ps = pf._path_scene(sc)
    refl, emis, ls = (x.detach() for x in pf._rows(sc)[:3])
    o, d = torch.zeros(4, 3, dtype=DT), torch.tensor([[0.0, 0.0, -1.0]] * 4, dtype=DT)
    st = PathSettings(sc.eps, True, 2, 3, True, 0, (0.0, 0.0, 0.0))
    bvh = sc.accel.bvh
    with pytest.raises(ValueError, match="trace_paths\\(\\): refl"):
        trace_paths(bvh, ps, refl[:2], emis, ls, o, d, None, st)
    with pytest.raises(ValueError, match="trace_paths\\(\\): dirs"):
        trace_paths(bvh, ps, refl, emis, ls, o, d.float(), None, st)
    with pytest.raises(ValueError, match="trace_paths\\(\\): face"):
        trace_paths(bvh, ps, refl, emis, ls, o, d, torch.full((4,), 10**6, dtype=torch.int32), st)
    with pytest.raises(ValueError, match="trace_paths\\(\\): camera samples"):
        trace_paths(bvh, ps, refl, emis, ls, None, None, None, st, pf._camera(sc, 0), 10**6)
    with pytest.raises(ValueError, match="trace_paths\\(\\): give origins"):
        trace_paths(bvh, ps, refl, emis, ls, o, d, None, st, pf._camera(sc, 0), 4)
    with pytest.raises(ValueError, match="trace_paths\\(\\): owner"):
        trace_paths(bvh, ps._replace(owner=ps.owner + 100), refl, emis, ls, o, d, None, st)
    S = refl.shape[0]
    with pytest.raises(ValueError, match="trace_paths\\(\\): rough"):
        trace_paths(bvh, ps, refl, emis, ls, o, d, None, st, None, None, torch.zeros(S + 1, dtype=DT))
    with pytest.raises(ValueError, match="trace_paths\\(\\): metal"):
        trace_paths(bvh, ps, refl, emis, ls, o, d, None, st, None, None, None, torch.zeros(S, dtype=torch.float32))
    with pytest.raises(ValueError, match="trace_paths\\(\\): sprob"):
        trace_paths(bvh, ps._replace(sprob=ps.sprob[:1]), refl, emis, ls, o, d, None, st)
    with pytest.raises(ValueError, match="replay_paths\\(\\): need"):
        replay_paths(bvh, ps, refl, emis, ls, o, d, None, st, torch.zeros(4, 3, dtype=DT), (True, False))
    with pytest.raises(ValueError, match="replay_paths\\(\\): need asks for the environment"):
        replay_paths(bvh, ps, refl, emis, ls, o, d, None, st, torch.zeros(4, 3, dtype=DT), (False,) * 5 + (True,))
    with pytest.raises(ValueError, match="trace_paths\\(\\): env needs"):
        trace_paths(bvh, ps, refl, emis, ls, o, d, None, st, None, None, None, None, torch.zeros(8, 3, dtype=DT))
    env_ps = ps._replace(env_prob=torch.full((8,), 1 / 8, dtype=DT), env_cdf=torch.linspace(1 / 8, 1, 8, dtype=DT),
                         env_rot=torch.eye(3, dtype=DT), env_size=(2, 4))
    with pytest.raises(ValueError, match="trace_paths\\(\\): env must be"):
        trace_paths(bvh, env_ps, refl, emis, ls, o, d, None, st, None, None, None, None, torch.zeros(9, 3, dtype=DT))
    L, hit = trace_paths(bvh, ps, refl, emis, ls, o, d, None, st)
    assert L.shape == (4, 3) and bool(hit.all())
    L, hit = trace_paths(bvh, env_ps, refl, emis, ls, o, d, None, st, None, None, None, None, torch.ones(8, 3, dtype=DT))
    assert bool(torch.isfinite(L).all())


# --- GGX ----------------------------------------------------------------------------------------------------


def ggx_box(base=None, rough=None, metal=None, res=8, light=True):
    """box_scene with the tilted quad and the back wall GGX (base colour, roughness and metallic given or default)."""
    shapes, cam = box_scene(res=res, light=light)
    base = _t(0.8, 0.5, 0.3) if base is None else base
    rough = torch.tensor(0.35, dtype=DT) if rough is None else rough
    metal = torch.tensor(0.4, dtype=DT) if metal is None else metal
    shapes[5] = Shape(shapes[5].mesh, GGXMaterial(base, rough, metal))
    shapes[2] = Shape(shapes[2].mesh, GGXMaterial(_t(0.6, 0.6, 0.7), 0.6, 0.0))
    return shapes, cam


GGX_CASES = {
    "ggx_area_mis_rr": (dict(), [], dict(max_bounces=3, rr_depth=2, mis=True)),
    "ggx_area_point_no_mis": (dict(), [PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)], dict(max_bounces=2, mis=False)),
    "ggx_sobol": (dict(), [], dict(max_bounces=3, rr_depth=2, sampler="sobol")),
}


@pytest.mark.parametrize("case", list(GGX_CASES))
def test_ggx_images_agree_with_torch_path(case):
    kw, lights, st = GGX_CASES[case]
    _images_agree(*ggx_box(**kw), lights, st)


def test_ggx_gradients_match_finite_differences():
    """Base colour, roughness and metallic gradients of the replay vs central differences of the kernel's forward
    (float64, RR off, sampling constants fixed): exact up to FD error; a base channel 0 with metallic 1 too.
    Independent sampler, seed 0: the replay divides by a vertex's BSDF value, and with metallic 1 and a base channel
    0 that channel is Fresnel's (1 - c)^5 alone, ~1e-12 at some vertices; there the division amplifies the rounding
    of "radiance not yet accounted for" (relative gradient errors of 1e-5 .. 1e-3 on that channel for 2 of 24
    seed / sampler pairs measured; a known limit of path replay, see lumigrad.ops._path_kernels)."""
    for base, metal in ((_t(0.8, 0.5, 0.3), 0.4), (_t(0.8, 0.0, 0.3), 1.0)):
        lights = [PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)]
        shapes, cam = ggx_box(base=base, metal=torch.tensor(metal, dtype=DT), res=5)
        spp = 4
        sc = _Scene(shapes, cam, lights, TraceSettings(spp=spp, max_bounces=3, rr_depth=9, sampler="independent"),
                    prepare_trace(shapes))
        count = 5 * 5 * spp
        args = (sc.accel.bvh, pf._path_scene(sc))
        refl, emis, ls, rough, metal_rows = (x.detach() for x in pf._rows(sc)[:5])
        st, camera = pf._settings(sc, 0), pf._camera(sc, 0)
        gpix = torch.linspace(0.5, 1.5, 25 * 3, dtype=DT).reshape(25, 3)  # cotangent of the pixel means

        def f(r, ro, me):
            L = trace_paths(*args, r, emis, ls, None, None, None, st, camera, count, ro, me)[0]
            return float((L.reshape(25, spp, 3).mean(1) * gpix).sum())

        g_refl, _, _, g_rough, g_metal = replay_paths(*args, refl, emis, ls, None, None, None, st, gpix,
                                                      (True, False, False, True, True), camera, count, 0, None,
                                                      rough, metal_rows)
        h = 1e-6
        checked = 0
        for name, rows, g in (("refl", refl, g_refl), ("rough", rough, g_rough), ("metal", metal_rows, g_metal)):
            for idx in ([(5, 0), (5, 1), (2, 2)] if name == "refl" else [(5,), (2,)]):
                e = torch.zeros_like(rows)
                e[idx] = h
                vals = {"refl": refl, "rough": rough, "metal": metal_rows}
                plus = dict(vals, **{name: rows + e})
                minus = dict(vals, **{name: rows - e})
                fd = (f(plus["refl"], plus["rough"], plus["metal"]) - f(minus["refl"], minus["rough"], minus["metal"])) / (2 * h)
                if name == "metal" and not 0.0 < float(metal_rows[idx]) < 1.0:
                    continue  # at the clamp's edge the one-sided derivatives differ (torch's rule: the inside one)
                assert abs(float(g[idx]) - fd) <= 1e-5 * abs(fd) + 1e-7, (name, idx, float(g[idx]), fd)
                checked += abs(fd) > 1e-4
        assert checked >= 5


def test_ggx_gradients_agree_with_torch_path():
    """Fused vs torch gradients of base colour, roughness and metallic (RR on) within Monte Carlo noise."""
    def of_seed(s):
        base = _t(0.8, 0.5, 0.3).requires_grad_(True)
        rough = torch.tensor(0.35, dtype=DT, requires_grad=True)
        metal = torch.tensor(0.4, dtype=DT, requires_grad=True)
        shapes, cam = ggx_box(base, rough, metal, res=6)
        st = TraceSettings(spp=4, max_bounces=3, rr_depth=2, seed=s, boundary="none")
        img = render_trace(shapes, cam, [], st).image
        w = torch.linspace(0.5, 1.5, img.numel(), dtype=DT).reshape(img.shape)
        return torch.autograd.grad((img * w).sum(), [base, rough, metal])

    a, b = _grads_by_seed(True, range(8), of_seed), _grads_by_seed(False, range(100, 108), of_seed)
    assert float(a.abs().mean()) > 0.05
    z = _z(a, b)
    assert float(z.abs().max()) < 5.0, (z, a.mean(0), b.mean(0))


def test_ggx_roughness_alone_same_with_and_without_replay():
    """Only the roughness needs a gradient: the replay must still get each path's radiance (it once skipped that
    pass whenever the albedo rows were not needed, and the roughness share came out wrong)."""
    def grad(replay):
        rough = torch.tensor(0.35, dtype=DT, requires_grad=True)
        shapes, cam = ggx_box(None, rough, None, res=6)
        img = render_trace(shapes, cam, [], TraceSettings(spp=4, seed=3, boundary="none", replay=replay)).image
        return torch.autograd.grad(img.sum(), [rough])[0]

    a, b = grad(True), grad(False)
    assert abs(float(b)) > 0.1
    torch.testing.assert_close(a, b, rtol=1e-9, atol=0.0)


# --- environment map ------------------------------------------------------------------------------------------


def env_light(tex=None, rotate=False):
    if tex is None:
        tex = torch.rand(8, 16, 3, dtype=DT, generator=torch.Generator().manual_seed(0)) * 0.5
        tex[1, 3] = 8.0  # a bright "sun" texel
    rot = None
    if rotate:
        c, s = 0.8, 0.6  # a rotation about y and a tilt
        rot = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=DT) @ torch.tensor(
            [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=DT)
    return EnvironmentLight(tex, to_world=rot)


def env_scene(res=8):
    """An open scene under an environment map: a floor, a tilted GGX quad, a mirror and a diffuse block face;
    the camera sees the sky above them."""
    shapes = [Shape(_quad((-2, -1, 2), (2, -1, 2), (2, -1, -2), (-2, -1, -2)), LambertMaterial(_t(0.7, 0.6, 0.5))),
              Shape(_quad((-0.5, -1, 0.2), (0.5, -1, 0.2), (0.5, 0.0, -0.6), (-0.5, 0.0, -0.6)),
                    GGXMaterial(_t(0.8, 0.5, 0.3), 0.3, 0.4)),
              Shape(_quad((0.6, -1, -0.5), (1.2, -1, 0.0), (1.2, 0.0, 0.0), (0.6, 0.0, -0.5)), MirrorMaterial(_t(0.9, 0.9, 0.8))),
              Shape(_quad((-1.2, -1, 0.0), (-0.6, -1, -0.5), (-0.6, -0.2, -0.5), (-1.2, -0.2, 0.0)),
                    LambertMaterial(_t(0.3, 0.6, 0.3)))]
    cam = Camera.look_at(_t(0.0, 0.3, 3.0), _t(0.0, -0.3, 0.0), fov_y_deg=50.0, width=res, height=res)
    return shapes, cam


ENV_CASES = {
    "env_mis": (False, [], dict(max_bounces=2, mis=True)),
    "env_rotated_point_rr_no_mis": (True, [PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)],
                                    dict(max_bounces=3, rr_depth=2, mis=False)),
    "env_sobol": (False, [], dict(max_bounces=2, sampler="sobol")),
}


@pytest.mark.parametrize("case", list(ENV_CASES))
def test_env_images_agree_with_torch_path(case):
    rotate, lights, st = ENV_CASES[case]
    _images_agree(*env_scene(), [env_light(rotate=rotate), *lights], st)


def test_env_texel_gradients_match_finite_differences():
    """Texel gradients of the replay vs central differences of the kernel's forward (float64, RR off; the
    sampler's tables are fixed in the PathScene, so the forward is smooth in the texels)."""
    shapes, cam = env_scene(res=5)
    spp = 4
    sc = _Scene(shapes, cam, [env_light(rotate=True)], TraceSettings(spp=spp, max_bounces=3, rr_depth=9),
                prepare_trace(shapes))
    assert pf.fused_path_ok(sc)
    count = 25 * spp
    args = (sc.accel.bvh, pf._path_scene(sc))
    refl, emis, ls, rough, metal, env, _ = (x.detach() for x in pf._rows(sc)[:7])
    st, camera = pf._settings(sc, 0), pf._camera(sc, 0)
    gpix = torch.linspace(0.5, 1.5, 25 * 3, dtype=DT).reshape(25, 3)

    def f(e):
        L = trace_paths(*args, refl, emis, ls, None, None, None, st, camera, count, rough, metal, e)[0]
        return float((L.reshape(25, spp, 3).mean(1) * gpix).sum())

    grads = replay_paths(*args, refl, emis, ls, None, None, None, st, gpix, (True, False, False, False, False, True),
                         camera, count, 0, None, rough, metal, env)
    g_env = grads[5]
    big = torch.topk(g_env.abs().reshape(-1), 6).indices  # the texels that matter most, and a few others
    idx = torch.cat([big, torch.tensor([0, 17, 200], dtype=torch.long)])
    h = 1e-6
    for k in idx.tolist():
        e = torch.zeros_like(env).reshape(-1)
        e[k] = h
        fd = (f(env + e.reshape(env.shape)) - f(env - e.reshape(env.shape))) / (2 * h)
        assert abs(float(g_env.reshape(-1)[k]) - fd) <= 1e-6 * abs(fd) + 1e-8, (k, float(g_env.reshape(-1)[k]), fd)
    assert float(g_env.abs().sum()) > 0.1


def test_env_texel_gradients_agree_with_torch_path():
    """Fused vs torch texel gradients (RR on, 3 bounces) within Monte Carlo noise."""
    def of_seed(s):
        light = env_light(rotate=True)
        tex = light.texels.clone().requires_grad_(True)
        light = EnvironmentLight(tex, to_world=light.to_world)
        shapes, cam = env_scene(res=6)
        img = render_trace(shapes, cam, [light], TraceSettings(spp=4, max_bounces=3, rr_depth=2, seed=s,
                                                              boundary="none")).image
        w = torch.linspace(0.5, 1.5, img.numel(), dtype=DT).reshape(img.shape)
        return torch.autograd.grad((img * w).sum(), [tex])

    a, b = _grads_by_seed(True, range(8), of_seed), _grads_by_seed(False, range(100, 108), of_seed)
    assert float(a.abs().sum(1).mean()) > 0.1
    z = _z(a, b)
    assert float(z.abs().max()) < 5.5, z.abs().max()


# --- textured materials ---------------------------------------------------------------------------------------


def _uv_quad(q, scale=1.3):
    """A quad of box_scene with UVs running a bit past [0, 1] (the boundary modes matter)."""
    uv = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=DT) * scale - 0.1
    return Mesh(q.verts, q.faces, uvs=uv, faces_uvs=q.faces)


def tex_params(seed=0):
    """Texels of tex_box: floor albedo (RGB, its green channel 0: the zero-factor case), back-wall GGX base
    colour (1 channel), roughness and metallic."""
    g = torch.Generator().manual_seed(seed)
    alb = torch.rand(4, 5, 3, dtype=DT, generator=g) * 0.6 + 0.2
    alb[..., 1] = 0.0
    base = torch.rand(3, 4, 1, dtype=DT, generator=g) * 0.6 + 0.3
    rough = torch.rand(3, 3, 1, dtype=DT, generator=g) * 0.5 + 0.2
    metal = torch.rand(2, 3, 1, dtype=DT, generator=g)
    return [t.requires_grad_(True) for t in (alb, base, rough, metal)]


def tex_box(alb, base, rough, metal, res=8, wall=None):
    """box_scene with a textured Lambert floor (clamp) and a textured GGX back wall (wrap; nearest roughness),
    the other shapes untextured (the left wall's albedo ``wall``, if given)."""
    shapes, cam = box_scene(res=res)
    floor, back = shapes[0], shapes[2]
    shapes[0] = Shape(_uv_quad(floor.mesh), LambertMaterial(TextureParam(alb, boundary_mode="clamp")))
    shapes[2] = Shape(_uv_quad(back.mesh, 2.1), GGXMaterial(TextureParam(base), TextureParam(rough, filter_mode="nearest"),
                                                            TextureParam(metal, boundary_mode="zero")))
    if wall is not None:
        shapes[3] = Shape(shapes[3].mesh, LambertMaterial(wall))
    return shapes, cam


def tint_params():
    """The meshes' own colours of :func:`tint`: the green wall's 2-channel texture (its first channel read), the
    floor's RGB texture, the tilted quad's vertex colours with a zero blue channel (the zero factor behind a tint)."""
    g = torch.Generator().manual_seed(3)
    wall = torch.rand(3, 3, 2, dtype=DT, generator=g) + 0.5
    vc = torch.rand(4, 3, dtype=DT, generator=g) * 0.5 + 0.5
    vc[:, 2] = 0.0
    floor = torch.rand(2, 2, 3, dtype=DT, generator=g) * 0.5 + 0.5
    return [t.requires_grad_(True) for t in (wall, vc, floor)]


def tint(shapes, params=None):
    """tex_box with meshes' own colours (:func:`tint_params`), which multiply the BRDF."""
    wall, vc, floor = tint_params() if params is None else params
    out = list(shapes)
    q = _uv_quad(shapes[4].mesh)
    out[4] = Shape(Mesh(q.verts, q.faces, uvs=q.uvs, faces_uvs=q.faces_uvs, texture=wall), shapes[4].material)
    m = shapes[5].mesh
    out[5] = Shape(Mesh(m.verts, m.faces, vert_colors=vc), shapes[5].material)
    m = shapes[0].mesh
    out[0] = Shape(Mesh(m.verts, m.faces, uvs=m.uvs, faces_uvs=m.faces_uvs, texture=floor), shapes[0].material)
    return out


TEX_CASES = {
    "area_mis_rr": ([], dict(max_bounces=3, rr_depth=2, mis=True)),
    "point_env_no_mis": ([PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)], dict(max_bounces=2, mis=False)),
    "tinted_point": ([PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)], dict(max_bounces=3, rr_depth=2)),
}


@pytest.mark.parametrize("case", list(TEX_CASES))
def test_textured_images_agree_with_torch_path(case):
    lights, st = TEX_CASES[case]
    if case == "point_env_no_mis":
        lights = lights + [env_light()]
    shapes, cam = tex_box(*(t.detach() for t in tex_params()))
    if case.startswith("tinted"):
        shapes = tint(shapes, [t.detach() for t in tint_params()])
    _images_agree(shapes, cam, lights, st)


@pytest.mark.parametrize("tinted", [False, True])
def test_texel_gradients_match_finite_differences(tinted):
    """Texel gradients of the replay vs central differences of the kernel's forward (float64, RR off): the four
    textures of tex_box, with a point light and an environment map; the floor's zero green channel gets
    gradients (path replay's 0 / 0 handled at texels), and the untextured rows still get theirs; with the
    meshes' own colours (:func:`tint`) multiplying the BRDF too."""
    shapes, cam = tex_box(*(t.detach() for t in tex_params()), res=5)
    shapes = tint(shapes) if tinted else shapes
    spp = 4
    sc = _Scene(shapes, cam, [PointLight(_t(0.3, 0.8, 0.5), intensity=1.5), env_light()],
                TraceSettings(spp=spp, max_bounces=3, rr_depth=9), prepare_trace(shapes))
    assert pf.fused_path_ok(sc)
    count = 25 * spp
    args = (sc.accel.bvh, pf._path_scene(sc))
    refl, emis, ls, rough, metal, env, tex = (x.detach() for x in pf._rows(sc)[:7])
    st, camera = pf._settings(sc, 0), pf._camera(sc, 0)
    gpix = torch.linspace(0.5, 1.5, 25 * 3, dtype=DT).reshape(25, 3)

    def f(r, t):
        L = trace_paths(*args, r, emis, ls, None, None, None, st, camera, count, rough, metal, env, t)[0]
        return float((L.reshape(25, spp, 3).mean(1) * gpix).sum())

    need = (True,) + (False,) * 5 + (True, tinted)
    grads = replay_paths(*args, refl, emis, ls, None, None, None, st, gpix, need, camera, count, 0, None, rough, metal,
                         env, tex)
    g_refl, g_tex = grads[0], grads[6]
    meta = pf._path_scene(sc).tex_meta
    h = 1e-6
    if tinted:  # the tint's texels (floor: texture 1, wall: 5) and vertex colours, the blue ones behind their 0
        for t in (1, 5):
            lo, n = int(meta[t, 0]), int(meta[t, 1] * meta[t, 2] * meta[t, 3])
            assert float(g_tex[lo:lo + n].abs().sum()) > 1e-3
            for k in (lo + torch.topk(g_tex[lo:lo + n].abs(), 2).indices).tolist():
                e = torch.zeros_like(tex)
                e[k] = h
                fd = (f(refl, tex + e) - f(refl, tex - e)) / (2 * h)
                assert abs(float(g_tex[k]) - fd) <= 1e-6 * abs(fd) + 1e-8, (k, float(g_tex[k]), fd)
        ps = args[1]
        off = sum(int(x.mesh.verts.shape[0]) for x in shapes[:5])
        for j in (off * 3 + 2, off * 3 + 4, off * 3 + 11):
            e = torch.zeros_like(ps.vcol).reshape(-1)
            e[j] = h
            fv = []
            for sign in (1, -1):
                p2 = ps._replace(vcol=ps.vcol + sign * e.reshape(ps.vcol.shape))
                L = trace_paths(sc.accel.bvh, p2, refl, emis, ls, None, None, None, st, camera, count, rough, metal, env,
                                tex)[0]
                fv.append(float((L.reshape(25, spp, 3).mean(1) * gpix).sum()))
            fd = (fv[0] - fv[1]) / (2 * h)
            assert abs(fd) > 1e-4 and abs(float(grads[7].reshape(-1)[j]) - fd) <= 1e-6 * abs(fd) + 1e-8, (j, fd)
    assert int(meta.shape[0]) == (6 if tinted else 4)
    meta = meta[[0, 2, 3, 4]] if tinted else meta  # the floor's tint is texture 1 (no gradient), the wall's 5
    green = int(meta[0, 0]) + 3 * torch.arange(20) + 1  # the floor texture's zero channel
    assert float(g_tex[green].abs().sum()) > 1e-3
    picks = [torch.topk(g_tex.abs(), 6).indices, green[:3]]
    for t in range(1, 4):  # the largest texel gradient of each other texture
        lo, n = int(meta[t, 0]), int(meta[t, 1] * meta[t, 2] * meta[t, 3])
        picks.append(lo + torch.topk(g_tex[lo:lo + n].abs(), 1).indices)
        assert float(g_tex[lo:lo + n].abs().sum()) > 1e-3
    for k in torch.cat(picks).tolist():
        e = torch.zeros_like(tex)
        e[k] = h
        fd = (f(refl, tex + e) - f(refl, tex - e)) / (2 * h)
        assert abs(float(g_tex[k]) - fd) <= 1e-6 * abs(fd) + 1e-8, (k, float(g_tex[k]), fd)
    e = torch.zeros_like(refl)
    e[1, 0] = h  # the ceiling's constant albedo, next to the textures
    fd = (f(refl + e, tex) - f(refl - e, tex)) / (2 * h)
    assert abs(fd) > 1e-3 and abs(float(g_refl[1, 0]) - fd) <= 1e-6 * abs(fd) + 1e-8
    e = torch.zeros_like(refl)
    e[5, 2] = h  # the tilted quad's blue albedo: with tint, behind a zero vertex colour (gradient 0)
    fd = (f(refl + e, tex) - f(refl - e, tex)) / (2 * h)
    assert abs(float(g_refl[5, 2]) - fd) <= 1e-6 * abs(fd) + 1e-8 and (abs(fd) < 1e-12) == tinted


@pytest.mark.parametrize("tinted", [False, True])
def test_texel_gradients_agree_with_torch_path(tinted):
    """Fused vs torch gradients of the four textures and of an untextured albedo in the same scene (RR on,
    3 bounces, a point light; with the meshes' own colours) within Monte Carlo noise."""
    def of_seed(s):
        params = tex_params() + [_t(0.6, 0.2, 0.1).requires_grad_(True)]
        shapes, cam = tex_box(*params[:4], res=6, wall=params[4])
        if tinted:
            params += tint_params()
            shapes = tint(shapes, params[5:])
        img = render_trace(shapes, cam, [PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)],
                           TraceSettings(spp=4, max_bounces=3, rr_depth=2, seed=s, boundary="none")).image
        w = torch.linspace(0.5, 1.5, img.numel(), dtype=DT).reshape(img.shape)
        return torch.autograd.grad((img * w).sum(), params)

    a, b = _grads_by_seed(True, range(8), of_seed), _grads_by_seed(False, range(100, 108), of_seed)
    assert float(a.abs().sum(1).mean()) > 0.1
    z = _z(a, b)
    assert float(z.abs().max()) < 5.5, z.abs().max()


def test_texture_replay_same_with_and_without_kept_radiance():
    """Textured scene, only the texels need gradients: the replay with the radiance kept and with it recomputed
    give the same texel gradients (same paths), and two runs are identical (no races between the CPU tasks' rows);
    split chunks, and whole-image chunks (several CPU tasks, each with its own gradient rows)."""
    def grads(replay, chunk, res):
        params = tex_params()
        shapes, cam = tex_box(*params, res=res)
        img = render_trace(shapes, cam, [], TraceSettings(spp=8, max_bounces=3, rr_depth=2, chunk_rays=chunk,
                                                          replay=replay)).image
        return torch.autograd.grad(img.sum(), params)

    for chunk, res in ((37, 5), (1 << 16, 16)):
        g1, g2, g3 = grads(False, chunk, res), grads(False, chunk, res), grads(True, chunk, res)
        assert float(g1[0].abs().sum()) > 0.01
        for a, b, c in zip(g1, g2, g3):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


def test_textured_predicate_scope():
    """Textured albedo / base colour, roughness and metallic and a mesh's own texture run in the kernel (with
    gradients); a texture with a forward-mode tangent or UVs that need a gradient do not."""
    import torch.autograd.forward_ad as fwAD

    st = TraceSettings(max_bounces=3)
    shapes, cam = tex_box(*tex_params())

    def ok(sh):
        return pf.fused_path_ok(_Scene(sh, cam, [], st, prepare_trace(sh)))

    assert ok(shapes)
    floor = shapes[0].mesh
    grey = torch.rand(4, 4, 1, dtype=DT)
    assert ok([Shape(floor, LambertMaterial(TextureParam(grey, filter_mode="nearest")))] + shapes[1:])
    own = Mesh(floor.verts, floor.faces, uvs=floor.uvs, faces_uvs=floor.faces_uvs,
               texture=grey.expand(4, 4, 3).clone().requires_grad_(True))
    assert ok([Shape(own, shapes[0].material)] + shapes[1:])  # a mesh's own texture tints the BRDF
    moved = Mesh(floor.verts, floor.faces, uvs=floor.uvs.clone().requires_grad_(True), faces_uvs=floor.faces_uvs)
    assert not ok([Shape(moved, shapes[0].material)] + shapes[1:])  # UVs with a gradient
    with torch.no_grad():
        assert ok([Shape(moved, shapes[0].material)] + shapes[1:])
    with fwAD.dual_level():
        dual = fwAD.make_dual(grey, torch.ones_like(grey))
        assert not ok([Shape(floor, LambertMaterial(TextureParam(dual)))] + shapes[1:])
        own = Mesh(floor.verts, floor.faces, uvs=floor.uvs, faces_uvs=floor.faces_uvs, texture=dual.expand(4, 4, 3))
        assert not ok([Shape(own, shapes[0].material)] + shapes[1:])


def test_textured_bad_inputs():
    shapes, cam = tex_box(*(t.detach() for t in tex_params()))
    sc = _Scene(shapes, cam, [], TraceSettings(max_bounces=2), prepare_trace(shapes))
    ps = pf._path_scene(sc)
    refl, emis, ls, rough, metal, _, tex = (x.detach() for x in pf._rows(sc)[:7])
    o, d = torch.zeros(4, 3, dtype=DT), torch.tensor([[0.0, -0.3, -1.0]] * 4, dtype=DT)
    d = d / d.norm(dim=1, keepdim=True)
    st = PathSettings(sc.eps, True, 2, 3, True, 0, (0.0, 0.0, 0.0))
    bvh = sc.accel.bvh

    def run(p=ps, t=tex):
        return trace_paths(bvh, p, refl, emis, ls, o, d, None, st, None, None, rough, metal, None, t)

    with pytest.raises(ValueError, match="trace_paths\\(\\): give tex"):
        run(t=None)
    with pytest.raises(ValueError, match="trace_paths\\(\\): give tex"):
        trace_paths(bvh, ps._replace(tex_slot=None), refl, emis, ls, o, d, None, st, None, None, rough, metal, None,
                    tex)
    with pytest.raises(ValueError, match="trace_paths\\(\\): tex must be"):
        run(t=tex.float())
    with pytest.raises(ValueError, match="trace_paths\\(\\): tex_slot must lie"):
        run(p=ps._replace(tex_slot=ps.tex_slot + 10))
    with pytest.raises(ValueError, match="trace_paths\\(\\): faces_uv must lie"):
        run(p=ps._replace(faces_uv=ps.faces_uv + 1000))
    with pytest.raises(ValueError, match="trace_paths\\(\\): uvs must be"):
        run(p=ps._replace(uvs=ps.uvs[:, :1]))
    with pytest.raises(ValueError, match="trace_paths\\(\\): vcol must be"):
        run(p=ps._replace(vcol=torch.ones(3, 3, dtype=DT)))
    with pytest.raises(ValueError, match="trace_paths\\(\\): tex_meta row 3"):
        meta = ps.tex_meta.clone()
        meta[3, 0] = tex.shape[0]  # past the end of the texels
        run(p=ps._replace(tex_meta=meta))
    with pytest.raises(ValueError, match="trace_paths\\(\\): roughness / metallic textures must have 1 channel"):
        meta = ps.tex_meta.clone()
        meta[2, 1], meta[2, 3] = 1, 3  # the roughness texture read as 1 x 3 RGB texels: same size
        run(p=ps._replace(tex_meta=meta))
    with pytest.raises(ValueError, match="replay_paths\\(\\): need asks for the vertex colours"):
        replay_paths(bvh, ps, refl, emis, ls, o, d, None, st, torch.zeros(4, 3, dtype=DT), (False,) * 7 + (True,), None,
                     None, 0, None, rough, metal, None, tex)
    with pytest.raises(ValueError, match="replay_paths\\(\\): need asks for the texels"):
        replay_paths(bvh, ps._replace(tex_slot=None, tex_meta=None, uvs=None, faces_uv=None), refl, emis, ls, o, d,
                     None, st, torch.zeros(4, 3, dtype=DT), (False,) * 6 + (True,), None, None, 0, None, rough, metal)
    L, hit = run()
    assert L.shape == (4, 3) and bool(torch.isfinite(L).all())


@pytest.mark.parametrize("case", ["two_emitters_rr", "ggx_point", "env_mirror"])
def test_sobol_paths_of_kernel_and_torch_path_are_the_same(case, monkeypatch):
    """With ``sampler="sobol"`` the kernel and the torch path draw the same numbers for the same pairs of the
    first two vertices (lumigrad.render._sampler), and pick triangles / cells / lobes the same way: with
    ``max_bounces = 2`` and the kernel's camera rays through the view's shared offsets (the torch path's; by default
    the kernel gives each pixel its own), their paths, hence their images, are the same up to rounding (a per-path
    comparison of the kernel against its reference, where the independent sampler only allows statistical ones).
    Rounding: up to 1e-9 relative, 7e-8 in the environment-map scene (measured)."""
    if case == "two_emitters_rr":
        (shapes, cam), lights = box_scene(second_emitter=True), []
    elif case == "ggx_point":
        (shapes, cam), lights = ggx_box(), [PointLight(_t(0.3, 0.8, 0.5), intensity=1.5)]
    else:
        (shapes, cam), lights = env_scene(), [env_light(rotate=True)]
    st = dict(spp=4, max_bounces=2, rr_depth=1, sampler="sobol")
    own = _renders(shapes, cam, lights, [3], True, **st)
    real = pf._settings
    monkeypatch.setattr(pf, "_settings", lambda sc, chunk: real(sc, chunk)._replace(pixel_offsets=False))
    a = _renders(shapes, cam, lights, [3], True, **st)
    b = _renders(shapes, cam, lights, [3], False, **st)
    assert float(a.mean()) > 0.01
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    c = _renders(shapes, cam, lights, [3], False, **{**st, "sampler": "independent"})
    for other in (c, own):
        assert not torch.allclose(a, other, rtol=1e-3, atol=1e-3)
