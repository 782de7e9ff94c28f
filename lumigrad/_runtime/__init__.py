"""Warp runtime: lazy init, torch<->warp views, threaded CPU launches, input checks.

The submodules ``checks`` (validation) and ``files`` (atomic output) do not
import Warp; only ``launch`` does. The names re-exported here load lazily, so
``import lumigrad._runtime.checks`` stays light.
"""
import importlib

_EXPORTS = {
    "check_faces": "checks",
    "check_finite": "checks",
    "check_float_tensor": "checks",
    "check_resolution": "checks",
    "check_same_device": "checks",
    "launch": "launch",
    "warp_device": "launch",
    "to_warp": "launch",
    "warp_dtype": "launch",
    "torch_stream": "launch",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"lumigrad._runtime.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'lumigrad._runtime' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
