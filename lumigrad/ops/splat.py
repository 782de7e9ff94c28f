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

import math
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
    cov3 = M @ M.transpose(1, 2)
    T = J @ rot_wc
    cov2 = T @ cov3 @ T.transpose(1, 2)
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


def _bin(means2d, conics, opacities, depths, width, height, tile_size):
    """Tile binning + depth sort in torch: ``(sorted_ids [I] int32, tile_offsets [n_tiles+1] int32)``."""
    dev = means2d.device
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    r = gaussian_radii(conics, opacities)
    m = means2d.detach()
    # Tiles whose pixel centres may lie within r of the mean.
    x0 = torch.floor((m[:, 0] - r - 0.5) / tile_size).clamp(0, tiles_x - 1e-3).long()
    x1 = torch.floor((m[:, 0] + r - 0.5) / tile_size).clamp(-1, tiles_x - 1).long()
    y0 = torch.floor((m[:, 1] - r - 0.5) / tile_size).clamp(0, tiles_y - 1e-3).long()
    y1 = torch.floor((m[:, 1] + r - 0.5) / tile_size).clamp(-1, tiles_y - 1).long()
    nx = (x1 - x0 + 1).clamp(min=0)
    ny = (y1 - y0 + 1).clamp(min=0)
    nx = torch.where(r > 0, nx, torch.zeros_like(nx))
    counts = nx * ny
    N = m.shape[0]
    gid = torch.repeat_interleave(torch.arange(N, device=dev), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(gid.shape[0], device=dev) - first[gid]
    tx = x0[gid] + local % nx[gid].clamp(min=1)
    ty = y0[gid] + local // nx[gid].clamp(min=1)
    tile = ty * tiles_x + tx
    rank = torch.empty(N, dtype=torch.long, device=dev)
    rank[torch.argsort(depths.detach(), stable=True)] = torch.arange(N, device=dev)
    key = tile * N + rank[gid]
    order = torch.argsort(key)
    sorted_ids = gid[order].to(torch.int32)
    n_tiles = tiles_x * tiles_y
    per_tile = torch.bincount(tile, minlength=n_tiles)
    offsets = torch.zeros(n_tiles + 1, dtype=torch.long, device=dev)
    offsets[1:] = torch.cumsum(per_tile, 0)
    return sorted_ids.contiguous(), offsets.to(torch.int32), tiles_x, tiles_y


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
    sorted_ids, offsets, tiles_x, tiles_y = _bin(means2d, conics, opacities, depths, width, height, tile_size)
    image, alpha = _SplatFn.apply(means2d, conics, colors, opacities, sorted_ids, offsets,
                                  (width, height, tiles_x, tiles_y, tile_size))
    return Splatted(image.view(height, width, -1), alpha.view(height, width))


class _SplatFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, sorted_ids, offsets, geom):
        width, height, tiles_x, tiles_y, ts = geom
        P = width * height
        C = colors.shape[1]
        opts = dict(dtype=means2d.dtype, device=means2d.device)
        out = torch.zeros(P, C, **opts)
        trans = torch.ones(P, **opts)
        last = torch.zeros(P, dtype=torch.int32, device=means2d.device)
        m, q, col, o = (t.detach().contiguous() for t in (means2d, conics, colors, opacities))
        common = [to_warp(m), to_warp(q), to_warp(col), to_warp(o), to_warp(sorted_ids), to_warp(offsets),
                  width, height, tiles_x, ts]
        launch(_k.splat_fwd, tiles_x * tiles_y * ts * ts, [*common, to_warp(out), to_warp(trans), to_warp(last)],
               warp_device(m), min_chunk=ts * ts * 4)
        ctx.save_for_backward(m, q, col, o, sorted_ids, offsets, trans, last)
        ctx.geom = geom
        return out, 1.0 - trans

    @staticmethod
    def backward(ctx, g_image, g_alpha):
        m, q, col, o, sorted_ids, offsets, trans, last = ctx.saved_tensors
        width, height, tiles_x, tiles_y, ts = ctx.geom
        N, C = col.shape
        P = width * height
        opts = dict(dtype=m.dtype, device=m.device)
        g_image = torch.zeros(P, C, **opts) if g_image is None else g_image.contiguous().view(P, C)
        g_alpha = torch.zeros(P, **opts) if g_alpha is None else g_alpha.contiguous().view(P)
        dev = warp_device(m)
        n = tiles_x * tiles_y * ts * ts
        nb = 1 if dev != "cpu" else max(1, min(num_threads(), tiles_x * tiles_y))
        gm = torch.zeros(nb * N, 2, **opts)
        gq = torch.zeros(nb * N, 3, **opts)
        gc = torch.zeros(nb * N, C, **opts)
        go = torch.zeros(nb * N, **opts)
        args = [to_warp(m), to_warp(q), to_warp(col), to_warp(o), to_warp(sorted_ids), to_warp(offsets),
                width, height, tiles_x, ts, to_warp(trans), to_warp(last), to_warp(g_image), to_warp(g_alpha),
                to_warp(gm), to_warp(gq), to_warp(gc), to_warp(go)]
        # Chunks on whole tiles, balanced by each tile's list length.
        tiles = tiles_x * tiles_y
        work = (offsets[1:] - offsets[:-1]).double().cumsum(0)
        cuts = [0]
        for c in range(1, nb):
            cuts.append(int(torch.searchsorted(work, work[-1] * c / nb)) + 1 if float(work[-1]) > 0 else tiles * c // nb)
        cuts.append(tiles)
        cuts = sorted(set(min(max(x, 0), tiles) for x in cuts))
        launches = [(_k.splat_bwd, (b - a) * ts * ts, [a * ts * ts, i, *args]) for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
        launch_chunks(launches, dev)

        def red(t):
            return t.view(nb, N, *t.shape[1:]).sum(0) if nb > 1 else t

        need = ctx.needs_input_grad
        return (red(gm) if need[0] else None, red(gq) if need[1] else None, red(gc) if need[2] else None,
                red(go) if need[3] else None, None, None, None)
