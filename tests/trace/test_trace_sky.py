"""Ambient and SH environment lights in path tracing (``max_bounces > 1``): the torch path and the fused kernel.

With ``max_bounces > 1`` an :class:`AmbientLight` (constant radiance) and an :class:`SHEnvironmentLight` (radiance
``sum_lm c_lm Y_lm(w)``) are a distant environment: one cosine light sample per vertex and the BSDF rays that
escape see it, MIS-weighted (:func:`lumigrad.render.path._sky_radiance`, ``_sky_sample``); the fused kernel (:mod:`lumigrad.render._path_fused`) folds both
into one set of SH rows. Patterns of ``test_path_fused.py``: z-scores over seeds between the kernel and the torch
path, the kernel's gradients against central differences of its own forward (float64, Russian roulette off).
"""
import math
import types

import pytest
import torch
from test_path_fused import _grads_by_seed, _images_agree, _renders, _t, _z, box_scene, ggx_box

import lumigrad.render._path_fused as pf
from lumigrad.geometry.primitives import plane
from lumigrad.ops.path_trace import PathSettings, replay_paths, trace_paths
from lumigrad.render.path import TraceSettings, _Scene, _sky_radiance, prepare_trace, render_trace
from lumigrad.scene import Mesh
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import AmbientLight, PointLight, SHEnvironmentLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape
from lumigrad.shade.lighting import _sh_irradiance

DT = torch.float64


def sky_sh(order=2):
    """A positive, asymmetric environment (brighter towards +x +y, tinted) projected on SH."""
    tint = torch.tensor([1.0, 0.6, 0.3], dtype=DT)
    return SHEnvironmentLight.from_function(
        lambda d: 1.0 + 0.8 * d[:, [1, 0, 2]].clamp_min(0) ** 2 * tint + 0.3 * d, order=order, dtype=DT)


def test_sky_radiance_cosine_integral_is_sh_irradiance():
    """The convention check: the cosine-weighted hemisphere integral of the radiance the tracer sees (Monte Carlo,
    uniform directions) equals ``shade``'s analytic irradiance ``_sh_irradiance`` (same basis, same sign)."""
    sh = sky_sh(order=3)
    sc = types.SimpleNamespace(ambient=[], sh=[sh], dtype=DT)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200_000, 3, dtype=DT, generator=g)
    w = w / w.norm(dim=1, keepdim=True)
    L = _sky_radiance(sc, w)
    for n in ([0.3, 0.8, -0.2], [0.0, 0.0, -1.0], [-0.7, 0.1, 0.5]):
        n = torch.tensor(n, dtype=DT)
        n = n / n.norm()
        c = w @ n
        terms = L * (2 * math.pi * 2 * c.clamp_min(0))[:, None]  # uniform sphere density 1 / (4 pi), half of it above
        est, se = terms.mean(0), terms.std(0) / math.sqrt(w.shape[0])
        exact = _sh_irradiance(sh.coeffs, n[None])[0]
        assert bool(((est - exact).abs() < 4 * se).all()), (est, exact, se)
        assert float(se.max()) < 0.01 * float(exact.min())  # the test can tell a wrong basis


def open_quad(occluder=False, res=4):
    """An upward Lambert quad seen from above (every camera ray hits it); optionally a black wall beside the view
    that hides part of the quad's sky (occlusion only: it reflects nothing)."""
    v, f = plane(2.0, dtype=DT)
    shapes = [Shape(Mesh(v, f), LambertMaterial(_t(0.7, 0.5, 0.3)))]
    if occluder:
        wall = torch.tensor([[0.6, 0.0, -2.0], [0.6, 0.0, 2.0], [0.6, 2.0, 2.0], [0.6, 2.0, -2.0]], dtype=DT)
        shapes.append(Shape(Mesh(wall, torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)), LambertMaterial(0.0)))
    cam = Camera.look_at(_t(0.0, 3.0, 0.0), _t(0.0, 0.0, 0.0), up=(0.0, 0.0, -1.0), width=res, height=res,
                         fov_y_deg=12.0)
    return shapes, cam


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("light", ["sh", "ambient"])
def test_open_quad_converges_to_analytic_and_occlusion_darkens(light, fused):
    """Nothing hides the sky and nothing interreflects: the image is ``albedo / pi * E(n)`` (SH; ``E`` as ``shade``
    computes it) or ``albedo * colour`` (ambient); a black wall beside the quad makes it darker."""
    lt = sky_sh() if light == "sh" else AmbientLight(_t(0.4, 0.8, 1.2))
    shapes, cam = open_quad()
    alb = shapes[0].material.albedo
    exact = alb / math.pi * _sh_irradiance(lt.coeffs, _t(0.0, 1.0, 0.0)[None])[0] if light == "sh" else alb * lt.color
    imgs = _renders(shapes, cam, [lt], range(4), fused, spp=64, max_bounces=2)
    px = imgs.reshape(-1, 3)
    mean, se = px.mean(0), px.std(0) / math.sqrt(px.shape[0])
    if light == "ambient":  # a constant sky: every cosine-sampled ray sees the same radiance
        torch.testing.assert_close(mean, exact, rtol=1e-9, atol=0)
    else:
        assert bool(((mean - exact).abs() < 4 * se).all()), (mean, exact, se)
    dark = _renders(*open_quad(occluder=True), [lt], range(4), fused, spp=64, max_bounces=2).reshape(-1, 3).mean(0)
    assert bool((dark < exact - 8 * se - 0.01 * exact).all()) and bool((dark > 0.5 * exact).all()), (dark, exact)


