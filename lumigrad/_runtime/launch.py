"""Kernel launches that follow torch's device and stream, and use every CPU core.

Warp runs a CPU launch on one thread and releases the GIL, so :func:`launch`
splits the index range into chunks and runs them on a thread pool. Every kernel
launched through it takes ``offset: int`` as its *first* parameter and uses
``i = wp.tid() + offset``; chunks must write disjoint outputs.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import warp as wp

_init_lock = threading.Lock()
_initialized = False

# Below this many work items a single launch is cheaper than the pool's overhead.
_MIN_ITEMS_PER_CHUNK = 2048


def _ensure_init() -> None:
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if not _initialized:
            wp.config.quiet = True
            if hasattr(wp, "LOG_WARNING"):  # warp >= 1.19 ignores `quiet`
                wp.config.log_level = wp.LOG_WARNING
            wp.init()
            _initialized = True


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_num_threads(), thread_name_prefix="lumigrad-warp")


def _num_threads() -> int:
    env = os.environ.get("LUMIGRAD_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, torch.get_num_threads())


def warp_device(t: torch.Tensor) -> str:
    """Warp device string for a torch tensor's device."""
    if t.device.type == "cpu":
        return "cpu"
    if t.device.type == "cuda":
        return f"cuda:{t.device.index if t.device.index is not None else torch.cuda.current_device()}"
    raise RuntimeError(f"lumigrad: device {t.device} is not supported (use cpu or cuda)")


def warp_dtype(t: torch.Tensor):
    """Warp scalar type matching a float tensor (float32 or float64)."""
    if t.dtype == torch.float32:
        return wp.float32
    if t.dtype == torch.float64:
        return wp.float64
    if t.dtype == torch.int32:
        return wp.int32
    raise TypeError(f"lumigrad: no warp scalar type for {t.dtype}")


def to_warp(t: torch.Tensor, dtype=None) -> wp.array:
    """Zero-copy warp view of a (detached, contiguous) tensor."""
    _ensure_init()
    return wp.from_torch(t.detach().contiguous(), dtype=dtype, requires_grad=False)


@contextlib.contextmanager
def torch_stream(device: str):
    """Run warp launches on torch's current CUDA stream (no-op on CPU)."""
    if device.startswith("cuda"):
        with wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream())):
            yield
    else:
        yield


def launch(kernel, n: int, inputs: list, device: str, min_chunk: int = _MIN_ITEMS_PER_CHUNK) -> None:
    """Launch ``kernel(offset, *inputs)`` over ``n`` items.

    On CUDA it is one launch on torch's current stream. On CPU the range is cut
    into chunks run in parallel on a thread pool (Warp releases the GIL).
    """
    _ensure_init()
    if n <= 0:
        return
    if device != "cpu":
        with torch_stream(device):
            wp.launch(kernel, dim=n, inputs=[0, *inputs], device=device)
        return
    threads = _num_threads()
    chunks = min(threads * 4, max(1, n // min_chunk))
    if chunks <= 1:
        wp.launch(kernel, dim=n, inputs=[0, *inputs], device=device)
        return
    bounds = [n * c // chunks for c in range(chunks + 1)]
    # Load (and maybe compile) the module once before threads race to do it.
    wp.launch(kernel, dim=bounds[1], inputs=[0, *inputs], device=device)
    futures = [
        _pool().submit(wp.launch, kernel, dim=bounds[c + 1] - bounds[c], inputs=[bounds[c], *inputs], device=device)
        for c in range(1, chunks)
    ]
    for f in futures:
        f.result()


def num_threads() -> int:
    """Worker threads used for CPU launches (``LUMIGRAD_NUM_THREADS`` or torch's thread count)."""
    return _num_threads()


def launch_chunks(launches: list, device: str) -> None:
    """Run independent launches ``(kernel, dim, inputs)`` concurrently.

    ``inputs`` is the full argument list (no implicit offset). On CPU every
    launch is prepared (module loaded, arguments packed) on the calling thread,
    then all of them run on the thread pool at once, so, unlike :func:`launch`,
    no chunk runs alone while the module loads. Launches must write disjoint
    outputs. On CUDA they run in order on torch's current stream.
    """
    _ensure_init()
    launches = [(k, d, a) for k, d, a in launches if d > 0]
    if not launches:
        return
    if device != "cpu":
        with torch_stream(device):
            for kernel, dim, inputs in launches:
                wp.launch(kernel, dim=dim, inputs=inputs, device=device)
        return
    # record_cmd builds each launch (loading, maybe compiling, the module) without running it.
    cmds = [wp.launch(k, dim=d, inputs=a, device=device, record_cmd=True) for k, d, a in launches]
    if len(cmds) == 1 or _num_threads() == 1:
        for cmd in cmds:
            cmd.launch()
        return
    futures = [_pool().submit(cmd.launch) for cmd in cmds]
    for f in futures:
        f.result()


_HUGE_PAGE = 1 << 21
# Below this size a buffer's page faults are too few to matter.
_HUGE_MIN_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def _madvise():
    """libc ``madvise`` on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def empty(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.empty`` that asks Linux for huge pages on large CPU buffers.

    A fresh multi-megabyte CPU buffer is otherwise faulted in 4 KiB at a time on
    first write, which can cost more than the kernel that fills it (about 10 ms
    per 16 MiB on a small VM). The buffer is carved from a 2 MiB-aligned region
    advised ``MADV_HUGEPAGE`` (torch does the same under
    ``THP_MEM_ALLOC_ENABLE=1``), so it takes a handful of faults. The result is a
    contiguous view at a storage offset. Advisory only: failures are ignored.
    """
    numel = 1
    for n in shape:
        numel *= int(n)
    size = torch.empty((), dtype=dtype).element_size()
    madvise = _madvise()
    if torch.device(device).type != "cpu" or numel * size < _HUGE_MIN_BYTES or madvise is None:
        return torch.empty(shape, dtype=dtype, device=device)
    pad = _HUGE_PAGE // size
    flat = torch.empty(numel + pad, dtype=dtype)
    ptr = flat.data_ptr()
    start = (ptr + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    madvise(start, numel * size, 14)  # MADV_HUGEPAGE
    first = (start - ptr) // size
    return flat[first : first + numel].view(shape)
