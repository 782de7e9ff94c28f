"""Kernel launches that follow torch's device and stream, and use every CPU core.

Warp runs a CPU launch on one thread and releases the GIL, so :func:`launch`
splits the index range into chunks and runs them on a thread pool. Every kernel
launched through it takes ``offset: int`` as its *first* parameter and uses
``i = wp.tid() + offset``; chunks must write disjoint outputs.

Thread safety: any number of Python threads may launch at once, first call
included. Warp's module build and load are not safe to run concurrently (a race
segfaults or fails with ``'Adjoint' object has no attribute ...``), and a module
that gains a new kernel overload is rebuilt and its old library unloaded while
another thread may still be running a kernel from it. So every launch is
*prepared* (overload resolved, module built and loaded, arguments packed) under
one process-wide lock, with ``record_cmd=True``, and then *run* outside the lock
while holding a reference to the module's loaded libraries, which keeps them
mapped until the kernel returns.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import torch
import warp as wp

_init_lock = threading.Lock()
_initialized = False
# Serialises Warp module build/load and launch preparation (see the module docstring).
_prepare_lock = threading.RLock()
_pool_lock = threading.Lock()

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
            wp.dtype_from_torch(torch.float32)  # builds Warp's lazy dtype table once, here
            _initialized = True


_POOL: list[ThreadPoolExecutor] = []  # the one process-wide pool, created on first use


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        with _pool_lock:
            if not _POOL:
                _POOL.append(ThreadPoolExecutor(max_workers=_num_threads(), thread_name_prefix="lumigrad-warp"))
    return _POOL[0]


def _prepare(items: list, device: str) -> tuple[list, tuple]:
    """Record launches ``(kernel, dim, inputs)`` under the prepare lock.

    Returns the recorded commands (``None`` dropped) and the loaded module
    libraries they need, to be held until the commands have run.
    """
    cmds, keep = [], []
    with _prepare_lock:
        for kernel, dim, inputs in items:
            ovl = _overload(kernel, inputs)
            cmd = _from_template(ovl, dim, inputs, device)
            if cmd is None:
                cmd = wp.launch(ovl, dim=dim, inputs=_warp_args(inputs), device=device, record_cmd=True)
                if cmd is not None and device == "cpu":
                    tpl = copy.copy(cmd)
                    tpl.fwd_args = None  # its arrays would keep this call's tensors alive
                    ovl.__dict__.setdefault("_lumigrad_templates", {})[device] = tpl
            cmds.append(cmd)
            # Taken after each record: a later record may rebuild the module and drop this library.
            keep.extend(kernel.module.execs.values())
    return [c for c in cmds if c is not None], tuple(keep)


def _overload(kernel, inputs: list):
    """The concrete overload of a generic kernel for these arguments.

    ``wp.launch`` finds it from a signature string built from every argument's type on each
    call (~0.1-0.2 ms for a kernel with a dozen arguments); here it is looked up by the
    arguments' (dtype, ndim) or Python type, in a dict kept on the kernel object (one entry
    per dtype combination actually launched).
    """
    if not kernel.is_generic:
        return kernel
    key = tuple((a.dtype, a.ndim) if isinstance(a, _ARRAYS) else type(a) for a in inputs)
    table = kernel.__dict__.setdefault("_lumigrad_overloads", {})
    ovl = table.get(key)
    if ovl is None:
        ovl = kernel._add_normalized_overload(kernel.infer_argument_types(_warp_args(inputs)))
        table[key] = ovl
    return ovl


def _warp_args(inputs: list) -> list:
    """``inputs`` with every :class:`KernelArray` as a ``wp.array`` (what ``wp.launch`` takes)."""
    return [a.to_array() if isinstance(a, KernelArray) else a for a in inputs]


def _from_template(ovl, dim: int, inputs: list, device: str):
    """A launch of overload ``ovl`` copied from its last recorded launch on ``device``, or None.

    ``wp.launch(record_cmd=True)`` packs and checks every argument (~40-70 us); a copy with
    the arrays' descriptors and the scalars swapped in costs ~10 us. The overload fixes every
    array's dtype and ndim, so only the device is checked here. None (record afresh) when
    there is no template, the module was rebuilt since (its old library may be gone), or an
    argument is neither an array, a plain int / float, nor a 32/64-bit Warp scalar.
    """
    if device != "cpu":
        return None  # a CUDA launch passes argument addresses (params_addr), which a copy would share
    tpl = ovl.__dict__.get("_lumigrad_templates", {}).get(device)
    if tpl is None or len(inputs) != len(tpl.params) - 1:  # a wrong count: wp.launch names the error
        return None
    if ovl.module.load(tpl.device, tpl.block_dim) is not tpl.module_exec:
        return None
    params = [tpl.params[0]]  # the launch bounds; set_dim replaces them
    for a, p in zip(inputs, tpl.params[1:]):
        if isinstance(a, _ARRAYS):
            if (a.device if isinstance(a, KernelArray) else a.device.alias) != tpl.device.alias:
                return None
            params.append(a.__ctype__())
        elif type(a) in (int, float) and not isinstance(p, ctypes.Structure):
            params.append(type(p)(a))
        elif type(a) in _WARP_SCALARS:  # e.g. wp.float64(x), which selects a generic kernel's overload
            params.append(type(p)(a.value))
        else:
            return None
    cmd = copy.copy(tpl)
    cmd.params = params  # params[0] is the launch bounds, params[i + 1] argument i
    cmd.fwd_args = list(inputs)
    cmd.set_dim(dim)
    return cmd


def _run(cmds: list, device: str) -> None:
    """Run recorded commands: in order on torch's stream (CUDA), or on the pool (CPU)."""
    if device != "cpu":
        stream = wp.stream_from_torch(torch.cuda.current_stream()) if device.startswith("cuda") else None
        for cmd in cmds:
            cmd.launch(stream) if stream is not None else cmd.launch()
        return
    helpers = min(_num_threads(), len(cmds)) - 1
    if helpers <= 0:
        for cmd in cmds:
            cmd.launch()
        return
    # The calling thread takes commands too, and each thread takes the next one when it is
    # done: waking a pool thread costs 0.1-0.2 ms on a small VM, and a late helper then
    # simply runs fewer commands instead of delaying the whole launch.
    queue = iter(cmds)
    futures = [_pool().submit(_drain, queue) for _ in range(helpers)]
    try:
        _drain(queue)
    finally:
        wait(futures)  # all of them, even if one failed: the caller's buffers and libraries must outlive them
    for f in futures:
        f.result()


