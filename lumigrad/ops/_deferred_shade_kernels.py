"""Warp kernels of :func:`lumigrad.ops.deferred_shade.deferred_shade` (one Warp module).

Per pixel, ``lumigrad.shade.shade``'s torch code in one pass: unit normal and view direction
(``x * rsqrt(|x|^2 + 1e-12)``, as ``lumigrad.shade.brdf._normalize``), then for every light the BRDF
(Lambert, Blinn-Phong or GGX) times ``max(n.l, 0)`` times the irradiance (directional and point
lights; the point light's falloff ``1 / max(c + l d + q d^2, 1e-12)`` covers all three of
``PointLight.falloff``'s forms), plus ``color * kd`` per ambient light, times the mask.

The backward is hand-written (it loops over the lights): per pixel it writes the gradients of the
normal, view direction, position, mask and, for per-pixel (textured) materials, of the material
columns; constant materials' and the lights' gradients are summed by each kernel thread over its
block of pixels into that thread's own row, and torch sums the rows. Clamps pass gradients where
torch's ``clamp`` does (inside the closed range), so the kernel's gradients equal autograd's through
the torch code, which the tests check in float64.

Layouts: ``n, v, p [N, 3]`` (N = B*H*W pixels); ``mat [N or 1, 8]``: columns 0-2 the diffuse colour
(Lambert albedo, Blinn-Phong diffuse, GGX base colour), 3-5 Blinn-Phong's specular colour, 6 the
shininess or roughness, 7 the metallic; lights: ``lkind [L]``, ``ldata [L, 6]`` (direction to the light
(unit) or position, then colour * intensity), ``lfo [L, 3]`` (falloff constants).
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS
from lumigrad.ops._path_kernels import _add3, _ggx
from lumigrad.ops._trace_kernels import _put3 as _set3, _v3

__all__ = ["LAMBERT", "BLINN_PHONG", "GGX", "DIRECTIONAL", "POINT", "AMBIENT", "MAT_COLS", "LIGHT_COLS",
           "KERNELS"]

# Every kernel here has a hand-written backward (see KERNEL_MODULE_OPTIONS).
wp.set_module_options(KERNEL_MODULE_OPTIONS)

LAMBERT, BLINN_PHONG, GGX = 0, 1, 2
DIRECTIONAL, POINT, AMBIENT = 0, 1, 2
MAT_COLS, LIGHT_COLS = 8, 6
_INV_PI = 0.3183098861837907
_EPS_SQ = 1.0e-12  # lumigrad.shade.brdf._EPS_SQ and lumigrad.shade.lighting._MIN_DIST_SQ
_MIN_COS = 1.0e-4  # lumigrad.shade.brdf._MIN_COS
_MIN_ROUGHNESS = 0.02
_MIN_SHININESS = 1.0e-3
_MIN_LOBE = 1.0e-12
_INV_EPS = 1.0e12
_INV_PI_8 = _INV_PI / 8.0


@wp.func
def _rnorm(x: Any):
    """``1 / sqrt(|x|^2 + 1e-12)``: ``x`` times it is ``brdf._normalize(x)``."""
    return type(x[0])(1.0) / wp.sqrt(wp.dot(x, x) + type(x[0])(_EPS_SQ))


@wp.func
def _unit_grad(x: Any, r: Any, g: Any):
    """Gradient w.r.t. ``x`` of ``x * r(x)`` (``r = _rnorm(x)``) given the gradient ``g`` of the result."""
    return r * g - (r * r * r * wp.dot(x, g)) * x


@wp.func
def _point_falloff(d2: Any, fo: Any):
    """``(1 / max(c + l sqrt(d2 + eps) + q d2, eps), d(it)/d(d2))``."""
    s = wp.sqrt(d2 + type(d2)(_EPS_SQ))
    den = fo[0] + fo[1] * s + fo[2] * d2
    if den < type(d2)(_EPS_SQ):
        return type(d2)(_INV_EPS), type(d2)(0.0)
    att = type(d2)(1.0) / den
    return att, -att * att * (fo[1] * type(d2)(0.5) / s + fo[2])


@wp.func
def _light_at(kind: int, ldata: wp.array2d(dtype=Any), lfo: wp.array2d(dtype=Any), j: int, p: Any):
    """``(l, E)``: unit direction to light ``j`` and its irradiance at normal incidence at ``p``."""
    vec = _v3(ldata, j, 0)
    e = _v3(ldata, j, 3)
    if kind == POINT:
        d = vec - p
        att, _da = _point_falloff(wp.dot(d, d), _v3(lfo, j, 0))
        return d * _rnorm(d), e * att
    return vec, e


@wp.func
def _blinn(n: Any, l: Any, v: Any, kd: Any, ks: Any, shin: Any):
    x = l + v
    nh = wp.dot(n, x * _rnorm(x))
    s = wp.max(shin, type(shin)(_MIN_SHININESS))
    lobe = type(shin)(0.0)
    if nh > type(shin)(0.0):
        lobe = wp.exp(s * wp.log(wp.max(nh, type(shin)(_MIN_LOBE))))  # pow, with the log shared with the backward
    return kd * type(shin)(_INV_PI) + ks * ((s + type(shin)(8.0)) * type(shin)(_INV_PI_8) * lobe)


@wp.func
def _diffuse(kind: int, a: Any, m: Any):
    """The diffuse albedo ``kd`` ambient light multiplies (GGX: ``(1 - clamp(m, 0, 1)) * base``)."""
    if kind == GGX:
        return (type(m)(1.0) - wp.min(wp.max(m, type(m)(0.0)), type(m)(1.0))) * a
    return a


@wp.func
def _blinn_grad(n: Any, l: Any, v: Any, kd: Any, ks: Any, shin: Any, gf: Any):
    """:func:`_blinn`'s value and gradients given ``gf``: ``(f, g_kd, g_ks, g_shin, g_n, g_l, g_v)``."""
    zero = shin * type(shin)(0.0)
    x = l + v
    rx = _rnorm(x)
    h = x * rx
    nh = wp.dot(n, h)
    s = wp.max(shin, type(shin)(_MIN_SHININESS))
    k = (s + type(shin)(8.0)) * type(shin)(_INV_PI_8)
    nhc = wp.max(nh, type(shin)(_MIN_LOBE))
    lg = wp.log(nhc)
    lobe = zero
    if nh > zero:
        lobe = wp.exp(s * lg)
    f = kd * type(shin)(_INV_PI) + ks * (k * lobe)
    gsum = wp.dot(gf, ks)
    g_lobe = gsum * k
    g_s = gsum * lobe * type(shin)(_INV_PI_8) + g_lobe * lobe * lg
    g_nh = zero
    if nh >= type(shin)(_MIN_LOBE):
        g_nh = g_lobe * s * lobe / nhc  # s nh^(s - 1)
    g_shin = zero
    if shin >= type(shin)(_MIN_SHININESS):
        g_shin = g_s
    g_x = _unit_grad(x, rx, g_nh * n)
    return f, gf * type(shin)(_INV_PI), gf * (k * lobe), g_shin, g_nh * h, g_x, g_x


