"""Pure-torch reference for :func:`lumigrad.ops.antialias.antialias` (the spec; small images only).

Analytic antialiasing after nvdiffrast (Laine et al. 2020, sec. 3.3). For every
pair of horizontally or vertically adjacent pixels with different triangle ids:

1. The *front* triangle is the one of the pixel with the smaller z_ndc
   (background is infinitely far; ties pick the second pixel). Its pixel is the
   *origin*; ``s = +1`` if that is the pair's first (left/top) pixel, else -1.
2. In pixel units relative to the origin's centre, ``a`` runs along the pair
   (X right for horizontal pairs, Y down for vertical ones) and ``c`` across it.
   Among the triangle's edges that cross the line ``c = 0``, take the one with
   the largest ``t = s * a_cross``: where the triangle ends towards the other pixel.
3. That edge blends only if it is a *silhouette* (no unique neighbour face, or
   the neighbour's opposite vertex lies on the same side of the edge, i.e. the
   neighbour faces the other way; tested with homogeneous determinants), if it
   is steeper than 45 degrees to the pair (flatter edges belong to the other
   direction) and if ``-1/16 < t < 1 + 1/16``. Triangles with a vertex at
   ``w <= 0`` never blend.
4. ``alpha = s * (0.5 - clamp(t, 0, 1))``; with ``delta = alpha * (c1 - c0)``
   the first pixel gets ``+delta`` if ``alpha > 0``, else the second does.
   So the far pixel receives the near colour in proportion to how far the edge
   reaches past the midpoint, and the image is continuous in the vertex positions.
"""
from __future__ import annotations

import torch

__all__ = ["antialias_ref", "opposite_vertices_ref"]

_EPS = 0.0625


def opposite_vertices_ref(tri: torch.Tensor) -> torch.Tensor:
    """``[F, 3]`` int32: for edge k of face f (opposite corner k), the far vertex of the
    only other face on that edge, or -1 (boundary, non-manifold or degenerate)."""
    rows = tri.tolist()
    faces_of_edge: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for f, (i, j, k) in enumerate(rows):
        if len({i, j, k}) < 3:
            continue
        for c in range(3):
            a, b = rows[f][(c + 1) % 3], rows[f][(c + 2) % 3]
            faces_of_edge.setdefault((min(a, b), max(a, b)), []).append((f, c))
    opp = torch.full((len(rows), 3), -1, dtype=torch.int32)
    for half_edges in faces_of_edge.values():
        if len(half_edges) == 2:
            (f, c), (g, e) = half_edges
            opp[f, c] = rows[g][e]
            opp[g, e] = rows[f][c]
    return opp.to(tri.device)


def _det3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (a * torch.cross(b, c, dim=-1)).sum(-1)