def _drain(queue) -> None:
    for cmd in queue:  # next() on a shared list iterator is atomic under the GIL
        cmd.launch()


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


class KernelArray:
    """A (detached, contiguous) tensor as a Warp kernel array argument, for :func:`launch`.

    Holds the tensor (keeping it alive while the launch runs) and its Warp descriptor;
    building it costs ~4 us (layout cached, :func:`_layout`) where a ``wp.array`` costs ~17 us, and an op passes several
    per launch. :meth:`to_array` gives a full ``wp.array`` where Warp needs one (recording
    a kernel's first launch, ``wp.Mesh``).
    """

    __slots__ = ("tensor", "dtype", "ndim", "shape", "device", "_ctype")

    def __init__(self, t: torch.Tensor, dtype=None) -> None:
        _ensure_init()
        self.tensor = t = t.detach().contiguous()
        self.dtype, self.ndim, self.shape, strides, array_t = _layout(t, dtype)
        self._ctype = array_t(t.data_ptr(), 0, self.ndim, self.shape, strides)
        self.device = "cpu" if t.device.type == "cpu" else warp_device(t)

    def __ctype__(self):
        return self._ctype

    def to_array(self) -> wp.array:
        return wp.from_torch(self.tensor, dtype=self.dtype, requires_grad=False)


