"""lumigrad.ops.trace: BVH queries vs brute-force reference, refit, reattach gradients vs FD."""
import pytest
import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.ops._trace_ref import intersect_ref, occluded_ref
from lumigrad.ops.trace import TraceBVH, intersect, occluded, reattach


def _rays(n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=dtype) * 0.3 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    tgt = torch.randn(n, 3, generator=g, dtype=dtype) * 0.8
    return o, tgt - o


def test_intersect_matches_reference():
    v, f = icosphere(1)
    o, d = _rays(1500)
    tmax = torch.full((1500,), 10.0)
    hits = intersect(TraceBVH(v, f), o, d, tmax)
    face_ref, t_ref = intersect_ref(v, f, o, d, tmax)
    assert (hits.face >= 0).sum() > 300 and (hits.face < 0).sum() > 100  # both branches exercised
    agree = (hits.face == face_ref).float().mean()
    assert agree > 0.995  # ties on shared edges may pick either triangle
    both = (hits.face >= 0) & (face_ref >= 0)
    torch.testing.assert_close(hits.t[both], t_ref[both], atol=1e-4, rtol=1e-4)


def test_occluded_and_refit():
    v, f = icosphere(1)
    bvh = TraceBVH(v, f)
    o, d = _rays(2000, seed=1)
    tmax = torch.rand(2000, generator=torch.Generator().manual_seed(2)) * 2.0
    occ = occluded(bvh, o, d, tmax)
    ref = occluded_ref(v, f, o, d, tmax)
    assert occ.any() and (~occ).any()
    assert (occ == ref).float().mean() > 0.995
    v2 = v + torch.tensor([0.7, 0.0, 0.0])
    bvh.refit(v2)
    agree = (intersect(bvh, o, d).face == intersect_ref(v2, f, o, d, torch.full((2000,), 1e30))[0]).float().mean()
    assert agree > 0.995


def test_bad_inputs():
    v, f = icosphere(0)
    with pytest.raises(ValueError, match="TraceBVH"):
        TraceBVH(v, f.long() + 100)
    bvh = TraceBVH(v, f)
    with pytest.raises(ValueError, match="intersect"):
        intersect(bvh, torch.zeros(3, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="refit"):
        bvh.refit(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="occluded"):
        occluded("bvh", torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="reattach"):
        reattach(v, f, torch.tensor([-1], dtype=torch.int32), torch.zeros(1, 3), torch.ones(1, 3))


def test_reattach_gradcheck():
    v, f = icosphere(1, dtype=torch.float64)
    o, d = _rays(40, seed=3, dtype=torch.float64)
    hits = intersect(TraceBVH(v, f), o, d)
    keep = hits.face >= 0
    face = hits.face[keep]
    o, d = o[keep].clone().requires_grad_(), d[keep].clone().requires_grad_()
    vv = v.clone().requires_grad_()
    r = reattach(vv, f, face, o, d)
    torch.testing.assert_close(r.t, hits.t[keep].double() * 1.0, atol=1e-4, rtol=1e-4)
    assert bool((r.bary > -1e-6).all())
    torch.autograd.gradcheck(lambda a, b, c: reattach(a, f, face, b, c).points, (vv, o, d))
