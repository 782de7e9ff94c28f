"""Large-steps parameterization of mesh vertices (Nicolet et al. 2021).

"Large Steps in Inverse Rendering of Geometry" optimises ``u = (I + lambda L) v``
instead of the vertex positions ``v``. Gradients w.r.t. ``u`` are the vertex
gradients smoothed by ``(I + lambda L)^-1``, so a sparse silhouette gradient
moves a whole neighbourhood, and the mesh stays well shaped with large steps.
Pair it with :class:`AdamUniform`, which rescales every coordinate by one
(the largest) second moment so the smoothing is not undone per coordinate.

This is a reimplementation: the published ``largesteps`` package hard-codes
CUDA and keeps a module-level solver cache keyed by ``id()``. Here the caller
holds the factorisation (:class:`CholeskySolver`) and passes it in.

Example::

    M = compute_matrix(verts, faces, lambda_=19.0)     # [V, V] sparse
    solver = CholeskySolver(M)                          # factorise once
    u = to_differential(M, verts).requires_grad_()      # [V, 3]
    opt = AdamUniform([u], lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        v = from_differential(M, u, solver)             # differentiable
        loss = ((v - target) ** 2).sum()
        loss.backward()
        opt.step()
"""
from __future__ import annotations

import logging
from typing import Iterable

import torch

from lumigrad._runtime.checks import _desc, check_faces, check_float_tensor

__all__ = [
    "laplacian_matrix",
    "compute_matrix",
    "to_differential",
    "from_differential",
    "CholeskySolver",
    "AdamUniform",
]

logger = logging.getLogger(__name__)

# cholespy's CUDA backend accepts at most this many right-hand sides per solve.
_CUDA_MAX_RHS = 128


def _check_sparse_square(fn: str, name: str, M) -> int:
    if not isinstance(M, torch.Tensor):
        raise TypeError(f"{fn}(): {name} must be a sparse torch.Tensor [V, V], got {type(M).__name__}")
    if M.layout not in (torch.sparse_coo, torch.sparse_csr) or M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(
            f"{fn}(): {name} must be a square sparse COO/CSR tensor [V, V] "
            f"(from compute_matrix()), got {M.layout} {list(M.shape)}"
        )
    if M.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{fn}(): {name} must be float32 or float64, got {_desc(M)}")
    return int(M.shape[0])


