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
from lumigrad.ops._path_kernels import _ggx
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


@wp.func
def _mat_row(mat: wp.array2d(dtype=Any), r: int):
    """Row ``r`` of the material table: diffuse colour, specular colour, shininess / roughness, metallic."""
    return _v3(mat, r, 0), _v3(mat, r, 3), mat[r, 6], mat[r, 7]


@wp.func
def _light_row(ldata: wp.array2d(dtype=Any), lfo: wp.array2d(dtype=Any), j: int):
    """Light ``j``'s direction or position, colour times intensity, and falloff constants."""
    return _v3(ldata, j, 0), _v3(ldata, j, 3), _v3(lfo, j, 0)


@wp.func
def _block_start(t: int, ppt: int, npix: int, mat: wp.array2d(dtype=Any)):
    """Pixel range ``[i0, i1)`` of kernel thread ``t`` and the constant (first) material row."""
    i0 = t * ppt
    a0, b0, c0, m0 = _mat_row(mat, 0)
    return i0, wp.min(i0 + ppt, npix), a0, b0, c0, m0


@wp.func
def _unit_row(x_in: wp.array2d(dtype=Any), i: int):
    """``(x, 1 / |x|, x / |x|)`` of row ``i`` (``_rnorm``'s regularised norm)."""
    x = _v3(x_in, i, 0)
    r = _rnorm(x)
    return x, r, x * r


