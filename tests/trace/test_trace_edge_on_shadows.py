"""Edge sampling of an icosphere: faces seen edge-on by the light, and meshes with unshared vertices.

Scenes: the wall scene of ``test_trace_indirect_edges.py`` (a wall lit only by a floor under a directional light
from straight above) with a black icosphere as occluder.

* Edge-on faces (:func:`lumigrad.render._trace_edges._receivers`): under a light from straight above, 16 faces of
  a level-2 icosphere (its equator band) are parallel to the light. Their light rays graze the sphere: before the
  fix, those of one edge hit the sphere itself instead of the floor and those of the other failed the lit test,
  so part of the shadow outline was never sampled. With the sphere high above the floor (out of the camera's view,
  seen by the wall only against the black sky) the gradient comes only from its shadow on the floor seen from the
  wall (:mod:`lumigrad.render._trace_edges_shadow_indirect`). Level 3, 64 x 4096 samples: d(mean)/dz was
  0.0002 +- 0.0003 before the fix, -0.0029 +- 0.0004 after, central differences -0.0028 +- 0.0004.
* Unshared vertices (a flat-shaded mesh, :func:`lumigrad.render.path._weld`): every edge was an open boundary, so
  each silhouette seen from the wall was counted twice (once per copy of the edge). Sphere near the floor, level
  3, 64 x 4096 samples: d(mean)/dy -0.087 +- 0.002 before the weld, -0.0378 +- 0.0011 after, central differences
  -0.0377 +- 0.0006.
"""
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import prepare_trace, render_trace
from lumigrad.scene import Mesh
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings

from test_trace_indirect_edges import CAM, DT, LIGHT, _scene

HIGH = (0.25, 5.0, -0.6)  # casts the same shadow at any height (light from straight above); seen against the sky
LOW = (0.25, 0.2, -0.6)  # hides the floor from the wall


def _soup(v, f):
    """The same triangles with unshared vertices (a flat-shaded mesh)."""
    return v[f.long().reshape(-1)], torch.arange(3 * f.shape[0], dtype=torch.int32).reshape(-1, 3)


def _shapes(shift, center, soup):
    v, f = icosphere(2, dtype=DT)
    if soup:
        v, f = _soup(v, f)
    sphere = Mesh(v * 0.15 + torch.tensor(center, dtype=DT) + shift, f)
    return _scene(torch.zeros(3, dtype=DT))[:2] + [Shape(sphere, LambertMaterial(0.0))]


def _settings(seed, **kw):
    return TraceSettings(**{"max_bounces": 2, "rr_depth": 9, "chunk_rays": 1 << 18, "seed": seed, **kw})


def _estimate_vs_fd(center, soup, axis, seeds, samples, fd_seeds, spp):
    """``(estimates [seeds], central differences [fd_seeds])`` of d(image mean)/d(sphere translation[axis])."""
    grads = []
    for seed in range(seeds):
        shift = torch.zeros(3, dtype=DT, requires_grad=True)
        img = render_trace(_shapes(shift, center, soup), CAM, LIGHT, _settings(seed, spp=1, indirect_samples=samples)).image
        grads.append(torch.autograd.grad(img.mean(), shift)[0][axis])
    h, fd = 0.01, []
    e = torch.zeros(3, dtype=DT)
    e[axis] = h
    with torch.no_grad():
        for seed in range(fd_seeds):  # common random numbers: the same seed either side
            st = _settings(seed, spp=spp)
            fd.append(float(render_trace(_shapes(e, center, soup), CAM, LIGHT, st).image.mean()
                            - render_trace(_shapes(-e, center, soup), CAM, LIGHT, st).image.mean()) / (2 * h))
    return torch.stack(grads), torch.tensor(fd, dtype=DT)


def _assert_agree(g, fd):
    se = (g.var() / g.numel() + fd.var() / fd.numel()).sqrt()
    assert abs(float(g.mean() - fd.mean())) < 4 * float(se) + 0.1 * abs(float(fd.mean())), (g.mean(), g.std(), fd)


def test_edge_on_faces_shadow_gradient_matches_finite_differences():
    g, fd = _estimate_vs_fd(HIGH, False, 2, seeds=32, samples=4096, fd_seeds=6, spp=16384)
    assert float(fd.mean()) < -0.0015  # the shadow moves: a clear signal
    _assert_agree(g, fd)


def test_unshared_vertices_occlusion_gradient_matches_finite_differences():
    g, fd = _estimate_vs_fd(LOW, True, 1, seeds=12, samples=2048, fd_seeds=3, spp=8192)
    assert float(fd.mean()) < -0.02
    _assert_agree(g, fd)


def test_unshared_vertices_are_welded_for_the_edge_adjacency():
    v, f = _soup(*icosphere(1, dtype=DT))
    accel = prepare_trace([Shape(Mesh(v, f), LambertMaterial(0.5)), Shape(Mesh(v + 1.0, f), LambertMaterial(0.5))])
    assert accel.edges.shape[0] == 2 * 3 * f.shape[0] // 2  # closed: each edge shared by two faces
    assert bool((accel.edge_faces >= 0).all())
    # each shape is welded on its own: coincident shapes keep their own edges
    accel = prepare_trace([Shape(Mesh(v, f), LambertMaterial(0.5)), Shape(Mesh(v.clone(), f), LambertMaterial(0.5))])
    assert accel.edges.shape[0] == 3 * f.shape[0]


def test_edge_adjacency_matches_row_unique():
    """``_unique_pairs`` (the 1-D unique of ``TraceAccel``'s edge keys) equals ``torch.unique(dim=0)``: edges,
    inverse and counts, on an icosphere plus a random triangle soup (open edges, repeated faces)."""
    from lumigrad.render.path import _unique_pairs

    v, f = icosphere(2, dtype=DT)
    g = torch.Generator().manual_seed(0)
    soup = torch.randint(0, v.shape[0], (300, 3), generator=g, dtype=torch.int32)
    for faces in (f, torch.cat([f, soup, soup[:50]])):
        fl = faces.long()
        key = torch.cat([fl[:, [0, 1]], fl[:, [1, 2]], fl[:, [2, 0]]], 0).sort(dim=1).values
        want = torch.unique(key, dim=0, return_inverse=True, return_counts=True)
        got = _unique_pairs(key)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    e = prepare_trace([Shape(Mesh(v, f), LambertMaterial(0.5))])
    assert e.edges.shape[0] == 3 * f.shape[0] // 2 and bool((e.edge_faces >= 0).all())
