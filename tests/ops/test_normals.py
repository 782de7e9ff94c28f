"""vertex_normal_sums: Warp kernels vs the torch reference, finite differences, forward mode, bad input."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD

from lumigrad.geometry import icosphere
from lumigrad.geometry.normals import vertex_normals
from lumigrad.ops._normals_ref import vertex_normal_sums_ref
from lumigrad.geometry.normals import safe_normalize
from lumigrad.ops import normals as ops_normals
from lumigrad.ops.normals import vertex_normal_sums


def _mesh(dtype, level=2, batch=None):
    v, f = icosphere(level, dtype=dtype)
    v = v + 0.1 * torch.randn(v.shape, dtype=dtype, generator=torch.Generator().manual_seed(3))
    if batch:
        v = torch.stack([v * (1 + 0.2 * b) + 0.1 * b for b in range(batch)])
    return v, f


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [None, 3])
def test_matches_reference_forward_backward_and_jvp(dtype, batch):
    v, f = _mesh(dtype, batch=batch)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    out = vertex_normal_sums(v, f)
    assert out.shape == v.shape and out.abs().max() > 0
    torch.testing.assert_close(out, vertex_normal_sums_ref(v, f), **tol)
    g = torch.randn_like(v)
    grads = []
    for fn in (vertex_normal_sums, vertex_normal_sums_ref):
        x = v.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(fn(x, f), x, g)[0])
    torch.testing.assert_close(grads[0], grads[1], **tol)
    t = torch.randn_like(v)
    with fwAD.dual_level():
        tans = [fwAD.unpack_dual(fn(fwAD.make_dual(v, t), f)).tangent for fn in (vertex_normal_sums, vertex_normal_sums_ref)]
    torch.testing.assert_close(tans[0], tans[1], **tol)


def _unit_ref(v, f):
    return safe_normalize(vertex_normal_sums_ref(v, f))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [None, 2])
def test_unit_normals_match_the_normalised_reference(dtype, batch):
    v, f = _mesh(dtype, batch=batch)
    tol = dict(atol=2e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    out = ops_normals.vertex_normals(v, f)
    torch.testing.assert_close(out, _unit_ref(v, f), **tol)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(out.shape[:-1], dtype=dtype), **tol)
    g = torch.randn_like(v)
    grads = []
    for fn in (ops_normals.vertex_normals, _unit_ref):
        x = v.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(fn(x, f), x, g)[0])
    torch.testing.assert_close(grads[0], grads[1], **tol)
    t = torch.randn_like(v)
    with fwAD.dual_level():
        tans = [fwAD.unpack_dual(fn(fwAD.make_dual(v, t), f)).tangent for fn in (ops_normals.vertex_normals, _unit_ref)]
    torch.testing.assert_close(tans[0], tans[1], **tol)


def test_unit_normals_of_isolated_and_degenerate_vertices_are_zero_with_zero_gradient():
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]],
                     dtype=torch.float64, requires_grad=True)
    f = torch.tensor([[0, 1, 2], [0, 1, 3]], dtype=torch.int32)  # vertex 2: only a zero-area face; 4: no face
    n = ops_normals.vertex_normals(v, f)
    assert torch.equal(n[2], torch.zeros(3, dtype=torch.float64)) and torch.equal(n[4], n[2])
    torch.testing.assert_close(n[0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    (g,) = torch.autograd.grad((n * torch.randn_like(n)).sum(), v)
    assert torch.isfinite(g).all() and torch.equal(g[4], torch.zeros(3, dtype=torch.float64))


def test_gradcheck_float64():
    v, f = _mesh(torch.float64, level=1)
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: vertex_normal_sums(x, f), (v,))
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, f), (v,))
    assert torch.autograd.gradcheck(lambda x: ops_normals.vertex_normals(x, f), (v,), check_forward_ad=True)


def test_degenerate_and_empty():
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    f = torch.tensor([[0, 1, 2]], dtype=torch.int32)  # a line: zero area
    assert torch.equal(vertex_normal_sums(v, f), torch.zeros_like(v))
    assert torch.equal(vertex_normals(v, f), torch.zeros_like(v))
    assert torch.equal(vertex_normal_sums(v, torch.zeros(0, 3, dtype=torch.int32)), torch.zeros_like(v))


def test_bad_input():
    v, f = _mesh(torch.float32, level=0)
    with pytest.raises(ValueError, match="faces"):
        vertex_normal_sums(v, f + v.shape[0])
    with pytest.raises(ValueError, match="faces"):
        vertex_normal_sums(v, f - 100)
    with pytest.raises(ValueError, match="verts"):
        vertex_normal_sums(v[:, :2], f)
    with pytest.raises((ValueError, TypeError), match="verts"):
        vertex_normal_sums(v.to(torch.int32), f)