def laplacian_matrix(
    num_verts: int,
    faces: torch.Tensor,  # [F, 3] int
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform (combinatorial) graph Laplacian ``L = D - A`` of a triangle mesh.

    ``A[i, j] = 1`` for every mesh edge ``(i, j)`` (each edge counted once, however
    many faces share it) and ``D`` is the diagonal of vertex degrees. ``L`` is
    symmetric positive semi-definite; constants lie in its null space.

    Args:
        num_verts: V, the number of vertices (isolated vertices get an empty row).
        faces: ``[F, 3]`` integer vertex indices in ``[0, V)``.
        dtype: float32 or float64 values.

    Returns:
        Coalesced sparse COO tensor ``[V, V]`` of ``dtype`` on ``faces.device``.
        Not differentiable (topology only).

    Example::

        L = laplacian_matrix(3, torch.tensor([[0, 1, 2]], dtype=torch.int32))
        # L.to_dense() == [[2, -1, -1], [-1, 2, -1], [-1, -1, 2]]
    """
    fn = "laplacian_matrix"
    if isinstance(num_verts, bool) or not isinstance(num_verts, int) or num_verts <= 0:
        raise ValueError(f"{fn}(): num_verts must be a positive int, got {num_verts!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{fn}(): dtype must be torch.float32 or torch.float64, got {dtype}")
    faces = check_faces(fn, faces, num_verts, name="faces").long()
    device = faces.device
    # Directed edges in both directions, deduplicated: edges shared by two faces count once.
    i = faces[:, [0, 1, 2, 1, 2, 0]].reshape(-1)
    j = faces[:, [1, 2, 0, 0, 1, 2]].reshape(-1)
    keep = i != j  # degenerate faces must not put entries on the diagonal
    adj = torch.unique(torch.stack([i[keep], j[keep]]), dim=1)
    deg = torch.zeros(num_verts, dtype=dtype, device=device)
    deg.index_add_(0, adj[0], torch.ones(adj.shape[1], dtype=dtype, device=device))
    diag = torch.arange(num_verts, device=device)
    idx = torch.cat([adj, torch.stack([diag, diag])], dim=1)
    val = torch.cat([-torch.ones(adj.shape[1], dtype=dtype, device=device), deg])
    return torch.sparse_coo_tensor(idx, val, (num_verts, num_verts), check_invariants=False).coalesce()


def compute_matrix(
    verts: torch.Tensor,  # [V, 3]
    faces: torch.Tensor,  # [F, 3] int
    lambda_: float = 19.0,
) -> torch.Tensor:
    """System matrix ``M = I + lambda_ * L`` of the large-steps parameterization.

    ``L`` is the uniform Laplacian (:func:`laplacian_matrix`). ``M`` is symmetric
    positive definite for ``lambda_ >= 0``.

    Args:
        verts: ``[V, 3]`` float32/float64 vertex positions (only V, dtype and device are used).
        faces: ``[F, 3]`` integer vertex indices.
        lambda_: smoothing weight, ``>= 0``; the paper uses 19 (i.e. ``alpha = 0.95``).

    Returns:
        Coalesced sparse COO ``[V, V]`` with ``verts``' dtype and device. Not differentiable.

    Example::

        M = compute_matrix(verts, faces, lambda_=19.0)
    """
    fn = "compute_matrix"
    check_float_tensor(fn, "verts", verts, (2,), last=3)
    try:
        lam = float(lambda_)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}(): lambda_ must be a float >= 0, got {type(lambda_).__name__}") from None
    if not lam >= 0.0 or lam == float("inf"):
        raise ValueError(f"{fn}(): lambda_ must be a finite float >= 0, got {lambda_!r}")
    if isinstance(faces, torch.Tensor) and faces.device != verts.device:
        raise ValueError(f"{fn}(): inputs must share one device, got verts on {verts.device}, faces on {faces.device}")
    n = int(verts.shape[0])
    L = laplacian_matrix(n, faces, dtype=verts.dtype)
    diag = torch.arange(n, device=verts.device)
    eye = torch.sparse_coo_tensor(
        torch.stack([diag, diag]), torch.ones(n, dtype=verts.dtype, device=verts.device), (n, n), check_invariants=False
    )
    return (eye + lam * L).coalesce()


def to_differential(
    M: torch.Tensor,  # [V, V] sparse
    verts: torch.Tensor,  # [V, C]
) -> torch.Tensor:
    """Map vertex positions to differential coordinates, ``u = M @ verts``.

    Args:
        M: ``[V, V]`` sparse matrix from :func:`compute_matrix`.
        verts: ``[V, C]`` float tensor with ``M``'s dtype and device.

    Returns:
        ``u``: ``[V, C]``; differentiable w.r.t. ``verts`` (plain sparse matmul).

    Example::

        u = to_differential(M, verts).detach().requires_grad_()
    """
    fn = "to_differential"
    n = _check_sparse_square(fn, "M", M)
    check_float_tensor(fn, "verts", verts, (2,))
    if verts.shape[0] != n or verts.dtype != M.dtype or verts.device != M.device:
        raise ValueError(
            f"{fn}(): verts must be [{n}, C] {str(M.dtype).replace('torch.', '')} on {M.device} "
            f"to match M, got {_desc(verts)} on {verts.device}"
        )
    return torch.sparse.mm(M, verts.contiguous())


class CholeskySolver:
    """Sparse Cholesky factorisation of a symmetric positive definite matrix.

    Wraps ``cholespy.CholeskySolverF`` (float32) or ``cholespy.CholeskySolverD``
    (float64), chosen by ``M.dtype``. The factor lives on ``M.device`` (CPU via
    CHOLMOD, CUDA via cholespy's GPU backend). Factorising costs roughly as much
    as a few hundred solves, so build one per mesh topology and reuse it; rebuild
    it after remeshing.

    Args:
        M: ``[V, V]`` sparse COO or CSR tensor, symmetric positive definite
            (e.g. from :func:`compute_matrix`). Only its values at factorisation
            time are used; later changes to ``M`` are not seen.

    Attributes:
        num_rows: V.
        dtype: float32 or float64; right-hand sides must have this dtype.
        device: where right-hand sides must live.

    Example::

        solver = CholeskySolver(M)
        x = solver.solve(b)          # b: [V] or [V, C]
    """

    def __init__(self, M: torch.Tensor):
        import cholespy  # imported lazily: only large-steps users need it

        fn = "CholeskySolver"
        n = _check_sparse_square(fn, "M", M)
        if M.layout == torch.sparse_csr:
            M = M.to_sparse_coo()
        M = M.coalesce()
        idx = M.indices()
        rows = idx[0].to(torch.int32).contiguous()
        cols = idx[1].to(torch.int32).contiguous()
        vals = M.values().detach().to(torch.float64).contiguous()
        if vals.numel() and not bool(torch.isfinite(vals).all()):
            raise ValueError(f"{fn}(): M contains NaN or inf values")
        cls = cholespy.CholeskySolverF if M.dtype == torch.float32 else cholespy.CholeskySolverD
        try:
            self._solver = cls(n, rows, cols, vals, cholespy.MatrixType.COO)
        except Exception as exc:  # cholespy raises plain exceptions for non-SPD input
            raise RuntimeError(f"{fn}(): Cholesky factorisation failed ({exc}); is M symmetric positive definite?") from exc
        self.num_rows = n
        self.dtype = M.dtype
        self.device = M.device

    def solve(self, b: torch.Tensor) -> torch.Tensor:  # [V] or [V, C] -> same
        """Return ``x`` with ``M x = b`` (not differentiable; see :func:`from_differential`).

        Args:
            b: ``[V]`` or ``[V, C]`` tensor with the solver's dtype and device.

        Returns:
            ``x``: same shape, dtype and device as ``b``.
        """
        fn = "CholeskySolver.solve"
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"{fn}(): b must be a torch.Tensor [V] or [V, C], got {type(b).__name__}")
        dt = str(self.dtype).replace("torch.", "")
        if b.ndim not in (1, 2) or b.shape[0] != self.num_rows or b.dtype != self.dtype or b.device != self.device:
            raise ValueError(
                f"{fn}(): b must be {dt} [{self.num_rows}] or [{self.num_rows}, C] on {self.device}, "
                f"got {_desc(b)} on {b.device}"
            )
        b = b.detach()
        if b.ndim == 2 and b.device.type == "cuda" and b.shape[1] > _CUDA_MAX_RHS:
            return torch.cat([self.solve(c) for c in torch.split(b, _CUDA_MAX_RHS, dim=1)], dim=1)
        b = b.contiguous()
        x = torch.empty_like(b)
        if b.device.type == "cuda":
            # cholespy launches on its own stream; make sure b is ready and x is visible to torch.
            torch.cuda.synchronize(b.device)
        self._solver.solve(b, x)
        if b.device.type == "cuda":
            torch.cuda.synchronize(b.device)
        return x


class _SolveFn(torch.autograd.Function):
    """``x = M^-1 u`` with backward ``grad_u = M^-1 grad_x`` (M is symmetric)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, solver: CholeskySolver) -> torch.Tensor:
        ctx.solver = solver
        return solver.solve(u)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_x: torch.Tensor):
        grad_u = ctx.solver.solve(grad_x.contiguous()) if ctx.needs_input_grad[0] else None
        return grad_u, None


