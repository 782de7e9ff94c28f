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


def test_cpu_tasks_whose_spans_cross_a_batch_boundary(monkeypatch):
    # 3 x 5120 faces in 2 CPU tasks: the second starts inside batch 1 and walks on into batch 2.
    monkeypatch.setattr(ops_normals, "num_threads", lambda: 2)
    monkeypatch.setattr(ops_normals, "_MIN_TASK_FACES", 4096)
    v, f = _mesh(torch.float64, level=4, batch=3)
    g = torch.randn_like(v)
    for fn, ref in ((vertex_normal_sums, vertex_normal_sums_ref), (ops_normals.vertex_normals, _unit_ref)):
        outs, grads = [], []
        for h in (fn, ref):
            x = v.clone().requires_grad_(True)
            outs.append(h(x, f))
            grads.append(torch.autograd.grad(outs[-1], x, g)[0])
        torch.testing.assert_close(outs[0], outs[1], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=1e-12)


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


# --- unit_vectors: safe_normalize's Warp path ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(50, 3), (2, 5, 7, 3)])
def test_unit_vectors_match_torch_safe_normalize(dtype, shape):
    from lumigrad.geometry.normals import _safe_normalize_torch

    g = torch.Generator().manual_seed(1)
    v = torch.randn(shape, dtype=dtype, generator=g)
    v.view(-1, 3)[3] = 0.0  # a zero row: zero output, zero gradient
    a, b = v.clone().requires_grad_(True), v.clone().requires_grad_(True)
    ua, ub = ops_normals.unit_vectors(a), _safe_normalize_torch(b)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=1e-14, rtol=1e-14)
    assert ua.shape == v.shape
    torch.testing.assert_close(ua, ub, **tol)
    w = torch.randn(shape, dtype=dtype, generator=g)
    (ua * w).sum().backward()
    (ub * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, **tol)
    assert a.grad.view(-1, 3)[3].abs().max() == 0 and ua.view(-1, 3)[3].abs().max() == 0
    t = torch.randn(shape, dtype=dtype, generator=g)
    with fwAD.dual_level():
        ja = fwAD.unpack_dual(ops_normals.unit_vectors(fwAD.make_dual(v, t))).tangent
        jb = fwAD.unpack_dual(_safe_normalize_torch(fwAD.make_dual(v, t))).tangent
    torch.testing.assert_close(ja, jb, **tol)


def test_unit_vectors_gradcheck_and_first_order_only():
    v = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert torch.autograd.gradcheck(ops_normals.unit_vectors, (v,), check_forward_ad=True)
    (g,) = torch.autograd.grad((ops_normals.unit_vectors(v) ** 3).sum(), v, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()


def test_safe_normalize_takes_the_kernel_for_large_inputs_only(monkeypatch):
    calls = []
    real = ops_normals.unit_vectors
    monkeypatch.setattr(ops_normals, "unit_vectors", lambda v: calls.append(v.shape) or real(v))
    big = torch.randn(5000, 3)
    torch.testing.assert_close(safe_normalize(big), big / big.norm(dim=-1, keepdim=True))
    safe_normalize(torch.randn(10, 3))  # small: torch ops
    safe_normalize(torch.randn(5000, 2))  # not 3-vectors: torch ops
    assert calls == [torch.Size([5000, 3])]


def test_unit_vectors_bad_input():
    with pytest.raises(ValueError, match="unit_vectors.*v must be"):
        ops_normals.unit_vectors(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="unit_vectors.*v must be"):
        ops_normals.unit_vectors(torch.zeros(4, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match="unit_vectors"):
        ops_normals.unit_vectors([[1.0, 0.0, 0.0]])


def test_dot_matches_sum_of_products_and_broadcasts():
    from lumigrad.geometry.normals import dot

    g = torch.Generator().manual_seed(4)
    a = torch.randn(4, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    torch.testing.assert_close(dot(a, b), (a * b).sum(-1))
    assert dot(a, b, keepdim=True).shape == (4, 5, 1)
    assert torch.autograd.gradcheck(dot, (a, b)) and torch.autograd.gradgradcheck(dot, (a, b))
    c = torch.randn(6, 2, generator=g)  # not 3-vectors: plain sum
    torch.testing.assert_close(dot(c, c), (c * c).sum(-1))
    assert float(dot(torch.tensor([1.0, 2.0, 3.0]), torch.ones(3))) == 6.0


def _sparse_grad(v, seed, zero_share):
    """A random cotangent for ``v`` with about ``zero_share`` of its vertices' rows zero (as a rendered loss's)."""
    g = torch.randn(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(seed))
    g[..., torch.rand(v.shape[-2], generator=torch.Generator().manual_seed(seed + 1)) < zero_share, :] = 0
    return g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [None, 2])
def test_backward_skipping_zero_gradient_faces_is_bitwise_the_full_pass(monkeypatch, dtype, batch):
    # A rendered loss reaches few vertices: the skipped faces would have added exact zeros.
    v, f = _mesh(dtype, level=3, batch=batch)
    g = _sparse_grad(v, 5, 0.8)
    g[..., 0, :] = torch.tensor([1.0, -1.0, 0.0], dtype=dtype)  # cancels within some faces' sum
    g[..., 1, :] = torch.tensor([-1.0, 1.0, 0.0], dtype=dtype)
    grads = {}
    for skip in (1, 0):
        monkeypatch.setattr(ops_normals, "_SKIP_ZERO_GRAD", skip)
        for name, fn in (("sums", vertex_normal_sums), ("unit", vertex_normals)):
            vv = v.clone().requires_grad_(True)
            grads[name, skip] = torch.autograd.grad(fn(vv, f), vv, g)[0]
    for name in ("sums", "unit"):
        assert grads[name, 1].abs().sum() > 0 and (grads[name, 1] == 0).any()
        assert torch.equal(grads[name, 1], grads[name, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [None, 2])
def test_unit_normals_fused_backward_is_bitwise_the_two_pass_one(monkeypatch, dtype, batch):
    v, f = _mesh(dtype, level=3, batch=batch)
    g = _sparse_grad(v, 7, 0.7)
    grads = []
    for fused in (1, 0):
        monkeypatch.setattr(ops_normals, "_FUSED_UNIT_BWD", fused)
        vv = v.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(vertex_normals(vv, f), vv, g)[0])
    assert grads[0].abs().sum() > 0 and torch.equal(grads[0], grads[1])
