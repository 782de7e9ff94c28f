"""Boundary term of occluded indirect light (lumigrad.render._trace_edges_indirect) against a closed form.

Scene: a wall (z = -1, facing +z) seen by the camera, lit only indirectly by a large floor under a
directional light from straight above (the wall is parallel to the light), and a small black vertical
occluder between floor and wall, parallel to the light (so it casts no shadow on the floor) and out
of the camera's view. Every floor point then reflects the same radiance ``L_f``, so the wall's
radiance at ``x`` is ``(a_wall / pi) L_f (PSA(floor) - PSA(occluder))`` with ``PSA`` the projected
solid angle of a polygon seen from ``x`` (Lambert's formula), and the derivative of the image w.r.t.
the occluder's translation comes *only* from the moving occlusion boundary: interior gradients are
exactly zero here.
"""
import math

import pytest
import torch

from lumigrad.render.path import _camera_rays, render_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.lights import DirectionalLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import MirrorMaterial, Shape, TraceSettings
from _stats import check_within_standard_errors, projected_solid_angle

DT = torch.float64
A_FLOOR, A_WALL, E = 0.8, 0.7, 3.0
MIRROR_RGB = (0.9, 0.6, 0.3)  # the image mean through the mirror is 0.6 of the wall's


def _quad(c, u, v):
    c, u, v = (torch.tensor(x, dtype=DT) for x in (c, u, v))
    return torch.stack([c - u - v, c + u - v, c + u + v, c - u + v]), torch.tensor([[0, 1, 2], [0, 2, 3]],
                                                                                   dtype=torch.int32)


def _scene(shift, mirror=False):
    floor = _quad((0, 0, 1), (3, 0, 0), (0, 0, -2))  # y = 0, x in [-3, 3], z in [-1, 3]: catches every occluded ray
    wall = _quad((0, 0.75, -1), (1, 0, 0), (0, 0.75, 0))
    ov, of = _quad((0.25, 0.21, -0.6), (0.2, 0, 0), (0, 0.19, 0))
    shapes = [Shape(Mesh(*floor), LambertMaterial(A_FLOOR)), Shape(Mesh(*wall), LambertMaterial(A_WALL)),
              Shape(Mesh(ov + shift, of), LambertMaterial(0.0))]
    if mirror:  # beyond the floor's far end, facing the wall: neither shadows the floor nor hides it from the wall
        shapes.append(Shape(Mesh(*_quad((0, 0.9, 3.5), (0.12, 0, 0), (0, 0.12, 0))),
                            MirrorMaterial(torch.tensor(MIRROR_RGB, dtype=DT))))
    return shapes


RES = 8
CAM = Camera.look_at(torch.tensor([0.0, 0.9, 0.2], dtype=DT), torch.tensor([0.0, 0.9, -1.0], dtype=DT), width=RES,
                     height=RES, fov_y_deg=30.0)
LIGHT = [DirectionalLight(torch.tensor([0.0, 1.0, 0.0], dtype=DT), intensity=E)]


# The wall seen in the mirror: the camera looks at the mirror, 1 in front of it; its virtual (reflected) twin
# stands 1 behind the mirror and sees the wall directly. The fov keeps the whole view inside the mirror and the
# wall points seen about where CAM sees them (so the occluder's shadow from them falls on the floor).
FOV_M = 7.0
CAM_M = Camera.look_at(torch.tensor([0.0, 0.9, 2.5], dtype=DT), torch.tensor([0.0, 0.9, 3.5], dtype=DT), width=RES,
                       height=RES, fov_y_deg=FOV_M)
CAM_V = Camera.look_at(torch.tensor([0.0, 0.9, 4.5], dtype=DT), torch.tensor([0.0, 0.9, -1.0], dtype=DT), width=RES,
                       height=RES, fov_y_deg=FOV_M)


def _render_mean(shift, mirror=False, **kw):
    st = TraceSettings(**{"max_bounces": 3 if mirror else 2, "rr_depth": 9, "chunk_rays": 1 << 18, **kw})
    return render_trace(_scene(shift, mirror), CAM_M if mirror else CAM, LIGHT, st).image.mean()


def _closed_form_mean(shift, sub=16, cam=CAM):
    """The image mean: the wall radiance averaged over a ``sub x sub`` grid of points per pixel."""
    shapes = _scene(shift)
    g = (torch.arange(RES * sub, dtype=DT) + 0.5) / sub
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    pix = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)
    o, d = _camera_rays(cam, torch.zeros(pix.shape[0], dtype=torch.long), pix)
    x = o + ((-1.0 - o[:, 2]) / d[:, 2])[:, None] * d  # on the wall
    n = torch.tensor([0.0, 0.0, 1.0], dtype=DT)
    l_floor = A_FLOOR / math.pi * E
    psa = projected_solid_angle(shapes[0].mesh.verts, x, n) - projected_solid_angle(shapes[2].mesh.verts, x, n)
    return (A_WALL / math.pi * l_floor * psa).mean()


