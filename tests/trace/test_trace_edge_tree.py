"""The indirect edge term's edge picks (:mod:`lumigrad.render._edge_tree`): kernel vs reference, the stated pick
probabilities vs the empirical frequencies, every silhouette reachable (no bias) and the light silhouettes' kernel.

The estimator's mean against closed forms goes through the tree in ``test_trace_indirect_edges.py`` (its
default picker)."""
from __future__ import annotations

import copy

import pytest
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render._edge_tree import EdgeTree, _pick_ref, light_silhouette_masks
from lumigrad.render._trace_edges import _facing_one, _silhouette
from lumigrad.render._trace_edges_indirect import _silhouette_from
from lumigrad.render.path import TraceAccel
from lumigrad.scene.lights import DirectionalLight, PointLight

# Path vertices (and shading normals): above the sphere, beside it, and on the open floor quad (in its plane).
VERTS = [((0.3, 1.9, 0.2), (0.0, -1.0, 0.2)), ((2.5, 0.1, -0.4), (-1.0, 0.0, 0.0)), ((0.0, -1.5, 0.0), (0.0, 1.0, 0.0))]


def _scene(dtype=torch.float64, level=2):
    """An icosphere (closed) over an open quad: ``(verts, edges, edge_faces, face normals, corners, lengths)``."""
    v, f = icosphere(level, dtype=dtype)
    quad = torch.tensor([[-2, -1.5, -2], [2, -1.5, -2], [2, -1.5, 2], [-2, -1.5, 2]], dtype=dtype)
    qf = torch.tensor([[0, 2, 1], [0, 3, 2]], dtype=torch.int32) + v.shape[0]
    V, F = torch.cat([v, quad]), torch.cat([f, qf])
    acc = TraceAccel(V.float(), F)
    tri = V[F.long()]
    fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    length = (V[acc.edges[:, 1]] - V[acc.edges[:, 0]]).norm(dim=-1)
    return V, acc.edges, acc.edge_faces, fn, tri[:, 0], length


def _vertex(i, dtype=torch.float64):
    x, n = VERTS[i]
    return torch.tensor([x], dtype=dtype), torch.nn.functional.normalize(torch.tensor([n], dtype=dtype), dim=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pick_kernel_matches_reference(dtype):
    V, edges, ef, fn, v0, length = _scene(dtype)
    tree = EdgeTree(V, edges, ef, fn, v0, length)
    x = torch.cat([_vertex(i, dtype)[0] for i in range(3)])
    ns = torch.cat([_vertex(i, dtype)[1] for i in range(3)])
    u = torch.rand(3 * 40, tree.depth, dtype=dtype, generator=torch.Generator().manual_seed(1))
    e, p = tree.pick(x, ns, 40, u)
    e_ref, p_ref = _pick_ref(tree, x, ns, 40, u)
    assert bool((p > 0).any()) and bool((p == 0).any())  # both kinds of picks are exercised
    assert torch.equal(p > 0, p_ref > 0)
    assert torch.equal(e[p > 0], e_ref[p > 0])
    torch.testing.assert_close(p, p_ref, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


def test_leaves_kernel_matches_reference():
    V, edges, ef, fn, v0, length = _scene()
    tree = EdgeTree(V, edges, ef, fn, v0, length)
    ref = copy.copy(tree)
    lev = ref._leaves_ref(tree.levels[0].length.shape[0], V, edges, ef, fn)
    for name in ("lo", "hi", "axis", "theta", "length"):
        torch.testing.assert_close(getattr(tree.levels[0], name), getattr(lev, name), rtol=1e-12, atol=1e-12)
    assert torch.equal(tree.levels[0].open, lev.open) and bool(lev.open.any())
    assert torch.equal(ref.a, tree.a) and torch.equal(ref.c, tree.c) and torch.equal(ref.ef, tree.ef)


@pytest.mark.parametrize("i", range(3))
def test_picks_follow_their_stated_probabilities_and_reach_every_silhouette(i):
    """Frequencies vs the probabilities the picks report (each edge's must be one number), every silhouette above
    the tangent plane picked, and the estimate of a sum over those silhouettes unbiased."""
    V, edges, ef, fn, v0, length = _scene()
    tree = EdgeTree(V, edges, ef, fn, v0, length)
    x, ns = _vertex(i)
    n = 200_000
    e, p = tree.pick(x, ns, n, torch.rand(n, tree.depth, dtype=torch.float64, generator=torch.Generator().manual_seed(i)))
    ok = p > 0
    sil = _silhouette_from(ef, fn, v0, x.expand(edges.shape[0], 3))[0]
    above = ((V[edges[:, 0]] - x) @ ns[0] > 0) | ((V[edges[:, 1]] - x) @ ns[0] > 0)
    wanted = sil & above
    assert 5 < int(wanted.sum()) < edges.shape[0] // 4
    # One probability per edge, and frequencies within 5 standard deviations of it.
    E = edges.shape[0]
    p_max = torch.zeros(E, dtype=p.dtype).scatter_reduce(0, e[ok], p[ok], "amax", include_self=False)
    p_min = torch.ones(E, dtype=p.dtype).scatter_reduce(0, e[ok], p[ok], "amin", include_self=False)
    count = torch.bincount(e[ok], minlength=E).to(p.dtype)
    seen = count > 0
    torch.testing.assert_close(p_min[seen], p_max[seen], rtol=1e-12, atol=0)
    sd = (n * p_max[seen] * (1 - p_max[seen])).sqrt()
    assert float(((count[seen] - n * p_max[seen]).abs() / sd).max()) < 5.0
    # Only silhouettes are picked (on the quad's plane its own open edges pass the tree's tolerance), all of them.
    assert bool(sil[e[ok]].all())
    assert bool(seen[wanted].all())
    # Unbiased: the estimate of sum_{wanted} g within 4 standard errors.
    g = 1.0 + (torch.arange(E) % 3).double()
    est = torch.where(ok & wanted[e], g[e] / p.clamp_min(1e-300), torch.zeros_like(p))
    assert abs(float(est.mean()) - float(g[wanted].sum())) < 4 * float(est.std()) / n ** 0.5


def test_light_silhouettes_kernel_matches_reference():
    V, edges, ef, fn, v0, _ = _scene(torch.float32, level=3)
    # Straight above the sphere (its equator's faces edge-on), beside it, and directional lights.
    lights = [PointLight(torch.tensor([0.0, 3.0, 0.0])), PointLight(torch.tensor([2.0, 0.3, -1.0])),
              DirectionalLight(torch.tensor([0.0, 1.0, 0.0])), DirectionalLight(torch.tensor([0.3, 1.0, 0.2]))] * 9
    masks = light_silhouette_masks(ef, fn, v0, lights)
    assert len(masks) == len(lights) > 32  # two launches
    for light, m in zip(lights, masks):
        ref = _silhouette(ef, _facing_one(light, fn, v0))
        assert torch.equal(m, ref) and int(m.sum()) > 4


def test_candidate_lengths_kernel_matches_reference():
    from types import SimpleNamespace

    from lumigrad.render._edge_tree import candidate_lengths
    from lumigrad.render._trace_edges_indirect import _FLAT, _candidate_edges

    V, edges, ef, fn, v0, length = _scene(torch.float32)
    got = candidate_lengths(V, edges, ef, fn, _FLAT)
    want = length * _candidate_edges(SimpleNamespace(accel=SimpleNamespace(_face_data=(fn, v0), edge_faces=ef)))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    assert bool((got == 0).any()) and bool((got > 0).any())  # the quad's diagonal is coplanar; the rest is not
