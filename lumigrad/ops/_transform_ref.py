"""Pure-torch reference of :func:`lumigrad.ops.transform.transform_points`."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["transform_points_ref"]


def transform_points_ref(mats: Tensor, pts: Tensor) -> Tensor:
    """``[B, V, 4]`` = ``mats[b] @ (pts[b or 0, v], 1)`` for ``mats [B, 4, 4]``, ``pts [1 or B, V, 3]``."""
    return torch.matmul(pts, mats[:, :, :3].transpose(1, 2)) + mats[:, None, :, 3]