def _closed_form_grad(cam=CAM):
    shift = torch.zeros(3, dtype=DT, requires_grad=True)
    return torch.autograd.grad(_closed_form_mean(shift, cam=cam), shift)[0]


def _boundary_grads(seeds, samples, mirror=False):
    out = []
    for seed in seeds:
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        loss = _render_mean(shift, mirror, spp=1, seed=seed, indirect_samples=samples)
        out.append(torch.autograd.grad(loss, shift)[0])
    return torch.stack(out)


def test_scene_renders_its_closed_form():
    with torch.no_grad():
        img = _render_mean(torch.zeros(3, dtype=DT), spp=4096)
    truth = _closed_form_mean(torch.zeros(3, dtype=DT))
    assert abs(float(img / truth) - 1) < 0.02


def test_interior_gradient_is_zero_without_the_term():
    """The term is what carries the gradient: off (0 samples, or one bounce), the occluder gets none."""
    for kw in (dict(indirect_samples=0), dict(indirect_samples=4096, max_bounces=1)):
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        st = dict(spp=4, rr_depth=9, chunk_rays=1 << 18, **{"max_bounces": 2, **kw})
        img = render_trace(_scene(shift), CAM, LIGHT, TraceSettings(**st)).image
        (g,) = torch.autograd.grad(img.mean(), shift, allow_unused=True)
        assert g is None or float(g.abs().max()) == 0.0


def test_occluder_translation_gradient_matches_closed_form():
    """Mean of 16 independent boundary estimates within 4 standard errors of the closed-form derivative."""
    truth = _closed_form_grad()
    assert float(truth.abs().min()) > 0.01  # every axis moves the occlusion
    check_within_standard_errors(_boundary_grads(range(16), 4096), truth, max_rel_se=0.1)


def test_wall_seen_in_a_mirror_renders_its_closed_form():
    with torch.no_grad():
        img = _render_mean(torch.zeros(3, dtype=DT), mirror=True, spp=4096)
    truth = _closed_form_mean(torch.zeros(3, dtype=DT), cam=CAM_V) * 0.6
    assert abs(float(img / truth) - 1) < 0.02


def test_occlusion_seen_in_a_mirror_gradient_matches_closed_form():
    """The boundary term at the second path vertex (camera -> mirror -> wall): the wall's indirect light is
    occluded as in the direct view of the virtual camera, whose closed form gives the derivative."""
    truth = _closed_form_grad(CAM_V) * 0.6
    assert float(truth.abs().min()) > 0.006
    check_within_standard_errors(_boundary_grads(range(16), 4096, mirror=True), truth, max_rel_se=0.1)


def _mirror_cameras(eye):
    """The camera at ``eye`` looking at the mirror, and its reflection in the mirror plane z = 3.5 (its image
    flipped left-right, which leaves the image mean unchanged)."""
    target = torch.tensor([0.0, 0.9, 3.5], dtype=DT)
    cams = []
    for e, tg in ((eye, target), (eye * torch.tensor([1, 1, -1], dtype=DT) + torch.tensor([0, 0, 7.0], dtype=DT),
                                  torch.tensor([0.0, 0.9, 3.5], dtype=DT))):
        cams.append(Camera.look_at(e, tg, width=RES, height=RES, fov_y_deg=FOV_M))
    return cams


def test_camera_gradient_through_a_mirror_matches_closed_form():
    """Moving the camera moves the wall points seen in the mirror, and the occluder and the floor's far edges
    seen from them: the whole derivative is the second vertex's boundary term (zero with it off)."""
    eye = torch.tensor([0.0, 0.9, 2.5], dtype=DT, requires_grad=True)
    truth = torch.autograd.grad(_closed_form_mean(torch.zeros(3, dtype=DT), cam=_mirror_cameras(eye)[1]) * 0.6,
                                eye)[0]
    assert float(truth[:2].abs().min()) > 0.03
    grads = []
    for seed in range(16):
        eye = torch.tensor([0.0, 0.9, 2.5], dtype=DT, requires_grad=True)
        st = TraceSettings(max_bounces=3, rr_depth=9, chunk_rays=1 << 18, spp=4, seed=seed, indirect_samples=4096)
        img = render_trace(_scene(torch.zeros(3, dtype=DT), mirror=True), _mirror_cameras(eye)[0], LIGHT, st).image
        grads.append(torch.autograd.grad(img.mean(), eye)[0])
    check_within_standard_errors(torch.stack(grads), truth, max_rel_se=0.15)


@pytest.mark.slow
def test_occluder_translation_gradient_matches_closed_form_tightly():
    check_within_standard_errors(_boundary_grads(range(100, 164), 16384), _closed_form_grad(), max_rel_se=0.015)


def test_bad_indirect_samples():
    for v in (-1, 1.5, True):
        with pytest.raises(ValueError, match="indirect_samples"):
            TraceSettings(indirect_samples=v)


# A Lambert card seen from its back by a camera at +z: the path tracer integrates its shading normal's
# hemisphere (towards the wall, floor and occluder) whichever side a path arrives from, as render_mesh
# shades a back face with its own normal; its boundary samples must follow (they once required the
# viewer's side and gave nothing here).
CAM_CARD = Camera.look_at(torch.tensor([0.0, 0.9, 1.8], dtype=DT), torch.tensor([0.0, 0.9, 0.8], dtype=DT),
                          width=RES, height=RES, fov_y_deg=7.0)


