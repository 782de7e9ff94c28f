"""Indirect visibility: lumigrad's boundary term vs Mitsuba 3's ``prb_projective``, CRN finite differences and a
closed form (slow; needs mitsuba + libLLVM 19).

Scenes: those of ``tests/trace/test_trace_indirect_edges.py`` (loaded from that file, so both stay one scene): a
wall (8x8 pixels) lit only by a large floor under a directional light from straight above, with a small black
occluder between them, parallel to the light (no shadow on the floor) and out of the camera's view. The image
depends on the occluder only through the occlusion of the floor's light seen from the wall, so the derivative
w.r.t. the occluder's translation is *only* the indirect-visibility boundary term (the interior gradient is exactly
zero), and Lambert's polygon formula gives it in closed form (``_closed_form_grad``).

Scene 2 sees the same wall in a planar coloured mirror, scene 3 in a glossy (GGX) reflector (no closed form:
central differences of Mitsuba's own renders are the reference there).

Compared quantity: the gradient of the image mean w.r.t. the occluder's translation ``(x, y, z)``, a 3-vector,
chosen over gradient images for robustness (per-pixel gradients of an 8x8 image need many more samples per
estimator to be compared at 10 %; they were not compared). Every estimator is averaged over independent seeds and
its standard error checked small enough (< 3 % of the reference's norm) for the test to have power. Criteria
(the issue's): the relative error ``|g - ref| / |ref|`` of the whole vector <= 10 % (stricter than comparing
norms), and the same sign on every axis carrying >= 10 % of the norm.

Findings: Mitsuba's ``prb_projective`` agrees with lumigrad and the closed form in scene 1 (1 %); it gives 0
through a delta mirror (scene 2), and behind a glossy reflector (scene 3) it is 35 % low with its default single
guiding round and right (2.2 %) with 32 rounds; with 3 bounces there it stays wrong even with 32 rounds (recorded
in the docstring of scene 3's test). lumigrad agrees with every referee within 3.3 % in all three scenes.

The lumigrad scene's directional light maps to Mitsuba's ``directional`` emitter with ``irradiance = intensity``
(``lumigrad._mitsuba``); Mitsuba's path image mean matches the closed form (0.1835 vs 0.1825, 4096 spp).
"""
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lumigrad._mitsuba import import_mitsuba, mitsuba_scene
from lumigrad.render.path import render_trace
from lumigrad.scene import Mesh
from lumigrad.scene.materials import GGXMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings

pytestmark = pytest.mark.slow
DT = torch.float64


