"""Shape checks shared by the geometry functions (message format of ``_runtime.checks``)."""
from __future__ import annotations

import torch
from torch import Tensor


def desc(t: Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}"


def check_trailing(fn: str, name: str, t, shape: tuple[int, ...], expected: str, ndims=None) -> Tensor:
    """Require a float32/float64 tensor ending in ``shape`` (and with ``t.ndim in ndims`` if given)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor {expected}, got {type(t).__name__}")
    ok = (
        t.dtype in (torch.float32, torch.float64)
        and t.ndim >= len(shape)
        and tuple(t.shape[t.ndim - len(shape):]) == shape
        and (ndims is None or t.ndim in ndims)
    )
    if not ok:
        raise ValueError(f"{fn}(): {name} must be float32/float64 {expected}, got {desc(t)}")
    return t