def _pair_alpha(pos: torch.Tensor, tri: torch.Tensor, opp: torch.Tensor, rast: torch.Tensor, d: int) -> torch.Tensor:
    """``alpha`` for pairs (pixel, next pixel along dim 2 (d=0) or dim 1 (d=1)): ``[B, H, W-1]`` or ``[B, H-1, W]``."""
    B, H, W, _ = rast.shape
    ids = rast[..., 3].long() - 1
    z = rast[..., 2]
    n = W if d == 0 else H
    i0, i1 = ids.narrow(2 - d, 0, n - 1), ids.narrow(2 - d, 1, n - 1)
    z0, z1 = z.narrow(2 - d, 0, n - 1), z.narrow(2 - d, 1, n - 1)
    use1 = (i0 < 0) | ((i1 >= 0) & ~(z0 < z1))
    f = torch.where(use1, i1, i0)
    valid = (i0 != i1) & (f >= 0)
    f = f.clamp(min=0)
    s = 1.0 - 2.0 * use1.to(pos.dtype)
    gy, gx = torch.meshgrid(torch.arange(i0.shape[1]), torch.arange(i0.shape[2]), indexing="ij")
    ox = gx.to(pos.device) + use1 * (1 - d)
    oy = gy.to(pos.device) + use1 * d

    bidx = torch.arange(B, device=pos.device)[:, None, None, None]
    corners = pos[bidx, tri[f]]  # [B, h, w, 3, 4]
    o = opp[f]
    across = pos[bidx, o.clamp(min=0)]
    across = torch.where((o >= 0)[..., None], across, corners)
    hxyw = corners[..., [0, 1, 3]]
    oxyw = across[..., [0, 1, 3]]
    bb = _det3(hxyw[..., 0, :], hxyw[..., 1, :], hxyw[..., 2, :])
    wing = torch.stack(
        [
            _det3(oxyw[..., 0, :], hxyw[..., 1, :], hxyw[..., 2, :]),
            _det3(hxyw[..., 0, :], oxyw[..., 1, :], hxyw[..., 2, :]),
            _det3(hxyw[..., 0, :], hxyw[..., 1, :], oxyw[..., 2, :]),
        ],
        dim=-1,
    )
    silhouette = ~(((bb > 0)[..., None] & (wing < 0)) | ((bb < 0)[..., None] & (wing > 0)))

    w = corners[..., 3]
    in_front = (w > 0).all(-1)
    w = torch.where(w > 0, w, torch.ones_like(w))  # keeps masked-out gradients finite
    sx = (corners[..., 0] / w + 1) * (W / 2) - (ox[..., None] + 0.5)
    sy = (1 - corners[..., 1] / w) * (H / 2) - (oy[..., None] + 0.5)
    a, c = (sx, sy) if d == 0 else (sy, sx)
    a1, a2 = a[..., [1, 2, 0]], a[..., [2, 0, 1]]  # edge k joins corners k+1 and k+2
    c1, c2 = c[..., [1, 2, 0]], c[..., [2, 0, 1]]
    straddle = (c1 < 0) != (c2 < 0)
    den = torch.where(straddle, c2 - c1, torch.ones_like(c1))
    t_all = s[..., None] * (a1 * c2 - a2 * c1) / den
    t_all = torch.where(straddle, t_all, torch.full_like(t_all, -1e30))
    k = t_all.argmax(-1, keepdim=True)
    t = t_all.gather(-1, k)[..., 0]
    steep = (c2 - c1).abs() >= (a2 - a1).abs()
    ok = valid & in_front & (silhouette & steep).gather(-1, k)[..., 0] & (t > -_EPS) & (t < 1 + _EPS)
    alpha = s * (0.5 - t.clamp(0, 1))
    return torch.where(ok, alpha, torch.zeros_like(alpha))


def antialias_ref(
    color: torch.Tensor,  # [B, H, W, C]
    rast: torch.Tensor,  # [B, H, W, 4]
    pos: torch.Tensor,  # [B, V, 4] or [V, 4] clip
    tri: torch.Tensor,  # [F, 3] int
    *,
    topology=None,
    pos_gradient_boost: float = 1.0,
) -> torch.Tensor:
    """Reference antialiasing; same contract as :func:`lumigrad.ops.antialias.antialias`."""
    B = rast.shape[0]
    pos = pos if pos.ndim == 3 else pos[None]
    pos = pos.expand(B, -1, -1)
    # Same value, gradient scaled by the boost.
    pos = pos * pos_gradient_boost - pos.detach() * (pos_gradient_boost - 1.0)
    tri = tri.long()
    opp = (topology.opposite if topology is not None else opposite_vertices_ref(tri)).long()
    rast = rast.detach()
    out = color
    for d in (0, 1):
        alpha = _pair_alpha(pos, tri, opp, rast, d)[..., None]
        n = color.shape[2 - d]
        c0, c1 = color.narrow(2 - d, 0, n - 1), color.narrow(2 - d, 1, n - 1)
        delta = alpha * (c1 - c0)
        zero = torch.zeros_like(delta)
        to_first = torch.where(alpha > 0, delta, zero)
        to_second = torch.where(alpha < 0, delta, zero)
        pad_first = [0, 0] * (1 + d) + [0, 1]  # F.pad order: last dim first
        pad_second = [0, 0] * (1 + d) + [1, 0]
        out = out + torch.nn.functional.pad(to_first, pad_first) + torch.nn.functional.pad(to_second, pad_second)
    return out