@pytest.mark.parametrize("fused", [False, True])
def test_negative_sh_radiance_is_not_clamped(fused):
    """SH radiance may be negative (a truncated projection rings); ``shade`` keeps negative irradiance, and so do
    both renderers: the negated sky gives the negated image."""
    lt = sky_sh()
    shapes, cam = open_quad()
    exact = shapes[0].material.albedo / math.pi * _sh_irradiance(lt.coeffs, _t(0.0, 1.0, 0.0)[None])[0]
    px = _renders(shapes, cam, [SHEnvironmentLight(-lt.coeffs)], range(2), fused, spp=64, max_bounces=2).reshape(-1, 3)
    mean, se = px.mean(0), px.std(0) / math.sqrt(px.shape[0])
    assert bool(((mean + exact).abs() < 4 * se).all()) and bool((mean < 0).all()), (mean, exact, se)


def _sky_loss(coeffs, amb, alb=None, refl=None, seed=0, res=4, spp=4, rr=9, replay=False, fused=True):
    """A weighted sum of the open box's image (no ceiling, mirror quad) lit by an SH and an ambient light; the
    floor's albedo and the mirror's reflectance have a zero channel (path replay's 0 / 0)."""
    alb = _t(0.7, 0.0, 0.5) if alb is None else alb
    refl = _t(0.9, 0.8, 0.0) if refl is None else refl
    shapes, cam = box_scene(light=False, mirror=refl, alb=alb, res=res)
    shapes = shapes[:1] + shapes[2:]  # no ceiling: the sky comes in
    st = TraceSettings(spp=spp, max_bounces=3, rr_depth=rr, seed=seed, replay=replay, boundary="none",
                       decorrelate=False)
    real = pf.fused_path_ok
    if not fused:
        pf.fused_path_ok = lambda sc: False
    try:
        img = render_trace(shapes, cam, [SHEnvironmentLight(coeffs), AmbientLight(amb)], st).image
    finally:
        pf.fused_path_ok = real
    w = torch.linspace(0.5, 1.5, img.numel(), dtype=DT).reshape(img.shape)
    return (img * w).sum()


def _sky_params(reflectances=False):
    p = [sky_sh().coeffs.clone(), _t(0.2, 0.1, 0.3)] + ([_t(0.7, 0.0, 0.5), _t(0.9, 0.8, 0.0)] if reflectances else [])
    return [x.requires_grad_(True) for x in p]


@pytest.mark.parametrize("fused", [False, True])
def test_sky_gradients_match_finite_differences(fused):
    """Gradients w.r.t. the SH coefficients and the ambient colour (torch path: autograd; kernel: path replay) and,
    for the kernel, the albedo and mirror reflectance (zero channels included) of sky-lit paths vs central
    differences of the same renderer's forward (RR off: no sampling decision depends on them)."""
    params = _sky_params(reflectances=fused)
    assert torch.autograd.gradcheck(lambda *p: _sky_loss(*p, fused=fused), params, eps=1e-6, atol=1e-7,
                                    rtol=1e-6, fast_mode=not fused)
    g = torch.autograd.grad(_sky_loss(*params, fused=fused), params)
    assert float(g[0][4:].abs().sum()) > 1e-2 and float(g[1].abs().min()) > 1e-2  # band 2 and every channel
    if fused:  # the zero channels' gradients (the first zero factor's record) are not trivial
        assert float(g[2][1]) > 1e-3 and float(g[3][2]) > 1e-3


