"""The shared shape of the ops layer (lumigrad.ops._common): first-order backwards that refuse
double backward loudly, one row reduction, and no generated Warp adjoints."""
import importlib

import pytest
import torch

from lumigrad.ops import antialias, interpolate, rasterize, soft_rasterize, texture
from lumigrad.ops._common import per_thread_chunk, placeholder, reduce_rows, reduce_tasks, zeros_if_none

D = torch.float64
_POS = torch.tensor([[-0.7, -0.6, 0.1, 1.0], [0.8, -0.5, 0.2, 1.1], [0.05, 0.75, 0.3, 0.9]], dtype=D)
_TRI = torch.tensor([[0, 1, 2]], dtype=torch.int32)
_RES = (6, 7)


def _rasterize(p):
    return rasterize(p, _TRI, _RES).rast[..., :3]


def _interpolate(a):
    rast, _ = rasterize(_POS, _TRI, _RES)
    return interpolate(a, rast, _TRI).out


def _interpolate_da(a):
    rast, db = rasterize(_POS, _TRI, _RES)
    return interpolate(a, rast, _TRI, rast_db=db, diff_attrs="all").out_da


def _texture(t):
    uv = torch.rand(1, *_RES, 2, dtype=D, generator=torch.Generator().manual_seed(0))
    return texture(t, uv, boundary_mode="clamp")


def _texture_mip(t):
    g = torch.Generator().manual_seed(1)
    uv = torch.rand(1, *_RES, 2, dtype=D, generator=g)
    return texture(t, uv, torch.rand(1, *_RES, 4, dtype=D, generator=g) * 0.3)


def _antialias(p):
    rast, _ = rasterize(_POS, _TRI, _RES)
    return antialias((rast[..., 3:] > 0).to(D), rast, p, _TRI)


def _soft(p):
    return soft_rasterize(p, _TRI, _RES, sigma=1e-2).alpha


CASES = {
    "rasterize": (_rasterize, _POS),
    "interpolate": (_interpolate, torch.rand(3, 2, dtype=D)),
    "interpolate_da": (_interpolate_da, torch.rand(3, 2, dtype=D)),
    "texture": (_texture, torch.rand(4, 4, 3, dtype=D)),
    "texture_mip": (_texture_mip, torch.rand(8, 8, 3, dtype=D)),
    "antialias": (_antialias, _POS),
    "soft_rasterize": (_soft, _POS),
}


@pytest.mark.parametrize("name", list(CASES))
def test_double_backward_raises_clear_error(name):
    fn, x = CASES[name]
    x = x.clone().requires_grad_(True)
    out = fn(x)
    (g,) = torch.autograd.grad((out * out).sum(), x, create_graph=True)  # first order still works
    assert g.abs().sum() > 0
    with pytest.raises(RuntimeError, match="differentiate twice a function that was marked with @once_differentiable"):
        g.sum().backward()


@pytest.mark.parametrize("op", ["rasterize", "rasterize_grad", "interpolate", "texture", "antialias", "soft_rasterize"])
def test_kernel_modules_skip_generated_adjoints(op):
    # Hand-written backwards everywhere: Warp must not compile unused adjoints.
    mod = importlib.import_module(f"lumigrad.ops._{op}_kernels")
    import warp as wp

    kernels = [k for k in vars(mod).values() if isinstance(k, wp.Kernel)]
    assert kernels
    for k in kernels:
        assert k.module.options["enable_backward"] is False, k.key


def test_reduce_helpers():
    vals = torch.arange(12.0).view(6, 2)
    rows = torch.tensor([0, 2, 0, 1, 2, 2], dtype=torch.int32)
    out = reduce_rows(vals, rows, 4)
    expect = torch.zeros(4, 2)
    for v, r in zip(vals, rows.tolist()):
        expect[r] += v
    assert torch.equal(out, expect)
    acc = torch.ones(4, 2)
    assert reduce_rows(vals, rows, 4, out=acc) is acc and torch.equal(acc, expect + 1)
    assert torch.equal(reduce_rows(vals[:0], rows[:0], 3), torch.zeros(3, 2))
    assert torch.equal(reduce_tasks(torch.ones(3, 5)), torch.full((5,), 3.0))
    assert placeholder(vals, 1, 4).shape == (1, 4) and placeholder(vals, dtype=torch.int32).dtype == torch.int32
    assert torch.equal(zeros_if_none(None, vals), torch.zeros_like(vals)) and zeros_if_none(vals, vals) is vals


def test_per_thread_chunk_gives_one_launch_chunk_per_thread(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "3")
    assert per_thread_chunk(300) == 100 and per_thread_chunk(301) == 101  # launch(): n // min_chunk = 3 or 2 chunks
    assert per_thread_chunk(10, min_items=8) == 8  # small launches stay in few chunks
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "1")
    assert per_thread_chunk(300) == 300


@pytest.mark.parametrize("tasks", [1, 2, 3, 4])
def test_reduce_tasks_in_place_matches_sum(tasks):
    # In place into buffers[0], and bitwise what buffers.sum(0) gives (the gradients must not move).
    g = torch.Generator().manual_seed(tasks)
    bufs = torch.randn(tasks, 1001, 3, generator=g) * torch.rand(tasks, 1, 1, generator=g) * 1e3
    expect = bufs.sum(0)
    out = reduce_tasks(bufs)
    assert out.data_ptr() == bufs.data_ptr() and torch.equal(out, expect)
