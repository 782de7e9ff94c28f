"""Warp kernels for :func:`lumigrad.ops.texture.texture` (one Warp module).

The mip chain arrives packed: every level ``[Bt, h_k, w_k, C]`` flattened to
rows and concatenated into ``tex [N, C]``; ``lvl_off/lvl_h/lvl_w`` give each
level's first row and size. One thread per pixel; each pixel reads up to 8
texels (2 levels x 4 bilinear taps), and every output is linear in those texels
with weights the kernel can recompute. The backward kernel writes the taps'
rows and weights per pixel so the wrapper reduces the texture gradient with
``index_add_`` (no racing writes), and contracts ``grad_out`` with the texels'
weight derivatives for ``uv`` and ``uv_da``. Kernels write every element of
their per-pixel outputs, so the wrapper allocates them with ``torch.empty``.

Modes (ints shared with texture.py): filter 0 nearest, 1 linear,
2 linear-mipmap-nearest, 3 linear-mipmap-linear; boundary 0 wrap, 1 clamp, 2 zero.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

__all__ = ["texture_fwd", "texture_bwd"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)


@wp.func
def _mip_level(dudx: Any, dudy: Any, dvdx: Any, dvdy: Any, tex_w: int, tex_h: int, max_level: int):
    """Level = 0.5 * log2(major-axis length^2 of the texel-space footprint), clamped
    to [0, max_level] (as nvdiffrast); also d level / d(dudx, dudy, dvdx, dvdy), 0 when clamped."""
    zero = type(dudx)(0.0)
    half = type(dudx)(0.5)
    # The footprint is quadratic in the derivatives: divide them by their largest magnitude m
    # (level = 0.5 log2(major of the scaled footprint) + log2(m)), so huge or tiny ones neither
    # overflow nor underflow.
    m = wp.max(wp.max(wp.abs(dudx), wp.abs(dudy)), wp.max(wp.abs(dvdx), wp.abs(dvdy)))
    if m == zero:
        return zero, zero, zero, zero, zero
    im = type(dudx)(1.0) / m
    a = dudx * im * type(dudx)(tex_w)
    b = dudy * im * type(dudx)(tex_w)
    c = dvdx * im * type(dudx)(tex_h)
    d = dvdy * im * type(dudx)(tex_h)
    qa = a * a + c * c  # |d uv / dX|^2 in texels
    qb = b * b + d * d
    qc = a * b + c * d
    hd = (qa - qb) * half
    s = wp.sqrt(hd * hd + qc * qc)
    major = (qa + qb) * half + s
    lev = zero
    g0 = zero
    g1 = zero
    g2 = zero
    g3 = zero
    if major > zero:
        lev = half * wp.log2(major) + wp.log2(m)
        if lev <= zero:
            lev = zero
        elif lev >= type(dudx)(max_level):
            lev = type(dudx)(max_level)
        else:
            # d lev / d major, with the 1/m of the chain rule back to the unscaled derivatives.
            k = half * im / (major * type(dudx)(0.6931471805599453))
            da = half
            db = half
            dc = zero
            if s > zero:
                da = half + half * hd / s
                db = half - half * hd / s
                dc = qc / s
            g0 = k * (da * type(dudx)(2.0) * a + dc * b) * type(dudx)(tex_w)
            g1 = k * (db * type(dudx)(2.0) * b + dc * a) * type(dudx)(tex_w)
            g2 = k * (da * type(dudx)(2.0) * c + dc * d) * type(dudx)(tex_h)
            g3 = k * (db * type(dudx)(2.0) * d + dc * c) * type(dudx)(tex_h)
    return lev, g0, g1, g2, g3


@wp.func
def _coord(t: Any, n: int, shift: Any, boundary: int):
    """Integer cell and fraction of normalised coordinate ``t`` on an ``n``-texel axis."""
    if boundary == 0:
        t = t - wp.floor(t)  # wrap first so huge coordinates cannot overflow int
    x = t * type(t)(n) - shift
    # Beyond these bounds every tap is clamped or zero anyway; keeps the int cast safe.
    x = wp.clamp(x, type(t)(-2.0), type(t)(n + 1))
    xf = wp.floor(x)
    return int(xf), x - xf


@wp.func
def _texel(x: int, n: int, boundary: int):
    """Texel index on an ``n``-texel axis, or -1 when it reads as zero."""
    if boundary == 0:
        r = x % n
        if r < 0:
            r += n
        return r
    if boundary == 1:
        return wp.clamp(x, 0, n - 1)
    if x < 0 or x >= n:
        return -1
    return x


@wp.func
def _levels(filter_mode: int, max_level: int, lev: Any):
    """First level, second-level weight and number of levels to read."""
    l0 = int(0)
    frac = type(lev)(0.0)
    nlev = int(1)
    if filter_mode == 2:
        l0 = int(wp.floor(lev + type(lev)(0.5)))
    elif filter_mode == 3:
        fl = wp.floor(lev)
        l0 = int(fl)
        frac = lev - fl
        if l0 < max_level:
            nlev = 2
    return l0, frac, nlev


@wp.kernel
def texture_fwd(
    offset: int,
    tex: wp.array2d(dtype=Any),  # [N, C] packed mip chain
    lvl_off: wp.array(dtype=wp.int32),  # [L]
    lvl_h: wp.array(dtype=wp.int32),  # [L]
    lvl_w: wp.array(dtype=wp.int32),  # [L]
    uv: wp.array2d(dtype=Any),  # [P, 2]
    uv_da: wp.array2d(dtype=Any),  # [P, 4], or [1, 4] unused without mipmaps
    pix_per_batch: int,
    tex_batched: int,
    filter_mode: int,
    boundary: int,
    max_level: int,
    out: wp.array2d(dtype=Any),  # [P, C]
):
    p = wp.tid() + offset
    one = tex.dtype(1.0)
    for c in range(out.shape[1]):
        out[p, c] = tex.dtype(0.0)
    u = uv[p, 0]
    v = uv[p, 1]
    bt = int(0)
    if tex_batched != 0:
        bt = p // pix_per_batch
    lev = tex.dtype(0.0)
    if filter_mode >= 2:
        lev, g0, g1, g2, g3 = _mip_level(uv_da[p, 0], uv_da[p, 1], uv_da[p, 2], uv_da[p, 3], lvl_w[0], lvl_h[0], max_level)
    l0, frac, nlev = _levels(filter_mode, max_level, lev)
    for li in range(nlev):
        lvl = l0 + li
        lw = one - frac
        if li == 1:
            lw = frac
        h = lvl_h[lvl]
        w = lvl_w[lvl]
        base = lvl_off[lvl] + bt * h * w
        if filter_mode == 0:
            cx, fx = _coord(u, w, tex.dtype(0.0), boundary)
            cy, fy = _coord(one - v, h, tex.dtype(0.0), boundary)
            ix = _texel(cx, w, boundary)
            iy = _texel(cy, h, boundary)
            if ix >= 0 and iy >= 0:
                for c in range(out.shape[1]):
                    out[p, c] = tex[base + iy * w + ix, c]
        else:
            x0, fx = _coord(u, w, tex.dtype(0.5), boundary)
            y0, fy = _coord(one - v, h, tex.dtype(0.5), boundary)
            for tap in range(4):
                dx = tap % 2
                dy = tap // 2
                ix = _texel(x0 + dx, w, boundary)
                iy = _texel(y0 + dy, h, boundary)
                if ix >= 0 and iy >= 0:
                    wx = wp.where(dx == 1, fx, one - fx)
                    wy = wp.where(dy == 1, fy, one - fy)
                    wt = lw * wx * wy
                    row = base + iy * w + ix
                    for c in range(out.shape[1]):
                        out[p, c] = out[p, c] + wt * tex[row, c]


@wp.kernel
def texture_bwd(
    offset: int,
    tex: wp.array2d(dtype=Any),  # [N, C] packed mip chain
    lvl_off: wp.array(dtype=wp.int32),
    lvl_h: wp.array(dtype=wp.int32),
    lvl_w: wp.array(dtype=wp.int32),
    uv: wp.array2d(dtype=Any),  # [P, 2]
    uv_da: wp.array2d(dtype=Any),  # [P, 4] or dummy
    pix_per_batch: int,
    tex_batched: int,
    filter_mode: int,
    boundary: int,
    max_level: int,
    grad_out: wp.array2d(dtype=Any),  # [P, C]
    grad_uv: wp.array2d(dtype=Any),  # [P, 2]
    grad_uv_da: wp.array2d(dtype=Any),  # [P, 4], or [1, 4] unused unless filter_mode == 3
    tap_rows: wp.array2d(dtype=wp.int32),  # [P, S] texel row per tap slot
    tap_wts: wp.array2d(dtype=Any),  # [P, S] weight per tap slot (0 for unused slots)
):
    p = wp.tid() + offset
    one = tex.dtype(1.0)
    zero = tex.dtype(0.0)
    for k in range(tap_rows.shape[1]):
        tap_rows[p, k] = 0
        tap_wts[p, k] = zero
    u = uv[p, 0]
    v = uv[p, 1]
    bt = int(0)
    if tex_batched != 0:
        bt = p // pix_per_batch
    lev = zero
    g0 = zero
    g1 = zero
    g2 = zero
    g3 = zero
    if filter_mode >= 2:
        lev, g0, g1, g2, g3 = _mip_level(uv_da[p, 0], uv_da[p, 1], uv_da[p, 2], uv_da[p, 3], lvl_w[0], lvl_h[0], max_level)
    l0, frac, nlev = _levels(filter_mode, max_level, lev)
    gu = zero
    gv = zero
    glev = zero  # d loss / d level
    for li in range(nlev):
        lvl = l0 + li
        lw = one - frac
        dlw = -one
        if li == 1:
            lw = frac
            dlw = one
        h = lvl_h[lvl]
        w = lvl_w[lvl]
        base = lvl_off[lvl] + bt * h * w
        if filter_mode == 0:
            cx, fx = _coord(u, w, zero, boundary)
            cy, fy = _coord(one - v, h, zero, boundary)
            ix = _texel(cx, w, boundary)
            iy = _texel(cy, h, boundary)
            if ix >= 0 and iy >= 0:
                tap_rows[p, 0] = base + iy * w + ix
                tap_wts[p, 0] = one
        else:
            x0, fx = _coord(u, w, tex.dtype(0.5), boundary)
            y0, fy = _coord(one - v, h, tex.dtype(0.5), boundary)
            for tap in range(4):
                dx = tap % 2
                dy = tap // 2
                ix = _texel(x0 + dx, w, boundary)
                iy = _texel(y0 + dy, h, boundary)
                if ix >= 0 and iy >= 0:
                    wx = wp.where(dx == 1, fx, one - fx)
                    wy = wp.where(dy == 1, fy, one - fy)
                    sx = wp.where(dx == 1, one, -one)  # d wx / d x
                    sy = wp.where(dy == 1, one, -one)
                    row = base + iy * w + ix
                    dot = zero  # grad_out . texel
                    for c in range(grad_out.shape[1]):
                        dot += grad_out[p, c] * tex[row, c]
                    # x = u * w - 0.5, y = (1 - v) * h - 0.5
                    gu += lw * sx * wy * tex.dtype(w) * dot
                    gv -= lw * wx * sy * tex.dtype(h) * dot
                    glev += dlw * wx * wy * dot
                    tap_rows[p, li * 4 + tap] = row
                    tap_wts[p, li * 4 + tap] = lw * wx * wy
    grad_uv[p, 0] = gu
    grad_uv[p, 1] = gv
    if filter_mode == 3:
        grad_uv_da[p, 0] = glev * g0
        grad_uv_da[p, 1] = glev * g1
        grad_uv_da[p, 2] = glev * g2
        grad_uv_da[p, 3] = glev * g3