def from_differential(
    M: torch.Tensor,  # [V, V] sparse
    u: torch.Tensor,  # [V, C]
    solver: CholeskySolver | None = None,
) -> torch.Tensor:
    """Map differential coordinates back to vertex positions, ``verts = M^-1 u``.

    Args:
        M: ``[V, V]`` sparse matrix from :func:`compute_matrix`.
        u: ``[V, C]`` differential coordinates, ``M``'s dtype and device.
        solver: a :class:`CholeskySolver` built from ``M``. Pass one and reuse it
            across iterations: with ``None`` a new factorisation is made on every
            call (correct but slow, logged at debug level).

    Returns:
        ``verts``: ``[V, C]``. Differentiable w.r.t. ``u`` (the backward solves the
        same symmetric system); no gradient flows to ``M``. First order only.

    Example::

        solver = CholeskySolver(M)
        verts = from_differential(M, u, solver)
    """
    fn = "from_differential"
    n = _check_sparse_square(fn, "M", M)
    check_float_tensor(fn, "u", u, (2,))
    if u.shape[0] != n or u.dtype != M.dtype or u.device != M.device:
        raise ValueError(
            f"{fn}(): u must be [{n}, C] {str(M.dtype).replace('torch.', '')} on {M.device} "
            f"to match M, got {_desc(u)} on {u.device}"
        )
    if solver is None:
        logger.debug("from_differential(): no solver given, factorising M (pass a CholeskySolver to reuse it)")
        solver = CholeskySolver(M)
    elif not isinstance(solver, CholeskySolver):
        raise TypeError(f"{fn}(): solver must be a CholeskySolver, got {type(solver).__name__}")
    elif solver.num_rows != n or solver.dtype != M.dtype or solver.device != M.device:
        raise ValueError(
            f"{fn}(): solver was built for a {solver.num_rows}x{solver.num_rows} "
            f"{str(solver.dtype).replace('torch.', '')} matrix on {solver.device}, "
            f"but M is {_desc(M)} on {M.device}; rebuild it with CholeskySolver(M)"
        )
    return _SolveFn.apply(u, solver)


class AdamUniform(torch.optim.Optimizer):
    """Adam with one uniform step scale per parameter tensor (Nicolet et al. 2021).

    Identical to Adam except the per-coordinate denominator ``sqrt(v_hat)`` is
    replaced by its maximum over the whole tensor, ``max(sqrt(v_hat)) + eps``.
    The update direction is then the (bias-corrected) first moment itself, so the
    smoothing applied by the large-steps parameterization survives the step.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: step size, ``> 0``.
        betas: ``(beta1, beta2)`` moment decay rates in ``[0, 1)``.
        eps: denominator floor, ``>= 0``.

    Example::

        opt = AdamUniform([u], lr=3e-2)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if not lr > 0.0:
            raise ValueError(f"AdamUniform(): lr must be > 0, got {lr!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamUniform(): betas must be two floats in [0, 1), got {betas!r}")
        if not eps >= 0.0:
            raise ValueError(f"AdamUniform(): eps must be >= 0, got {eps!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one update; ``closure`` (optional) re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            beta1, beta2 = group["betas"]
            eps = group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("AdamUniform.step(): sparse gradients are not supported")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                m_hat = m / (1.0 - beta1**t)
                # One scalar denominator for the whole tensor: the uniform rescaling.
                denom = (v.max() / (1.0 - beta2**t)).sqrt() + eps
                p.sub_(m_hat / denom, alpha=lr)
        return loss
