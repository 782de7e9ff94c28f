import pytest
import torch

from lumigrad.ops._hashgrid_ref import hash_encode_ref
from lumigrad.ops.hashgrid import hash_encode, hashgrid_levels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_matches_reference(dtype):
    res, dense = hashgrid_levels(6, 2, 64, 2**10)
    assert dense.tolist()[0] == 1 and dense.tolist()[-1] == 0  # both branches
    table = (torch.randn(6, 2**10, 2, dtype=dtype) * 0.1).requires_grad_()
    x = torch.rand(600, 3, dtype=dtype)
    x[0] = 1.0  # upper boundary
    out = hash_encode(x, table, res, dense)
    ref = hash_encode_ref(x, table, res, dense)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(out, ref, **tol)
    g = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, table, g)[0], torch.autograd.grad(ref, table, g)[0], **tol)


def test_gradcheck_fd():
    res, dense = hashgrid_levels(3, 2, 9, 64)
    table = (torch.randn(3, 64, 2, dtype=torch.float64)).requires_grad_()
    x = torch.rand(7, 3, dtype=torch.float64)
    torch.autograd.gradcheck(lambda t: hash_encode(x, t, res, dense), (table,), eps=1e-6, atol=1e-7)


def test_bad_inputs():
    res, dense = hashgrid_levels(2, 2, 4, 64)
    t = torch.zeros(2, 64, 2)
    with pytest.raises(ValueError, match=r"hash_encode\(\): x must be float \[N, 3\]"):
        hash_encode(torch.rand(4, 2), t, res, dense)
    with pytest.raises(ValueError, match="dense level"):
        hash_encode(torch.rand(4, 3), t, torch.tensor([2, 9], dtype=torch.int32), torch.ones(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="res must be int32"):
        hash_encode(torch.rand(4, 3), t, res.long(), dense)