def test_sky_gradients_agree_with_torch_path():
    """Kernel vs torch path gradients w.r.t. the SH coefficients and the ambient colour (RR on) within MC noise."""
    def of_seed(s):
        params = _sky_params()
        return torch.autograd.grad(_sky_loss(*params, seed=s, rr=2), params)

    a, b = _grads_by_seed(True, range(8), of_seed), _grads_by_seed(False, range(100, 108), of_seed)
    assert float(a.abs().mean()) > 0.05
    z = _z(a, b)
    assert float(z.abs().max()) < 5.0, z


@pytest.mark.parametrize("reflectances", [False, True])
def test_sky_replay_equals_kept_radiance(reflectances, monkeypatch):
    """With TraceSettings.replay (radiance recomputed) the same gradients as with the radiance kept; with only the
    sky's rows needing gradients and no replay, the forward keeps each pixel's d image / d sky instead and no
    replay runs: the same gradients again, and they match central differences of the forward."""
    import lumigrad.render._path_fused as pfm

    params = _sky_params(reflectances)
    calls = []
    real = pfm.replay_paths
    monkeypatch.setattr(pfm, "replay_paths", lambda *a, **k: calls.append(1) or real(*a, **k))
    g1 = torch.autograd.grad(_sky_loss(*params, replay=False), params)
    assert bool(calls) == reflectances  # sky alone: no replay
    g2 = torch.autograd.grad(_sky_loss(*params, replay=True), params)
    assert calls
    assert float(g1[0].abs().sum()) > 0.1
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if not reflectances:
        assert torch.autograd.gradcheck(lambda *p: _sky_loss(*p), params, eps=1e-6, atol=1e-7, rtol=1e-6)


SKY_CASES = {
    "lambert_mirror_rr": (lambda: box_scene(mirror=_t(0.9, 0.8, 0.7), light=False), dict(max_bounces=3, rr_depth=2)),
    "ggx_emitter_point_no_mis": (lambda: ggx_box(), dict(max_bounces=2, mis=False)),
}


@pytest.mark.parametrize("case", list(SKY_CASES))
def test_sky_images_agree_with_torch_path(case):
    make, st = SKY_CASES[case]
    shapes, cam = make()
    shapes = shapes[:1] + shapes[2:]  # no ceiling
    lights = [sky_sh(order=3), AmbientLight(_t(0.1, 0.2, 0.3))]
    if case.startswith("ggx"):
        lights.append(PointLight(_t(0.3, 0.8, 0.5), intensity=1.5))
    _images_agree(shapes, cam, lights, st, min_mean=0.05)


def test_textured_sky_gradients_match_finite_differences():
    """The textured kernel variant with a sky (its own compile): texel and SH-row gradients of the replay vs central
    differences of its forward (float64, RR off); the floor texture's zero green channel gets gradients from
    sky-lit paths (the first zero factor's record at a texel)."""
    from test_path_fused import tex_box, tex_params

    shapes, cam = tex_box(*(t.detach() for t in tex_params()), res=4)
    shapes = shapes[:1] + shapes[2:]  # no ceiling
    spp = 4
    sc = _Scene(shapes, cam, [sky_sh(), AmbientLight(_t(0.1, 0.2, 0.3))],
                TraceSettings(spp=spp, max_bounces=3, rr_depth=9), prepare_trace(shapes))
    assert pf.fused_path_ok(sc)
    args = (sc.accel.bvh, pf._path_scene(sc))
    refl, emis, ls, rough, metal, _, tex, _, sky = (x.detach() for x in pf._rows(sc))
    st, camera, count = pf._settings(sc, 0), pf._camera(sc, 0), 16 * spp
    gpix = torch.linspace(0.5, 1.5, 16 * 3, dtype=DT).reshape(16, 3)

    def f(t, k):
        L = trace_paths(*args, refl, emis, ls, None, None, None, st, camera, count, rough, metal, None, t, k)[0]
        return float((L.reshape(16, spp, 3).mean(1) * gpix).sum())

    grads = replay_paths(*args, refl, emis, ls, None, None, None, st, gpix, (False,) * 6 + (True, False, True), camera,
                         count, 0, None, rough, metal, None, tex, sky)
    g_tex, g_sky = grads[6], grads[8]
    green = int(pf._path_scene(sc).tex_meta[0, 0]) + 3 * torch.arange(20) + 1  # the floor's zero channel
    assert float(g_tex[green].abs().sum()) > 1e-3
    h = 1e-6
    for x, g, picks in ((tex, g_tex, torch.cat([torch.topk(g_tex.abs(), 4).indices, green[:2]])),
                        (sky, g_sky, torch.tensor([0, 5, 3 * 7 + 2]))):
        for k in picks.tolist():
            e = torch.zeros_like(x).reshape(-1)
            e[k] = h
            e = e.reshape(x.shape)
            if x is tex:
                fd = (f(tex + e, sky) - f(tex - e, sky)) / (2 * h)
            else:
                fd = (f(tex, sky + e) - f(tex, sky - e)) / (2 * h)
            assert abs(float(g.reshape(-1)[k]) - fd) <= 1e-6 * abs(fd) + 1e-8, (k, float(g.reshape(-1)[k]), fd)


