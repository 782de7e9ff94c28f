"""Warp kernels for :func:`lumigrad.ops.splat.rasterize_gaussians` (one Warp module).

One thread per pixel; threads are numbered tile by tile (``tid = tile * ts^2 +
local``) so neighbouring threads share a tile's depth-sorted Gaussian list
``sorted_ids[tile_offsets[t] : tile_offsets[t + 1]]``.

Forward (front to back, as 3DGS): ``alpha = min(0.99, o * exp(power))`` with
``power = -0.5 (a dx^2 + c dy^2) - b dx dy``; Gaussians with ``alpha < 1/255``
are skipped; the pixel stops before the Gaussian that would take its
transmittance below 1e-4. It saves the final transmittance and the end of the
list walked, and the backward walks the same list in reverse, recovering
``T_k = T_{k+1} / (1 - alpha_k)`` (``alpha <= 0.99`` keeps this stable).
Per-Gaussian gradients are scattered with ``wp.atomic_add`` into buffer
``buf``: the wrapper gives every CPU chunk its own buffer (CPU launches run
their threads in sequence) and CUDA a single one (atomics), then sums them.
"""
from __future__ import annotations

from typing import Any

import warp as wp

wp.set_module_options({"enable_backward": False})

__all__ = ["splat_fwd", "splat_bwd"]


@wp.kernel
def splat_fwd(
    offset: int,
    means2d: wp.array2d(dtype=Any),  # [N, 2] pixels
    conics: wp.array2d(dtype=Any),  # [N, 3] (a, b, c)
    colors: wp.array2d(dtype=Any),  # [N, C]
    opacities: wp.array(dtype=Any),  # [N]
    sorted_ids: wp.array(dtype=wp.int32),  # [I] Gaussian per (tile, depth) intersection
    tile_offsets: wp.array(dtype=wp.int32),  # [n_tiles + 1]
    width: int,
    height: int,
    tiles_x: int,
    tile_size: int,
    out_color: wp.array2d(dtype=Any),  # [H*W, C]
    out_trans: wp.array(dtype=Any),  # [H*W] final transmittance
    out_last: wp.array(dtype=wp.int32),  # [H*W] end (exclusive) of the list walked
):
    tid = wp.tid() + offset
    tpix = tile_size * tile_size
    tile = tid // tpix
    local = tid - tile * tpix
    ty = tile // tiles_x
    tx = tile - ty * tiles_x
    x = tx * tile_size + local % tile_size
    y = ty * tile_size + local // tile_size
    if x >= width or y >= height:
        return
    p = y * width + x
    zero = means2d.dtype(0.0)
    one = means2d.dtype(1.0)
    half = means2d.dtype(0.5)
    px = means2d.dtype(float(x)) + half
    py = means2d.dtype(float(y)) + half
    nc = colors.shape[1]
    for c in range(nc):
        out_color[p, c] = zero
    trans = one
    start = tile_offsets[tile]
    end = tile_offsets[tile + 1]
    last = start
    for k in range(start, end):
        g = sorted_ids[k]
        dx = px - means2d[g, 0]
        dy = py - means2d[g, 1]
        power = -half * (conics[g, 0] * dx * dx + conics[g, 2] * dy * dy) - conics[g, 1] * dx * dy
        if power > zero:
            continue
        alpha = wp.min(means2d.dtype(0.99), opacities[g] * wp.exp(power))
        if alpha < means2d.dtype(1.0 / 255.0):
            continue
        next_t = trans * (one - alpha)
        if next_t < means2d.dtype(1e-4):
            break
        w = alpha * trans
        for c in range(nc):
            out_color[p, c] = out_color[p, c] + w * colors[g, c]
        trans = next_t
        last = k + 1
    out_trans[p] = trans
    out_last[p] = last


@wp.kernel
def splat_bwd(
    offset: int,
    buf: int,
    means2d: wp.array2d(dtype=Any),
    conics: wp.array2d(dtype=Any),
    colors: wp.array2d(dtype=Any),
    opacities: wp.array(dtype=Any),
    sorted_ids: wp.array(dtype=wp.int32),
    tile_offsets: wp.array(dtype=wp.int32),
    width: int,
    height: int,
    tiles_x: int,
    tile_size: int,
    out_trans: wp.array(dtype=Any),  # [H*W]
    out_last: wp.array(dtype=wp.int32),  # [H*W]
    grad_color: wp.array2d(dtype=Any),  # [H*W, C]
    grad_alpha: wp.array(dtype=Any),  # [H*W] gradient of 1 - final transmittance
    grad_means2d: wp.array2d(dtype=Any),  # [n_buf*N, 2]
    grad_conics: wp.array2d(dtype=Any),  # [n_buf*N, 3]
    grad_colors: wp.array2d(dtype=Any),  # [n_buf*N, C]
    grad_opacities: wp.array(dtype=Any),  # [n_buf*N]
):
    tid = wp.tid() + offset
    tpix = tile_size * tile_size
    tile = tid // tpix
    local = tid - tile * tpix
    ty = tile // tiles_x
    tx = tile - ty * tiles_x
    x = tx * tile_size + local % tile_size
    y = ty * tile_size + local // tile_size
    if x >= width or y >= height:
        return
    p = y * width + x
    N = means2d.shape[0]
    base = buf * N
    zero = means2d.dtype(0.0)
    one = means2d.dtype(1.0)
    half = means2d.dtype(0.5)
    px = means2d.dtype(float(x)) + half
    py = means2d.dtype(float(y)) + half
    nc = colors.shape[1]
    t_final = out_trans[p]
    g_a = grad_alpha[p]
    trans = t_final  # T_{k+1} while walking back
    behind = zero  # sum_{j>k} (g . c_j) alpha_j T_j
    start = tile_offsets[tile]
    k = out_last[p] - 1
    while k >= start:
        g = sorted_ids[k]
        k = k - 1
        dx = px - means2d[g, 0]
        dy = py - means2d[g, 1]
        ca = conics[g, 0]
        cb = conics[g, 1]
        cc = conics[g, 2]
        power = -half * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
        if power > zero:
            continue
        vis = wp.exp(power)
        raw = opacities[g] * vis
        alpha = wp.min(means2d.dtype(0.99), raw)
        if alpha < means2d.dtype(1.0 / 255.0):
            continue
        inv = one / (one - alpha)
        trans = trans * inv  # T_k
        w = alpha * trans
        s = zero
        for c in range(nc):
            s = s + grad_color[p, c] * colors[g, c]
            wp.atomic_add(grad_colors, base + g, c, w * grad_color[p, c])
        d_alpha = s * trans - behind * inv + g_a * t_final * inv
        behind = behind + s * w
        if raw < means2d.dtype(0.99):
            wp.atomic_add(grad_opacities, base + g, d_alpha * vis)
            d_pow = d_alpha * alpha
            wp.atomic_add(grad_conics, base + g, 0, -half * dx * dx * d_pow)
            wp.atomic_add(grad_conics, base + g, 1, -dx * dy * d_pow)
            wp.atomic_add(grad_conics, base + g, 2, -half * dy * dy * d_pow)
            wp.atomic_add(grad_means2d, base + g, 0, (ca * dx + cb * dy) * d_pow)
            wp.atomic_add(grad_means2d, base + g, 1, (cb * dx + cc * dy) * d_pow)
