"""Pure-torch reference of :func:`lumigrad.ops.normals.vertex_normal_sums`."""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.geometry.normals import face_cross

__all__ = ["vertex_normal_sums_ref"]


def vertex_normal_sums_ref(verts: Tensor, faces: Tensor) -> Tensor:
    """``[..., V, 3]``: each face's ``(v1 - v0) x (v2 - v0)`` added to its three vertices."""
    c = face_cross(verts, faces)
    f = faces.long()
    acc = torch.zeros_like(verts)
    for k in range(3):
        acc = acc.index_add(-2, f[:, k], c)
    return acc
