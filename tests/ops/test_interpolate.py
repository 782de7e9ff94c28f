"""Tests for lumigrad.ops.interpolate: kernel vs reference, gradcheck, gradients through rasterize."""
import importlib
import itertools

import pytest
import torch

from lumigrad.ops._interpolate_ref import interpolate_ref
from lumigrad.ops._rasterize_ref import rasterize_ref
from lumigrad.ops.interpolate import Interpolated, interpolate

DTYPES = [torch.float32, torch.float64]


@pytest.fixture(params=[True, False], ids=["cpu_layout", "cuda_layout"])
def layout(request, monkeypatch):
    """Run the kernels with the CPU launch layout, or with CUDA's (one pixel per thread, one
    atomically updated gradient buffer) on the CPU, to check the latter's index arithmetic."""
    monkeypatch.setattr(importlib.import_module("lumigrad.ops.interpolate"), "_cpu_layout", lambda dev: request.param)
    return request.param


def _scene(dtype, batch=1, res=(12, 14)):
    """Two triangles (sharing an edge) plus an occluding third one, rasterized by the reference."""
    pos = torch.tensor(
        [
            [-0.8, -0.7, 0.1, 1.0],
            [0.9, -0.6, 0.2, 1.2],
            [0.0, 0.8, 0.3, 0.9],
            [0.7, 0.7, 0.5, 1.0],
            [-0.5, 0.0, -0.5, 1.0],
            [0.2, -0.2, -0.5, 1.0],
            [-0.3, 0.5, -0.5, 1.0],
        ],
        dtype=dtype,
    )
    tri = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 6]], dtype=torch.int32)
    pos = pos[None].repeat(batch, 1, 1)
    pos[1:, :, :2] += 0.1 * torch.randn(batch - 1, 7, 2, dtype=dtype, generator=torch.Generator().manual_seed(3))
    rast, db = rasterize_ref(pos, tri, res)
    return pos, tri, rast, db


def _hand_rast(dtype, B=2, H=3, W=4, F=3, seed=0):
    """Random barycentrics away from edges, random triangle ids (0 = empty)."""
    g = torch.Generator().manual_seed(seed)
    uv = 0.1 + 0.3 * torch.rand(B, H, W, 2, dtype=dtype, generator=g)
    tid = torch.randint(0, F + 1, (B, H, W, 1), generator=g).to(dtype)
    z = torch.rand(B, H, W, 1, dtype=dtype, generator=g)
    db = torch.randn(B, H, W, 4, dtype=dtype, generator=g)
    return uv, torch.cat([uv, z, tid], -1), db