def test_sky_bad_inputs():
    shapes, cam = box_scene(light=False)
    sc = _Scene(shapes, cam, [sky_sh()], TraceSettings(max_bounces=2), prepare_trace(shapes))
    ps = pf._path_scene(sc)
    refl, emis, ls = (x.detach() for x in pf._rows(sc)[:3])
    sky = pf._rows(sc)[8].detach()
    assert sky.shape == (9, 3) and ps.sky_norm.shape == (9,)
    o, d = torch.zeros(4, 3, dtype=DT), torch.tensor([[0.0, 0.0, -1.0]] * 4, dtype=DT)
    st = PathSettings(sc.eps, True, 2, 3, True, 0, (0.0, 0.0, 0.0))
    bvh = sc.accel.bvh

    def run(p=ps, k=sky):
        return trace_paths(bvh, p, refl, emis, ls, o, d, None, st, None, None, None, None, None, None, k)

    with pytest.raises(ValueError, match="trace_paths\\(\\): give sky"):
        run(k=None)
    with pytest.raises(ValueError, match="trace_paths\\(\\): give sky"):
        run(p=ps._replace(sky_norm=None))
    with pytest.raises(ValueError, match="trace_paths\\(\\): sky must be"):
        run(k=sky[:8])  # not (order + 1)^2 rows
    with pytest.raises(ValueError, match="trace_paths\\(\\): sky must be"):
        run(k=sky.float())
    with pytest.raises(ValueError, match="trace_paths\\(\\): sky_norm must be"):
        run(p=ps._replace(sky_norm=ps.sky_norm[:4]))
    with pytest.raises(ValueError, match="replay_paths\\(\\): need asks for the sky"):
        replay_paths(bvh, ps._replace(sky_norm=None), refl, emis, ls, o, d, None, st, torch.zeros(4, 3, dtype=DT),
                     (False,) * 8 + (True,))
    with pytest.raises(ValueError, match="replay_paths\\(\\): need must hold"):
        replay_paths(bvh, ps, refl, emis, ls, o, d, None, st, torch.zeros(4, 3, dtype=DT), (False,) * 10,
                     sky=sky)
    with pytest.raises(ValueError, match="trace_paths\\(\\): sky_moments must be"):
        trace_paths(bvh, ps, refl, emis, ls, o, d, None, st, None, None, None, None, None, None, sky,
                    torch.zeros(4, 26, dtype=DT))
    L, hit = run()
    assert L.shape == (4, 3) and bool(torch.isfinite(L).all())


