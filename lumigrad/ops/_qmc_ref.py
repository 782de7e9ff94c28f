"""Pure-torch reference of :mod:`lumigrad.ops._qmc_funcs` (the Sobol sampler), bit for bit, on int64 tensors.

Also what the torch path tracer and the sub-pixel offsets draw from when ``TraceSettings(sampler="sobol")``.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["qmc_bits", "qmc_key", "qmc2"]

_MASK = 0xFFFFFFFF


def _u32(x: Tensor) -> Tensor:
    return x & _MASK


def _mul(a: Tensor, b: int) -> Tensor:
    """``a * b mod 2^32`` without int64 overflow: split ``b`` in 16-bit halves."""
    lo, hi = b & 0xFFFF, b >> 16
    return _u32(a * lo + _u32(a * hi) * 65536)


def _mul_t(a: Tensor, b: Tensor) -> Tensor:
    lo, hi = b & 0xFFFF, b >> 16
    return _u32(a * lo + _u32(a * hi) * 65536)


def _reverse(x: Tensor) -> Tensor:
    for shift, m in ((1, 0x55555555), (2, 0x33333333), (4, 0x0F0F0F0F), (8, 0x00FF00FF)):
        x = ((x >> shift) & m) | _u32((x & m) << shift)
    return (x >> 16) | _u32(x << 16)


def _owen(x: Tensor, seed: Tensor) -> Tensor:
    x = _reverse(x)
    x = x ^ _mul(x, 0x3D20ADEA)
    x = _u32(x + seed)
    x = _mul_t(x, (seed >> 16) | 1)
    x = x ^ _mul(x, 0x05526C56)
    x = x ^ _mul(x, 0x53A22864)
    return _reverse(x)


def _sobol1(i: Tensor) -> Tensor:
    y = torch.zeros_like(i)
    v = 0x80000000
    for k in range(32):
        y = torch.where((i >> k) & 1 == 1, y ^ v, y)
        v = v ^ (v >> 1)
    return y


def _mix(a: Tensor, b: Tensor) -> Tensor:
    x = a ^ _mul(b, 0x9E3779B9)
    x = x ^ (x >> 16)
    x = _mul(x, 0x21F0AAAD)
    x = x ^ (x >> 15)
    x = _mul(x, 0x735A2D97)
    return x ^ (x >> 15)


def qmc_key(seed: int, pixel: Tensor) -> Tensor:
    """``[n]`` int64 sampler keys of pixels ``pixel [n]`` (any integer dtype) for a 31-bit ``seed``."""
    return _mix(torch.full_like(pixel, seed, dtype=torch.int64), pixel.to(torch.int64) & _MASK)


def qmc_bits(spp: int) -> int:
    """``m`` with ``2^(m-1) < spp <= 2^m``."""
    return max(int(spp) - 1, 0).bit_length()


def qmc2(key: Tensor, s: Tensor, m: int, d: int | Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[n, 2]`` dimension pair ``d`` of samples ``s [n] < 2^m`` of the pixels with keys ``key [n]``, in ``[0, 1)``."""
    d = torch.as_tensor(d, dtype=torch.int64, device=key.device).expand_as(key)
    h = _mix(key, d)
    i = torch.zeros_like(h)
    if m > 0:
        i = _owen(_u32((s.to(torch.int64) & _MASK) << (32 - m)), h) >> (32 - m)
    x = _owen(_reverse(i), _mix(h, torch.ones_like(h)))
    y = _owen(_sobol1(i), _mix(h, torch.full_like(h, 2)))
    return torch.stack([x >> 8, y >> 8], -1).to(dtype) * 2.0**-24
