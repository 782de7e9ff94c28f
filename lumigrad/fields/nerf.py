"""Instant-NGP-style radiance field: hash-grid density + small view-dependent colour MLP."""
from __future__ import annotations

import torch
from torch import nn

from lumigrad.fields.encodings import FrequencyEncoding, HashGridEncoding
from lumigrad.fields.mlp import mlp

__all__ = ["NGPField"]


class NGPField(nn.Module):
    """``(points [N, 3] world, dirs [N, 3] unit) -> (sigma [N], rgb [N, 3])``.

    Points are normalised by ``aabb`` into the hash grid's ``[0, 1]^3``; the
    density is ``exp(h0 - 1)`` (clamped exponent) of the density MLP's first
    output, the remaining 15 outputs feed the colour MLP with a frequency
    encoding of the view direction.
    """

    def __init__(self, aabb: torch.Tensor, n_levels: int = 16, log2_table_size: int = 17, max_res: int = 512,
                 hidden: int = 64, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.encoding = HashGridEncoding(n_levels, 2, log2_table_size, 16, max_res, generator=generator)
        self.density_net = mlp(self.encoding.out_dim, hidden, 16, 1)
        self.dir_encoding = FrequencyEncoding(3, 4)
        self.color_net = mlp(15 + self.dir_encoding.out_dim, hidden, 3, 2, nn.Sigmoid())

    def _features(self, pts: torch.Tensor) -> torch.Tensor:
        lo, hi = self.aabb[:3], self.aabb[3:]
        return self.density_net(self.encoding(((pts - lo) / (hi - lo)).clamp(0.0, 1.0)))

    @staticmethod
    def _sigma(h0: torch.Tensor) -> torch.Tensor:
        return torch.exp((h0 - 1.0).clamp(max=15.0))

    def density(self, pts: torch.Tensor) -> torch.Tensor:
        """``[N]`` densities (for the occupancy grid)."""
        return self._sigma(self._features(pts)[:, 0])

    def forward(self, pts: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._features(pts)
        rgb = self.color_net(torch.cat([h[:, 1:], self.dir_encoding(dirs)], -1))
        return self._sigma(h[:, 0]), rgb
