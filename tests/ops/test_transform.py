"""lumigrad.ops.transform (the CPU kernel path of geometry.transform_points) vs its torch reference."""
from __future__ import annotations

import pytest
import torch

from lumigrad.geometry.transforms import transform_points
from lumigrad.ops import transform as T
from lumigrad.ops._transform_ref import transform_points_ref

D = torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,Bp", [(1, 1), (3, 1), (3, 3)])
def test_kernel_matches_reference_fwd_bwd(dtype, B, Bp):
    g = torch.Generator().manual_seed(B * 10 + Bp)
    m = torch.randn(B, 4, 4, generator=g, dtype=dtype, requires_grad=True)
    p = torch.randn(Bp, 777, 3, generator=g, dtype=dtype, requires_grad=True)  # 777: spans end mid-span
    out, ref = T.transform_points_fused(m, p), transform_points_ref(m, p)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    # Not bitwise: whether the compiler fuses the kernel's multiply-adds and how torch's GEMM sums depend on the
    # CPU (equal on session 13's AMD machine, a few ulps apart on an Intel one with AVX-512).
    torch.testing.assert_close(out, ref, **tol)
    cot = torch.randn(out.shape, generator=g, dtype=dtype)
    for a, b in zip(torch.autograd.grad(out, (m, p), cot), torch.autograd.grad(ref, (m, p), cot)):
        torch.testing.assert_close(a, b, **tol)


def test_kernel_only_point_grad_and_no_grad():
    m = torch.randn(2, 4, 4, dtype=D)
    p = torch.randn(1, 9, 3, dtype=D, requires_grad=True)
    out = T.transform_points_fused(m, p)
    (gp,) = torch.autograd.grad(out.sum(), p)
    torch.testing.assert_close(gp, torch.autograd.grad(transform_points_ref(m, p).sum(), p)[0])
    with torch.no_grad():
        assert not T.transform_points_fused(m, p).requires_grad


def test_kernel_gradcheck_double_backward_and_forward_mode():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(2, 4, 4, generator=g, dtype=D, requires_grad=True)
    p = torch.randn(1, 6, 3, generator=g, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(T.transform_points_fused, (m, p))
    assert torch.autograd.gradgradcheck(T.transform_points_fused, (m, p))
    assert torch.autograd.gradcheck(T.transform_points_fused, (m, p), check_forward_ad=True, check_backward_ad=False)


def test_transform_points_dispatch():
    # Large CPU inputs take the kernel, small ones torch; both agree with the reference.
    g = torch.Generator().manual_seed(1)
    m = torch.randn(4, 4, generator=g)
    big = torch.randn(T._MIN_ROWS, 3, generator=g)
    assert T.use_kernel(m[None], big[None]) and not T.use_kernel(m[None], big[None, :100])
    out = transform_points(m, big.requires_grad_())
    assert out.grad_fn is not None and type(out.grad_fn).__name__ == "_TransformFnBackward"
    torch.testing.assert_close(out, transform_points_ref(m[None], big[None]), atol=1e-5, rtol=1e-5)
    small = transform_points(m, big[:100])
    assert type(small.grad_fn).__name__ != "_TransformFnBackward"
    # A matrix batch of 1 over a batch of point sets broadcasts, with its gradient summed.
    mm = m[None].clone().requires_grad_()
    pts = torch.randn(3, 4000, 3, generator=g)
    out = transform_points(mm, pts)
    ref = transform_points_ref(mm.expand(3, 4, 4), pts)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out.sum(), mm)[0], torch.autograd.grad(ref.sum(), mm)[0])