@wp.func
def _ggx_geom_grad(n: Any, l: Any, v: Any, base: Any, rough: Any, metal: Any, gf: Any):
    """Gradients w.r.t. ``n, l, v`` of ``_ggx``'s value given ``gf`` (its clamps pass gradients inside)."""
    zero = rough * type(rough)(0.0)
    one = zero + type(rough)(1.0)
    x = l + v
    rx = _rnorm(x)
    h = x * rx
    nlr = wp.dot(n, l)
    nvr = wp.dot(n, v)
    nhr = wp.dot(n, h)
    vhr = wp.dot(v, h)
    nl = wp.max(nlr, type(rough)(_MIN_COS))
    nv = wp.max(nvr, type(rough)(_MIN_COS))
    nh = wp.min(wp.max(nhr, zero), one)
    vh = wp.min(wp.max(vhr, zero), one)
    r = wp.min(wp.max(rough, type(rough)(_MIN_ROUGHNESS)), one)
    a2 = r * r * r * r
    sa = wp.sqrt(nv * nv * (one - a2) + a2)
    sb = wp.sqrt(nl * nl * (one - a2) + a2)
    den = nl * sa + nv * sb
    vis = type(rough)(0.5) / den
    m = wp.min(wp.max(metal, zero), one)
    ones = wp.vector(one, one, one)
    f0 = type(rough)(0.04) * (one - m) * ones + m * base
    u = one - vh
    s5 = u * u * u * u * u
    fres = f0 + (ones - f0) * s5
    t = nh * nh * (a2 - one) + one
    d = a2 / (type(rough)(3.141592653589793) * t * t)
    gfr = wp.dot(gf, fres)
    g_d = gfr * vis
    g_vis = gfr * d
    g_nh = g_d * (type(rough)(-4.0) * a2 * nh * (a2 - one) / (type(rough)(3.141592653589793) * t * t * t))
    g_vh = wp.dot(gf * (d * vis), ones - f0) * (type(rough)(-5.0) * u * u * u * u)
    dvis = type(rough)(-0.5) / (den * den) * g_vis
    g_nl = dvis * (sa + nv * nl * (one - a2) / sb)
    g_nv = dvis * (nl * nv * (one - a2) / sa + sb)
    if nlr < type(rough)(_MIN_COS):
        g_nl = zero
    if nvr < type(rough)(_MIN_COS):
        g_nv = zero
    if nhr < zero or nhr > one:
        g_nh = zero
    if vhr < zero or vhr > one:
        g_vh = zero
    g_x = _unit_grad(x, rx, g_nh * n + g_vh * v)
    g_n = g_nl * l + g_nv * v + g_nh * h
    return g_n, g_nl * n + g_x, g_nv * n + g_vh * h + g_x


