"""Pure-torch reference of :func:`lumigrad.ops.volume_render.volume_render` (the spec).

Differentiable by plain autograd; it builds the per-sample graph the kernel
avoids, so it is for tests and benchmarks on small inputs.
"""
from __future__ import annotations

import torch

from lumigrad.ops.volume_render import VolumeRendered

__all__ = ["volume_render_ref"]


def volume_render_ref(
    sigmas: torch.Tensor,  # [S]
    rgbs: torch.Tensor,  # [S, C]
    t_starts: torch.Tensor,  # [S]
    t_ends: torch.Tensor,  # [S]
    packed_info: torch.Tensor,  # [R, 2] (start, count)
    transmittance_threshold: float = 1e-4,
) -> VolumeRendered:
    """Same inputs and outputs as :func:`volume_render`."""
    R = packed_info.shape[0]
    starts = packed_info[:, 0].long()
    counts = packed_info[:, 1].long()
    M = int(counts.max()) if R else 0
    # Pad the ragged rays to [R, M]; padded slots get tau = 0 and are masked out.
    slot = torch.arange(M, device=sigmas.device)
    valid = slot[None, :] < counts[:, None]  # [R, M]
    idx = torch.where(valid, starts[:, None] + slot[None, :], torch.zeros_like(slot)[None, :])
    zero = torch.zeros((), dtype=sigmas.dtype, device=sigmas.device)
    tau = torch.where(valid, sigmas[idx] * (t_ends - t_starts)[idx], zero)  # [R, M]
    excl = torch.cumsum(tau, 1) - tau  # optical depth in front of each sample
    trans = torch.exp(-excl)
    alpha = 1.0 - torch.exp(-tau)
    # Early termination: a sample counts only while the transmittance in front of it is >= threshold.
    keep = valid & (trans >= transmittance_threshold)
    w = torch.where(keep, trans * alpha, zero)  # [R, M]
    t_mid = 0.5 * (t_starts + t_ends)[idx]
    color = (w[..., None] * rgbs[idx]).sum(1)
    return VolumeRendered(color, w.sum(1), (w * t_mid).sum(1))
