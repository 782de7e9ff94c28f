"""Independent pieces of one computation, run side by side on the CPU's threads.

:func:`lumigrad._runtime.launch.launch` spreads one big kernel launch over the cores. Work made of many
small launches and torch ops (a boundary term at 32^2 is a few hundred of them, each too small to split)
leaves the other cores idle instead; :func:`run_tasks` runs several such pieces at once. Warp launches
and torch ops release the GIL, so the pieces overlap where they compute and take turns in Python. (Big
launches inside a task are still split over the cores: running them whole there was slower.)

Each task must own what it writes (its own outputs, its own ``torch.Generator``): tasks run in any order
and at the same time. Lazily filled caches they share must be filled before.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

import torch

from lumigrad._runtime.launch import num_threads

T = TypeVar("T")

_POOL: list[ThreadPoolExecutor] = []
_pool_lock = threading.Lock()
_local = threading.local()  # .inside: this thread is running a task (nested calls run in order)


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        with _pool_lock:
            if not _POOL:
                _POOL.append(ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="lumigrad-task"))
    return _POOL[0]


def in_task() -> bool:
    """Whether the calling thread is running a task of :func:`run_tasks`."""
    return getattr(_local, "inside", False)


def run_tasks(tasks: Sequence[Callable[[], T]], device: torch.device | str = "cpu") -> list[T]:
    """``[task() for task in tasks]``, on ``num_threads()`` threads at once for CPU work.

    In order on the calling thread instead for CUDA work (its launches are asynchronous already, and torch's
    current stream is per thread), with one thread, or when called from inside a task. Each task runs in the
    caller's grad mode (torch keeps it per thread). The first exception raised by a task is raised here, after
    every task has stopped.
    """
    tasks = list(tasks)
    if str(device).startswith("cuda") or num_threads() == 1 or len(tasks) < 2 or in_task():
        return [t() for t in tasks]
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    results: list = [None] * len(tasks)
    queue = iter(range(len(tasks)))

    def drain() -> None:
        _local.inside = True
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                for i in queue:  # next() on a shared iterator is atomic under the GIL
                    results[i] = tasks[i]()
        finally:
            _local.inside = False

    # The calling thread takes tasks too; helpers that have not started when it runs out are cancelled, so a
    # busy pool never makes it wait.
    helpers = [_pool().submit(drain) for _ in range(min(num_threads(), len(tasks)) - 1)]
    try:
        drain()
    finally:
        for f in helpers:
            f.cancel()
        wait(helpers)
    for f in helpers:
        if not f.cancelled():
            f.result()
    return results
