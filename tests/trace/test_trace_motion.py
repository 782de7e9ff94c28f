"""Boundary samples go where the gradient is (lumigrad.render._trace_edges.Motion): with a still camera, the
primary-silhouette sampler picks among the outlines of shapes that move, since a still outline seen by a still
camera contributes exactly nothing."""
import torch
import torch.autograd.forward_ad as fwAD

import lumigrad.render._trace_edges as te
from lumigrad.render.path import _Scene, prepare_trace, render_trace
from lumigrad.scene import Camera, Mesh
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings

DT = torch.float64
FACES = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)


def _quad(cx, cy, half, z):
    c = torch.tensor([cx, cy, z], dtype=DT)
    u, v = torch.tensor([half, 0, 0], dtype=DT), torch.tensor([0, half, 0], dtype=DT)
    return torch.stack([c - u - v, c + u - v, c + u + v, c - u + v])


def _scene(shift):
    """A large still emitter (its outline in view) behind a small one that ``shift`` moves."""
    back = Shape(Mesh(_quad(0.0, 0.0, 0.8, -1.0), FACES), LambertMaterial(0.0), emission=torch.tensor([1.0, 1, 1], dtype=DT))
    front = Shape(Mesh(_quad(0.1, 0.0, 0.15, 0.0) + shift, FACES), LambertMaterial(0.0),
                  emission=torch.tensor([3.0, 3, 3], dtype=DT))
    return [back, front]


CAM = Camera.look_at(torch.tensor([0.0, 0.0, 3.0], dtype=DT), torch.zeros(3, dtype=DT), width=16, height=16,
                     fov_y_deg=40.0)


def test_motion_flags():
    shift = torch.zeros(3, dtype=DT, requires_grad=True)
    shapes = _scene(shift)
    sc = _Scene(shapes, CAM, [], TraceSettings(), prepare_trace(shapes))
    m = te.motion(sc)
    assert not m.camera and m.shapes.tolist() == [False, True]
    assert int(m.edges(sc).sum()) == 5 and bool(m.edges(sc)[sc.owner[sc.accel.edge_faces[:, 0]] == 1].all())
    with torch.no_grad():
        assert te.motion(sc).shapes.tolist() == [False, False]
    eye = torch.tensor([0.0, 0.0, 3.0], dtype=DT)
    with fwAD.dual_level():
        cam = Camera.look_at(fwAD.make_dual(eye, torch.ones(3, dtype=DT)), torch.zeros(3, dtype=DT), width=16,
                             height=16, fov_y_deg=40.0)
        still = _scene(torch.zeros(3, dtype=DT))
        assert te.motion(_Scene(still, cam, [], TraceSettings(), prepare_trace(still))).camera


RAMP = (torch.linspace(0, 1, 16, dtype=DT)[:, None] + 2 * torch.linspace(0, 1, 16, dtype=DT)[None, :])[None, :, :, None]


def _grads(seeds):
    """d(ramp-weighted image mean)/d(shift x, y): a translation leaves the plain mean unchanged."""
    out = []
    for seed in seeds:
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        st = TraceSettings(max_bounces=1, spp=1, seed=seed, edge_samples=1024)
        out.append(torch.autograd.grad((render_trace(_scene(shift), CAM, [], st).image * RAMP).mean(), shift)[0][:2])
    return torch.stack(out)


def test_still_outlines_take_no_samples(monkeypatch):
    """The same estimate (means within noise) with a fraction of the spread: the still emitter's outline is
    most of the projected silhouette length, and without the restriction most samples land there for nothing."""
    restricted = _grads(range(12))
    monkeypatch.setattr(te, "motion", lambda sc: te.Motion(True, torch.ones(len(sc.shapes), dtype=torch.bool)))
    everywhere = _grads(range(12))
    se_r, se_e = restricted.std(0) / 12 ** 0.5, everywhere.std(0) / 12 ** 0.5
    assert float(restricted.mean(0).abs().min()) > 0.015  # the x and y derivatives are not small
    assert (restricted.mean(0) - everywhere.mean(0)).abs().le(4 * (se_r ** 2 + se_e ** 2).sqrt()).all()
    assert (se_r < 0.75 * se_e).all(), (se_r, se_e)
