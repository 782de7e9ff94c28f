"""Pure-torch reference of :func:`lumigrad.ops.splat.rasterize_gaussians` (the spec).

Dense: every pixel against every Gaussian (``[H*W, N]`` memory), differentiable
by plain autograd. For tests and benchmarks on small scenes.
"""
from __future__ import annotations

import torch

from lumigrad.ops.splat import Splatted

__all__ = ["rasterize_gaussians_ref"]


def rasterize_gaussians_ref(
    means2d: torch.Tensor,  # [N, 2]
    conics: torch.Tensor,  # [N, 3]
    colors: torch.Tensor,  # [N, C]
    opacities: torch.Tensor,  # [N]
    depths: torch.Tensor,  # [N]
    width: int,
    height: int,
    tile_size: int = 16,
) -> Splatted:
    """Same inputs and outputs as :func:`rasterize_gaussians` (``tile_size`` is unused)."""
    order = torch.argsort(depths.detach(), stable=True)
    m, q, col, o = means2d[order], conics[order], colors[order], opacities[order]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=m.dtype, device=m.device) + 0.5,
                            torch.arange(width, dtype=m.dtype, device=m.device) + 0.5, indexing="ij")
    dx = xs.reshape(-1, 1) - m[None, :, 0]  # [P, N]
    dy = ys.reshape(-1, 1) - m[None, :, 1]
    power = -0.5 * (q[:, 0] * dx * dx + q[:, 2] * dy * dy) - q[:, 1] * dx * dy
    alpha = torch.clamp(o * torch.exp(power), max=0.99)
    zero = torch.zeros((), dtype=m.dtype, device=m.device)
    alpha = torch.where((power <= 0) & (alpha >= 1.0 / 255.0), alpha, zero)
    # A Gaussian counts only while the transmittance after it stays >= 1e-4.
    keep = torch.cumprod(1.0 - alpha.detach(), 1) >= 1e-4
    alpha = torch.where(keep, alpha, zero)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], 1), 1)
    w = alpha * trans
    image = (w @ col).view(height, width, -1)
    return Splatted(image, w.sum(1).view(height, width))
