"""Pure-torch reference for :func:`lumigrad.ops.rasterize` (the spec; brute force, small scenes only).

Coverage uses 2D homogeneous edge functions (Olano & Greer 1997), so triangles
crossing the camera plane (w <= 0 at some vertex) need no clipping: a pixel is
covered iff its ray hits the triangle in front of the camera.

For a pixel centre p = (x_ndc, y_ndc, 1) and vertices c_k = (x_k, y_k, w_k):
    r_0 = c_1 x c_2,  r_1 = c_2 x c_0,  r_2 = c_0 x c_1,   det = c_0 . r_0
    e_k = sign(det) * (r_k . p)
The pixel is inside iff every e_k > 0, or e_k == 0 on a "top-left" edge
(sign(det) * r_k[:2] has a > 0, or a == 0 and b > 0). A shared edge gives exactly
negated e_k in both triangles (cross products are antisymmetric in IEEE
arithmetic), so it is drawn exactly once. Perspective-correct barycentrics are
b_k = e_k / sum(e); depth is z_ndc = (b . z) / (b . w), kept in [-1, 1].
"""
from __future__ import annotations

import torch


def pixel_centers_ndc(height: int, width: int, dtype, device) -> torch.Tensor:
    """``[H, W, 3]`` homogeneous NDC pixel centres ``(x, y, 1)``; row 0 is the top (y = +1 side)."""
    xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) * (2.0 / width) - 1.0
    ys = 1.0 - (torch.arange(height, dtype=dtype, device=device) + 0.5) * (2.0 / height)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product from separate multiplies and subtracts: ``torch.cross`` may use
    fused multiply-add, which breaks the exact antisymmetry the fill rule relies on."""
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def edge_rows(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge-function rows ``r [..., 3(k), 3]`` (already multiplied by sign(det)) and ``det [...]``
    for homogeneous 2D vertices ``c [..., 3(k), 3]`` = (x, y, w)."""
    c0, c1, c2 = c.unbind(-2)
    r = torch.stack([_cross(c1, c2), _cross(c2, c0), _cross(c0, c1)], dim=-2)
    det = (c0 * r[..., 0, :]).sum(-1)
    s = torch.sign(det)
    return r * s[..., None, None], det


def normalize_corners(v: torch.Tensor) -> torch.Tensor:
    """Scale each triangle's corners ``v [..., 3, 4]`` by a power of two so the largest
    |coordinate| is in [0.5, 1): exact, and rasterization does not change under a common
    scale of a triangle's corners, but the edge rows (quadratic) and det (cubic) no longer
    overflow or underflow (e.g. a float32 triangle scaled by 1e20)."""
    m = v.detach().abs().amax(dim=(-1, -2), keepdim=True)
    _, e = torch.frexp(torch.where(m > 0, m, torch.ones_like(m)))
    return v * torch.ldexp(torch.ones_like(m), -e)


def rasterize_ref(pos: torch.Tensor, tri: torch.Tensor, resolution) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference rasterizer. Same contract as :func:`lumigrad.ops.rasterize`.

    Args:
        pos: ``[B, V, 4]`` or ``[V, 4]`` clip-space positions.
        tri: ``[F, 3]`` integer vertex indices.
        resolution: ``(H, W)``.

    Returns:
        rast ``[B, H, W, 4]`` = (u, v, z_ndc, tri_id + 1), with barycentrics
        b0 = u, b1 = v, b2 = 1 - u - v; zeros where empty. Differentiable in
        u, v, z w.r.t. ``pos``.
        rast_db ``[B, H, W, 4]`` = (du/dX, du/dY, dv/dX, dv/dY) in pixels
        (X right, Y down); differentiable w.r.t. ``pos``.
    """
    if pos.ndim == 2:
        pos = pos[None]
    H, W = int(resolution[0]), int(resolution[1])
    B = pos.shape[0]
    tri = tri.long()
    p = pixel_centers_ndc(H, W, pos.dtype, pos.device).reshape(-1, 3)  # [P, 3]

    with torch.no_grad():
        v = normalize_corners(pos.detach()[:, tri])  # [B, F, 3, 4]
        r, det = edge_rows(v[..., [0, 1, 3]])  # [B, F, 3, 3], [B, F]
        e = torch.einsum("bfkc,pc->bpfk", r, p)  # [B, P, F, 3]
        a, bcoef = r[..., 0], r[..., 1]  # [B, F, 3]
        top_left = (a > 0) | ((a == 0) & (bcoef > 0))
        inside = ((e > 0) | ((e == 0) & top_left[:, None])).all(-1) & (det != 0)[:, None]
        bary = e / e.sum(-1, keepdim=True)
        z = (bary * v[..., 2][:, None]).sum(-1) / (bary * v[..., 3][:, None]).sum(-1)  # [B, P, F]
        inside &= (z >= -1) & (z <= 1)
        zkey = torch.where(inside, z, torch.full_like(z, float("inf")))
        best = zkey.argmin(-1)  # first (smallest id) among equal depths
        hit = inside.gather(-1, best[..., None])[..., 0]  # [B, P]

    # Recompute the winner's barycentrics with autograd on.
    bidx = torch.arange(B, device=pos.device)[:, None]
    corner = normalize_corners(pos[bidx[..., None], tri[best]])  # [B, P, 3, 4]
    r_w, _ = edge_rows(corner[..., [0, 1, 3]])  # [B, P, 3, 3]
    e_w = (r_w * p[None, :, None, :]).sum(-1)  # [B, P, 3]
    sum_e = e_w.sum(-1, keepdim=True)
    safe = torch.where(hit[..., None], sum_e, torch.ones_like(sum_e))
    b = e_w / safe
    z_w = (b * corner[..., 2]).sum(-1) / (b * corner[..., 3]).sum(-1).where(hit, torch.ones_like(hit, dtype=pos.dtype))
    tri_id = (best + 1).to(pos.dtype)
    rast = torch.stack([b[..., 0], b[..., 1], z_w, tri_id], dim=-1)
    rast = torch.where(hit[..., None], rast, torch.zeros_like(rast)).reshape(B, H, W, 4)

    # d b_k / d p = (r_k - b_k * sum_j r_j) / sum(e); dp/dX = 2/W, dp/dY = -2/H. Differentiable
    # w.r.t. pos (nvdiffrast's grad_db): the mip level of a texture lookup depends on it.
    rsum = r_w.sum(-2)  # [B, P, 3]
    db_dp = (r_w[..., :2, :2] - b[..., :2, None] * rsum[..., None, :2]) / safe[..., None]  # [B,P,2(u,v),2(px,py)]
    scale = torch.tensor([2.0 / W, -2.0 / H], dtype=pos.dtype, device=pos.device)
    db = (db_dp * scale).reshape(B, H * W, 4)
    db = torch.where(hit[..., None], db, torch.zeros_like(db)).reshape(B, H, W, 4)
    return rast, db
