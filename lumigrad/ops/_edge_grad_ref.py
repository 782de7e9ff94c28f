"""Pure-torch reference for :func:`lumigrad.ops.edge_grad` (the spec; vectorised over all pixel pairs).

The forward value is ``color``. The visibility gradient is produced by adding,
at both pixels of every active pair, ``0.5 * (c0 - c1) * (b(pos) - b(pos).detach())``:
zero in value, and its derivative w.r.t. ``pos`` is ``dL/db * db/dpos`` with
``b`` the boundary position along the pair axis as the owning surface moves
(see :mod:`lumigrad.ops.edge_grad` for the rules). Plain autograd does the rest.
"""
from __future__ import annotations

import torch

from lumigrad.ops.antialias import _build_topology
from lumigrad.ops.edge_grad import MAX_SLOPE_RATIO, MAX_WALK, REL_DEPTH_TOL, TAU, colour_jump, pair_geometry, screen_vertices

NONE, OWNER_FIRST, OWNER_SECOND, INTERSECT = 0, 1, 2, 3


def _bary(v: torch.Tensor, p: torch.Tensor):
    """Affine barycentrics ``[N, 3]`` and signed doubled area ``[N]`` of points ``p [N, 2]`` in triangles ``v [N, 3, 2+]``."""
    x0, y0 = v[:, 0, 0], v[:, 0, 1]
    x1, y1 = v[:, 1, 0], v[:, 1, 1]
    x2, y2 = v[:, 2, 0], v[:, 2, 1]
    px, py = p[:, 0], p[:, 1]
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    safe = torch.where(area == 0, torch.ones_like(area), area)
    l0 = ((x1 - px) * (y2 - py) - (y1 - py) * (x2 - px)) / safe
    l1 = ((x2 - px) * (y0 - py) - (y2 - py) * (x0 - px)) / safe
    lam = torch.stack([l0, l1, 1 - l0 - l1], -1)
    return torch.where((area == 0)[:, None], torch.zeros_like(lam), lam), area