def _make_kernels(kind: int):
    """Forward and backward kernels for one material kind (a runtime branch on the kind made every
    pixel twice as slow: the three BRDFs in one function were not inlined)."""
    KIND = kind

    @wp.func(name=f"_brdf_{kind}")
    def brdf(n: Any, l: Any, v: Any, a: Any, b: Any, c: Any, m: Any):
        if wp.static(KIND == BLINN_PHONG):
            return _blinn(n, l, v, a, b, c)
        elif wp.static(KIND == GGX):
            f, _fb, _fr, _fm = _ggx(n, l, v, a, c, m, 0)
            return f
        else:
            return a * type(c)(_INV_PI)

    @wp.func(name=f"_pixel_{kind}")
    def _pixel(
        i: int, n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any), p_in: wp.array2d(dtype=Any),
        mat: wp.array2d(dtype=Any), mrow: int, lkind: wp.array(dtype=wp.int32), ldata: wp.array2d(dtype=Any),
        lfo: wp.array2d(dtype=Any),
    ):
        """Unmasked radiance of pixel ``i``."""
        n0 = _v3(n_in, i, 0)
        n = n0 * _rnorm(n0)
        v = n  # Lambert: no view direction
        if wp.static(KIND != LAMBERT):
            v0 = _v3(v_in, i, 0)
            v = v0 * _rnorm(v0)
        p = _v3(p_in, wp.min(i, p_in.shape[0] - 1), 0)
        a = _v3(mat, mrow, 0)
        b = _v3(mat, mrow, 3)
        c = mat[mrow, 6]
        m = mat[mrow, 7]
        zero = c * type(c)(0.0)
        rgb = wp.vector(zero, zero, zero)
        for j in range(lkind.shape[0]):
            lk = lkind[j]
            if lk == AMBIENT:
                rgb = rgb + wp.cw_mul(_v3(ldata, j, 3), _diffuse(KIND, a, m))
            else:
                l, e = _light_at(lk, ldata, lfo, j, p)
                cos = wp.max(wp.dot(n, l), zero)
                rgb = rgb + cos * wp.cw_mul(brdf(n, l, v, a, b, c, m), e)
        return rgb


    @wp.kernel(name=f"shade_fwd_{kind}")
    def shade_fwd(
        offset: int, ppt: int,
        n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any), p_in: wp.array2d(dtype=Any),
        mat: wp.array2d(dtype=Any), mat_pp: int, mask: wp.array(dtype=Any), has_mask: int,
        lkind: wp.array(dtype=wp.int32), ldata: wp.array2d(dtype=Any), lfo: wp.array2d(dtype=Any),
        out: wp.array2d(dtype=Any),  # [N, 3]
    ):
        """Block ``tid + offset`` of ``ppt`` pixels (a loop per thread amortises the CPU per-thread cost)."""
        t = wp.tid() + offset
        npix = n_in.shape[0]
        for i in range(t * ppt, wp.min((t + 1) * ppt, npix)):
            rgb = _pixel(i, n_in, v_in, p_in, mat, i * mat_pp, lkind, ldata, lfo)
            if has_mask != 0:
                rgb = rgb * mask[i]
            _set3(out, i, 0, rgb)



    @wp.kernel(name=f"shade_bwd_{kind}")
    def shade_bwd(
        offset: int, ppt: int,
        n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any), p_in: wp.array2d(dtype=Any),
        mat: wp.array2d(dtype=Any), mat_pp: int, mask: wp.array(dtype=Any), has_mask: int,
        lkind: wp.array(dtype=wp.int32), ldata: wp.array2d(dtype=Any), lfo: wp.array2d(dtype=Any),
        g_out: wp.array2d(dtype=Any),  # [N, 3]
        g_n: wp.array2d(dtype=Any), g_v: wp.array2d(dtype=Any),  # [N, 3] out
        g_p: wp.array2d(dtype=Any),  # [N, 3] out (when there are point lights, else [1, 3])
        g_mask: wp.array(dtype=Any),  # [N] out (with a mask)
        g_mat: wp.array2d(dtype=Any),  # [N, 8] out (per-pixel materials)
        rows: wp.array2d(dtype=Any),  # [threads, 8 + 6 L] out: constant material's, then each light's gradients
    ):
        t = wp.tid() + offset
        npix = n_in.shape[0]
        zero = mat[0, 6] * mat.dtype(0.0)
        one = zero + mat.dtype(1.0)
        zv = wp.vector(zero, zero, zero)
        for k in range(rows.shape[1]):
            rows[t, k] = zero
        sa = zv  # this block's gradients of a constant material
        sb = zv
        sc = zero
        sm = zero
        for i in range(t * ppt, wp.min((t + 1) * ppt, npix)):
            mrow = i * mat_pp
            g_o = _v3(g_out, i, 0)
            g = g_o
            if has_mask != 0:
                g = g_o * mask[i]
            n0 = _v3(n_in, i, 0)
            v0 = n0  # Lambert: no view direction
            rn = _rnorm(n0)
            rv = rn
            n = n0 * rn
            v = n
            if wp.static(KIND != LAMBERT):
                v0 = _v3(v_in, i, 0)
                rv = _rnorm(v0)
                v = v0 * rv
            p = _v3(p_in, wp.min(i, p_in.shape[0] - 1), 0)
            a = _v3(mat, mrow, 0)
            b = _v3(mat, mrow, 3)
            c = mat[mrow, 6]
            m = mat[mrow, 7]
            rgb = zv  # unmasked radiance, for the mask's gradient
            ga = zv
            gb = zv
            gc = zero
            gm = zero
            gn = zv
            gv = zv
            gp = zv
            for j in range(lkind.shape[0]):
                lk = lkind[j]
                col = MAT_COLS + LIGHT_COLS * j
                if lk == AMBIENT:
                    e = _v3(ldata, j, 3)
                    kd = _diffuse(KIND, a, m)
                    rgb = rgb + wp.cw_mul(e, kd)
                    _add3(rows, t, col + 3, wp.cw_mul(g, kd))
                    gkd = wp.cw_mul(g, e)
                    if wp.static(KIND == GGX):
                        ga = ga + gkd * (one - wp.min(wp.max(m, zero), one))
                        if m >= zero and m <= one:
                            gm = gm - wp.dot(gkd, a)
                    else:
                        ga = ga + gkd
                else:
                    vec = _v3(ldata, j, 0)
                    e0 = _v3(ldata, j, 3)
                    l = vec
                    e = e0
                    d = zv
                    rd = zero
                    att = one
                    datt = zero
                    if lk == POINT:
                        d = vec - p
                        rd = _rnorm(d)
                        l = d * rd
                        att, datt = _point_falloff(wp.dot(d, d), _v3(lfo, j, 0))
                        e = e0 * att
                    cosr = wp.dot(n, l)
                    cos = wp.max(cosr, zero)
                    gf = wp.cw_mul(g, e) * cos
                    f = zv
                    gl = zv
                    if wp.static(KIND == BLINN_PHONG):
                        f, g_kd, g_ks, g_s, g_n1, g_l1, g_v1 = _blinn_grad(n, l, v, a, b, c, gf)
                        ga = ga + g_kd
                        gb = gb + g_ks
                        gc = gc + g_s
                        gn = gn + g_n1
                        gl = g_l1
                        gv = gv + g_v1
                    elif wp.static(KIND == GGX):
                        f, dfb, dfr, dfm = _ggx(n, l, v, a, c, m, 1)
                        ga = ga + wp.cw_mul(gf, dfb)
                        gc = gc + wp.dot(gf, dfr)
                        gm = gm + wp.dot(gf, dfm)
                        g_n1, g_l1, g_v1 = _ggx_geom_grad(n, l, v, a, c, m, gf)
                        gn = gn + g_n1
                        gl = g_l1
                        gv = gv + g_v1
                    else:
                        f = a * mat.dtype(_INV_PI)
                        ga = ga + gf * mat.dtype(_INV_PI)
                    fe = wp.cw_mul(f, e)
                    rgb = rgb + cos * fe
                    ge = wp.cw_mul(g, f) * cos
                    if cosr >= zero:
                        gcos = wp.dot(g, fe)
                        gn = gn + gcos * l
                        gl = gl + gcos * n
                    if lk == POINT:
                        gd = _unit_grad(d, rd, gl) + (mat.dtype(2.0) * datt * wp.dot(ge, e0)) * d
                        _add3(rows, t, col, gd)
                        _add3(rows, t, col + 3, ge * att)
                        gp = gp - gd
                    else:
                        _add3(rows, t, col, gl)
                        _add3(rows, t, col + 3, ge)
            if has_mask != 0:
                g_mask[i] = wp.dot(g_o, rgb)
            _set3(g_n, i, 0, _unit_grad(n0, rn, gn))
            if wp.static(KIND != LAMBERT):
                _set3(g_v, i, 0, _unit_grad(v0, rv, gv))
            if g_p.shape[0] == npix:
                _set3(g_p, i, 0, gp)
            if mat_pp != 0:
                _set3(g_mat, i, 0, ga)
                _set3(g_mat, i, 3, gb)
                g_mat[i, 6] = gc
                g_mat[i, 7] = gm
            else:
                sa = sa + ga
                sb = sb + gb
                sc = sc + gc
                sm = sm + gm
        _set3(rows, t, 0, sa)
        _set3(rows, t, 3, sb)
        rows[t, 6] = sc
        rows[t, 7] = sm

    return shade_fwd, shade_bwd


KERNELS = {k: _make_kernels(k) for k in (LAMBERT, BLINN_PHONG, GGX)}
