"""Input encodings for neural fields: multiresolution hash grid and frequency (positional) encoding."""
from __future__ import annotations

import math

import torch
from torch import nn

from lumigrad.ops.hashgrid import hash_encode, hashgrid_levels

__all__ = ["HashGridEncoding", "FrequencyEncoding"]


class HashGridEncoding(nn.Module):
    """Instant-NGP hash-grid encoding of points in ``[0, 1]^3`` (see :func:`lumigrad.ops.hashgrid.hash_encode`).

    Args:
        n_levels: number of resolution levels L.
        features: features per level F.
        log2_table_size: ``T = 2**log2_table_size`` entries per level.
        base_res: coarsest resolution (cells per axis).
        max_res: finest resolution.
        init_scale: tables start uniform in ``[-init_scale, init_scale]``.
        generator: RNG for the initial tables.
    """

    def __init__(self, n_levels: int = 16, features: int = 2, log2_table_size: int = 17, base_res: int = 16,
                 max_res: int = 512, init_scale: float = 1e-4, generator: torch.Generator | None = None):
        super().__init__()
        T = 2**log2_table_size
        res, dense = hashgrid_levels(n_levels, base_res, max_res, T)
        self.register_buffer("res", res, persistent=False)
        self.register_buffer("dense", dense, persistent=False)
        init = (torch.rand(n_levels, T, features, generator=generator) * 2 - 1) * init_scale
        self.table = nn.Parameter(init)
        self.out_dim = n_levels * features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3] in [0, 1] -> [N, L*F]
        return hash_encode(x, self.table, self.res, self.dense)


class FrequencyEncoding(nn.Module):
    """NeRF positional encoding ``[x, sin(2^k pi x), cos(2^k pi x)]`` for k < n_freqs."""

    def __init__(self, in_dim: int, n_freqs: int, include_input: bool = True):
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(n_freqs)) * math.pi, persistent=False)
        self.include_input = include_input
        self.out_dim = in_dim * (2 * n_freqs + int(include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, D] -> [N, out_dim]
        xf = (x[..., None] * self.freqs.to(x.dtype)).flatten(-2)
        parts = [x] if self.include_input else []
        return torch.cat(parts + [torch.sin(xf), torch.cos(xf)], -1)
