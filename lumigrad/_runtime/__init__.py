"""Warp runtime: lazy init, torch<->warp views, threaded CPU launches, input checks."""
from lumigrad._runtime.checks import (
    check_faces,
    check_finite,
    check_float_tensor,
    check_resolution,
    check_same_device,
)
from lumigrad._runtime.launch import launch, warp_device, to_warp, warp_dtype, torch_stream

__all__ = [
    "check_faces",
    "check_finite",
    "check_float_tensor",
    "check_resolution",
    "check_same_device",
    "launch",
    "warp_device",
    "to_warp",
    "warp_dtype",
    "torch_stream",
]
