"""Pure-torch reference for :func:`lumigrad.ops.soft_rasterize` (the spec; brute force, small scenes only).

Soft Rasterizer (Liu et al. 2019), on clip-space input. For pixel centre p and
triangle j with screen (NDC) vertices a_k = (x_k, y_k) / w_k:

    d2_j  = squared distance from p to the triangle's boundary (closest point
            on the nearest edge segment), sign_j = +1 inside (or on), -1 outside
    D_j   = sigmoid(sign_j * d2_j / sigma)
    alpha = 1 - prod_j (1 - D_j)  = 1 - exp(-sum_j softplus(sign_j * d2_j / sigma))

Colour aggregation (SoftRas softmax with a background term):

    q_j   = the pixel itself if inside, else its closest point on the triangle;
            bs = screen-space barycentrics of q_j, b = perspective-correct ones
            (b_k proportional to bs_k / w_k); colour_j = sum_k b_k colors_k
    z_j   = z_ndc at q_j (z_ndc is affine in screen space, so z_j = bs . z_ndc)
    z'_j  = (1 - z_j) / 2, normalised inverse depth: 1 at the near plane, 0 at far
    w_j   = D_j * exp(z'_j / gamma),  w_bg = exp(z_eps / gamma)
    rgb   = (sum_j w_j colour_j + w_bg * background) / (sum_j w_j + w_bg)

Only triangles with z_j in [-1, 1] (the visible depth range) take part in the
colour; all take part in alpha (as in SoftRas). A triangle is skipped for a pixel
when it is outside and d2_j >= dist_cutoff**2, when any of its vertices has
w <= 0 (clip such geometry first), or when its screen area is exactly zero.
Both orientations are drawn (no back-face culling). Softmax weights are shifted
by the pixel's max z' (a constant that cancels) for stability.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as tnf

from lumigrad.ops._rasterize_ref import pixel_centers_ndc

__all__ = ["soft_rasterize_ref", "default_dist_cutoff"]

# Skipped triangles have D_j below this (before the cutoff D_j >= this).
_D_MIN = 1e-4


def default_dist_cutoff(sigma: float) -> float:
    """NDC distance beyond which an outside triangle has D_j < 1e-4."""
    return math.sqrt(sigma * math.log(1.0 / _D_MIN - 1.0))


def _cross2(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def screen_vertices(pos: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` clip -> ``[..., 4]`` (x/w, y/w, z/w, 1/w); all zero where w <= 0 (culled)."""
    w = pos[..., 3:]
    front = w > 0
    w_safe = torch.where(front, w, torch.ones_like(w))
    s = torch.cat([pos[..., :3] / w_safe, 1.0 / w_safe], dim=-1)
    return torch.where(front, s, torch.zeros_like(s))


def soft_rasterize_ref(
    pos: torch.Tensor,  # [B, V, 4] or [V, 4] clip
    tri: torch.Tensor,  # [F, 3] int
    resolution,
    colors: torch.Tensor | None = None,  # [B, V, C] or [V, C]
    *,
    sigma: float = 1e-4,
    gamma: float = 1e-4,
    background: torch.Tensor | None = None,  # broadcastable to [B, H, W, C]
    dist_cutoff: float | None = None,
    z_eps: float = 1e-3,
) -> torch.Tensor:
    """Reference soft rasterizer; same contract as :func:`lumigrad.ops.soft_rasterize`.

    Returns:
        ``SoftRasterized(color [B, H, W, C] or None, alpha [B, H, W, 1])``.
    """
    if pos.ndim == 2:
        pos = pos[None]
    if colors is not None and colors.ndim == 2:
        colors = colors[None]
    B = max(pos.shape[0], colors.shape[0] if colors is not None else 1)
    H, W = int(resolution[0]), int(resolution[1])
    cutoff = default_dist_cutoff(sigma) if dist_cutoff is None else float(dist_cutoff)
    tri = tri.long()

    sv = screen_vertices(pos)[:, tri].expand(B, -1, -1, -1)  # [B, F, 3(k), 4]
    a, zs, iw = sv[..., :2], sv[..., 2], sv[..., 3]
    p = pixel_centers_ndc(H, W, pos.dtype, pos.device)[..., :2].reshape(-1, 1, 1, 2)  # [P, 1, 1, 2]
    d = p - a[:, None]  # p - a_k  [B, P, F, 3, 2]
    nxt = [1, 2, 0]
    prv = [2, 0, 1]
    n = _cross2(d[..., nxt, :], d[..., prv, :])  # twice the signed sub-areas  [B, P, F, 3]
    area = n.sum(-1)
    pos_a = area > 0
    inside = torch.where(pos_a[..., None], n >= 0, n <= 0).all(-1)
    bs_in = n / torch.where(area != 0, area, torch.ones_like(area))[..., None]

    e = a[..., nxt, :] - a  # edge k: a_k -> a_{k+1}  [B, F, 3, 2]
    length2 = (e * e).sum(-1)
    length2 = torch.where(length2 > 0, length2, torch.ones_like(length2))[:, None]
    t = ((d * e[:, None]).sum(-1) / length2).clamp(0.0, 1.0)  # [B, P, F, 3]
    diff = d - t[..., None] * e[:, None]
    d2, kmin = (diff * diff).sum(-1).min(-1)  # [B, P, F]

    eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
    bs_edge = (1 - t)[..., None] * eye + t[..., None] * eye[nxt]  # [B, P, F, 3(edge), 3(corner)]
    bs_out = bs_edge.gather(-2, kmin[..., None, None].expand(*kmin.shape, 1, 3))[..., 0, :]
    bs = torch.where(inside[..., None], bs_in, bs_out)

    keep = (iw > 0).all(-1)[:, None] & (area != 0) & (inside | (d2 < cutoff * cutoff))
    x = torch.where(inside, d2, -d2) / sigma
    alpha = 1.0 - torch.exp(-torch.where(keep, tnf.softplus(x), torch.zeros_like(x)).sum(-1))  # [B, P]
    alpha = alpha.reshape(B, H, W, 1)
    from lumigrad.ops.soft_rasterize import SoftRasterized  # here: soft_rasterize imports this module

    if colors is None:
        return SoftRasterized(None, alpha)

    z = (bs * zs[:, None]).sum(-1)
    zp = (1.0 - z) * 0.5
    ckeep = keep & (z >= -1) & (z <= 1)
    q = bs * iw[:, None]
    bp = q / torch.where(ckeep, q.sum(-1), torch.ones_like(z))[..., None]  # perspective-correct
    col = colors[:, tri].expand(B, -1, -1, -1)  # [B, F, 3, C]
    col = torch.einsum("bpfk,bfkc->bpfc", bp, col)
    with torch.no_grad():
        m = torch.where(ckeep, zp, torch.full_like(zp, -math.inf)).amax(-1).clamp_min(z_eps)  # [B, P]
    arg = torch.where(ckeep, (zp - m[..., None]) / gamma, torch.zeros_like(zp))
    wgt = torch.where(ckeep, torch.sigmoid(x) * torch.exp(arg), torch.zeros_like(zp))
    w_bg = torch.exp((z_eps - m) / gamma)
    norm = wgt.sum(-1) + w_bg
    fg = (wgt[..., None] * col).sum(-2) / norm[..., None]
    rgb = fg.reshape(B, H, W, -1)
    if background is not None:
        rgb = rgb + (w_bg / norm).reshape(B, H, W, 1) * background
    return SoftRasterized(rgb, alpha)
