"""Pure-torch reference for :func:`lumigrad.ops.interpolate.interpolate` (the spec).

Same signature and outputs (:class:`Interpolated`); differentiable by
plain autograd. No validation: inputs are assumed valid.
"""
from __future__ import annotations

import torch

from lumigrad.ops.interpolate import Interpolated

__all__ = ["interpolate_ref"]


def interpolate_ref(attr, rast, tri, rast_db=None, diff_attrs=None):
    """Reference interpolation.

    Args:
        attr: ``[B, V, C]`` or ``[V, C]`` vertex attributes.
        rast: ``[B, H, W, 4]`` (u, v, z_ndc, tri_id + 1).
        tri: ``[F, 3]`` vertex indices.
        rast_db: optional ``[B, H, W, 4]`` (du/dX, du/dY, dv/dX, dv/dY).
        diff_attrs: channel indices or ``"all"`` for ``out_da``.

    Returns:
        ``Interpolated(out [B, H, W, C], out_da [B, H, W, 2*D] or None)``.
    """
    B = rast.shape[0]
    attr = (attr if attr.ndim == 3 else attr[None]).expand(B, -1, -1)
    tri_id = rast[..., 3].detach().long()  # [B, H, W]
    hit = (tri_id > 0)[..., None]
    corners = tri.long()[(tri_id - 1).clamp(min=0)]  # [B, H, W, 3]
    bidx = torch.arange(B, device=rast.device)[:, None, None, None]
    a0, a1, a2 = attr[bidx, corners].unbind(-2)  # each [B, H, W, C]
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = torch.where(hit, u * a0 + v * a1 + (1 - u - v) * a2, torch.zeros_like(a0))
    if diff_attrs is None:
        return Interpolated(out, None)
    ch = list(range(attr.shape[-1])) if diff_attrs == "all" else [int(c) for c in diff_attrs]
    e0, e1 = (a0 - a2)[..., ch], (a1 - a2)[..., ch]
    d_dx = e0 * rast_db[..., 0:1] + e1 * rast_db[..., 2:3]
    d_dy = e0 * rast_db[..., 1:2] + e1 * rast_db[..., 3:4]
    out_da = torch.stack([d_dx, d_dy], dim=-1).flatten(-2)  # interleaved (dX, dY) per channel
    return Interpolated(out, torch.where(hit, out_da, torch.zeros_like(out_da)))
