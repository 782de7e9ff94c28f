"""Pure-torch reference for :func:`lumigrad.ops.texture.texture` (the spec).

Same signature and output; differentiable by plain autograd; no validation.
UV convention: u right, v up, (0, 0) = bottom-left; texel (row r, col c) has its
centre at (u, v) = ((c + 0.5) / w, 1 - (r + 0.5) / h).
"""
from __future__ import annotations

import torch

from lumigrad.ops.texture import build_mip

__all__ = ["texture_ref", "mip_level_ref"]


def _axis(t: torch.Tensor, n: int, shift: float, boundary: str):
    """Integer cell ``[...]`` and fraction of normalised coordinate ``t`` on an n-texel axis."""
    if boundary == "wrap":
        t = t - torch.floor(t)
    x = (t * n - shift).clamp(-2.0, n + 1.0)
    x0 = torch.floor(x)
    return x0.long(), x - x0


def _index(i: torch.Tensor, n: int, boundary: str):
    """Texel index and validity mask (``zero`` mode reads outside texels as 0)."""
    if boundary == "wrap":
        return i % n, torch.ones_like(i, dtype=torch.bool)
    if boundary == "clamp":
        return i.clamp(0, n - 1), torch.ones_like(i, dtype=torch.bool)
    valid = (i >= 0) & (i < n)
    return i.clamp(0, n - 1), valid


def _fetch(tex: torch.Tensor, iy, ix, valid):
    """``tex [B, h, w, C]`` at integer texels ``[B, H, W]`` -> ``[B, H, W, C]``."""
    B, h, w, C = tex.shape
    flat = (iy * w + ix).reshape(B, -1, 1).expand(-1, -1, C)
    val = torch.gather(tex.reshape(B, h * w, C), 1, flat).reshape(*iy.shape, C)
    return val * valid[..., None].to(tex.dtype)


def _sample(tex: torch.Tensor, uv: torch.Tensor, nearest: bool, boundary: str) -> torch.Tensor:
    """Nearest or bilinear lookup of ``tex [B, h, w, C]`` at ``uv [B, H, W, 2]``."""
    h, w = tex.shape[1:3]
    shift = 0.0 if nearest else 0.5
    x0, fx = _axis(uv[..., 0], w, shift, boundary)
    y0, fy = _axis(1 - uv[..., 1], h, shift, boundary)  # row 0 is the top (v = 1)
    if nearest:
        ix, vx = _index(x0, w, boundary)
        iy, vy = _index(y0, h, boundary)
        return _fetch(tex, iy, ix, vx & vy)
    out = 0
    for dy in (0, 1):
        for dx in (0, 1):
            ix, vx = _index(x0 + dx, w, boundary)
            iy, vy = _index(y0 + dy, h, boundary)
            wgt = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
            out = out + wgt[..., None] * _fetch(tex, iy, ix, vx & vy)
    return out


def mip_level_ref(uv_da: torch.Tensor, height: int, width: int, max_level: int) -> torch.Tensor:
    """``[B, H, W]`` continuous mip level: 0.5 * log2(squared major axis of the
    texel-space footprint), clamped to [0, max_level] (as nvdiffrast)."""
    # Scaled by the largest |derivative| m, so huge or tiny ones neither overflow nor underflow.
    m = uv_da.abs().amax(-1)
    m = torch.where(m > 0, m, torch.ones_like(m))
    a, b = uv_da[..., 0] / m * width, uv_da[..., 1] / m * width
    c, d = uv_da[..., 2] / m * height, uv_da[..., 3] / m * height
    qa, qb, qc = a * a + c * c, b * b + d * d, a * b + c * d
    s2 = ((qa - qb) * 0.5) ** 2 + qc**2
    s = torch.where(s2 > 0, torch.sqrt(torch.where(s2 > 0, s2, torch.ones_like(s2))), torch.zeros_like(s2))
    major = (qa + qb) * 0.5 + s
    safe = torch.where(major > 0, major, torch.ones_like(major))
    lev = torch.where(major > 0, 0.5 * torch.log2(safe) + torch.log2(m), torch.zeros_like(major))
    return lev.clamp(0.0, float(max_level))


def texture_ref(tex, uv, uv_da=None, *, filter_mode="auto", boundary_mode="wrap", max_mip_level=None, mip=None):
    """Reference texture lookup; see :func:`lumigrad.ops.texture.texture`."""
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if uv_da is not None else "linear"
    B = uv.shape[0]
    if filter_mode in ("nearest", "linear"):
        levels = [tex]
    elif mip is None:
        levels = build_mip(tex, max_mip_level)
    else:
        levels = [tex, *mip[1:]][: None if max_mip_level is None else max_mip_level + 1]
    levels = [(m if m.ndim == 4 else m[None]).expand(B, -1, -1, -1) for m in levels]
    if filter_mode in ("nearest", "linear"):
        return _sample(levels[0], uv, filter_mode == "nearest", boundary_mode)
    samples = torch.stack([_sample(m, uv, False, boundary_mode) for m in levels])  # [L, B, H, W, C]
    L = len(levels)
    lev = mip_level_ref(uv_da, levels[0].shape[1], levels[0].shape[2], L - 1)
    k = torch.arange(L, dtype=uv.dtype, device=uv.device)[:, None, None, None]
    if filter_mode == "linear-mipmap-nearest":
        weight = (torch.floor(lev + 0.5) == k).to(uv.dtype)
    else:
        l0 = torch.floor(lev).detach()
        frac = lev - l0
        weight = (1 - frac) * (k == l0).to(uv.dtype) + frac * (k == l0 + 1).to(uv.dtype)
    return (weight[..., None] * samples).sum(0)