def test_sky_predicate_scope_and_variants(monkeypatch):
    """SH / ambient scenes with max_bounces > 1 take the fused kernel (its sky variant), also with gradients on
    the coefficients and colours; with max_bounces == 1 (analytic shading), a geometric gradient or a forward-mode
    tangent on them they do not; scenes without them keep the variant they ran before (no sky code)."""
    import torch.autograd.forward_ad as fwAD

    import lumigrad.ops.path_trace as pt

    shapes, cam = box_scene()
    coeffs = sky_sh().coeffs.clone().requires_grad_(True)
    lights = [SHEnvironmentLight(coeffs), AmbientLight(_t(0.1, 0.2, 0.3).requires_grad_(True))]

    def ok(lt, sh=shapes, **kw):
        return pf.fused_path_ok(_Scene(sh, cam, lt, TraceSettings(**kw), prepare_trace(sh)))

    assert ok(lights, max_bounces=3) and ok(lights[1:], max_bounces=2) and ok(lights[:1], max_bounces=2)
    assert not ok(lights, max_bounces=1) and not ok(lights[1:], max_bounces=1)
    v = shapes[0].mesh.verts.clone().requires_grad_(True)
    assert not ok(lights, [Shape(Mesh(v, shapes[0].mesh.faces), shapes[0].material)] + shapes[1:], max_bounces=3)
    with fwAD.dual_level():
        dual = fwAD.make_dual(coeffs.detach(), torch.ones_like(coeffs))
        assert not ok([SHEnvironmentLight(dual)], max_bounces=3)
    chosen = []
    real = pt._k.path_kernel
    monkeypatch.setattr(pt._k, "path_kernel", lambda *a: chosen.append(a) or real(*a))
    st = TraceSettings(spp=1, max_bounces=2, decorrelate=False)
    render_trace(shapes, cam.__class__.look_at(_t(0, 0, 3.5), _t(0, 0, 0), width=2, height=2), [], st)
    render_trace(shapes, cam.__class__.look_at(_t(0, 0, 3.5), _t(0, 0, 0), width=2, height=2), lights[1:], st)
    assert chosen == [(False, False, False, False), (False, False, False, True)]  # lean, then the sky variant
    assert real(*chosen[0]) is pt._k._KERNELS[(False, False, False, False)]  # the kernel object of before


def test_indirect_edge_incoming_sees_sky():
    """The indirect boundary term's incoming radiance (``_trace_edges_indirect._incoming``): rays that escape see
    the ambient and SH sky (and nothing else), rays that hit see what the next hit reflects."""
    from lumigrad.render._trace_edges_indirect import _incoming

    shapes, cam = open_quad(occluder=True)
    lights = [sky_sh(), AmbientLight(_t(0.1, 0.2, 0.3))]
    sc = _Scene(shapes, cam, lights, TraceSettings(max_bounces=2), prepare_trace(shapes))
    o = torch.tensor([[0.0, 0.5, 0.0]] * 3, dtype=DT)
    d = torch.tensor([[0.0, 1.0, 0.0], [-0.6, 0.8, 0.0], [1.0, 0.0, 0.0]], dtype=DT)  # sky, sky, the black wall
    for direct in (False, True):  # the first vertex's and the later vertices' incoming radiance
        L = _incoming(sc, o, d, bounces=1, direct=torch.full((3,), direct))[0]
        torch.testing.assert_close(L[:2], _sky_radiance(sc, d[:2]), rtol=1e-12, atol=0)
        assert float(L[:2].min()) > 0.1 and float(L[2].abs().max()) == 0.0


def test_indirect_edge_incoming_keeps_the_renders_sky_mode():
    """With ``max_bounces = 2`` the incoming radiance's one-bounce copy must still treat the sky as a shadowed
    environment, as the render does at its last vertex, not shade it analytically (``render_mesh``'s one-bounce
    mode): inside a closed box with inward normals the walls see no sky at all."""
    from lumigrad.geometry.primitives import cube
    from lumigrad.render._trace_edges_indirect import _incoming

    v, f = cube(2.0, dtype=DT)
    v = v[f.flip(1).long()].reshape(-1, 3)  # normals inward, flat (no shared corners: shading normals = face normals)
    shapes = [Shape(Mesh(v, torch.arange(v.shape[0], dtype=torch.int32).reshape(-1, 3)), LambertMaterial(0.8))]
    cam = Camera.look_at(_t(0.0, 0.0, 0.5), _t(0.0, 0.0, -1.0), width=4, height=4, fov_y_deg=40.0)
    sc = _Scene(shapes, cam, [AmbientLight(_t(0.5, 0.5, 0.5))], TraceSettings(max_bounces=2, seed=3),
                prepare_trace(shapes))
    o = torch.zeros(64, 3, dtype=DT)
    d = torch.nn.functional.normalize(torch.randn(64, 3, dtype=DT, generator=torch.Generator().manual_seed(0)), dim=-1)
    for direct in (False, True):
        assert float(_incoming(sc, o, d, bounces=1, direct=torch.full((64,), direct))[0].abs().max()) == 0.0
