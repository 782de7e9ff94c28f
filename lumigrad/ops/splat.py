"""3D Gaussian splatting: projection of anisotropic Gaussians and tile rasterization.

:func:`project_gaussians` (pure torch, autograd) turns 3D Gaussians into 2D
means and conics; :func:`rasterize_gaussians` bins them into tiles, sorts each
tile's list by depth and alpha-blends front to back in a Warp kernel with a
hand-written backward. Pure-torch spec of the rasterizer:
:mod:`lumigrad.ops._splat_ref`. Kernels: :mod:`lumigrad.ops._splat_kernels`.
Conventions (docs/conventions.md): OpenCV camera, ``K`` in pixels, pixel
centres at +0.5, row 0 at the top; quaternions are ``(w, x, y, z)``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from lumigrad._runtime.checks import check_finite, check_float_tensor, check_same_device
from lumigrad._runtime.launch import launch, launch_chunks, num_threads, to_warp, warp_device
from lumigrad.ops import _splat_kernels as _k

__all__ = ["Projected", "project_gaussians", "rasterize_gaussians", "Splatted", "gaussian_radii"]

_FN = "rasterize_gaussians"
_EPS_COV = 0.3  # screen-space dilation (pixels^2), as 3DGS


class Projected(NamedTuple):
    """Result of :func:`project_gaussians`."""

    means2d: torch.Tensor  # [N, 2] pixel coordinates (u right, v down)
    conics: torch.Tensor  # [N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    depths: torch.Tensor  # [N] camera z
    in_front: torch.Tensor  # [N] bool, z > near


class Splatted(NamedTuple):
    """Result of :func:`rasterize_gaussians`."""

    image: torch.Tensor  # [H, W, C]
    alpha: torch.Tensor  # [H, W] accumulated opacity (1 - final transmittance)


def _quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).view(*q.shape[:-1], 3, 3)


def project_gaussians(
    means: torch.Tensor,  # [N, 3] world
    quats: torch.Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: torch.Tensor,  # [N, 3] standard deviations along the rotated axes, > 0
    world_to_cam: torch.Tensor,  # [4, 4]
    K: torch.Tensor,  # [3, 3] pixels
    width: int,
    height: int,
    near: float = 0.01,
) -> Projected:
    """EWA projection of 3D Gaussians (Zwicker et al.; 3DGS's ``J W Sigma W^T J^T + 0.3 I``).

    Pure torch: differentiable by autograd w.r.t. ``means``, ``quats``, ``scales``
    (and the camera). Gaussians behind ``near`` get ``in_front = False``; their
    outputs are finite but meaningless, so drop them before rasterizing.

    Returns:
        :class:`Projected` ``(means2d [N, 2], conics [N, 3], depths [N], in_front [N])``.
    """
    fn = "project_gaussians"
    check_float_tensor(fn, "means", means, (2,), 3, expected="float [N, 3]")
    N = means.shape[0]
    check_float_tensor(fn, "quats", quats, (2,), 4, expected=f"float [N={N}, 4]")
    check_float_tensor(fn, "scales", scales, (2,), 3, expected=f"float [N={N}, 3]")
    check_float_tensor(fn, "world_to_cam", world_to_cam, (2,), 4, expected="float [4, 4]")
    check_float_tensor(fn, "K", K, (2,), 3, expected="float [3, 3]")
    if quats.shape[0] != N or scales.shape[0] != N or world_to_cam.shape != (4, 4) or K.shape != (3, 3):
        raise ValueError(f"{fn}(): need quats [N={N}, 4], scales [N, 3], world_to_cam [4, 4], K [3, 3], got "
                         f"{list(quats.shape)}, {list(scales.shape)}, {list(world_to_cam.shape)}, {list(K.shape)}")
    check_same_device(fn, means=means, quats=quats, scales=scales, world_to_cam=world_to_cam, K=K)
    rot_wc = world_to_cam[:3, :3]
    p_cam = means @ rot_wc.T + world_to_cam[:3, 3]
    z = p_cam[:, 2]
    in_front = z > near
    zs = torch.where(in_front, z, torch.full_like(z, 1.0))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Clamp the Jacobian's x/z, y/z to 1.3x the view frustum, as 3DGS does.
    lim_x = 1.3 * 0.5 * width / fx
    lim_y = 1.3 * 0.5 * height / fy
    tx = torch.clamp(p_cam[:, 0] / zs, -lim_x - cx / fx + 0.5 * width / fx, lim_x + (width - cx) / fx - 0.5 * width / fx)
    ty = torch.clamp(p_cam[:, 1] / zs, -lim_y - cy / fy + 0.5 * height / fy, lim_y + (height - cy) / fy - 0.5 * height / fy)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / zs, zero, fy / zs, -fy * ty / zs], -1).view(N, 2, 3)
    R = _quat_to_rotmat(quats)
    M = R * scales[:, None, :]  # R S
    # cov2 = (J W R S)(J W R S)^T; broadcast products, as torch's bmm is slow on [N, 3, 3] batches on CPU
    T = J @ rot_wc  # [N, 2, 3]
    TM = (T[:, :, :, None] * M[:, None, :, :]).sum(2)  # [N, 2, 3]
    cov2 = (TM[:, :, None, :] * TM[:, None, :, :]).sum(-1)  # [N, 2, 2]
    a = cov2[:, 0, 0] + _EPS_COV
    b = cov2[:, 0, 1]
    c = cov2[:, 1, 1] + _EPS_COV
    det = (a * c - b * b).clamp(min=1e-12)
    conics = torch.stack([c / det, -b / det, a / det], -1)
    means2d = torch.stack([fx * p_cam[:, 0] / zs + cx, fy * p_cam[:, 1] / zs + cy], -1)
    return Projected(means2d, conics, z, in_front)


def gaussian_radii(conics: torch.Tensor, opacities: torch.Tensor) -> torch.Tensor:
    """Pixel radius beyond which a Gaussian's alpha is below 1/255 (0 when it never reaches it).

    ``o exp(-0.5 d^T Q d) < 1/255`` whenever ``|d|^2 > 2 ln(255 o) / lambda_min(Q)``,
    so culling with this radius drops nothing the blend would use: the kernel
    and the dense reference see the same Gaussians.
    """
    a, b, c = conics.detach().unbind(-1)
    lam_min = 0.5 * (a + c) - torch.sqrt((0.5 * (a - c)) ** 2 + b * b)
    o = opacities.detach().clamp(max=0.99)
    ln = torch.log((255.0 * o).clamp(min=1.0))
    r2 = 2.0 * ln / lam_min.clamp(min=1e-12)
    return torch.where((ln > 0) & (lam_min > 0), torch.sqrt(r2), torch.zeros_like(r2))


def _tile_rects(feats: torch.Tensor, tiles_x: int, tiles_y: int, tile_size: int) -> torch.Tensor:
    """``[N, 4]`` int32 tile rectangles ``(x0, y0, x1, y1)`` (exclusive ends; empty when the radius is 0)."""
    m, r = feats[:, :2], feats[:, 6:7]
    lim = torch.tensor([tiles_x, tiles_y], dtype=feats.dtype, device=feats.device)
    lo = torch.minimum(torch.floor((m - r - 0.5) / tile_size).clamp(min=0), lim)
    hi = torch.minimum((torch.floor((m + r - 0.5) / tile_size) + 1).clamp(min=0), lim)
    hi = torch.where(r > 0, torch.maximum(hi, lo), lo)
    return torch.cat([lo, hi], 1).to(torch.int32)


def _bin(feats, depths, width, height, tile_size):
    """Tile binning + depth order: ``(sorted_ids [I] int32, tile_offsets [n_tiles+1] int32, tiles_x, tiles_y)``.

    Per-tile counts come from a 2D difference image of the tile rectangles; on
    CPU one sequential kernel then fills the lists in depth order (O(I), no sort
    over intersections); elsewhere :func:`_bin_sort` sorts (tile, depth) keys.
    """
    dev = feats.device
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    rect = _tile_rects(feats, tiles_x, tiles_y, tile_size)
    if dev.type != "cpu":
        ids, offsets = _bin_sort(rect, depths, tiles_x, n_tiles)
        return ids, offsets, tiles_x, tiles_y
    x0, y0, x1, y1 = rect.long().unbind(1)
    diff = torch.zeros(tiles_y + 1, tiles_x + 1, dtype=torch.long, device=dev)
    one = torch.ones_like(x0)
    for yy, xx, v in ((y0, x0, one), (y0, x1, -one), (y1, x0, -one), (y1, x1, one)):
        diff.index_put_((yy, xx), v, accumulate=True)
    counts = diff.cumsum(0).cumsum(1)[:tiles_y, :tiles_x].reshape(-1)
    offsets = torch.zeros(n_tiles + 1, dtype=torch.long, device=dev)
    torch.cumsum(counts, 0, out=offsets[1:])
    total = int(offsets[-1])
    sorted_ids = torch.empty(total, dtype=torch.int32, device=dev)
    if total:
        order = torch.argsort(depths.detach(), stable=True).to(torch.int32)
        cursor = offsets[:-1].to(torch.int32)
        launch(_k.bin_fill, 1, [to_warp(order), to_warp(rect), tiles_x, to_warp(cursor), to_warp(sorted_ids)],
               warp_device(feats))
    return sorted_ids, offsets.to(torch.int32), tiles_x, tiles_y


def _bin_sort(rect, depths, tiles_x, n_tiles):
    """Device-agnostic binning by sorting ``tile * N + depth_rank`` keys (torch only)."""
    dev = rect.device
    N = rect.shape[0]
    x0, y0, x1, y1 = rect.long().unbind(1)
    nx = x1 - x0
    counts = nx * (y1 - y0)
    gid = torch.repeat_interleave(torch.arange(N, device=dev), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(gid.shape[0], device=dev) - first[gid]
    tile = (y0[gid] + local // nx[gid].clamp(min=1)) * tiles_x + x0[gid] + local % nx[gid].clamp(min=1)
    rank = torch.empty(N, dtype=torch.long, device=dev)
    rank[torch.argsort(depths.detach(), stable=True)] = torch.arange(N, device=dev)
    order = torch.argsort(tile * N + rank[gid])
    offsets = torch.zeros(n_tiles + 1, dtype=torch.long, device=dev)
    offsets[1:] = torch.cumsum(torch.bincount(tile, minlength=n_tiles), 0)
    return gid[order].to(torch.int32).contiguous(), offsets.to(torch.int32)


def _tile_chunks(offsets: torch.Tensor, n_tiles: int, parts: int) -> list[tuple[int, int]]:
    """Split tiles into about ``parts`` contiguous runs of similar total list length."""
    if parts <= 1 or n_tiles <= 1:
        return [(0, n_tiles)]
    work = (offsets[1:] - offsets[:-1]).double() + 1.0  # +1: a tile's own setup
    cum = work.cumsum(0)
    targets = cum[-1] * torch.arange(1, parts, dtype=torch.float64) / parts
    cuts = [0, *(torch.searchsorted(cum, targets) + 1).tolist(), n_tiles]
    cuts = sorted(set(min(max(int(c), 0), n_tiles) for c in cuts))
    return list(zip(cuts[:-1], cuts[1:]))


def rasterize_gaussians(
    means2d: torch.Tensor,  # [N, 2] pixels
    conics: torch.Tensor,  # [N, 3]
    colors: torch.Tensor,  # [N, C]
    opacities: torch.Tensor,  # [N] in [0, 1]
    depths: torch.Tensor,  # [N] sort key (front = smaller)
    width: int,
    height: int,
    tile_size: int = 16,
) -> Splatted:
    """Alpha-blend depth-sorted 2D Gaussians front to back (3DGS rasterization).

    Pixel ``(i, j)`` (centre ``(j + 0.5, i + 0.5)``) blends Gaussians in
    increasing ``depths`` with ``alpha = min(0.99, o exp(-0.5 d^T Q d))``, skips
    ``alpha < 1/255`` and stops before transmittance would drop below 1e-4.
    Composite a background outside: ``image + (1 - alpha)[..., None] * bg``.

    Args:
        means2d: ``[N, 2]`` float32/float64 centres in pixels.
        conics: ``[N, 3]`` ``(a, b, c)`` of the inverse 2D covariance, positive definite.
        colors: ``[N, C]`` per-Gaussian colours/features.
        opacities: ``[N]`` in ``[0, 1]``.
        depths: ``[N]`` sort keys (no gradient).
        width, height: image size in pixels.
        tile_size: tile edge in pixels (binning granularity).

    Returns:
        :class:`Splatted` ``(image [H, W, C], alpha [H, W])``. Gradients flow to
        ``means2d``, ``conics``, ``colors`` and ``opacities``.

    Example:
        >>> import torch
        >>> from lumigrad.ops.splat import rasterize_gaussians
        >>> out = rasterize_gaussians(torch.tensor([[4.0, 4.0]]), torch.tensor([[0.5, 0.0, 0.5]]),
        ...                           torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0.9]), torch.tensor([1.0]), 8, 8)
        >>> round(float(out.alpha[3, 3]), 3)
        0.797
    """
    check_float_tensor(_FN, "means2d", means2d, (2,), 2, expected="float [N, 2]")
    N = means2d.shape[0]
    check_float_tensor(_FN, "conics", conics, (2,), 3, expected=f"float [N={N}, 3]")
    check_float_tensor(_FN, "colors", colors, (2,), expected=f"float [N={N}, C]")
    check_float_tensor(_FN, "opacities", opacities, (1,), expected=f"float [N={N}]")
    check_float_tensor(_FN, "depths", depths, (1,), expected=f"float [N={N}]")
    for name, t in (("conics", conics), ("colors", colors), ("opacities", opacities), ("depths", depths)):
        if t.shape[0] != N or t.dtype != means2d.dtype:
            raise ValueError(f"{_FN}(): {name} must have N={N} rows and means2d's dtype, got "
                             f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}")
    if colors.shape[1] == 0:
        raise ValueError(f"{_FN}(): colors must have at least one channel")
    check_same_device(_FN, means2d=means2d, conics=conics, colors=colors, opacities=opacities, depths=depths)
    for name, v in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{_FN}(): {name} must be an int >= 1, got {v!r}")
    for name, t in (("means2d", means2d), ("conics", conics), ("colors", colors), ("opacities", opacities),
                    ("depths", depths)):
        check_finite(_FN, name, t)
    if N:
        c = conics.detach()
        if bool(((c[:, 0] <= 0) | (c[:, 0] * c[:, 2] - c[:, 1] ** 2 <= 0)).any()):
            raise ValueError(f"{_FN}(): conics must be positive definite (a > 0, ac - b^2 > 0)")
        lo, hi = float(opacities.detach().min()), float(opacities.detach().max())
        if lo < 0 or hi > 1:
            raise ValueError(f"{_FN}(): opacities must lie in [0, 1], got range [{lo:g}, {hi:g}]")
    image, alpha = _SplatFn.apply(means2d, conics, colors, opacities, depths, (width, height, tile_size))
    return Splatted(image.view(height, width, -1), alpha.view(height, width))


class _SplatFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, geom):
        width, height, ts = geom
        P = width * height
        N, C = colors.shape
        dev = means2d.device
        opts = dict(dtype=means2d.dtype, device=dev)
        col = colors.detach().contiguous()
        # one record per Gaussian: (mx, my, a, b, c, o, r)
        feats = torch.cat([means2d.detach(), conics.detach(), opacities.detach()[:, None],
                           gaussian_radii(conics, opacities)[:, None]], 1).contiguous()
        sorted_ids, offsets, tiles_x, tiles_y = _bin(feats, depths, width, height, ts)
        out = torch.zeros(P, C, **opts)
        trans = torch.ones(P, **opts)
        last = torch.empty(P, dtype=torch.int32, device=dev)
        done = torch.zeros(P, dtype=torch.int32, device=dev)
        wdev = warp_device(feats)
        parts = num_threads() * 4 if wdev == "cpu" else 1
        chunks = _tile_chunks(offsets, tiles_x * tiles_y, parts)
        args = [to_warp(feats), to_warp(col), to_warp(sorted_ids), to_warp(offsets), width, height, tiles_x, ts,
                to_warp(out), to_warp(trans), to_warp(last), to_warp(done)]
        launch_chunks([(_k.splat_fwd_tiles, b - a, [a, *args]) for a, b in chunks], wdev)
        ctx.save_for_backward(feats, col, sorted_ids, offsets, trans, last)
        ctx.geom = (width, height, tiles_x, ts, chunks)
        return out, 1.0 - trans

    @staticmethod
    def backward(ctx, g_image, g_alpha):
        feats, col, sorted_ids, offsets, trans, last = ctx.saved_tensors
        width, height, tiles_x, ts, chunks = ctx.geom
        N, C = col.shape
        P = width * height
        I = sorted_ids.shape[0]
        opts = dict(dtype=feats.dtype, device=feats.device)
        g_image = torch.zeros(P, C, **opts) if g_image is None else g_image.contiguous().view(P, C)
        g_alpha = torch.zeros(P, **opts) if g_alpha is None else g_alpha.contiguous().view(P)
        gf = torch.zeros(I, 6, **opts)
        gc = torch.zeros(I, C, **opts)
        scratch_t = torch.empty(P, **opts)
        behind = torch.zeros(P, **opts)
        args = [to_warp(feats), to_warp(col), to_warp(sorted_ids), to_warp(offsets), width, height, tiles_x, ts,
                to_warp(trans), to_warp(last), to_warp(g_image), to_warp(g_alpha), to_warp(scratch_t),
                to_warp(behind), to_warp(gf), to_warp(gc)]
        launch_chunks([(_k.splat_bwd_tiles, b - a, [a, *args]) for a, b in chunks], warp_device(feats))
        idx = sorted_ids.long()
        need = ctx.needs_input_grad
        g_feats = torch.zeros(N, 6, **opts).index_add_(0, idx, gf) if any(need[:2]) or need[3] else None
        g_col = torch.zeros(N, C, **opts).index_add_(0, idx, gc) if need[2] else None
        return (g_feats[:, 0:2] if need[0] else None, g_feats[:, 2:5] if need[1] else None, g_col,
                g_feats[:, 5] if need[3] else None, None, None)