def _card_mean(shift, **kw):
    card = Shape(Mesh(*_quad((0, 0.9, 0.8), (0.12, 0, 0), (0, -0.12, 0))), LambertMaterial(1.0))  # normal -z
    st = TraceSettings(**{"max_bounces": 2, "rr_depth": 9, "chunk_rays": 1 << 18, **kw})
    return render_trace(_scene(shift) + [card], CAM_CARD, LIGHT, st).image.mean()


def test_back_lit_card_occlusion_gradient_matches_finite_differences():
    """d(mean)/d(occluder height): edge samples (8 seeds) vs central differences of 8192-spp renders with
    common random numbers (2 seeds; the step moves the occlusion by a few percent of the occluder)."""
    e = torch.tensor([0.0, 0.02, 0.0], dtype=DT)
    with torch.no_grad():
        fd = torch.tensor([float(_card_mean(e, spp=8192, seed=s) - _card_mean(-e, spp=8192, seed=s)) / 0.04
                           for s in (0, 1)])
    grads = []
    for seed in range(8):
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        loss = _card_mean(shift, spp=1, seed=seed, indirect_samples=4096)
        grads.append(float(torch.autograd.grad(loss, shift)[0][1]))
    grads = torch.tensor(grads)
    se = (grads.var() / grads.numel() + fd.var() / fd.numel()).sqrt()
    assert float(se) < 0.1 * abs(float(fd.mean())), (grads, fd)
    assert abs(float(grads.mean() - fd.mean())) < 4 * float(se), (grads, fd)


@pytest.mark.slow
def test_back_lit_card_three_bounces_gradient_matches_finite_differences():
    """With 3 bounces the wall behind the occluder is lit too, and the boundary samples at the second path
    vertex (on the wall, after a diffuse bounce on the card) carry part of the derivative. Measured once with 64
    x 8192 samples: 0.0128 +- 0.0005 with them, 0.0149 +- 0.0004 without, central differences 0.0130 +- 0.0002."""
    e = torch.tensor([0.0, 0.02, 0.0], dtype=DT)
    with torch.no_grad():
        fd = torch.tensor([float(_card_mean(e, spp=16384, seed=s, max_bounces=3)
                                 - _card_mean(-e, spp=16384, seed=s, max_bounces=3)) / 0.04 for s in range(4)])
    grads = []
    for seed in range(64):
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        loss = _card_mean(shift, spp=1, seed=seed, indirect_samples=8192, max_bounces=3)
        grads.append(float(torch.autograd.grad(loss, shift)[0][1]))
    grads = torch.tensor(grads)
    se = (grads.var() / grads.numel() + fd.var() / fd.numel()).sqrt()
    assert float(se) < 0.06 * abs(float(fd.mean())), (grads, fd)
    assert abs(float(grads.mean() - fd.mean())) < 3 * float(se), (grads, fd)


def test_equiangular_edge_points_integrate_the_angular_speed_exactly():
    """Edge points drawn uniformly in the angle the edge subtends at ``x``: ``|dw/dt| / pdf(t)`` is that angle for
    every sample (no ``1 / distance`` weights near ``x``), and the weighted samples integrate a smooth function
    of ``t`` against ``|dw/dt|`` as quadrature does."""
    from lumigrad.render._trace_edges_indirect import _equiangular

    gen = torch.Generator().manual_seed(3)
    x = torch.tensor([[0.3, 0.02, 0.0]], dtype=torch.float64)  # 0.02 from the edge's line
    a, c = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64), torch.tensor([[1.0, 0.0, 0.5]], dtype=torch.float64)

    def speed(t):  # |dw/dt| of w = normalize(a + t (c - a) - x)
        w = a + t * (c - a) - x
        r = w.norm(dim=-1, keepdim=True)
        ev = c - a
        return (ev - (ev * w).sum(-1, keepdim=True) * w / r**2).norm(dim=-1, keepdim=True) / r

    n = 20000
    t, angle = _equiangular(x.expand(n, 3), a.expand(n, 3), c.expand(n, 3), torch.rand(n, 1, generator=gen,
                                                                                          dtype=torch.float64))
    u0, u1 = a - x, c - x
    subtended = torch.acos((u0 * u1).sum() / (u0.norm() * u1.norm()))
    assert torch.allclose(angle, subtended.expand_as(angle), rtol=1e-9)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    g = lambda t: 1.0 + torch.cos(3.0 * t)  # noqa: E731
    tq = (torch.arange(200000, dtype=torch.float64)[:, None] + 0.5) / 200000
    quadrature = float((g(tq) * speed(tq)).mean())
    estimate = g(t) * angle
    assert abs(float(estimate.mean()) - quadrature) < 4 * float(estimate.std()) / math.sqrt(n)
    assert abs(float(estimate.mean()) - quadrature) < 0.01 * quadrature
