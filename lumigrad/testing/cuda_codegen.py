"""Compile lumigrad's Warp kernels for CUDA without a GPU: the CUDA half of "one source for CPU and CUDA".

Warp ships NVRTC inside its library, so CUDA code generation and compilation (PTX, or CUBIN with ``ptxas``) run
on a machine with no GPU and no CUDA toolkit. That checks everything up to the launch: Warp's CUDA code
generation of every kernel and ``wp.func``, the CUDA C++ it emits, and NVRTC / ``ptxas`` for the target
architectures. It does not run a kernel, so results, timings and launch-time errors still need a GPU
(``tests/ops`` has CUDA tests that run where one is present).

Most kernels are generic (``dtype=Any``): each concrete overload exists only once something launched it, so
the overloads compiled are those the process has launched on the CPU. :func:`compile_for_cuda` therefore runs
after a workload, and the pytest plugin here runs it at the end of a test session, so the overloads compiled
are exactly those the tests exercised::

    pytest -p lumigrad.testing.cuda_codegen --cuda-codegen 75,90 tests/ops tests/render tests/trace

(``make cuda-check``). A generic kernel no test launched is reported as not covered.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

__all__ = ["CudaCompileResult", "compile_for_cuda", "format_results", "uncovered_generic_kernels"]


@dataclasses.dataclass(frozen=True)
class CudaCompileResult:
    """One Warp module compiled for one architecture (``error`` is ``None`` on success)."""

    module: str
    arch: int
    seconds: float
    kernels: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _lumigrad_modules(prefix: str):
    import warp._src.context as wpc

    return [m for name, m in sorted(wpc.user_modules.items()) if name.startswith(prefix) and m.kernels]


def _compiled_kernel_count(module) -> int:
    return sum(len(k.overloads) if k.is_generic else 1 for k in module.kernels.values())


def uncovered_generic_kernels(prefix: str = "lumigrad.") -> list[str]:
    """``module.kernel`` names of generic kernels with no concrete overload yet (never launched here)."""
    return [f"{m.name}.{key}" for m in _lumigrad_modules(prefix) for key, k in sorted(m.kernels.items())
            if k.is_generic and not k.overloads]


def compile_for_cuda(archs: Iterable[int] = (90,), *, cubin: bool = True, module_dir: str | Path | None = None,
                     prefix: str = "lumigrad.", progress: bool = False) -> list[CudaCompileResult]:
    """Compile every Warp module whose name starts with ``prefix`` for each CUDA architecture in ``archs``.

    Args:
        archs: compute capabilities as integers (``75`` = Turing, ``86`` = Ampere, ``90`` = Hopper).
        cubin: compile through ``ptxas`` to machine code (catches register / resource errors) rather than
            stop at PTX.
        module_dir: where the generated ``.cu`` and the binaries go (a temporary folder when ``None``).
        prefix: module-name prefix of the modules to compile.
        progress: show a progress bar (compiling every module for three architectures takes ~20 minutes on
            two cores; the textured path-replay kernels alone ~2 minutes per architecture).

    Returns:
        One result per (module, arch), for modules with at least one kernel to compile; a failure's ``error`` holds the compiler's message. Nothing raises
        for a kernel that does not compile: the caller decides.
    """
    import warp as wp

    archs = list(archs)
    if not archs or not all(str(a).isdigit() and int(a) >= 50 for a in archs):
        raise ValueError(f"compile_for_cuda: archs must be CUDA compute capabilities like 75 or 90, got {archs}")
    archs = [int(a) for a in archs]
    wp.init()
    tmp = None if module_dir is not None else tempfile.TemporaryDirectory(prefix="lumigrad-cuda-")
    out = Path(module_dir if module_dir is not None else tmp.name)
    # modules with only generic kernels nothing launched are left to uncovered_generic_kernels
    jobs = [(m, a) for m in _lumigrad_modules(prefix) if _compiled_kernel_count(m) for a in archs]
    results = []
    try:
        for module, arch in tqdm(jobs, desc="CUDA codegen", unit="build", disable=not progress):
            results.append(_compile_one(module, arch, out, cubin))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return results


def _compile_one(module, arch: int, out: Path, cubin: bool) -> CudaCompileResult:
    import warp as wp

    t = time.perf_counter()
    error = None
    try:
        wp.compile_aot_module(module.name, arch=arch, module_dir=out, use_ptx=not cubin)
    except Exception as exc:  # noqa: BLE001 - reported per module; the caller decides
        error = f"{type(exc).__name__}: {exc}"
    return CudaCompileResult(module.name, arch, time.perf_counter() - t, _compiled_kernel_count(module), error)


def format_results(results: list[CudaCompileResult], uncovered: list[str]) -> str:
    """A plain-text report: one line per (module, arch), then the uncovered generic kernels."""
    lines = [f"{'ok' if r.ok else 'FAILED':6} sm_{r.arch:<3} {r.seconds:6.1f} s {r.kernels:3} kernels  {r.module}"
             for r in results]
    lines += [f"       {r.module} sm_{r.arch}: {r.error}" for r in results if not r.ok]
    failed = sum(not r.ok for r in results)
    lines.append(f"CUDA codegen: {len(results) - failed} of {len(results)} module builds compiled"
                 f" ({sum(r.seconds for r in results):.0f} s)")
    if uncovered:
        lines.append(f"not covered (generic kernels no test launched, so no overload to compile): {len(uncovered)}")
        lines += [f"       {name}" for name in uncovered]
    return "\n".join(lines)


# --- pytest plugin: ``pytest -p lumigrad.testing.cuda_codegen --cuda-codegen 75,90 ...`` ---

def pytest_addoption(parser):
    parser.addoption("--cuda-codegen", default=None, metavar="ARCHS",
                     help="after the tests, compile every lumigrad Warp kernel overload they launched for these "
                          "CUDA architectures (comma-separated, e.g. 75,90); fail the run if one does not compile")


def pytest_sessionfinish(session, exitstatus):
    option = session.config.getoption("--cuda-codegen")
    if not option or hasattr(session.config, "workerinput"):  # xdist workers: their overloads die with them
        return
    archs = [int(a) for a in option.split(",") if a.strip()]
    results = compile_for_cuda(archs, progress=True)
    report = format_results(results, uncovered_generic_kernels())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "CUDA code generation")
        reporter.write_line(report)
    else:
        print(report)
    if any(not r.ok for r in results) and session.exitstatus == 0:
        session.exitstatus = 1