# (torch dtype, Warp dtype or None, shape, strides) -> (Warp dtype, ndim, shape, byte strides, class) of the
# descriptor that wp.from_torch(return_ctype=True) builds. The first tensor of a layout goes through it (its
# checks included), the others reuse the result: a KernelArray then costs ~4 instead of ~9 us, and an op
# passes a dozen or more per call.
_LAYOUTS: dict = {}


def _layout(t: torch.Tensor, dtype) -> tuple:
    key = (t.dtype, dtype, t.shape, t.stride())
    lay = _LAYOUTS.get(key)
    if lay is None:
        wdt = dtype if dtype is not None else wp.dtype_from_torch(t.dtype)
        c = wp.from_torch(t, dtype=wdt, requires_grad=False, return_ctype=True)
        nd = int(c.ndim)
        lay = (wdt, nd, tuple(int(c.shape[i]) for i in range(nd)), tuple(int(c.strides[i]) for i in range(nd)), type(c))
        if len(_LAYOUTS) >= 4096:  # many image sizes or meshes: start over rather than grow without bound
            _LAYOUTS.clear()
        _LAYOUTS[key] = lay
    return lay


_ARRAYS = (KernelArray, wp.array)
# Warp scalars whose ctypes parameter takes ``.value`` as is (float16 is packed as bits: not here).
_WARP_SCALARS = (wp.float32, wp.float64, wp.int32, wp.int64, wp.uint32, wp.uint64)


def to_warp(t: torch.Tensor, dtype=None) -> KernelArray:
    """Zero-copy view of a (detached, contiguous) tensor as a kernel argument (see :class:`KernelArray`)."""
    return KernelArray(t, dtype)


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
    into chunks run in parallel on the thread pool (Warp releases the GIL).
    Safe to call from several threads at once.
    """
    _ensure_init()
    if n <= 0:
        return
    threads = _num_threads()
    chunks = 1 if device != "cpu" or threads == 1 else min(threads * 4, max(1, n // min_chunk))
    bounds = [n * c // chunks for c in range(chunks + 1)]
    cmds, keep = _prepare([(kernel, bounds[1], [0, *inputs])], device)
    if chunks > 1 and cmds:
        cmds = _chunk_copies(cmds[0], bounds, inputs)
    _run(cmds, device)
    del keep  # the module libraries may be unloaded from here on


def _chunk_copies(cmd, bounds: list, inputs: list) -> list:
    """Chunk ``c`` of a CPU launch: ``cmd`` (chunk 0) with the offset argument and the dimension changed.

    Recording each chunk from the arguments cost ~20 us per chunk (~160 us for the usual 8, on the
    calling thread, per launch); a copy with one parameter swapped costs a few.
    """
    out = [cmd]
    offset_type = type(cmd.params[1])
    for c in range(1, len(bounds) - 1):
        k = copy.copy(cmd)
        k.params = list(cmd.params)
        k.params[1] = offset_type(bounds[c])
        k.fwd_args = [bounds[c], *inputs]
        k.set_dim(bounds[c + 1] - bounds[c])
        out.append(k)
    return out


def num_threads() -> int:
    """Worker threads used for CPU launches (``LUMIGRAD_NUM_THREADS`` or torch's thread count)."""
    return _num_threads()


def launch_chunks(launches: list, device: str) -> None:
    """Run independent launches ``(kernel, dim, inputs)`` concurrently.

    ``inputs`` is the full argument list (no implicit offset). On CPU every
    launch is prepared (module loaded, arguments packed) on the calling thread,
    then all of them run on the thread pool at once. Launches must write
    disjoint outputs. On CUDA they run in order on torch's current stream.
    """
    _ensure_init()
    launches = [(k, d, a) for k, d, a in launches if d > 0]
    if not launches:
        return
    cmds, keep = _prepare(launches, device)
    _run(cmds, device)
    del keep  # the module libraries may be unloaded from here on

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