def _make_passes(kind: int, light: int):
    """One light's passes over a block of pixels, for material ``kind`` and light kind ``light``: forward
    (``rgb``), backward (every gradient) and geometry-only backward (normal, view direction, position).

    The kinds are compile-time constants, so each pass is straight-line code per pixel; with the kinds as
    runtime values in shared functions the per-pixel calls were not inlined (geometry-only Lambert
    backward 1.5x slower)."""
    KIND, LIGHT = kind, light
    sfx = f"{kind}_{light}"

    @wp.func(name=f"_brdf_{sfx}")
    def brdf(n: Any, l: Any, v: Any, a: Any, b: Any, c: Any, m: Any):
        if wp.static(KIND == BLINN_PHONG):
            return _blinn(n, l, v, a, b, c)
        elif wp.static(KIND == GGX):
            f, _fb, _fr, _fm = _ggx(n, l, v, a, c, m, 0)
            return f
        else:
            return a * type(c)(_INV_PI)

    @wp.func(name=f"_light_{sfx}")
    def light_at(vec: Any, e0: Any, fo: Any, p: Any):
        """``(l, e, d, rd, att, datt)``: direction to the light, irradiance at normal incidence, and for a
        point light ``d = vec - p``, ``1 / |d|`` and the falloff with its derivative w.r.t. ``|d|^2``."""
        zero = e0[0] * type(e0[0])(0.0)
        if wp.static(LIGHT == POINT):
            d = vec - p
            rd = _rnorm(d)
            att, datt = _point_falloff(wp.dot(d, d), fo)
            return d * rd, e0 * att, d, rd, att, datt
        else:
            return vec, e0, vec * zero, zero, zero + type(zero)(1.0), zero

    @wp.func(name=f"_rgb_{sfx}")
    def rgb_at(vec: Any, e0: Any, fo: Any, n: Any, v: Any, p: Any, a: Any, b: Any, c: Any, m: Any):
        """Unmasked radiance of the light at a pixel."""
        if wp.static(LIGHT == AMBIENT):
            return wp.cw_mul(e0, _diffuse(KIND, a, m))
        else:
            l, e, _d, _rd, _att, _datt = light_at(vec, e0, fo, p)
            cos = wp.max(wp.dot(n, l), type(c)(0.0))
            return cos * wp.cw_mul(brdf(n, l, v, a, b, c, m), e)

    @wp.func(name=f"_grad_{sfx}")
    def grad_at(vec: Any, e0: Any, fo: Any, n: Any, v: Any, p: Any, a: Any, b: Any, c: Any, m: Any, g: Any):
        """The light's radiance at a pixel and its gradients given ``g`` (d loss / d masked radiance times the
        mask): ``(rgb, g_a, g_b, g_c, g_m, g_n, g_v, g_p, g_vec, g_e)`` (``g_n``, ``g_v`` w.r.t. the unit vectors)."""
        zero = c * type(c)(0.0)
        one = zero + type(c)(1.0)
        zv = wp.vector(zero, zero, zero)
        if wp.static(LIGHT == AMBIENT):
            kd = _diffuse(KIND, a, m)
            gkd = wp.cw_mul(g, e0)
            ga = gkd
            gm = zero
            if wp.static(KIND == GGX):
                ga = gkd * (one - wp.min(wp.max(m, zero), one))
                if m >= zero and m <= one:
                    gm = -wp.dot(gkd, a)
            return wp.cw_mul(e0, kd), ga, zv, zero, gm, zv, zv, zv, zv, wp.cw_mul(g, kd)
        else:
            l, e, d, rd, att, datt = light_at(vec, e0, fo, p)
            cosr = wp.dot(n, l)
            cos = wp.max(cosr, zero)
            gf = wp.cw_mul(g, e) * cos
            f = zv
            ga = zv
            gb = zv
            gc = zero
            gm = zero
            gn = zv
            gv = zv
            gl = zv
            if wp.static(KIND == BLINN_PHONG):
                f, ga, gb, gc, gn, gl, gv = _blinn_grad(n, l, v, a, b, c, gf)
            elif wp.static(KIND == GGX):
                f, dfb, dfr, dfm = _ggx(n, l, v, a, c, m, 1)
                ga = wp.cw_mul(gf, dfb)
                gc = wp.dot(gf, dfr)
                gm = wp.dot(gf, dfm)
                gn, gl, gv = _ggx_geom_grad(n, l, v, a, c, m, gf)
            else:
                f = a * type(c)(_INV_PI)
                ga = gf * type(c)(_INV_PI)
            fe = wp.cw_mul(f, e)
            ge = wp.cw_mul(g, f) * cos
            if cosr >= zero:
                gcos = wp.dot(g, fe)
                gn = gn + gcos * l
                gl = gl + gcos * n
            if wp.static(LIGHT == POINT):
                gd = _unit_grad(d, rd, gl) + (type(c)(2.0) * datt * wp.dot(ge, e0)) * d
                return cos * fe, ga, gb, gc, gm, gn, gv, -gd, gd, ge * att
            else:
                return cos * fe, ga, gb, gc, gm, gn, gv, zv, gl, ge

    @wp.func(name=f"_geo_{sfx}")
    def geo_at(vec: Any, e0: Any, fo: Any, n: Any, v: Any, p: Any, a: Any, b: Any, c: Any, m: Any, g: Any):
        """:func:`grad_at`'s gradients w.r.t. the unit normal, the unit view direction and the position only
        (not for ambient lights, which have none)."""
        zero = c * type(c)(0.0)
        zv = wp.vector(zero, zero, zero)
        l, e, d, rd, _att, datt = light_at(vec, e0, fo, p)
        cosr = wp.dot(n, l)
        cos = wp.max(cosr, zero)
        f = zv
        gn = zv
        gv = zv
        gl = zv
        if wp.static(KIND == BLINN_PHONG):
            f, _ga, _gb, _gc, gn, gl, gv = _blinn_grad(n, l, v, a, b, c, wp.cw_mul(g, e) * cos)
        elif wp.static(KIND == GGX):
            f = brdf(n, l, v, a, b, c, m)
            gn, gl, gv = _ggx_geom_grad(n, l, v, a, c, m, wp.cw_mul(g, e) * cos)
        else:
            f = a * type(c)(_INV_PI)
        if cosr >= zero:
            gcos = wp.dot(g, wp.cw_mul(f, e))
            gn = gn + gcos * l
            gl = gl + gcos * n
        if wp.static(LIGHT == POINT):
            ge = wp.cw_mul(g, f) * cos
            return gn, gv, -(_unit_grad(d, rd, gl) + (type(c)(2.0) * datt * wp.dot(ge, e0)) * d)
        else:
            return gn, gv, zv

    @wp.func(name=f"_inputs_{sfx}")
    def pixel_inputs(i: int, n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any), p_in: wp.array2d(dtype=Any),
                     mat: wp.array2d(dtype=Any), mat_pp: int, a0: Any, b0: Any, c0: Any, m0: Any, vec: Any):
        """Pixel ``i``'s material row (the constant one unless ``mat_pp``), normal and view direction (raw,
        ``1 / |x|``, unit; Lambert's view direction is its normal) and position (only read for point lights)."""
        a = a0
        b = b0
        c = c0
        m = m0
        if mat_pp != 0:
            a, b, c, m = _mat_row(mat, i)
        n0, rn, n = _unit_row(n_in, i)
        v0 = n0
        rv = rn
        v = n
        if wp.static(KIND != LAMBERT):
            v0, rv, v = _unit_row(v_in, i)
        p = vec
        if wp.static(LIGHT == POINT):
            p = _v3(p_in, i, 0)
        return a, b, c, m, n0, rn, n, v0, rv, v, p

    @wp.func(name=f"_store_geo_{sfx}")
    def store_geo(i: int, first: bool, gn: Any, gv: Any, gp: Any, g_n: wp.array2d(dtype=Any),
                  g_v: wp.array2d(dtype=Any), g_p: wp.array2d(dtype=Any)):
        """Writes (``first``) or adds pixel ``i``'s normal, view-direction (not Lambert) and position (when ``g_p``
        has a row per pixel) gradients."""
        tn = gn
        tv = gv
        tp = gp
        per_pixel_p = g_p.shape[0] == g_n.shape[0]
        if not first:
            tn = tn + _v3(g_n, i, 0)
            if wp.static(KIND != LAMBERT):
                tv = tv + _v3(g_v, i, 0)
            if per_pixel_p:
                tp = tp + _v3(g_p, i, 0)
        _set3(g_n, i, 0, tn)
        if wp.static(KIND != LAMBERT):
            _set3(g_v, i, 0, tv)
        if per_pixel_p:
            _set3(g_p, i, 0, tp)

    @wp.func(name=f"_store_{sfx}")
    def store_grads(i: int, first: bool, gn: Any, gv: Any, gp: Any, gmask: Any, ga: Any, gb: Any, gc: Any, gm: Any,
                    g_n: wp.array2d(dtype=Any), g_v: wp.array2d(dtype=Any), g_p: wp.array2d(dtype=Any),
                    g_mask: wp.array(dtype=Any), has_mask: int, g_mat: wp.array2d(dtype=Any), mat_pp: int):
        """:func:`store_geo`, and the mask's and a per-pixel material's gradients."""
        store_geo(i, first, gn, gv, gp, g_n, g_v, g_p)
        tmask = gmask
        ta = ga
        tb = gb
        tc = gc
        tm = gm
        if not first:
            if has_mask != 0:
                tmask = tmask + g_mask[i]
            if mat_pp != 0:
                ta = ta + _v3(g_mat, i, 0)
                tb = tb + _v3(g_mat, i, 3)
                tc = tc + g_mat[i, 6]
                tm = tm + g_mat[i, 7]
        if has_mask != 0:
            g_mask[i] = tmask
        if mat_pp != 0:
            _set3(g_mat, i, 0, ta)
            _set3(g_mat, i, 3, tb)
            g_mat[i, 6] = tc
            g_mat[i, 7] = tm

    @wp.func(name=f"_fwd_pass_{sfx}")
    def fwd_pass(
        i0: int, i1: int, first: bool, n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any),
        p_in: wp.array2d(dtype=Any), mat: wp.array2d(dtype=Any), mat_pp: int, a0: Any, b0: Any, c0: Any, m0: Any,
        mask: wp.array(dtype=Any), has_mask: int, vec: Any, e0: Any, fo: Any, out: wp.array2d(dtype=Any),
    ):
        """Writes (``first``) or adds the light's masked radiance to ``out`` for pixels ``i0 .. i1 - 1``."""
        for i in range(i0, i1):
            a, b, c, m, _n0, _rn, n, _v0, _rv, v, p = pixel_inputs(i, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, vec)
            rgb = rgb_at(vec, e0, fo, n, v, p, a, b, c, m)
            if has_mask != 0:
                rgb = rgb * mask[i]
            if not first:
                rgb = rgb + _v3(out, i, 0)
            _set3(out, i, 0, rgb)

    @wp.func(name=f"_bwd_pass_{sfx}")
    def bwd_pass(
        i0: int, i1: int, first: bool, n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any),
        p_in: wp.array2d(dtype=Any), mat: wp.array2d(dtype=Any), mat_pp: int, a0: Any, b0: Any, c0: Any, m0: Any,
        mask: wp.array(dtype=Any), has_mask: int, vec: Any, e0: Any, fo: Any, g_out: wp.array2d(dtype=Any),
        g_n: wp.array2d(dtype=Any), g_v: wp.array2d(dtype=Any), g_p: wp.array2d(dtype=Any),
        g_mask: wp.array(dtype=Any), g_mat: wp.array2d(dtype=Any),
    ):
        """Writes (``first``) or adds the light's per-pixel gradients; returns its gradients summed over the
        block: ``(material columns 0-2, 3-5, 6, 7 (constant material only), light direction or position, colour)``."""
        zero = c0 * type(c0)(0.0)
        zv = wp.vector(zero, zero, zero)
        sa = zv
        sb = zv
        sc = zero
        sm = zero
        s_vec = zv
        s_e = zv
        for i in range(i0, i1):
            a, b, c, m, n0, rn, n, v0, rv, v, p = pixel_inputs(i, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, vec)
            g_o = _v3(g_out, i, 0)
            g = g_o
            if has_mask != 0:
                g = g_o * mask[i]
            rgb, ga, gb, gc, gm, gn, gv, gp, gvec, ge = grad_at(vec, e0, fo, n, v, p, a, b, c, m, g)
            s_vec = s_vec + gvec
            s_e = s_e + ge
            gn = _unit_grad(n0, rn, gn)
            if wp.static(KIND != LAMBERT):
                gv = _unit_grad(v0, rv, gv)
            store_grads(i, first, gn, gv, gp, wp.dot(g_o, rgb), ga, gb, gc, gm, g_n, g_v, g_p, g_mask, has_mask,
                        g_mat, mat_pp)
            if mat_pp == 0:
                sa = sa + ga
                sb = sb + gb
                sc = sc + gc
                sm = sm + gm
        return sa, sb, sc, sm, s_vec, s_e

    @wp.func(name=f"_geo_pass_{sfx}")
    def geo_pass(
        i0: int, i1: int, first: bool, n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any),
        p_in: wp.array2d(dtype=Any), mat: wp.array2d(dtype=Any), mat_pp: int, a0: Any, b0: Any, c0: Any, m0: Any,
        mask: wp.array(dtype=Any), has_mask: int, vec: Any, e0: Any, fo: Any, g_out: wp.array2d(dtype=Any),
        g_n: wp.array2d(dtype=Any), g_v: wp.array2d(dtype=Any), g_p: wp.array2d(dtype=Any),
    ):
        """:func:`bwd_pass` for the normal, view direction and position gradients only (not ambient lights)."""
        for i in range(i0, i1):
            a, b, c, m, n0, rn, n, v0, rv, v, p = pixel_inputs(i, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, vec)
            g = _v3(g_out, i, 0)
            if has_mask != 0:
                g = g * mask[i]
            gn, gv, gp = geo_at(vec, e0, fo, n, v, p, a, b, c, m, g)
            gn = _unit_grad(n0, rn, gn)
            if wp.static(KIND != LAMBERT):
                gv = _unit_grad(v0, rv, gv)
            store_geo(i, first, gn, gv, gp, g_n, g_v, g_p)

    return fwd_pass, bwd_pass, geo_pass, store_grads, store_geo


