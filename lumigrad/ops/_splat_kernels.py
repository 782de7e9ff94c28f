"""Warp kernels for :func:`lumigrad.ops.splat.rasterize_gaussians` (one Warp module).

Data: per Gaussian one record ``feats[g] = (mx, my, a, b, c, o, r)`` (2D mean
in pixels, conic, opacity and the pixel radius beyond which its alpha is below
1/255) and ``colors[g]``; per tile a depth-sorted id list
``sorted_ids[tile_offsets[t] : tile_offsets[t + 1]]``.

* :func:`bin_fill` (one thread) walks the Gaussians in depth order and appends
  each to the lists of the tiles its rectangle covers, so every list comes out
  depth sorted without a sort over intersections.
* :func:`splat_fwd_tiles` (one thread per tile): for each Gaussian of the list,
  front to back, it visits only the tile pixels inside its radius and blends
  (``alpha = min(0.99, o exp(power))``, ``power = -0.5 (a dx^2 + c dy^2) - b dx
  dy``; ``alpha < 1/255`` skipped; a pixel stops before the Gaussian that would
  take its transmittance below 1e-4; the tile stops when all its pixels have).
  Per-pixel state lives in the output rows, which only this thread touches.
* :func:`splat_bwd_tiles` (one thread per tile) walks the same list in reverse,
  recovering ``T_k = T_{k+1} / (1 - alpha_k)`` (``alpha <= 0.99`` keeps this
  stable), and writes each list entry's gradient to its own row of the
  per-intersection buffers: no atomics; the wrapper sums rows per Gaussian.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["bin_fill", "splat_fwd_tiles", "splat_bwd_tiles"]


@wp.kernel
def bin_fill(
    offset: int,
    order: wp.array(dtype=wp.int32),  # [N] Gaussian ids in increasing depth
    rect: wp.array2d(dtype=wp.int32),  # [N, 4] tile rectangle (x0, y0, x1, y1), exclusive ends
    tiles_x: int,
    cursor: wp.array(dtype=wp.int32),  # [n_tiles] start of each tile's list (advanced here)
    sorted_ids: wp.array(dtype=wp.int32),  # [I]
):
    for i in range(order.shape[0]):
        g = order[i]
        for ty in range(rect[g, 1], rect[g, 3]):
            for tx in range(rect[g, 0], rect[g, 2]):
                t = ty * tiles_x + tx
                sorted_ids[cursor[t]] = g
                cursor[t] = cursor[t] + 1


@wp.kernel
def splat_fwd_tiles(
    offset: int,
    feats: wp.array2d(dtype=Any),  # [N, 7] (mx, my, a, b, c, o, r)
    colors: wp.array2d(dtype=Any),  # [N, C]
    sorted_ids: wp.array(dtype=wp.int32),  # [I]
    tile_offsets: wp.array(dtype=wp.int32),  # [n_tiles + 1]
    width: int,
    height: int,
    tiles_x: int,
    tile_size: int,
    out_color: wp.array2d(dtype=Any),  # [H*W, C] zeros
    out_trans: wp.array(dtype=Any),  # [H*W] ones; final transmittance
    out_last: wp.array(dtype=wp.int32),  # [H*W] end (exclusive) of the list walked
    done: wp.array(dtype=wp.int32),  # [H*W] zeros; scratch
):
    tile = wp.tid() + offset
    ty = tile // tiles_x
    tx = tile - ty * tiles_x
    x_lo = tx * tile_size
    y_lo = ty * tile_size
    x_hi = wp.min(x_lo + tile_size, width)
    y_hi = wp.min(y_lo + tile_size, height)
    start = tile_offsets[tile]
    end = tile_offsets[tile + 1]
    for y in range(y_lo, y_hi):
        for x in range(x_lo, x_hi):
            out_last[y * width + x] = start
    active = (x_hi - x_lo) * (y_hi - y_lo)
    zero = feats.dtype(0.0)
    one = feats.dtype(1.0)
    half = feats.dtype(0.5)
    a_max = feats.dtype(0.99)
    a_min = feats.dtype(1.0 / 255.0)
    t_min = feats.dtype(1e-4)
    nc = colors.shape[1]
    fx_lo = feats.dtype(float(x_lo))
    fx_hi = feats.dtype(float(x_hi))
    fy_lo = feats.dtype(float(y_lo))
    fy_hi = feats.dtype(float(y_hi))
    k = start
    while k < end and active > 0:
        g = sorted_ids[k]
        mx = feats[g, 0]
        my = feats[g, 1]
        ca = feats[g, 2]
        cb = feats[g, 3]
        cc = feats[g, 4]
        op = feats[g, 5]
        r = feats[g, 6]
        # power below this gives alpha < 1/255 by a margin (e^-0.001) far above rounding: skip exp() there
        p_min = wp.log(a_min / wp.max(op, a_min)) - feats.dtype(1e-3)
        # only pixels whose centre may lie within r of the mean (the rest have alpha < 1/255)
        xa = int(wp.max(fx_lo, wp.floor(mx - r - half)))
        xb = int(wp.min(fx_hi, wp.floor(mx + r - half) + one))
        ya = int(wp.max(fy_lo, wp.floor(my - r - half)))
        yb = int(wp.min(fy_hi, wp.floor(my + r - half) + one))
        for y in range(ya, yb):
            dy = feats.dtype(float(y)) + half - my
            for x in range(xa, xb):
                p = y * width + x
                if done[p] != 0:
                    continue
                dx = feats.dtype(float(x)) + half - mx
                power = -half * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
                if power > zero or power < p_min:
                    continue
                alpha = wp.min(a_max, op * wp.exp(power))
                if alpha < a_min:
                    continue
                t = out_trans[p]
                next_t = t * (one - alpha)
                if next_t < t_min:
                    done[p] = 1
                    active = active - 1
                    continue
                w = alpha * t
                for c in range(nc):
                    out_color[p, c] = out_color[p, c] + w * colors[g, c]
                out_trans[p] = next_t
                out_last[p] = k + 1
        k = k + 1


@wp.kernel
def splat_bwd_tiles(
    offset: int,
    feats: wp.array2d(dtype=Any),  # [N, 7]
    colors: wp.array2d(dtype=Any),  # [N, C]
    sorted_ids: wp.array(dtype=wp.int32),
    tile_offsets: wp.array(dtype=wp.int32),
    width: int,
    height: int,
    tiles_x: int,
    tile_size: int,
    out_trans: wp.array(dtype=Any),  # [H*W] final transmittance
    out_last: wp.array(dtype=wp.int32),  # [H*W]
    grad_color: wp.array2d(dtype=Any),  # [H*W, C]
    grad_alpha: wp.array(dtype=Any),  # [H*W] gradient of 1 - final transmittance
    trans: wp.array(dtype=Any),  # [H*W] scratch: T_{k+1} while walking back
    behind: wp.array(dtype=Any),  # [H*W] scratch zeros: sum_{j>k} (g . c_j) alpha_j T_j
    grad_feats: wp.array2d(dtype=Any),  # [I, 6] per intersection: d(mx, my, a, b, c, o), zeros
    grad_colors: wp.array2d(dtype=Any),  # [I, C] per intersection, zeros
):
    tile = wp.tid() + offset
    ty = tile // tiles_x
    tx = tile - ty * tiles_x
    x_lo = tx * tile_size
    y_lo = ty * tile_size
    x_hi = wp.min(x_lo + tile_size, width)
    y_hi = wp.min(y_lo + tile_size, height)
    start = tile_offsets[tile]
    k_end = start
    for y in range(y_lo, y_hi):
        for x in range(x_lo, x_hi):
            p = y * width + x
            trans[p] = out_trans[p]
            k_end = wp.max(k_end, out_last[p])
    zero = feats.dtype(0.0)
    one = feats.dtype(1.0)
    half = feats.dtype(0.5)
    a_max = feats.dtype(0.99)
    a_min = feats.dtype(1.0 / 255.0)
    nc = colors.shape[1]
    fx_lo = feats.dtype(float(x_lo))
    fx_hi = feats.dtype(float(x_hi))
    fy_lo = feats.dtype(float(y_lo))
    fy_hi = feats.dtype(float(y_hi))
    k = k_end - 1
    while k >= start:
        g = sorted_ids[k]
        mx = feats[g, 0]
        my = feats[g, 1]
        ca = feats[g, 2]
        cb = feats[g, 3]
        cc = feats[g, 4]
        op = feats[g, 5]
        r = feats[g, 6]
        # power below this gives alpha < 1/255 by a margin (e^-0.001) far above rounding: skip exp() there
        p_min = wp.log(a_min / wp.max(op, a_min)) - feats.dtype(1e-3)
        # only pixels whose centre may lie within r of the mean (the rest have alpha < 1/255)
        xa = int(wp.max(fx_lo, wp.floor(mx - r - half)))
        xb = int(wp.min(fx_hi, wp.floor(mx + r - half) + one))
        ya = int(wp.max(fy_lo, wp.floor(my - r - half)))
        yb = int(wp.min(fy_hi, wp.floor(my + r - half) + one))
        g_mx = zero
        g_my = zero
        g_a = zero
        g_b = zero
        g_c = zero
        g_o = zero
        for y in range(ya, yb):
            dy = feats.dtype(float(y)) + half - my
            for x in range(xa, xb):
                p = y * width + x
                if k >= out_last[p]:
                    continue
                dx = feats.dtype(float(x)) + half - mx
                power = -half * (ca * dx * dx + cc * dy * dy) - cb * dx * dy
                if power > zero or power < p_min:
                    continue
                vis = wp.exp(power)
                raw = op * vis
                alpha = wp.min(a_max, raw)
                if alpha < a_min:
                    continue
                inv = one / (one - alpha)
                t = trans[p] * inv  # T_k
                trans[p] = t
                w = alpha * t
                s = zero
                for c in range(nc):
                    gcol = grad_color[p, c]
                    s = s + gcol * colors[g, c]
                    grad_colors[k, c] = grad_colors[k, c] + w * gcol
                d_alpha = s * t - behind[p] * inv + grad_alpha[p] * out_trans[p] * inv
                behind[p] = behind[p] + s * w
                if raw < a_max:
                    g_o = g_o + d_alpha * vis
                    d_pow = d_alpha * alpha
                    g_a = g_a - half * dx * dx * d_pow
                    g_b = g_b - dx * dy * d_pow
                    g_c = g_c - half * dy * dy * d_pow
                    g_mx = g_mx + (ca * dx + cb * dy) * d_pow
                    g_my = g_my + (cb * dx + cc * dy) * d_pow
        grad_feats[k, 0] = g_mx
        grad_feats[k, 1] = g_my
        grad_feats[k, 2] = g_a
        grad_feats[k, 3] = g_b
        grad_feats[k, 4] = g_c
        grad_feats[k, 5] = g_o
        k = k - 1
