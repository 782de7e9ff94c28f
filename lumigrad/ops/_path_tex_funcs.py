"""Warp functions of the path kernel's textured variant (:func:`lumigrad.ops._path_kernels.path_kernel` with
``tex``): a hit's UV and tint, texture lookups and their texel gradients.

A lookup is that of :func:`lumigrad.ops.texture.texture` at mip level 0 (what the ray tracer's
:func:`lumigrad.render.path._sample_texture` uses: rays carry no screen derivatives): bilinear, or nearest,
with the op's ``_coord`` / ``_texel`` boundary rules (wrap, clamp, zero). All textures of a scene lie in one flat
array; texture ``t`` is described by row ``t`` of ``meta``: ``(offset, H, W, C, boundary, nearest)``, texel
``(row, col)`` channel ``c`` at ``offset + (row W + col) C + c``. A colour read from a one-channel texture
repeats its channel (``expand`` in the torch path), so its gradient sums the three channels' shares.
Only functions here (no kernels): they compile into the path kernels' modules.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._texture_kernels import _coord, _texel
from lumigrad.ops._trace_kernels import _reattach, _v3

__all__ = ["_hit_tex", "_tex_color", "_tex_scalar", "_g_color", "_g_scalar", "_g_tint", "_cf_tex"]


@wp.func
def _tap(ix: int, iy: int, w: int):
    if ix < 0 or iy < 0:
        return -1
    return iy * w + ix


@wp.func
def _tex_taps(meta: wp.array2d(dtype=wp.int32), t: int, u: Any, v: Any):
    """Texel indices (-1: reads as 0) and weights of texture ``t`` at ``(u, v)``:
    ``(k00, k10, k01, k11, w00, w10, w01, w11)``, column offset first (``_texture_ref._sample``'s order)."""
    h = meta[t, 1]
    w = meta[t, 2]
    bnd = meta[t, 4]
    zero = u * type(u)(0.0)
    one = zero + type(u)(1.0)
    if meta[t, 5] != 0:  # nearest
        x0, fx = _coord(u, w, zero, bnd)
        y0, fy = _coord(one - v, h, zero, bnd)  # row 0 is the top (v = 1)
        return _tap(_texel(x0, w, bnd), _texel(y0, h, bnd), w), -1, -1, -1, one, zero, zero, zero
    half = zero + type(u)(0.5)
    x0, fx = _coord(u, w, half, bnd)
    y0, fy = _coord(one - v, h, half, bnd)
    ix0 = _texel(x0, w, bnd)
    ix1 = _texel(x0 + 1, w, bnd)
    iy0 = _texel(y0, h, bnd)
    iy1 = _texel(y0 + 1, h, bnd)
    return (_tap(ix0, iy0, w), _tap(ix1, iy0, w), _tap(ix0, iy1, w), _tap(ix1, iy1, w), (one - fx) * (one - fy),
            fx * (one - fy), (one - fx) * fy, fx * fy)


@wp.func
def _fetch(texels: wp.array(dtype=Any), off: int, nc: int, k: int, c: int):
    if k < 0:
        return texels.dtype(0.0)
    return texels[off + k * nc + wp.min(c, nc - 1)]


@wp.func
def _tex_color(texels: wp.array(dtype=Any), meta: wp.array2d(dtype=wp.int32), t: int, u: Any, v: Any):
    """RGB of texture ``t`` at ``(u, v)`` (a one-channel texture's value in all three)."""
    k00, k10, k01, k11, w00, w10, w01, w11 = _tex_taps(meta, t, u, v)
    off = meta[t, 0]
    nc = meta[t, 3]
    out = wp.vector(u * type(u)(0.0), u * type(u)(0.0), u * type(u)(0.0))
    for c in range(3):
        out[c] = (w00 * _fetch(texels, off, nc, k00, c) + w10 * _fetch(texels, off, nc, k10, c)
                  + w01 * _fetch(texels, off, nc, k01, c) + w11 * _fetch(texels, off, nc, k11, c))
    return out


@wp.func
def _tex_scalar(texels: wp.array(dtype=Any), meta: wp.array2d(dtype=wp.int32), t: int, u: Any, v: Any):
    """Channel 0 of texture ``t`` at ``(u, v)``."""
    k00, k10, k01, k11, w00, w10, w01, w11 = _tex_taps(meta, t, u, v)
    off = meta[t, 0]
    nc = meta[t, 3]
    return (w00 * _fetch(texels, off, nc, k00, 0) + w10 * _fetch(texels, off, nc, k10, 0)
            + w01 * _fetch(texels, off, nc, k01, 0) + w11 * _fetch(texels, off, nc, k11, 0))


@wp.func
def _put(g: wp.array2d(dtype=Any), row: int, col: int, nc: int, k: int, v: Any):
    if k >= 0:
        wp.atomic_add(g, row, col + k * nc, v)


@wp.func
def _tex_grad(g_tex: wp.array2d(dtype=Any), row: int, meta: wp.array2d(dtype=wp.int32), t: int, u: Any, v: Any,
              gv: Any, nch: int):
    """Adds ``gv[:nch]`` (d loss / d the looked-up value's channels) to the taps' texel gradients (``atomic_add``:
    a row per CPU task, where a task runs serially, and one shared row on CUDA)."""
    k00, k10, k01, k11, w00, w10, w01, w11 = _tex_taps(meta, t, u, v)
    off = meta[t, 0]
    nc = meta[t, 3]
    for c in range(nch):
        col = off + wp.min(c, nc - 1)
        _put(g_tex, row, col, nc, k00, w00 * gv[c])
        _put(g_tex, row, col, nc, k10, w10 * gv[c])
        _put(g_tex, row, col, nc, k01, w01 * gv[c])
        _put(g_tex, row, col, nc, k11, w11 * gv[c])


@wp.func
def _hit_tex(corners: wp.array2d(dtype=Any), faces: wp.array2d(dtype=wp.int32), faces_uv: wp.array2d(dtype=wp.int32),
             uvs: wp.array2d(dtype=Any), vcol: wp.array2d(dtype=Any), has_vc: int, texels: wp.array(dtype=Any),
             meta: wp.array2d(dtype=wp.int32), slot: wp.array2d(dtype=wp.int32), s: int, f: int, o: Any, d: Any,
             tiny: Any):
    """``(u, v, tint, b1, b2)`` of the ray re-attached to face ``f`` of shape ``s``: its barycentrics ``b1, b2``
    (as ``_attrs``) blend the corners' UVs, and the tint (``lumigrad.render.path._tint_at``: the blended vertex
    colours times the mesh's own texture, ones without) multiplies the shape's BRDF."""
    one = type(tiny)(1.0)
    i0 = faces[f, 0]
    i1 = faces[f, 1]
    i2 = faces[f, 2]
    t, b1, b2, inv, guarded = _reattach(o, d, _v3(corners, i0, 0), _v3(corners, i1, 0), _v3(corners, i2, 0), tiny)
    b0 = one - b1 - b2
    j0 = faces_uv[f, 0]
    j1 = faces_uv[f, 1]
    j2 = faces_uv[f, 2]
    u = b0 * uvs[j0, 0] + b1 * uvs[j1, 0] + b2 * uvs[j2, 0]
    v = b0 * uvs[j0, 1] + b1 * uvs[j1, 1] + b2 * uvs[j2, 1]
    tint = wp.vector(one, one, one)
    if has_vc != 0:
        tint = b0 * _v3(vcol, i0, 0) + b1 * _v3(vcol, i1, 0) + b2 * _v3(vcol, i2, 0)
    if slot[s, 3] >= 0:
        tint = wp.cw_mul(tint, _tex_color(texels, meta, slot[s, 3], u, v))
    return u, v, tint, b1, b2


@wp.func
def _g_tint(g_vc: wp.array2d(dtype=Any), g_tex: wp.array2d(dtype=Any), trow: int, vcol: wp.array2d(dtype=Any),
            has_vc: int, texels: wp.array(dtype=Any), meta: wp.array2d(dtype=wp.int32), slot: wp.array2d(dtype=wp.int32),
            faces: wp.array2d(dtype=wp.int32), need: int, s: int, f: int, b1: Any, b2: Any, u: Any, v: Any, gt: Any):
    """``gt``, the gradient of the tint at a hit (shape ``s``, face ``f``), to the mesh texture's texels (times the
    vertex colours there; ``need`` bit 5) and the corners' vertex colours (times the barycentric and the texture's
    value; bit 6)."""
    one = b1 * type(b1)(0.0) + type(b1)(1.0)
    b0 = one - b1 - b2
    i0 = faces[f, 0]
    i1 = faces[f, 1]
    i2 = faces[f, 2]
    vc = wp.vector(one, one, one)
    if has_vc != 0:
        vc = b0 * _v3(vcol, i0, 0) + b1 * _v3(vcol, i1, 0) + b2 * _v3(vcol, i2, 0)
    tx = wp.vector(one, one, one)
    t = slot[s, 3]
    if t >= 0:
        tx = _tex_color(texels, meta, t, u, v)
        if need & 32 != 0:
            _tex_grad(g_tex, trow, meta, t, u, v, wp.cw_mul(gt, vc), 3)
    if has_vc != 0 and need & 64 != 0:
        gx = wp.cw_mul(gt, tx)
        for c in range(3):
            wp.atomic_add(g_vc, trow, 3 * i0 + c, b0 * gx[c])
            wp.atomic_add(g_vc, trow, 3 * i1 + c, b1 * gx[c])
            wp.atomic_add(g_vc, trow, 3 * i2 + c, b2 * gx[c])


@wp.func
def _g_color(g_refl: wp.array2d(dtype=Any), row: int, s: int, g_tex: wp.array2d(dtype=Any), trow: int,
             slot: wp.array2d(dtype=wp.int32), meta: wp.array2d(dtype=wp.int32), u: Any, v: Any, gv: Any):
    """``gv``, the gradient of shape ``s``'s colour at a hit with UV ``(u, v)``, to its texels or its row."""
    t = slot[s, 0]
    if t >= 0:
        _tex_grad(g_tex, trow, meta, t, u, v, gv, 3)
    else:
        g_refl[row, 3 * s] = g_refl[row, 3 * s] + gv[0]
        g_refl[row, 3 * s + 1] = g_refl[row, 3 * s + 1] + gv[1]
        g_refl[row, 3 * s + 2] = g_refl[row, 3 * s + 2] + gv[2]


@wp.func
def _g_scalar(g_rm: wp.array2d(dtype=Any), row: int, s: int, j: int, g_tex: wp.array2d(dtype=Any), trow: int,
              slot: wp.array2d(dtype=wp.int32), meta: wp.array2d(dtype=wp.int32), u: Any, v: Any, gval: Any):
    """``gval``, the gradient of shape ``s``'s roughness (``j = 0``) or metallic (1), to its texels or its row."""
    t = slot[s, 1 + j]
    if t >= 0:
        _tex_grad(g_tex, trow, meta, t, u, v, wp.vector(gval, gval, gval), 1)
    else:
        g_rm[row, 2 * s + j] = g_rm[row, 2 * s + j] + gval


@wp.func
def _cf_tex(g_refl: wp.array2d(dtype=Any), g_vc: wp.array2d(dtype=Any), row: int, zs: wp.vec3i, zu: Any, zv: Any,
            zf: wp.vec3i, zb1: Any, zb2: Any, zka: Any, zkt: Any, g_tex: wp.array2d(dtype=Any), trow: int,
            vcol: wp.array2d(dtype=Any), has_vc: int, texels: wp.array(dtype=Any), meta: wp.array2d(dtype=wp.int32),
            slot: wp.array2d(dtype=wp.int32), faces: wp.array2d(dtype=wp.int32), need: int, v: Any):
    """``_cf`` of the textured variant: ``v[c]`` is d/dF of channel ``c``'s first zero factor ``F = u t`` (on shape
    ``zs[c]``, at UV ``(zu[c], zv[c])``, face ``zf[c]``, barycentrics ``zb1[c], zb2[c]``): the albedo's texels (or
    row) get ``zka[c] v[c]`` (``zka = t``, 0 at GGX), the tint ``zkt[c] v[c]`` (``zkt = u``)."""
    zero = v[0] * type(v[0])(0.0)
    for c in range(3):
        if zs[c] >= 0:
            gv = wp.vector(zero, zero, zero)
            if need & 1 != 0:
                gv[c] = v[c] * zka[c]
                _g_color(g_refl, row, zs[c], g_tex, trow, slot, meta, zu[c], zv[c], gv)
            if need & 96 != 0:
                gv[c] = v[c] * zkt[c]
                _g_tint(g_vc, g_tex, trow, vcol, has_vc, texels, meta, slot, faces, need, zs[c], zf[c], zb1[c], zb2[c],
                        zu[c], zv[c], gv)
