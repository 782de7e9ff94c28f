"""Pure-torch reference of :func:`lumigrad.ops.hashgrid.hash_encode` (the spec)."""
from __future__ import annotations

import torch

__all__ = ["hash_encode_ref"]

_PRIMES = (1, 2654435761, 805459861)


def hash_encode_ref(x: torch.Tensor, table: torch.Tensor, res: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """Same inputs and output as :func:`hash_encode`; differentiable w.r.t. ``table``."""
    L, T, F = table.shape
    outs = []
    xc = x.detach().clamp(0.0, 1.0)
    for lvl in range(L):
        r = int(res[lvl])
        p = xc * r
        i0 = torch.floor(p).long().clamp(max=r - 1)
        frac = p - i0.to(x.dtype)
        feat = 0.0
        for c in range(8):
            d = torch.tensor([c & 1, (c >> 1) & 1, (c >> 2) & 1])
            ic = i0 + d
            w = torch.where(d.bool(), frac, 1.0 - frac).prod(-1)
            if int(dense[lvl]):
                idx = ic[:, 0] + ic[:, 1] * (r + 1) + ic[:, 2] * (r + 1) ** 2
            else:
                h = ic[:, 0] * _PRIMES[0]
                h = torch.bitwise_xor(h, (ic[:, 1] * _PRIMES[1]) & 0xFFFFFFFF)
                h = torch.bitwise_xor(h, (ic[:, 2] * _PRIMES[2]) & 0xFFFFFFFF)
                idx = h % T
            feat = feat + w[:, None] * table[lvl, idx]
        outs.append(feat)
    return torch.cat(outs, 1)