def _load_scene_module():
    path = Path(__file__).parents[1] / "trace" / "test_trace_indirect_edges.py"
    if str(path.parent) not in sys.path:  # its own imports (_stats) live next to it
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("_indirect_edges_scene", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


IE = _load_scene_module()


@pytest.fixture(scope="module")
def mitsuba():
    try:
        mi, dr = import_mitsuba("llvm_ad_rgb")
    except ImportError as e:
        pytest.skip(f"Mitsuba unavailable: {e}")
    level = mi.log_level()
    mi.set_log_level(mi.LogLevel.Error)  # the sample_border advice: the occluder stays out of view
    yield mi, dr
    mi.set_log_level(level)


def _mitsuba_shapes(mirror):
    """The scene's shapes; the mirror's winding is flipped because Mitsuba's ``conductor`` reflects on the front
    side only (lumigrad's ``MirrorMaterial`` on both) and the scene's mirror shows the camera its back face."""
    shapes = IE._scene(torch.zeros(3, dtype=DT), mirror=mirror)
    if mirror:
        m = shapes[3]
        shapes[3] = Shape(Mesh(m.mesh.verts, m.mesh.faces.flip(-1).contiguous()), m.material)
    return shapes


def mitsuba_mean_grads(mi, dr, shapes, cam, max_bounces, sppi, seeds, guiding_rounds=1):
    """``[len(seeds), 3]``: d(image mean) / d(occluder translation) by ``prb_projective`` (reverse mode, one
    render per seed), ``max_depth = max_bounces + 1``, octree guiding (the default) built in ``guiding_rounds``."""
    integ = {"type": "prb_projective", "max_depth": max_bounces + 1, "sppc": 4, "sppp": 4, "sppi": sppi,
             "guiding_rounds": guiding_rounds}
    sc = mitsuba_scene(mi, shapes, cam, IE.LIGHT, spp=4, integrator=integ)
    params = mi.traverse(sc)
    key = "shape2.vertex_positions"  # the occluder
    init = np.array(params[key])
    out = []
    for seed in seeds:
        theta = [mi.Float(0.0) for _ in range(3)]
        pos = mi.Float(init)
        for axis, t in enumerate(theta):
            dr.enable_grad(t)
            offs = np.zeros_like(init)
            offs[axis::3] = 1.0
            pos = pos + t * mi.Float(offs)
        params[key] = pos
        params.update()
        img = mi.render(sc, params, spp=0, seed=seed + 1)  # spp=0: the integrator's sppc / sppp / sppi
        dr.backward(dr.mean(img, axis=None))
        out.append([float(dr.grad(t)[0]) for t in theta])
    return torch.tensor(out, dtype=DT)


def lumigrad_fd_grads(mean_fn, spp, seeds, h=0.02):
    """``[len(seeds), 3]``: central differences of ``mean_fn(shift, **settings)`` (lumigrad renders), same seed
    at +h and -h (common random numbers), per axis; the step moves the occlusion by ~5 % of the occluder."""
    out = []
    with torch.no_grad():
        for seed in seeds:
            row = []
            for axis in range(3):
                e = torch.zeros(3, dtype=DT)
                e[axis] = h
                f = [mean_fn(s * e, spp=spp, seed=seed, boundary="none") for s in (1, -1)]
                row.append(float(f[0] - f[1]) / (2 * h))
            out.append(row)
    return torch.tensor(out, dtype=DT)


def edge_grads(mean_fn, seeds, samples):
    """``[len(seeds), 3]``: lumigrad's gradient at 1 spp and ``samples`` indirect boundary samples per seed."""
    out = []
    for seed in seeds:
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        out.append(torch.autograd.grad(mean_fn(shift, spp=1, seed=seed, indirect_samples=samples), shift)[0])
    return torch.stack(out)


def mitsuba_fd_grads(mi, shapes, cam, max_bounces, spp, seeds, h=0.02):
    """``[len(seeds), 3]``: central differences of Mitsuba ``path`` renders (same seed at +h and -h), moving the
    occluder's vertices (``shape2``) through ``mi.traverse`` (no scene reload)."""
    sc = mitsuba_scene(mi, shapes, cam, IE.LIGHT, spp=4, integrator={"type": "path", "max_depth": max_bounces + 1})
    params = mi.traverse(sc)
    key = "shape2.vertex_positions"
    init = np.array(params[key])
    out = []
    for seed in seeds:
        row = []
        for axis in range(3):
            f = []
            for sign in (1, -1):
                pos = init.copy()
                pos[axis::3] += sign * h
                params[key] = mi.Float(pos)
                params.update()
                f.append(float(np.asarray(mi.render(sc, spp=spp, seed=seed)).mean(dtype=np.float64)))
            row.append((f[0] - f[1]) / (2 * h))
        out.append(row)
    return torch.tensor(out, dtype=DT)


def _summary(grads):
    return grads.mean(0), grads.std(0) / grads.shape[0] ** 0.5


def _assert_agree(name, grads, truth, max_rel_se=0.03):
    """Vector relative error <= 10 %, signs of the significant axes, and standard errors small enough that
    the 10 % bound tests the estimator, not the noise."""
    mean, se = _summary(grads)
    norm = float(truth.norm())
    rel = float((mean - truth).norm()) / norm
    assert float(se.norm()) < max_rel_se * norm, (name, mean, se, truth)
    sig = truth.abs() >= 0.1 * norm
    assert bool((torch.sign(mean[sig]) == torch.sign(truth[sig])).all()), (name, mean, truth)
    assert rel <= 0.10, (name, rel, mean, se, truth)
    return rel


def _report(truth, **runs):
    """Print each estimator's mean, standard error, relative error and seconds (``pytest -s``)."""
    print(f"\nreference {truth.numpy().round(5)}")
    for name, (g, seconds) in runs.items():
        mean, se = g.mean(0), (g.std(0) / g.shape[0] ** 0.5 if g.shape[0] > 1 else torch.zeros(3, dtype=DT))
        rel = float((mean - truth).norm() / truth.norm())
        print(f"{name}: {mean.numpy().round(5)} +- {se.numpy().round(5)} rel {rel:.4f} {seconds:.1f} s")


def _timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def test_occluded_indirect_light_vs_mitsuba_fd_closed_form(mitsuba):
    """Scene 1 (``max_bounces = 2``): d(mean)/d(occluder translation), image mean 0.1825.

    Measured (this test's settings, ``pytest -s`` prints them): mean +- standard error over the seeds; relative
    error ``|g - truth| / |truth|`` (|truth| = 0.0527); seconds on the shared 2-core VM:

    - closed form (Lambert polygons): (0.01545, -0.04777, -0.01610)
    - lumigrad edge term, 64 seeds x 16384 samples: (0.01544, -0.04793, -0.01623) +- 0.0006 per axis;
      0.4 %; 2.6 s
    - lumigrad CRN central differences (h = 0.02), 4 seeds x 16384 spp: (0.01639, -0.04780, -0.01692)
      +- (0.0003, 0.0001, 0.0003); 2.4 %; 10 s (once with 4 x 32768 spp: (0.0153, -0.0481, -0.0165); ~1 %; 24 s)
    - Mitsuba prb_projective, sppi 512, sppc = sppp = 4, 4 seeds: (0.01500, -0.04806, -0.01596)
      +- (0.0004, 0.0006, 0.0005); 1.0 %; 16 s (29 s with a cold Dr.Jit kernel cache)

    lumigrad's edge term vs Mitsuba: 1.0 % apart. All estimators agree with the closed form and with each other
    within noise (FD's 4-seed standard errors are themselves rough): no discrepancy to explain. Mitsuba is
    deterministic per seed on the LLVM backend (two runs gave the same figures).
    """
    mi, dr = mitsuba
    truth = IE._closed_form_grad()
    edge, t_edge = _timed(IE._boundary_grads, range(64), 16384)
    fd, t_fd = _timed(lumigrad_fd_grads, IE._render_mean, 16384, range(4))
    mits, t_mi = _timed(mitsuba_mean_grads, mi, dr, _mitsuba_shapes(False), IE.CAM, 2, 512, range(4))
    _report(truth, edge=(edge, t_edge), fd=(fd, t_fd), mitsuba=(mits, t_mi))
    for name, g in (("lumigrad edge", edge), ("lumigrad FD", fd), ("Mitsuba prb_projective", mits)):
        _assert_agree(name, g, truth)
    _assert_agree("lumigrad edge vs Mitsuba", edge, mits.mean(0), max_rel_se=0.05)


def test_occluded_indirect_light_in_a_mirror_vs_fd_closed_form(mitsuba):
    """Scene 2 (``max_bounces = 3``): the same wall seen in a planar coloured mirror (reflectance (0.9, 0.6, 0.3):
    the image mean is 0.6 of the wall seen by the mirrored camera, whose closed form is the truth).

    Mitsuba: the mirror is ``conductor`` with ``material = "none"`` and ``specular_reflectance`` = the reflectance
    (a perfect mirror; front side only, hence the flipped winding). Its ``path`` image mean is 0.1098 (lumigrad's
    closed form 0.1095), but ``prb_projective`` gives exactly 0 for this gradient (``sppi`` 256 and 1024 with
    ``guiding = "octree"``, which warns "No valid indirect silhouette samples were found in the scene", and 1024
    with ``guiding = "none"``). Why: its ``sample_importance`` joins a boundary segment to the sensor only from
    vertices with a smooth BSDF, by a straight sensor connection, so the path camera -> delta mirror -> wall has
    none. A near-mirror ``roughconductor`` (``alpha = 0.02``, image mean 0.1082) does not rescue it: 3 seeds
    gave (0.0003, 0.0013, -0.0001) +- (0.0003, 0.0016, 0.0001) at sppi 512 and (0.0006, 0.0002, -0.0007) at
    sppi 2048, i.e. ~0 (23 s per 3 seeds). So lumigrad is checked against CRN finite differences and the closed
    form only, and the test asserts Mitsuba's zero (if a later Mitsuba differentiates through the mirror,
    compare with it here).

    Measured as in scene 1 (|truth| = 0.0319):

    - closed form x 0.6: (0.00929, -0.02914, -0.00915)
    - lumigrad edge term, 64 seeds x 16384 samples: (0.00912, -0.02945, -0.00911) +- (0.0003, 0.0004, 0.0003);
      1.1 %; 4.4 s
    - lumigrad CRN central differences, 4 seeds x 16384 spp: (0.00962, -0.02985, -0.00984) +- 0.0002 per axis;
      3.3 %; 13 s (once with 4 x 32768 spp: (0.0093, -0.0293, -0.0091); < 1 %; 27 s)
    - Mitsuba prb_projective, sppi 512: (0, 0, 0); 100 %; 0.2 s (4 s cold)
    """
    mi, dr = mitsuba
    truth = IE._closed_form_grad(IE.CAM_V) * 0.6
    edge, t_edge = _timed(IE._boundary_grads, range(64), 16384, mirror=True)
    fd, t_fd = _timed(lumigrad_fd_grads, lambda x, **kw: IE._render_mean(x, True, **kw), 16384, range(4))
    mits, t_mi = _timed(mitsuba_mean_grads, mi, dr, _mitsuba_shapes(True), IE.CAM_M, 3, 512, range(1))
    _report(truth, edge=(edge, t_edge), fd=(fd, t_fd), mitsuba=(mits, t_mi))
    for name, g in (("lumigrad edge", edge), ("lumigrad FD", fd)):
        _assert_agree(name, g, truth)
    assert float(mits.abs().max()) == 0.0, ("Mitsuba now differentiates through the mirror: compare with it", mits)


GLOSSY_ROUGHNESS = 0.3  # Mitsuba roughconductor (ggx, material none) with alpha = 0.09


def _glossy_shapes(shift):
    """Scene 2 with a glossy metal (GGX, roughness 0.3, base colour 1) in the mirror's place, facing the wall in
    both renderers (flipped winding): its blurry reflection shows the wall, the floor and the occluder itself."""
    shapes = IE._scene(shift, mirror=True)
    m = shapes[3]
    shapes[3] = Shape(Mesh(m.mesh.verts, m.mesh.faces.flip(-1).contiguous()), GGXMaterial(1.0, GLOSSY_ROUGHNESS, 1.0))
    return shapes


def _glossy_mean(shift, max_bounces=2, **kw):
    st = TraceSettings(max_bounces=max_bounces, rr_depth=9, chunk_rays=1 << 18, **kw)
    return render_trace(_glossy_shapes(shift), IE.CAM_M, IE.LIGHT, st).image.mean()


def test_occluder_seen_in_a_glossy_reflector_vs_fd(mitsuba):
    """Scene 3 (``max_bounces = 2``, image mean 0.193 in lumigrad, 0.194 in Mitsuba): the camera of scene 2 sees
    a glossy reflector; the occluder, seen in the blurry reflection against the lit floor (the wall is dark with
    one bounce), moves. The derivative is the boundary term at the first path vertex (on the reflector), for
    silhouettes seen from there. No closed form: the referees are CRN central differences of lumigrad *and* of
    Mitsuba ``path`` renders (independent of lumigrad's renderer).

    Measured (mean +- standard error, relative error vs Mitsuba's FD):

    - Mitsuba CRN FD (the reference), 8 seeds x 16384 spp: (0.00127, 0.0283, -0.00655)
      +- (0.00009, 0.0003, 0.00014); 22-24 s (once 16 seeds x 65536 spp: (0.0013, 0.0286, -0.0063)
      +- (0.00005, 0.00014, 0.00008), 74 s)
    - lumigrad edge term, 64 seeds x 16384 samples: (0.0011, 0.0291, -0.0065) +- (0.0002, 0.0002, 0.00005);
      2.9 % (1.9 % vs the 65536-spp FD); 4.5-6.6 s
    - lumigrad CRN FD, 4 seeds x 16384 spp: (0.0013, 0.0290, -0.0062) +- (0.0001, 0.0005, 0.00015); 2.6 %;
      17 s
    - Mitsuba prb_projective (octree guiding, the default), sppi 2048 x 8 seeds: (0.0002, 0.0188, -0.0042)
      +- (0.0003, 0.0007, 0.0001): 35 % low, 15 standard errors off its own FD; guiding "grid" (4 seeds):
      (-0.00001, 0.00016, -0.00004), ~0; guiding "none" (unguided), sppi 8192 x 32 seeds (19 s):
      (0.0014, 0.0265, -0.0059) +- (0.0011, 0.0019, 0.0004), consistent with FD but noisy;
      octree guiding with 8 rounds instead of 1: (0.0014, 0.0229, -0.0051), 20 % low; with 32 rounds:
      (0.0010, 0.0280, -0.0062) +- (0.0001, 0.0003, 0.0001), 2.3 % (4 seeds, 29 s). So Mitsuba's guided
      indirect-silhouette sampling is biased here with its default single guiding round (presumably the
      structure, built from too few samples, leaves out part of the boundary) and converges as the rounds grow;
      ``test_glossy_reflector_vs_mitsuba_well_guided`` compares with 32 rounds.

    With ``max_bounces = 3`` (the wall lit too; the occlusion seen from the wall adds a term of opposite sign,
    so the total is small): lumigrad edge 512 seeds x 16384: (0.0089, 0.0025, -0.0064) +- 0.0002 (59 s);
    lumigrad CRN FD 16 x 32768: (0.0088, 0.0023, -0.0066) +- (0.0001, 0.0002, 0.0001) (110 s); Mitsuba CRN FD
    16 x 65536: (0.0088, 0.0025, -0.0064) +- (0.0001, 0.0001, 0.0001) (127 s): lumigrad within 1 % of Mitsuba's
    FD. Mitsuba prb_projective (octree, sppi 2048 x 8): (0.0007, 0.0133, -0.0036) +- (0.0006, 0.0011, 0.0003):
    wrong (y 5x too large); unguided, sppi 8192 x 32 (22 s): (0.0045, -0.0033, -0.0066) +- (0.0026, 0.0035,
    0.0028), consistent with FD within 2 standard errors; octree with 32 guiding rounds, sppi 2048 x 8 (74 s):
    (0.0047, 0.0171, -0.0062) +- (0.0005, 0.0005, 0.0003), still wrong (y 7x too large; 20 standard errors off
    its own FD): more rounds do not fix the 3-bounce case, and we did not find the cause in Mitsuba. lumigrad
    agrees with both FDs. Not run here: the 2 % precision needs ~500 lumigrad seeds (the two vertices' terms
    nearly cancel).
    """
    mi, _ = mitsuba
    ref, t_ref = _timed(mitsuba_fd_grads, mi, _glossy_shapes(torch.zeros(3, dtype=DT)), IE.CAM_M, 2, 16384, range(8))
    edge, t_edge = _timed(edge_grads, _glossy_mean, range(64), 16384)
    fd, t_fd = _timed(lumigrad_fd_grads, _glossy_mean, 16384, range(4))
    truth = ref.mean(0)
    _report(truth, mitsuba_fd=(ref, t_ref), edge=(edge, t_edge), fd=(fd, t_fd))
    _assert_agree("Mitsuba FD (noise)", ref, truth)
    for name, g in (("lumigrad edge", edge), ("lumigrad FD", fd)):
        _assert_agree(name, g, truth)


def test_glossy_reflector_vs_mitsuba_well_guided(mitsuba):
    """Scene 3 (``max_bounces = 2``) against Mitsuba's ``prb_projective`` with ``guiding_rounds = 32`` (with the
    default single round it is 35 % low here, see above): lumigrad's edge term vs Mitsuba's AD, both checked
    against the reference of the test above (Mitsuba CRN FD, 16 seeds x 65536 spp, measured once:
    (0.0013, 0.0286, -0.0063) +- (0.00005, 0.00014, 0.00008)).

    Measured: Mitsuba sppi 2048, 4 seeds: (0.00102, 0.02802, -0.00626) +- (0.0002, 0.0002, 0.00005), 2.2 % from
    the FD reference, 36 s (JIT included); lumigrad edge term 64 x 16384 (0.0011, 0.0291, -0.0065), 2.0 % from it,
    4.4 s; the two 4 % apart.
    """
    mi, dr = mitsuba
    fd_ref = torch.tensor([0.0013, 0.0286, -0.0063], dtype=DT)
    edge, t_edge = _timed(edge_grads, _glossy_mean, range(64), 16384)
    mits, t_mi = _timed(mitsuba_mean_grads, mi, dr, _glossy_shapes(torch.zeros(3, dtype=DT)), IE.CAM_M, 2, 2048,
                        range(4), guiding_rounds=32)
    _report(fd_ref, edge=(edge, t_edge), mitsuba_32_rounds=(mits, t_mi))
    _assert_agree("Mitsuba prb_projective (32 guiding rounds)", mits, fd_ref)
    _assert_agree("lumigrad edge vs Mitsuba", edge, mits.mean(0))
