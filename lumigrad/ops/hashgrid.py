"""Multiresolution hash-grid encoding (Instant-NGP, Mueller et al. 2022).

Level ``l`` has ``res[l]`` cells per axis; its ``(res+1)^3`` vertices index a
table of ``T`` feature vectors directly when they fit, else through the spatial
hash ``(x * 1) ^ (y * 2654435761) ^ (z * 805459861) mod T`` (uint32). Each
point's features are the trilinear interpolation of its cell's 8 corners.
Pure-torch spec: :mod:`lumigrad.ops._hashgrid_ref`. Kernels:
:mod:`lumigrad.ops._hashgrid_kernels`.
"""
from __future__ import annotations

import math

import torch

from lumigrad._runtime.checks import check_finite, check_float_tensor, check_same_device
from lumigrad._runtime.launch import launch, launch_chunks, num_threads, to_warp, warp_device
from lumigrad.ops import _hashgrid_kernels as _k

__all__ = ["hash_encode", "hashgrid_levels"]

_FN = "hash_encode"


def hashgrid_levels(n_levels: int, base_res: int, max_res: int, table_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level ``(res [L] int32, dense [L] int32)`` for a geometric series of resolutions."""
    if n_levels < 1 or base_res < 1 or max_res < base_res or table_size < 8:
        raise ValueError(f"hashgrid_levels(): need n_levels >= 1, 1 <= base_res <= max_res, table_size >= 8, got "
                         f"{n_levels}, {base_res}, {max_res}, {table_size}")
    growth = math.exp((math.log(max_res) - math.log(base_res)) / max(n_levels - 1, 1))
    res = [int(math.floor(base_res * growth**lvl)) for lvl in range(n_levels)]
    dense = [int((r + 1) ** 3 <= table_size) for r in res]
    return torch.tensor(res, dtype=torch.int32), torch.tensor(dense, dtype=torch.int32)


def hash_encode(
    x: torch.Tensor,  # [N, 3] in [0, 1]
    table: torch.Tensor,  # [L, T, F]
    res: torch.Tensor,  # [L] int32 cells per axis
    dense: torch.Tensor,  # [L] int32, 1 where (res+1)^3 <= T (direct indexing)
) -> torch.Tensor:
    """Encode points with a multiresolution hash grid: ``[N, L*F]`` features.

    Args:
        x: ``[N, 3]`` float32/float64 positions, clamped to ``[0, 1]``. No gradient
            (positions come from rays; the fields do not need it).
        table: ``[L, T, F]`` learnable feature tables, same dtype as ``x``.
        res: ``[L]`` int32 resolutions (cells per axis), ``>= 1``.
        dense: ``[L]`` int32 flags; a dense level needs ``(res+1)^3 <= T``.

    Returns:
        ``[N, L*F]``, level-major (``out[:, l*F:(l+1)*F]`` is level l). Gradients
        flow to ``table`` through a hand-written scatter kernel.

    Example:
        >>> import torch
        >>> from lumigrad.ops.hashgrid import hash_encode, hashgrid_levels
        >>> res, dense = hashgrid_levels(4, 4, 32, 2**12)
        >>> hash_encode(torch.rand(5, 3), torch.randn(4, 2**12, 2) * 1e-2, res, dense).shape
        torch.Size([5, 8])
    """
    check_float_tensor(_FN, "x", x, (2,), 3, expected="float [N, 3]")
    check_float_tensor(_FN, "table", table, (3,), expected="float [L, T, F]")
    if table.dtype != x.dtype:
        raise ValueError(f"{_FN}(): table must have x's dtype {x.dtype}, got {table.dtype}")
    L, T, F = table.shape
    for name, t in (("res", res), ("dense", dense)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int32 or t.shape != (L,):
            raise ValueError(f"{_FN}(): {name} must be int32 [L={L}], got {getattr(t, 'dtype', type(t))} "
                             f"{list(getattr(t, 'shape', []))}")
    check_same_device(_FN, x=x, table=table, res=res, dense=dense)
    if L == 0 or T == 0 or F == 0:
        raise ValueError(f"{_FN}(): table must be non-empty, got {list(table.shape)}")
    r = res.detach().cpu().long()
    if int(r.min()) < 1:
        raise ValueError(f"{_FN}(): res must be >= 1, got min {int(r.min())}")
    bad = (dense.detach().cpu() != 0) & ((r + 1) ** 3 > T)
    if bool(bad.any()):
        raise ValueError(f"{_FN}(): dense level(s) {bad.nonzero().flatten().tolist()} need (res+1)^3 <= T={T}")
    check_finite(_FN, "x", x)
    return _HashFn.apply(x.detach().contiguous(), table, res.contiguous(), dense.contiguous())


class _HashFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, table, res, dense):
        N = x.shape[0]
        L, T, F = table.shape
        out = torch.empty(N, L * F, dtype=x.dtype, device=x.device)
        launch(_k.hash_fwd, N * L, [to_warp(x), to_warp(table.detach().contiguous()), to_warp(res), to_warp(dense),
                                    to_warp(out)], warp_device(x))
        ctx.save_for_backward(x, res, dense)
        ctx.table_shape = (L, T, F)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None
        x, res, dense = ctx.saved_tensors
        L, T, F = ctx.table_shape
        n = x.shape[0] * L
        dev = warp_device(x)
        chunks = 1 if dev != "cpu" else max(1, min(num_threads(), n // 4096))
        grad = torch.zeros(chunks * L, T, F, dtype=x.dtype, device=x.device)
        args = [to_warp(x), to_warp(res), to_warp(dense), to_warp(grad_out.contiguous()), to_warp(grad)]
        bounds = [n * c // chunks for c in range(chunks + 1)]
        launch_chunks([(_k.hash_bwd, bounds[c + 1] - bounds[c], [bounds[c], c, *args]) for c in range(chunks)], dev)
        grad = grad.view(chunks, L, T, F).sum(0) if chunks > 1 else grad
        return None, grad, None, None