def _pair_tables(B: int, H: int, W: int, device):
    """All pairs ``2 * pixel + slot`` inside the image, and their first-pixel (x, y)."""
    pix = torch.arange(B * H * W, device=device)
    x, y = pix % W, (pix // W) % H
    right = 2 * pix[x + 1 < W]
    below = 2 * pix[y + 1 < H] + 1
    pairs = torch.cat([right, below])
    return pairs, x, y


def classify_ref(scr: torch.Tensor, ids: torch.Tensor, tri: torch.Tensor, B: int, H: int, W: int, vbase: torch.Tensor):
    """Codes ``[N]`` of all pairs (see the kernel module) and the pairs ``[N]``."""
    pairs, px, py = _pair_tables(B, H, W, ids.device)
    p0, p1 = pair_geometry(pairs, W)
    d = pairs % 2
    fa, fb = ids[p0].long(), ids[p1].long()
    dt = scr.dtype
    pa = torch.stack([px[p0], py[p0]], -1).to(dt) + 0.5
    pb = pa + torch.stack([1 - d, d], -1).to(dt)
    ra = vbase[p0, None] + tri[fa.clamp(min=0)].long()  # [N, 3] rows
    rb = vbase[p0, None] + tri[fb.clamp(min=0)].long()
    va, vb = scr[ra], scr[rb]  # [N, 3, 4]
    valid_a = (fa >= 0) & (va[..., 3] > 0).all(-1)
    valid_b = (fb >= 0) & (vb[..., 3] > 0).all(-1)
    la, area_a = _bary(va, pa)
    ma, _ = _bary(va, pb)
    lb, area_b = _bary(vb, pb)
    mb, _ = _bary(vb, pa)
    shared = (tri[fa.clamp(min=0)].long()[:, :, None] == tri[fb.clamp(min=0)].long()[:, None, :]).sum((1, 2))
    continuous_edge = (shared == 2) & ((area_a > 0) == (area_b > 0))
    b_in_a, a_in_b = (ma > 0).all(-1), (mb > 0).all(-1)
    za, zb = (la * va[..., 2]).sum(-1), (lb * vb[..., 2]).sum(-1)
    gap_b = ((ma * va[..., 2]).sum(-1) - zb).abs()
    gap_a = ((mb * vb[..., 2]).sum(-1) - za).abs()
    continuous_depth = torch.maximum(gap_a, gap_b) <= TAU * (zb - za).abs()
    # Under perspective also a small relative gap in linear depth (1/w is affine in screen space).
    inv = lambda lam, v: (lam / torch.where(v[..., 3] > 0, v[..., 3], torch.ones_like(v[..., 3]))).sum(-1)
    qa, qb = inv(la, va), inv(lb, vb)
    rel = torch.maximum((inv(ma, va) / qb - 1).abs(), (inv(mb, vb) / qa - 1).abs())
    perspective = (va[..., 3] != 1).any(-1) | (vb[..., 3] != 1).any(-1)
    continuous_depth |= perspective & (rel <= REL_DEPTH_TOL)
    near = torch.where(za <= zb, OWNER_FIRST, OWNER_SECOND)
    both = torch.where(
        b_in_a & a_in_b, INTERSECT,
        torch.where(a_in_b, OWNER_FIRST, torch.where(b_in_a, OWNER_SECOND, torch.where(continuous_depth, NONE, near))),
    )
    both = torch.where(continuous_edge | (area_a == 0) | (area_b == 0) | ~valid_a | ~valid_b, NONE, both)
    code = torch.where(fb < 0, torch.where(valid_a, OWNER_FIRST, NONE), torch.where(fa < 0, torch.where(valid_b, OWNER_SECOND, NONE), both))
    code = torch.where(fa == fb, NONE, code)
    return code, pairs


def walk_to_contour(scr, tri, neighbor, face, vbase, start, across, dirn, d):
    """Vectorised :func:`_walk_to_contour` of the kernels: for each pair, walk from ``face``
    along the axis to the first edge without a same-facing neighbour within one pixel.

    Returns ``found [N]`` bool, the edge's vertex rows ``[N, 2]`` and the crossing's
    fraction ``s [N]`` along the edge (the edge point that moves the boundary).
    """
    n = face.shape[0]
    dev = face.device
    cur = face.clone()
    active = torch.ones(n, dtype=torch.bool, device=dev)
    found = torch.zeros(n, dtype=torch.bool, device=dev)
    rows = torch.zeros(n, 2, dtype=torch.long, device=dev)
    frac = torch.zeros(n, dtype=scr.dtype, device=dev)
    ar = torch.arange(n, device=dev)
    facing = lambda r: _bary(scr[r], torch.zeros(len(r), 2, dtype=scr.dtype, device=dev))[1] > 0  # noqa: E731
    for _ in range(MAX_WALK):
        r = vbase[:, None] + tri[cur]  # [N, 3]
        best_t = torch.full((n,), -1e30, dtype=scr.dtype, device=dev)
        best_k = torch.full((n,), -1, dtype=torch.long, device=dev)
        for k in range(3):
            ra, rb = r[:, (k + 1) % 3], r[:, (k + 2) % 3]
            ca = torch.where(d == 0, scr[ra, 1], scr[ra, 0]) - across
            cb = torch.where(d == 0, scr[rb, 1], scr[rb, 0]) - across
            crosses = (ca < 0) != (cb < 0)
            aa = torch.where(d == 0, scr[ra, 0], scr[ra, 1])
            ab = torch.where(d == 0, scr[rb, 0], scr[rb, 1])
            den = torch.where(crosses, cb - ca, torch.ones_like(ca))
            t = ((aa * cb - ab * ca) / den - start) * dirn
            better = crosses & (t > best_t)
            best_t = torch.where(better, t, best_t)
            best_k = torch.where(better, k, best_k)
        active &= (best_k >= 0) & (best_t <= 1)
        k = best_k.clamp(min=0)
        nb = neighbor[cur, k].long()
        rn = vbase[:, None] + tri[nb.clamp(min=0)]
        nb_valid = (scr[rn][..., 3] > 0).all(-1)
        active &= (nb < 0) | nb_valid
        contour = (nb < 0) | (facing(rn) != facing(r))
        hit = active & contour & (best_t >= 0)
        ra, rb = r[ar, (k + 1) % 3], r[ar, (k + 2) % 3]
        c1 = torch.where(d == 0, scr[ra, 1], scr[ra, 0]) - across
        c2 = torch.where(d == 0, scr[rb, 1], scr[rb, 0]) - across
        rows = torch.where(hit[:, None], torch.stack([ra, rb], -1), rows)
        frac = torch.where(hit, -c1 / torch.where(hit, c2 - c1, torch.ones_like(c1)), frac)
        found |= hit
        active &= ~contour
        cur = torch.where(active, nb, cur)
    return found, rows, frac


def _slope(v: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """d z / d(axis) of planes through ``v [N, 3, 3]`` (X, Y, z)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    sx = (z[:, 0] * (y[:, 1] - y[:, 2]) + z[:, 1] * (y[:, 2] - y[:, 0]) + z[:, 2] * (y[:, 0] - y[:, 1])) / area
    sy = (z[:, 0] * (x[:, 2] - x[:, 1]) + z[:, 1] * (x[:, 0] - x[:, 2]) + z[:, 2] * (x[:, 1] - x[:, 0])) / area
    return torch.where(d == 0, sx, sy)


def edge_grad_ref(
    color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor, *, topology=None, rim=None
) -> torch.Tensor:
    """Reference :func:`lumigrad.ops.edge_grad` (same contract; ``rim`` from :func:`edge_rim_ref` or ``edge_rim``)."""
    B, H, W, C = color.shape
    pos3 = pos if pos.ndim == 3 else pos[None]
    Bp, V, _ = pos3.shape
    tri = tri.long()
    scr = screen_vertices(pos3, H, W).reshape(Bp * V, 4)
    ids = rast[..., 3].detach().reshape(-1).long() - 1
    pix = torch.arange(B * H * W, device=color.device)
    vbase = (pix // (H * W)) * V * int(Bp > 1)
    with torch.no_grad():
        code, pairs = classify_ref(scr.detach(), ids, tri, B, H, W, vbase)
    all_codes = torch.zeros(B * H * W, 2, dtype=torch.long, device=color.device)
    all_codes.view(-1)[pairs] = code
    keep = code != NONE
    code, pairs = code[keep], pairs[keep]
    p0, p1 = pair_geometry(pairs, W)
    d = pairs % 2
    pa = torch.stack([p0 % W, (p0 // W) % H], -1).to(color.dtype) + 0.5
    pb = pa + torch.stack([1 - d, d], -1).to(color.dtype)
    fa, fb = ids[p0], ids[p1]
    owner_first = code != OWNER_SECOND
    # Owner (intersections: the first triangle) at its own pixel.
    f1 = torch.where(owner_first, fa, fb)
    mid = 0.5 * (pa + pb)
    # Single owners move with their plane extrapolated to the pair midpoint; intersections at own pixels.
    q1 = torch.where((code == INTERSECT)[:, None], pa, mid)
    r1 = vbase[p0, None] + tri[f1]
    v1 = scr[r1][..., :3]  # [N, 3, 3] differentiable
    lam1, _ = _bary(v1.detach(), q1)
    b1 = (lam1[..., None] * v1).sum(1)  # fragment (X, Y, z) at fixed barycentrics
    axis1 = torch.where(d == 0, b1[:, 0], b1[:, 1])
    # Single owners: walk to the contour edge; its crossing point moves the boundary.
    neighbor = (topology or _build_topology(tri, V)).neighbor
    start = torch.where(owner_first[:, None], pa, pb)
    start_axis = torch.where(d == 0, start[:, 0], start[:, 1])
    across = torch.where(d == 0, pa[:, 1], pa[:, 0])
    dirn = torch.where(owner_first, 1.0, -1.0).to(color.dtype)
    with torch.no_grad():
        found, erows, frac = walk_to_contour(scr.detach(), tri, neighbor, f1, vbase[p0], start_axis, across, dirn, d)
    found &= code != INTERSECT
    ev = scr[erows]  # [N, 2, 4]
    edge_axis = torch.where(d == 0, (1 - frac) * ev[:, 0, 0] + frac * ev[:, 1, 0], (1 - frac) * ev[:, 0, 1] + frac * ev[:, 1, 1])
    axis1 = torch.where(found, edge_axis, axis1)
    shift = torch.where(code == INTERSECT, torch.zeros_like(axis1), axis1 - axis1.detach())
    inter = code == INTERSECT
    if inter.any():
        r2 = vbase[p0, None] + tri[fb.clamp(min=0)]
        v2 = scr[r2][..., :3]
        lam2, _ = _bary(v2.detach(), pb)
        b2 = (lam2[..., None] * v2).sum(1)
        axis2 = torch.where(d == 0, b2[:, 0], b2[:, 1])
        ga, gb = _slope(v1.detach(), d), _slope(v2.detach(), d)
        den = ga - gb
        ok = inter & (den.abs() * MAX_SLOPE_RATIO > torch.maximum(ga.abs(), gb.abs()))
        den = torch.where(ok, den, torch.ones_like(den))
        da, za = axis1 - axis1.detach(), b1[:, 2] - b1[:, 2].detach()
        db, zb = axis2 - axis2.detach(), b2[:, 2] - b2[:, 2].detach()
        across = _slope(v1.detach(), 1 - d) - _slope(v2.detach(), 1 - d)
        weight = den**2 / (den**2 + across**2)  # n_axis^2 of the intersection line
        cross = weight * (ga * da - za + zb - gb * db) / den
        shift = torch.where(ok, cross, shift)
    flat = color.reshape(B * H * W, C)
    jump = colour_jump(flat.detach(), all_codes, pairs, H, W, rim=rim is not None)
    delta = 0.5 * jump * shift[:, None]
    out = flat.index_add(0, p0, delta).index_add(0, p1, delta)
    return out.view(B, H, W, C)


def edge_rim_ref(rast: torch.Tensor, rast_db: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor):
    """Reference :func:`lumigrad.ops.edge_rim`: ``(rast, codes)`` from :func:`classify_ref`.

    The projected backward comes from plain autograd: ``uv' = uv_0 + M (uv - uv_0)``
    with ``M = J K J^-1`` (J = d(u, v)/d(X, Y) from ``rast_db``, K the kept
    axes) has ``uv``'s value and pulls ``g`` back to ``M^T g = J^-T K J^T g``.
    """
    B, H, W, _ = rast.shape
    pos3 = pos if pos.ndim == 3 else pos[None]
    Bp, V, _ = pos3.shape
    tri_l = tri.long()
    scr = screen_vertices(pos3.detach(), H, W).reshape(Bp * V, 4)
    ids = rast[..., 3].detach().reshape(-1).long() - 1
    pix = torch.arange(B * H * W, device=rast.device)
    vbase = (pix // (H * W)) * V * int(Bp > 1)
    with torch.no_grad():
        code, pairs = classify_ref(scr, ids, tri_l, B, H, W, vbase)
    codes = torch.zeros(B * H * W, 2, dtype=torch.int32, device=rast.device)
    codes.view(-1)[pairs] = code.to(torch.int32)
    keep = torch.ones(B * H * W, 2, dtype=rast.dtype, device=rast.device)
    active = code != NONE
    p0, p1 = pair_geometry(pairs[active], W)
    owner = torch.where(code[active] == OWNER_FIRST, p0, p1)
    owns = (code[active] == OWNER_FIRST) | (code[active] == OWNER_SECOND)
    keep[owner[owns], (pairs[active] % 2)[owns]] = 0
    J = rast_db.detach().reshape(-1, 2, 2)  # rows (u, v), columns (X, Y)
    det = torch.linalg.det(J)
    ok = (keep.min(-1).values < 1) & (det.abs() > 1e-12 * J[:, 0].abs().sum(-1) * J[:, 1].abs().sum(-1))
    eye = torch.eye(2, dtype=rast.dtype, device=rast.device).expand_as(J)
    Jsafe = torch.where(ok[:, None, None], J, eye)
    M = torch.where(ok[:, None, None], Jsafe @ torch.diag_embed(keep) @ torch.linalg.inv(Jsafe), eye)
    uv = rast.reshape(-1, 4)[:, :2]
    uv_new = uv.detach() + (M @ (uv - uv.detach())[..., None])[..., 0]
    out = torch.cat([uv_new, rast.reshape(-1, 4)[:, 2:]], dim=-1).view_as(rast)
    return out, codes