def test_smoke_value():
    rast = torch.tensor([[[[0.2, 0.3, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]])
    attr = torch.tensor([[1.0], [2.0], [4.0]])
    res = interpolate(attr, rast, torch.tensor([[0, 1, 2]]))
    assert isinstance(res, Interpolated) and res.out_da is None
    torch.testing.assert_close(res.out.flatten(), torch.tensor([0.2 * 1 + 0.3 * 2 + 0.5 * 4, 0.0]))


def test_out_da_value():
    # attr channel = 10*a0 + ... ; d/dX = (a0 - a2) du/dX + (a1 - a2) dv/dX
    rast = torch.tensor([[[[0.2, 0.3, 0.0, 1.0]]]])
    db = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    attr = torch.tensor([[1.0, 5.0], [2.0, 6.0], [4.0, 0.0]])
    res = interpolate(attr, rast, torch.tensor([[0, 1, 2]]), rast_db=db, diff_attrs=[1])
    torch.testing.assert_close(res.out_da.flatten(), torch.tensor([5.0 * 1 + 6.0 * 3, 5.0 * 2 + 6.0 * 4]))


def test_shapes_and_broadcast():
    _, tri, rast, db = _scene(torch.float32, batch=2)
    attr = torch.randn(7, 5)
    out, out_da = interpolate(attr, rast, tri, db, "all")
    assert out.shape == (2, 12, 14, 5) and out_da.shape == (2, 12, 14, 10)
    out3, _ = interpolate(attr[None].expand(2, -1, -1), rast, tri)
    torch.testing.assert_close(out, out3)
    assert interpolate(attr, rast, tri, db).out_da is None  # rast_db without diff_attrs
    assert interpolate(attr, rast, tri.long()).out.dtype == torch.float32
    assert (out[rast[..., 3] == 0] == 0).all() and (rast[..., 3] == 0).any()


def _bad_cases():
    r = torch.zeros(1, 2, 2, 4)
    a = torch.zeros(3, 2)
    t = torch.tensor([[0, 1, 2]])
    r_hi = r.clone()
    r_hi[0, 0, 0, 3] = 2.0  # tri_id 1 with one face
    r_neg = r.clone()
    r_neg[0, 0, 0, 3] = -1.0
    r_nan = r.clone()
    r_nan[0, 0, 0, 0] = float("nan")
    return [
        (dict(attr=[[0.0]]), TypeError, "attr must be a torch.Tensor"),
        (dict(attr=torch.zeros(3, 2, dtype=torch.int32)), ValueError, "attr must be"),
        (dict(attr=torch.zeros(3)), ValueError, "attr must be"),
        (dict(attr=torch.full((3, 2), float("inf"))), ValueError, "attr contains"),
        (dict(rast=torch.zeros(1, 2, 2, 3)), ValueError, "rast must be"),
        (dict(rast=torch.zeros(2, 2, 4)), ValueError, "rast must be"),
        (dict(rast=r.double()), ValueError, "rast must have attr's dtype"),
        (dict(rast=r_nan), ValueError, "rast contains"),
        (dict(rast=r_hi), ValueError, r"rast\[..., 3\]"),
        (dict(rast=r_neg), ValueError, r"rast\[..., 3\]"),
        (dict(attr=torch.zeros(2, 3, 2)), ValueError, "attr batch"),
        (dict(tri=torch.tensor([[0.0, 1.0, 2.0]])), ValueError, "tri must be int32"),
        (dict(tri=torch.tensor([[0, 1, 3]])), ValueError, "out of range"),
        (dict(tri=torch.tensor([[0, -1, 2]])), ValueError, "negative"),
        (dict(tri=torch.zeros(0, 3, dtype=torch.int32)), ValueError, "empty"),
        (dict(tri=[[0, 1, 2]]), TypeError, "tri must be"),
        (dict(diff_attrs="all"), ValueError, "needs rast_db"),
        (dict(rast_db=r, diff_attrs=[2]), ValueError, "diff_attrs"),
        (dict(rast_db=r, diff_attrs=[]), ValueError, "diff_attrs"),
        (dict(rast_db=r, diff_attrs="some"), ValueError, "diff_attrs"),
        (dict(rast_db=torch.zeros(1, 2, 3, 4), diff_attrs="all"), ValueError, "rast_db must match"),
        (dict(rast_db=torch.full((1, 2, 2, 4), float("nan")), diff_attrs="all"), ValueError, "rast_db contains"),
    ], dict(attr=a, rast=r, tri=t)


@pytest.mark.parametrize("case", range(len(_bad_cases()[0])))
def test_bad_inputs(case):
    cases, base = _bad_cases()
    override, err, match = cases[case]
    kwargs = {**base, **override}
    with pytest.raises(err, match=match):
        interpolate(**kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batched_attr", [False, True])
def test_kernel_matches_reference(dtype, batched_attr, layout):
    g = torch.Generator().manual_seed(1)
    _, tri, rast, db = _scene(dtype, batch=2)
    attr = torch.randn(*((2,) if batched_attr else ()), 7, 4, dtype=dtype, generator=g)
    outs, grads = [], []
    for fn in (interpolate, interpolate_ref):
        a, r, d = (x.clone().requires_grad_() for x in (attr, rast, db))
        out, out_da = fn(a, r, tri, d, [3, 0, 3])
        outs.append((out, out_da))
        grads.append((a, r, d, out, out_da))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(outs[0][0], outs[1][0], **tol)
    torch.testing.assert_close(outs[0][1], outs[1][1], **tol)
    co = torch.randn(outs[0][0].shape, dtype=dtype, generator=g)
    co_da = torch.randn(outs[0][1].shape, dtype=dtype, generator=g)
    res = []
    for a, r, d, out, out_da in grads:
        res.append(torch.autograd.grad((out * co).sum() + (out_da * co_da).sum(), [a, r, d]))
    for gk, gr in zip(*res):
        torch.testing.assert_close(gk, gr, **tol)
    assert res[0][1][..., :2].abs().sum() > 0 and res[0][2].abs().sum() > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batched_attr", [False, True])
def test_three_channel_kernels_match_reference(dtype, batched_attr, layout):
    """C = 3 without rast_db runs the vector kernels (interpolate3_*): same values and gradients."""
    g = torch.Generator().manual_seed(2)
    _, tri, rast, _ = _scene(dtype, batch=2, res=(16, 19))
    attr = torch.randn(*((2,) if batched_attr else ()), 7, 3, dtype=dtype, generator=g)
    co = torch.randn(2, 16, 19, 3, dtype=dtype, generator=g)
    res = []
    for fn in (interpolate, interpolate_ref):
        a, r = attr.clone().requires_grad_(), rast.clone().requires_grad_()
        out = fn(a, r, tri).out
        res.append((out, *torch.autograd.grad((out * co).sum(), [a, r])))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for k, r in zip(*res):
        torch.testing.assert_close(k, r, **tol)
    assert res[0][1].abs().sum() > 0 and res[0][2][..., :2].abs().sum() > 0
    # Only the rast gradient requested: no attribute buffer, same rast gradient.
    r = rast.clone().requires_grad_()
    (gr,) = torch.autograd.grad((interpolate(attr, r, tri).out * co).sum(), [r])
    torch.testing.assert_close(gr, res[1][2], **tol)


def test_backward_skips_unneeded_and_no_da():
    _, tri, rast, _ = _scene(torch.float32)
    attr = torch.randn(7, 3, requires_grad=True)
    out = interpolate(attr, rast, tri).out
    (ga,) = torch.autograd.grad(out.sum(), [attr])
    # Each covered pixel gives its 3 weights (summing to 1) to 3 vertices.
    torch.testing.assert_close(ga.sum(0), torch.full((3,), float((rast[..., 3] > 0).sum())))
    r = rast.clone().requires_grad_()
    (gr,) = torch.autograd.grad(interpolate(attr.detach(), r, tri).out.sum(), [r])
    assert gr[..., 2:].abs().sum() == 0


@pytest.mark.parametrize("fn", [interpolate, interpolate_ref], ids=["kernel", "ref"])
def test_gradcheck(fn):
    uv, rast, db = _hand_rast(torch.float64)
    rest = rast[..., 2:]
    attr = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2], [3, 1, 0], [2, 3, 1]], dtype=torch.int32)

    def f(a, uv_, db_):
        out, out_da = fn(a, torch.cat([uv_, rest], -1), tri, db_, [2, 0])
        return out, out_da

    inputs = (attr, uv.requires_grad_(), db.requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda a, uv_: fn(a, torch.cat([uv_, rest], -1), tri).out, inputs[:2])


