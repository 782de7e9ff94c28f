"""CUDA code generation without a GPU (lumigrad.testing.cuda_codegen): success, reported failures, coverage."""
from typing import Any

import pytest
import torch
import warp as wp

from lumigrad.ops.transform import transform_points_fused
from lumigrad.testing.cuda_codegen import compile_for_cuda, format_results, uncovered_generic_kernels


@wp.kernel(module="codegen_test_broken")
def _broken(a: wp.array(dtype=wp.float32)):
    a[wp.tid()] = wp.no_such_builtin(1.0)  # noqa: F821 - a codegen error, on every device


@wp.kernel(module="codegen_test_generic")
def _never_launched(a: wp.array(dtype=Any)):
    a[wp.tid()] = a.dtype(0.0)


def test_launched_overloads_compile_to_ptx(tmp_path):
    mats = torch.eye(4, dtype=torch.float64)[None]
    transform_points_fused(mats, torch.rand(1, 8, 3, dtype=torch.float64))  # registers the float64 overload
    results = compile_for_cuda((75,), cubin=False, module_dir=tmp_path, prefix="lumigrad.ops._transform_kernels")
    assert [(r.module, r.arch, r.ok) for r in results] == [("lumigrad.ops._transform_kernels", 75, True)]
    assert results[0].kernels >= 1
    ptx = list(tmp_path.glob("*.ptx"))
    assert len(ptx) == 1 and ".entry" in ptx[0].read_text() and ".target sm_75" in ptx[0].read_text()


def test_a_kernel_that_does_not_compile_is_reported_not_raised(tmp_path):
    results = compile_for_cuda((90,), cubin=False, module_dir=tmp_path, prefix="codegen_test_broken")
    assert len(results) == 1 and not results[0].ok
    assert "no_such_builtin" in results[0].error
    report = format_results(results, [])
    assert "FAILED" in report and "0 of 1 module builds compiled" in report


def test_generic_kernels_never_launched_are_listed_as_uncovered(tmp_path):
    assert compile_for_cuda((90,), module_dir=tmp_path, prefix="codegen_test_generic") == []
    uncovered = uncovered_generic_kernels("codegen_test_generic")
    assert uncovered == ["codegen_test_generic._never_launched"]
    assert "not covered" in format_results([], uncovered)


@pytest.mark.parametrize("archs", [(), (7,), ("sm_90",)])
def test_bad_architectures_raise(archs):
    with pytest.raises(ValueError, match="compile_for_cuda: archs"):
        compile_for_cuda(archs)
