"""Pure-torch spec of :func:`lumigrad.ops.deferred_shade.deferred_shade`, built from ``lumigrad.shade``'s
own BRDF cores, so the kernel is checked against the code ``lumigrad.shade.shade`` ran before it."""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.shade.brdf import _blinn_phong, _ggx, _lambert, _normalize

__all__ = ["deferred_shade_ref"]

_LAMBERT, _BLINN_PHONG, _GGX = 0, 1, 2
_DIRECTIONAL, _POINT, _AMBIENT = 0, 1, 2


def deferred_shade_ref(kind: int, normals: Tensor, view_dirs: Tensor, points: Tensor | None, mat: Tensor,
                       lkind: list[int], ldata: Tensor, lfo: Tensor, mask: Tensor | None = None) -> Tensor:
    n, v = _normalize(normals), _normalize(view_dirs)
    a, b, c, m = mat[:, 0:3], mat[:, 3:6], mat[:, 6:7], mat[:, 7:8]
    if kind == _GGX:
        kd = (1.0 - m.clamp(0.0, 1.0)) * a
    else:
        kd = a
    rgb = torch.zeros_like(n)
    for j, lk in enumerate(lkind):
        vec, e = ldata[j, 0:3], ldata[j, 3:6]
        if lk == _AMBIENT:
            rgb = rgb + e * kd
            continue
        if lk == _POINT:
            d = vec - points
            d2 = (d * d).sum(-1, keepdim=True)
            l = d * torch.rsqrt(d2 + 1e-12)
            c0, c1, c2 = (float(x) for x in lfo[j])
            e = e / (c0 + c1 * torch.sqrt(d2 + 1e-12) + c2 * d2).clamp_min(1e-12)
        else:
            l = vec.expand_as(n)
        cos = (n * l).sum(-1, keepdim=True).clamp_min(0.0)
        if kind == _BLINN_PHONG:
            f = _blinn_phong(n, l, v, a, b, c)
        elif kind == _GGX:
            f = _ggx(n, l, v, a, c, m)
        else:
            f = _lambert(n, a)
        rgb = rgb + f * cos * e
    return rgb if mask is None else rgb * mask[:, None]
