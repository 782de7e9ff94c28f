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


def _shade_inputs(dtype=torch.float64, h=9, seed=3):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=dtype)

    tri = r(h, 3, 3) * 0.4 + torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]], dtype=dtype)
    nrm = r(h, 3, 3) * 0.3 + torch.tensor([0, 0, 1.0], dtype=dtype)
    corners = torch.cat([tri, nrm], -1).reshape(h, 18)
    o = r(h, 3) * 0.1 + torch.tensor([0.3, 0.3, 3.0], dtype=dtype)
    d = r(h, 3) * 0.1 + torch.tensor([0, 0, -1.0], dtype=dtype)
    alb = torch.rand(h, 3, generator=g, dtype=dtype)
    vis = (torch.rand(h, 3, generator=g, dtype=dtype) > 0.3).to(dtype)
    lkind = torch.tensor([0, 1, 0], dtype=torch.int32)
    lvec = torch.tensor([[1.0, 2.0, 3.0], [0.3, 0.2, 0.9], [-1.0, 0.5, 2.0]], dtype=dtype)
    lvec[1] = lvec[1] / lvec[1].norm()
    lscale = torch.rand(3, 3, generator=g, dtype=dtype) + 0.5
    lfall = torch.tensor([[0, 0, 1.0], [1, 0, 0], [0.5, 0.3, 0.2]], dtype=dtype)
    return [corners, o, d, alb, vis, lkind, lvec, lscale, lfall]


_DIFF = (0, 1, 2, 3, 6, 7)  # differentiable inputs of shade_direct


def test_shade_direct_matches_reference_values_and_grads():
    from lumigrad.ops._trace_ref import shade_direct_ref
    from lumigrad.ops.trace import shade_direct

    args = _shade_inputs()
    for i in _DIFF:
        args[i].requires_grad_(True)
    a, b = shade_direct(*args), shade_direct_ref(*args)
    assert a.abs().max() > 0.05 and (a == 0).any()  # lit hits and hits facing away / shadowed
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    w = torch.randn(a.shape, generator=torch.Generator().manual_seed(0), dtype=a.dtype)
    ga = torch.autograd.grad((a * w).sum(), [args[i] for i in _DIFF])
    gb = torch.autograd.grad((b * w).sum(), [args[i] for i in _DIFF])
    for x, y in zip(ga, gb):
        assert y.abs().max() > 0
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    # float32 kernel vs the float64 reference
    a32 = shade_direct(*[x.detach().float() if x.is_floating_point() else x for x in args])
    torch.testing.assert_close(a32.double(), b.detach(), rtol=1e-5, atol=1e-6)


def test_shade_direct_gradcheck():
    from lumigrad.ops.trace import shade_direct

    args = _shade_inputs(h=4, seed=5)
    diff = [args[i].clone().requires_grad_(True) for i in _DIFF]

    def f(corners, o, d, alb, lvec, lscale):
        return shade_direct(corners, o, d, alb, args[4], args[5], lvec, lscale, args[8])

    assert torch.autograd.gradcheck(f, tuple(diff), eps=1e-6, atol=1e-7)


def test_shade_direct_bad_inputs():
    from lumigrad.ops.trace import shade_direct

    args = _shade_inputs()
    bad = list(args)
    bad[0] = args[0][:, :9]
    with pytest.raises(ValueError, match="shade_direct.*corners"):
        shade_direct(*bad)
    bad = list(args)
    bad[3] = args[3].float()
    with pytest.raises(ValueError, match="shade_direct.*albedo"):
        shade_direct(*bad)
    bad = list(args)
    bad[5] = torch.tensor([0, 2, 0], dtype=torch.int32)
    with pytest.raises(ValueError, match="lkind"):
        shade_direct(*bad)


def test_trace_direct_matches_intersect_and_occluded():
    from lumigrad.ops.trace import trace_direct

    v, f = icosphere(2)
    # A floor under the sphere catches its shadow.
    fv = torch.tensor([[-3, -1.2, -3], [3, -1.2, -3], [3, -1.2, 3], [-3, -1.2, 3.0]])
    ff = torch.tensor([[0, 2, 1], [0, 3, 2]], dtype=torch.int32) + v.shape[0]
    v, f = torch.cat([v, fv]), torch.cat([f, ff])
    bvh = TraceBVH(v, f)
    g = torch.Generator().manual_seed(4)
    o = torch.tensor([0.0, 1.0, 4.0]).expand(3000, 3)
    d = torch.randn(3000, 3, generator=g) * 0.35 + torch.tensor([0.0, -0.45, -1.0])
    d = d / d.norm(dim=-1, keepdim=True)
    lkind = torch.tensor([0, 1], dtype=torch.int32)
    lvec = torch.tensor([[0.5, 3.0, 0.5], [0.6, 0.8, 0.0]])
    eps = 1e-3
    face, vis = trace_direct(bvh, o, d, lkind, lvec, eps)
    hits = intersect(bvh, o, d)
    assert torch.equal(face, hits.face) and (face >= 0).sum() > 1000 and (face < 0).any()
    sel = face >= 0
    p = o[sel] + hits.t[sel, None] * d[sel]
    tri = v[f[face[sel].long()].long()]
    ng = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    ng = ng / ng.norm(dim=-1, keepdim=True)
    for j in range(2):
        if j == 0:
            dv = lvec[0] - p
            l, dist = dv / dv.norm(dim=-1, keepdim=True), dv.norm(dim=-1)
        else:
            l, dist = lvec[1].expand_as(p), torch.full_like(p[:, 0], 1e30)
        step = eps / (ng * l).sum(-1).abs().clamp_min(0.05)
        ref = ~occluded(bvh, p + step[:, None] * l, l, (dist - step - eps).clamp_min(0))
        assert (~ref).sum() > 100 and ref.sum() > 100  # shadowed and lit hits
        assert (vis[sel, j] == ref).float().mean() > 0.998  # float rounding may flip rays grazing an edge
    assert not vis[~sel].any()
    face2, vis2 = trace_direct(bvh, o, d, lkind, lvec, eps, shadows=False)
    assert torch.equal(face2, face) and vis2[sel].all()


