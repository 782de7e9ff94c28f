"""Large-steps parameterization: matrix, round trip, gradients, AdamUniform, convergence."""
from __future__ import annotations

import pytest
import torch
import trimesh

from lumigrad.optim.large_steps import (
    AdamUniform,
    CholeskySolver,
    compute_matrix,
    from_differential,
    laplacian_matrix,
    to_differential,
)


def _sphere(subdivisions=2, dtype=torch.float32):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return torch.tensor(m.vertices, dtype=dtype), torch.tensor(m.faces, dtype=torch.int32), m


def test_laplacian_matches_dense_construction():
    v, f, m = _sphere(1)
    L = laplacian_matrix(len(v), f).to_dense()
    A = torch.zeros(len(v), len(v))
    for a, b in m.edges_unique:
        A[a, b] = A[b, a] = 1.0
    torch.testing.assert_close(L, torch.diag(A.sum(1)) - A)
    torch.testing.assert_close(L.sum(1), torch.zeros(len(v)))  # constants in the null space


def test_compute_matrix_is_spd_with_lambda():
    v, f, _ = _sphere(1, torch.float64)
    M = compute_matrix(v, f, lambda_=19.0)
    assert M.layout == torch.sparse_coo and M.dtype == torch.float64
    D = M.to_dense()
    L = laplacian_matrix(len(v), f, dtype=torch.float64).to_dense()
    torch.testing.assert_close(D, torch.eye(len(v), dtype=torch.float64) + 19.0 * L)
    torch.testing.assert_close(D, D.T)
    assert torch.linalg.eigvalsh(D).min() >= 1.0 - 1e-9


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_round_trip(dtype, tol):
    v, f, _ = _sphere(2, dtype)
    M = compute_matrix(v, f)
    solver = CholeskySolver(M)
    u = to_differential(M, v)
    assert u.dtype == dtype and u.shape == v.shape
    assert not torch.allclose(u, v)  # the map is not the identity
    v2 = from_differential(M, u, solver)
    torch.testing.assert_close(v2, v, atol=tol, rtol=0)
    # Without a held solver it factorises on the fly, same result.
    torch.testing.assert_close(from_differential(M, u), v2, atol=tol, rtol=0)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_solver_matches_dense_solve_for_1d_and_2d_rhs():
    v, f, _ = _sphere(1, torch.float64)
    M = compute_matrix(v, f, lambda_=3.0)
    solver = CholeskySolver(M)
    b = torch.randn(len(v), 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = torch.linalg.solve(M.to_dense(), b)
    torch.testing.assert_close(solver.solve(b), ref)
    torch.testing.assert_close(solver.solve(b[:, 2]), ref[:, 2])
    # CSR input gives the same factor.
    torch.testing.assert_close(CholeskySolver(M.to_sparse_csr()).solve(b), ref)


def test_gradcheck_from_differential_float64():
    v, f, _ = _sphere(0, torch.float64)  # 12 vertices
    M = compute_matrix(v, f, lambda_=5.0)
    solver = CholeskySolver(M)
    u = (to_differential(M, v) + 0.1).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: from_differential(M, x, solver), (u,), eps=1e-6, atol=1e-8)
    # And the gradient equals the analytic M^-1 g (M symmetric).
    g = torch.randn_like(u)
    (grad,) = torch.autograd.grad(from_differential(M, u, solver), u, g)
    torch.testing.assert_close(grad, torch.linalg.solve(M.to_dense(), g))


def test_adam_uniform_uses_one_scale_per_tensor():
    p = torch.zeros(3, requires_grad=True)
    opt = AdamUniform([p], lr=0.1, eps=0.0)
    p.grad = torch.tensor([1.0, 0.1, -0.01])
    opt.step()
    # First step: m_hat = g, v_hat = g^2 -> update = g / max|g| (Adam would give sign(g)).
    torch.testing.assert_close(p.detach(), -0.1 * torch.tensor([1.0, 0.1, -0.01]))
    p.grad = torch.tensor([1.0, 0.1, -0.01])
    opt.step()
    torch.testing.assert_close(p.detach(), -0.2 * torch.tensor([1.0, 0.1, -0.01]))
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 2


def test_adam_uniform_validation():
    p = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match=r"AdamUniform\(\): lr must be > 0, got -1"):
        AdamUniform([p], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        AdamUniform([p], betas=(0.9, 1.0))


def _fit_sphere(space: str, iters=100, lr=3e-2):
    """Fit a shrunken noisy icosphere to the unit sphere with an L2 loss on a fixed 20% of vertices.

    A partial loss mimics rendering, where gradients reach only some vertices
    (silhouettes, visible texels): large steps spreads them over the surface.
    Returns the mean squared error over *all* vertices.
    """
    target, f, _ = _sphere(3)
    g = torch.Generator().manual_seed(0)
    init = 0.6 * target + 0.03 * torch.randn(target.shape, generator=g)
    seen = torch.rand(len(target), generator=torch.Generator().manual_seed(1)) < 0.2
    M = compute_matrix(init, f, lambda_=19.0)
    solver = CholeskySolver(M)
    if space == "u":
        p = to_differential(M, init).detach().requires_grad_()
        opt = AdamUniform([p], lr=lr)
    else:
        p = init.clone().requires_grad_()
        opt = torch.optim.Adam([p], lr=lr)
    for _ in range(iters):
        opt.zero_grad()
        v = from_differential(M, p, solver) if space == "u" else p
        (((v - target) ** 2).sum(-1)[seen]).sum().backward()
        opt.step()
    with torch.no_grad():
        v = from_differential(M, p, solver) if space == "u" else p
        return ((v - target) ** 2).sum(-1).mean().item()


def test_large_steps_converges_faster_than_vertex_adam():
    err_u = _fit_sphere("u")
    err_v = _fit_sphere("v")
    # Measured: u-space ~3e-3, vertex space ~0.13 (unseen vertices never move).
    assert err_u < 0.1 * err_v
    assert err_u < 0.01


def test_bad_inputs():
    v, f, _ = _sphere(0)
    with pytest.raises(ValueError, match=r"compute_matrix\(\): lambda_ must be a finite float >= 0"):
        compute_matrix(v, f, lambda_=-1.0)
    with pytest.raises(ValueError, match=r"compute_matrix\(\): verts must be"):
        compute_matrix(v[:, :2], f)
    with pytest.raises(ValueError, match=r"laplacian_matrix\(\): faces has vertex index 11 out of range for 5"):
        laplacian_matrix(5, f)
    M = compute_matrix(v, f)
    with pytest.raises(ValueError, match=r"to_differential\(\): verts must be \[12, C\] float32"):
        to_differential(M, v.double())
    with pytest.raises(ValueError, match=r"from_differential\(\): solver was built for a"):
        from_differential(M, v, CholeskySolver(M.double()))
    with pytest.raises(ValueError, match=r"from_differential\(\): M must be a square sparse"):
        from_differential(M.to_dense(), v)
    with pytest.raises(ValueError, match=r"CholeskySolver.solve\(\): b must be float32 \[12\]"):
        CholeskySolver(M).solve(torch.zeros(11))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    v, f, _ = _sphere(2)
    M = compute_matrix(v, f)
    u = to_differential(M, v) + 0.01
    ref = from_differential(M, u, CholeskySolver(M))
    Mc = compute_matrix(v.cuda(), f.cuda())
    uc = u.cuda().requires_grad_()
    out = from_differential(Mc, uc, CholeskySolver(Mc))
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=0)
    out.sum().backward()
    assert uc.grad.device.type == "cuda" and torch.isfinite(uc.grad).all()
