"""Hard shadows of a closed mesh with faces parallel to the light (lumigrad.render._trace_edges._receivers).

An icosphere under a directional light from straight above has faces seen exactly edge-on by the light
(its equator band). Their light rays graze the sphere: before the fix, half of them hit the sphere itself
instead of the floor and the other half failed the lit test, so part of the shadow outline was never sampled.
Scene: the wall scene of ``test_trace_indirect_edges.py`` with a black icosphere high above the floor (out of
the camera's view, seen by the wall only against the black sky), so the gradient of the image w.r.t. the
sphere's height-free translation comes only from its shadow on the floor seen from the wall
(:mod:`lumigrad.render._trace_edges_shadow_indirect`). Level 3, 64 x 4096 samples vs finite differences:
d(mean)/dz was 0.0002 +- 0.0003 before the fix, -0.0029 +- 0.0004 after, central differences -0.0028 +- 0.0004.
"""
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import render_trace
from lumigrad.scene import Mesh
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings

from test_trace_indirect_edges import CAM, DT, LIGHT, _scene


def _shapes(shift):
    v, f = icosphere(2, dtype=DT)
    center = torch.tensor([0.25, 5.0, -0.6], dtype=DT)  # casts the same shadow at any height: light from above
    return _scene(torch.zeros(3, dtype=DT))[:2] + [Shape(Mesh(v * 0.15 + center + shift, f), LambertMaterial(0.0))]


def _settings(seed, **kw):
    return TraceSettings(**{"max_bounces": 2, "rr_depth": 9, "chunk_rays": 1 << 18, "seed": seed, **kw})


def test_edge_on_faces_shadow_gradient_matches_finite_differences():
    grads = []
    for seed in range(32):
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        img = render_trace(_shapes(shift), CAM, LIGHT, _settings(seed, spp=1, indirect_samples=4096)).image
        grads.append(torch.autograd.grad(img.mean(), shift)[0][2])
    g = torch.stack(grads)
    h, fd = 0.01, []
    e = torch.tensor([0.0, 0.0, h], dtype=DT)
    with torch.no_grad():
        for seed in range(6):  # common random numbers: the same seed either side
            st = _settings(seed, spp=16384)
            fd.append(float(render_trace(_shapes(e), CAM, LIGHT, st).image.mean()
                            - render_trace(_shapes(-e), CAM, LIGHT, st).image.mean()) / (2 * h))
    fd = torch.tensor(fd, dtype=DT)
    se = (g.var() / g.numel() + fd.var() / fd.numel()).sqrt()
    assert float(fd.mean()) < -0.0015  # the shadow moves: a clear signal
    assert abs(float(g.mean() - fd.mean())) < 4 * float(se) + 0.1 * abs(float(fd.mean())), (g.mean(), g.std(), fd)