def test_shade_direct_forward_mode_matches_backward():
    """Dual (forward-mode) inputs run the reference; its tangents agree with the kernel's backward."""
    import torch.autograd.forward_ad as fwAD

    from lumigrad.ops.trace import shade_direct

    args = _shade_inputs(h=6, seed=7)
    g = torch.Generator().manual_seed(1)
    tang = [torch.randn(args[i].shape, generator=g, dtype=args[i].dtype) for i in _DIFF]
    w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    with fwAD.dual_level():
        dual = list(args)
        for i, t in zip(_DIFF, tang):
            dual[i] = fwAD.make_dual(args[i], t)
        jvp = fwAD.unpack_dual(shade_direct(*dual)).tangent
    assert jvp is not None
    leaves = [args[i].clone().requires_grad_(True) for i in _DIFF]
    full = list(args)
    for i, x in zip(_DIFF, leaves):
        full[i] = x
    grads = torch.autograd.grad((shade_direct(*full) * w).sum(), leaves)
    vjp_dot = sum((gr * t).sum() for gr, t in zip(grads, tang))
    torch.testing.assert_close((jvp * w).sum(), vjp_dot, rtol=1e-10, atol=1e-12)


def _hit_rows(h, dtype, seed=0):
    """Rays aimed at random points inside random triangles (corner k: position 6k, normal 6k + 3); row 3 degenerate."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(h, 3, 3, dtype=dtype, generator=g)
    n = torch.randn(h, 3, 3, dtype=dtype, generator=g)
    corners = torch.cat([p, n], -1).reshape(h, 18)
    w = torch.rand(h, 3, dtype=dtype, generator=g)
    target = ((w / w.sum(-1, keepdim=True))[:, :, None] * p).sum(1)
    o = torch.randn(h, 3, dtype=dtype, generator=g) * 3
    corners[3, 6:9] = corners[3, 0:3]
    corners[3, 12:15] = corners[3, 0:3]
    return corners, o, target - o


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hit_attributes_match_reference_values_and_grads(dtype):
    from lumigrad.ops._trace_ref import hit_attributes_ref
    from lumigrad.ops.trace import hit_attributes

    h = 64
    base = _hit_rows(h, dtype)
    a = [x.clone().requires_grad_(True) for x in base]
    b = [x.clone().requires_grad_(True) for x in base]
    out, ref = hit_attributes(*a), hit_attributes_ref(*b)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    for x, y in zip(out, ref):
        assert x.shape == (h, 3)
        torch.testing.assert_close(x, y, **tol)
    assert float(out[3][3].detach().abs().max()) == 0.0  # degenerate triangle: zero geometric normal
    g = torch.Generator().manual_seed(1)
    ws = [torch.randn(h, 3, dtype=dtype, generator=g) for _ in range(4)]
    sum((x * w).sum() for x, w in zip(out, ws)).backward()
    sum((x * w).sum() for x, w in zip(ref, ws)).backward()
    ok = torch.arange(h) != 3  # the guarded determinant gives ~1e150 gradients there: compare relatively
    for x, y in zip(a, b):
        scale = y.grad[ok].abs().max()
        torch.testing.assert_close(x.grad[ok] / scale, y.grad[ok] / scale, atol=5e-4 if dtype == torch.float32 else 1e-10,
                                   rtol=0)
        if dtype == torch.float64:  # in float32 both overflow there (1 / sqrt(tiny) ~ 1e19, squared)
            rel = (x.grad[3] - y.grad[3]).abs().max() / y.grad[3].abs().max().clamp_min(1e-300)
            assert float(rel) < 1e-9


def test_hit_attributes_gradcheck_forward_mode_and_bad_inputs():
    import torch.autograd.forward_ad as fwAD

    from lumigrad.ops._trace_ref import hit_attributes_ref
    from lumigrad.ops.trace import hit_attributes

    c, o, d = (x[4:10].clone().requires_grad_(True) for x in _hit_rows(12, torch.float64, seed=2))
    assert torch.autograd.gradcheck(lambda *x: torch.cat(hit_attributes(*x), 1), (c, o, d))
    # only some inputs needing grad: the others' rows are not written
    (gc,) = torch.autograd.grad(hit_attributes(c, o.detach(), d.detach())[0].sum(), c)
    (gc_ref,) = torch.autograd.grad(hit_attributes_ref(c, o.detach(), d.detach())[0].sum(), c)
    torch.testing.assert_close(gc, gc_ref)
    tc = torch.randn_like(c)
    with fwAD.dual_level():
        tang = fwAD.unpack_dual(hit_attributes(fwAD.make_dual(c.detach(), tc), o.detach(), d.detach())[0]).tangent
    jac = torch.autograd.functional.jvp(lambda x: hit_attributes_ref(x, o.detach(), d.detach())[0], c.detach(), tc)[1]
    torch.testing.assert_close(tang, jac)
    empty = hit_attributes(torch.zeros(0, 18), torch.zeros(0, 3), torch.zeros(0, 3))
    assert all(x.shape == (0, 3) for x in empty)
    with pytest.raises(ValueError, match="hit_attributes.*corners"):
        hit_attributes(torch.zeros(4, 9), torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="hit_attributes.*dirs"):
        hit_attributes(torch.zeros(4, 18), torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.float64))