def test_batched_equals_looped():
    _, tri, rast, db = _scene(torch.float32, batch=3)
    attr = torch.randn(3, 7, 2)
    out, out_da = interpolate(attr, rast, tri, db, "all")
    for b in range(3):
        ob, odb = interpolate(attr[b], rast[b : b + 1], tri, db[b : b + 1], "all")
        torch.testing.assert_close(out[b : b + 1], ob)
        torch.testing.assert_close(out_da[b : b + 1], odb)


def test_gradient_reaches_pos_through_rasterize():
    """d/dpos of a weighted sum of interpolated colours vs central FD (pixels away from edges)."""
    pos, tri, rast, _ = _scene(torch.float64, res=(10, 12))
    g = torch.Generator().manual_seed(5)
    attr = torch.randn(7, 3, dtype=torch.float64, generator=g)
    u, v = rast[..., 0], rast[..., 1]
    interior = (rast[..., 3] > 0) & (torch.stack([u, v, 1 - u - v]).min(0).values > 0.05)
    assert interior.sum() >= 10
    w = torch.randn(*rast.shape[:3], 3, dtype=torch.float64, generator=g) * interior[..., None]

    def loss(p):
        return (interpolate(attr, rasterize_ref(p, tri, (10, 12))[0], tri).out * w).sum()

    p = pos.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(p), [p])
    fd = torch.zeros_like(pos)
    eps = 1e-6
    for idx in itertools.product(*map(range, pos.shape)):
        dp = torch.zeros_like(pos)
        dp[idx] = eps
        fd[idx] = (loss(pos + dp) - loss(pos - dp)) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-7)
    assert grad[..., [0, 1, 3]].abs().max() > 1e-3  # x, y, w move barycentrics