def _make_kernels(kind: int):
    """Forward, backward and geometry-only backward kernels for one material kind (a runtime branch on the
    kind made every pixel twice as slow: the three BRDFs in one function were not inlined).

    A kernel thread owns a block of pixels and loops over the lights outside the pixels, one pass per
    light (``_make_passes``): the light's table row and a constant material stay in registers for the
    whole block, the backward sums the light's gradients over the block in registers, and the first
    light's pass writes the per-pixel outputs that the others add to. (Pixels outside and lights inside,
    which re-read both per pixel and summed gradients through memory, took 1.6x the forward's and 1.1x
    the backward's time for Lambert with one directional light, and the geometry-only backward did not
    exist: 2.3x.)"""
    FWD_D, BWD_D, GEO_D, STORE, STORE_GEO = _make_passes(kind, DIRECTIONAL)
    FWD_P, BWD_P, GEO_P, _store_p, _store_geo_p = _make_passes(kind, POINT)
    FWD_A, BWD_A, _geo_a, _store_a, _store_geo_a = _make_passes(kind, AMBIENT)

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
        i0, i1, a0, b0, c0, m0 = _block_start(t, ppt, n_in.shape[0], mat)
        zero = c0 * type(c0)(0.0)
        if lkind.shape[0] == 0:
            for i in range(i0, i1):
                _set3(out, i, 0, wp.vector(zero, zero, zero))
        for j in range(lkind.shape[0]):
            lk = lkind[j]
            vec, e0, fo = _light_row(ldata, lfo, j)
            if lk == DIRECTIONAL:
                FWD_D(i0, i1, j == 0, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask, has_mask, vec, e0, fo, out)
            elif lk == POINT:
                FWD_P(i0, i1, j == 0, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask, has_mask, vec, e0, fo, out)
            else:
                FWD_A(i0, i1, j == 0, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask, has_mask, vec, e0, fo, out)

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
        i0, i1, a0, b0, c0, m0 = _block_start(t, ppt, n_in.shape[0], mat)
        zero = c0 * type(c0)(0.0)
        zv = wp.vector(zero, zero, zero)
        if lkind.shape[0] == 0:  # else the first light's pass writes the per-pixel outputs
            for i in range(i0, i1):
                STORE(i, True, zv, zv, zv, zero, zv, zv, zero, zero, g_n, g_v, g_p, g_mask, has_mask, g_mat, mat_pp)
        sa = zv  # this block's gradients of a constant material
        sb = zv
        sc = zero
        sm = zero
        for j in range(lkind.shape[0]):
            lk = lkind[j]
            vec, e0, fo = _light_row(ldata, lfo, j)
            ja = zv
            jb = zv
            jc = zero
            jm = zero
            s_vec = zv
            s_e = zv
            if lk == DIRECTIONAL:
                ja, jb, jc, jm, s_vec, s_e = BWD_D(i0, i1, j == 0, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask,
                                                   has_mask, vec, e0, fo, g_out, g_n, g_v, g_p, g_mask, g_mat)
            elif lk == POINT:
                ja, jb, jc, jm, s_vec, s_e = BWD_P(i0, i1, j == 0, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask,
                                                   has_mask, vec, e0, fo, g_out, g_n, g_v, g_p, g_mask, g_mat)
            else:
                ja, jb, jc, jm, s_vec, s_e = BWD_A(i0, i1, j == 0, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask,
                                                   has_mask, vec, e0, fo, g_out, g_n, g_v, g_p, g_mask, g_mat)
            sa = sa + ja
            sb = sb + jb
            sc = sc + jc
            sm = sm + jm
            col = MAT_COLS + LIGHT_COLS * j
            _set3(rows, t, col, s_vec)
            _set3(rows, t, col + 3, s_e)
        _set3(rows, t, 0, sa)
        _set3(rows, t, 3, sb)
        rows[t, 6] = sc
        rows[t, 7] = sm

    @wp.kernel(name=f"shade_bwd_geo_{kind}")
    def shade_bwd_geo(
        offset: int, ppt: int,
        n_in: wp.array2d(dtype=Any), v_in: wp.array2d(dtype=Any), p_in: wp.array2d(dtype=Any),
        mat: wp.array2d(dtype=Any), mat_pp: int, mask: wp.array(dtype=Any), has_mask: int,
        lkind: wp.array(dtype=wp.int32), ldata: wp.array2d(dtype=Any), lfo: wp.array2d(dtype=Any),
        g_out: wp.array2d(dtype=Any),  # [N, 3]
        g_n: wp.array2d(dtype=Any), g_v: wp.array2d(dtype=Any),  # [N, 3] out
        g_p: wp.array2d(dtype=Any),  # [N, 3] out (when there are point lights, else [1, 3])
    ):
        """``shade_bwd`` for when neither the mask, the material nor the lights need a gradient (a fit of the
        geometry): only ``g_n``, ``g_v`` and ``g_p``."""
        t = wp.tid() + offset
        i0, i1, a0, b0, c0, m0 = _block_start(t, ppt, n_in.shape[0], mat)
        zero = c0 * type(c0)(0.0)
        zv = wp.vector(zero, zero, zero)
        written = bool(False)  # ambient lights have no geometry gradient
        for j in range(lkind.shape[0]):
            lk = lkind[j]
            vec, e0, fo = _light_row(ldata, lfo, j)
            if lk == DIRECTIONAL:
                GEO_D(i0, i1, not written, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask, has_mask, vec, e0,
                      fo, g_out, g_n, g_v, g_p)
                written = True
            elif lk == POINT:
                GEO_P(i0, i1, not written, n_in, v_in, p_in, mat, mat_pp, a0, b0, c0, m0, mask, has_mask, vec, e0,
                      fo, g_out, g_n, g_v, g_p)
                written = True
        if not written:
            for i in range(i0, i1):
                STORE_GEO(i, True, zv, zv, zv, g_n, g_v, g_p)

    return shade_fwd, shade_bwd, shade_bwd_geo


KERNELS = {k: _make_kernels(k) for k in (LAMBERT, BLINN_PHONG, GGX)}
