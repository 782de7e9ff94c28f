"""lumigrad._runtime.launch: chunked CPU launches, the per-overload launch templates, the pool."""
import gc
import weakref
from typing import Any

import pytest
import torch
import warp as wp

from lumigrad._runtime import launch as L


@wp.kernel
def _axpb(offset: int, a: Any, b: int, x: wp.array(dtype=Any), out: wp.array(dtype=Any)):
    i = wp.tid() + offset
    out[i] = x[i] * x.dtype(a) + x.dtype(b)


def _run(x: torch.Tensor, a: float, b: int, min_chunk: int = 64) -> torch.Tensor:
    out = torch.full_like(x, -7.0)
    L.launch(_axpb, x.numel(), [a, b, L.to_warp(x), L.to_warp(out)], "cpu", min_chunk=min_chunk)
    return out


def test_chunked_launches_from_templates_match_torch_across_dtypes_and_module_rebuilds(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "2")
    gen = torch.Generator().manual_seed(0)
    # float32, then float64 (a new overload rebuilds the module: float32's template must not be
    # reused with the old library), then float32 again, with other scalars and sizes each time.
    for dtype, a, b, n in [(torch.float32, 2.0, 3, 1000), (torch.float64, -1.5, 1, 777), (torch.float32, 0.5, -4, 4099)]:
        x = torch.rand(n, dtype=dtype, generator=gen)
        torch.testing.assert_close(_run(x, a, b), x * a + b, rtol=0, atol=1e-6)
        torch.testing.assert_close(_run(x, a, b, min_chunk=10**9), x * a + b, rtol=0, atol=1e-6)  # one chunk


def test_warp_scalar_arguments_go_through_the_template(monkeypatch):
    x = torch.rand(50, dtype=torch.float64)
    for a in (wp.float64(2.5), wp.float64(-0.5)):  # the second launch is a template copy
        out = torch.full_like(x, -7.0)
        L.launch(_axpb, 50, [a, 3, L.to_warp(x), L.to_warp(out)], "cpu")
        torch.testing.assert_close(out, x * a.value + 3)
    records = []
    real = wp.launch
    monkeypatch.setattr(wp, "launch", lambda *args, **kw: records.append(1) or real(*args, **kw))
    out = torch.full_like(x, -7.0)
    L.launch(_axpb, 50, [wp.float64(4.0), 1, L.to_warp(x), L.to_warp(out)], "cpu")
    torch.testing.assert_close(out, x * 4.0 + 1)
    assert not records  # copied from the template, not recorded again


def test_templates_do_not_keep_tensors_alive():
    x = torch.rand(300)
    _run(x, 1.0, 0)  # records (or reuses) the template of this overload
    x2 = torch.rand(300)
    ref = weakref.ref(x2)
    out = _run(x2, 1.0, 0)
    torch.testing.assert_close(out, x2 + 0.0)
    del x2
    gc.collect()
    assert ref() is None


def test_a_failing_command_still_waits_for_the_others(monkeypatch):
    monkeypatch.setenv("LUMIGRAD_NUM_THREADS", "2")
    ran = []

    class Cmd:
        def __init__(self, k):
            self.k = k

        def launch(self):
            ran.append(self.k)
            if self.k == 1:
                raise RuntimeError("boom")

    try:
        L._run([Cmd(k) for k in range(6)], "cpu")
    except RuntimeError as e:
        assert "boom" in str(e)
    else:
        raise AssertionError("the command's error was swallowed")
    assert sorted(ran) == list(range(6))  # the other threads drained the rest


def test_a_wrong_argument_count_is_refused_by_warp_not_truncated():
    x = torch.rand(10)
    _run(x, 1.0, 0)  # the template exists
    try:
        L.launch(_axpb, 10, [1.0, 0, L.to_warp(x)], "cpu")  # `out` missing
    except (RuntimeError, TypeError, ValueError) as e:
        assert "argument" in str(e)
    else:
        raise AssertionError("a launch with a missing argument ran")
    torch.testing.assert_close(_run(x, 2.0, 1), x * 2 + 1)


def test_kernel_array_descriptors_equal_warps():
    """to_warp reuses a layout's shape and strides (cached) but each tensor's own data pointer; the descriptor
    equals wp.from_torch's for scalar and vector dtypes, and a non-contiguous input is copied first."""
    import warp as wp

    def same(ka, ref):
        assert ka._ctype.data == ref.data and ka._ctype.ndim == ref.ndim
        assert [ka._ctype.shape[i] for i in range(ref.ndim)] == [ref.shape[i] for i in range(ref.ndim)]
        assert [ka._ctype.strides[i] for i in range(ref.ndim)] == [ref.strides[i] for i in range(ref.ndim)]

    for _ in range(2):  # the second round hits the cache
        for t, dt in ((torch.rand(5, 3), None), (torch.rand(5, 3), wp.vec3), (torch.rand(2, 4, 4, dtype=torch.float64), None),
                      (torch.arange(7, dtype=torch.int32), None)):
            same(L.to_warp(t, dt), wp.from_torch(t, dtype=dt, requires_grad=False, return_ctype=True))
    t = torch.rand(4, 6)[:, ::2]
    ka = L.to_warp(t)
    assert ka.tensor.is_contiguous() and torch.equal(ka.tensor, t) and ka._ctype.data == ka.tensor.data_ptr()
    with pytest.raises(RuntimeError, match="inner shape"):
        L.to_warp(torch.rand(5, 2), wp.vec3)
