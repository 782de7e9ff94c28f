"""Warp kernel of :func:`lumigrad.ops.path_trace.trace_paths`: whole paths per thread, and their replay.

The kernel (one source, ten compiled variants, each compiled when first used: :func:`path_kernel`) runs one camera
sample per thread through every bounce (closest hit, front-face emission, next-event estimation for point /
directional lights and one sample per emissive shape, one BSDF sample: cosine for Lambert, delta for mirrors, MIS by
the power heuristic, Russian roulette; escaping BSDF rays see the environment map and the ambient / SH sky) with the
estimator of :func:`lumigrad.render.path._radiance` (the spec). ``npass = 1``: forward, the radiance of each sample.
``npass = 2``: path replay backpropagation (Vicini et al. 2021): pass 0 re-runs the path (same RNG stream) to get
its radiance ``L``, pass 1 runs it again carrying ``L`` minus what has been accounted for, which is the radiance the
rest of the path contributes and, divided by a vertex's reflectance row, that row's gradient. Nothing per path is
stored in global memory. A zero reflectance channel (``0 / 0``) is handled by a second throughput per channel that
skips the first zero factor: the terms after it, with that factor removed, are its gradient (later zeros make both
throughputs zero, as the exact derivative is). A factor that is tiny but not zero (GGX with metallic 1 and
a base channel 0: Fresnel's ``(1 - c)^5`` alone, ~1e-12 near normal incidence) is divided by like any other, which
amplifies the rounding of ``L`` minus what has been accounted for: relative gradient errors of 1e-5 .. 1e-3 on that
channel were measured for 2 of 24 seed / sampler pairs of ``test_ggx_gradients_match_finite_differences``'s scene.

Gradients go to rows ``[i // blk]`` of per-task buffers (the CPU launch runs each task's range
serially, so tasks never share a row; on CUDA ``blk = 1``: a row per thread).
Geometry is in the arrays' float type; BVH queries are float32 (as every BVH query here).

Where the time goes (Cornell box of ``bench/trace_gi.py``, 36 triangles, 64^2, 16 spp, 3 bounces, float32, one
thread, ``time.thread_time``; before the variants below, ~1030-1110 ns per path): an empty kernel (launch,
per-thread argument loads, outputs) ~40 ns, the camera ray ~33 ns, its closest hit ~85 ns, the first vertex's
attributes and emission ~100 ns, then ~250 ns per bounce, of which the shadow ray ~48 ns. Sampled with ``perf``
(cpu-clock, the JIT'd kernel's addresses): the BVH queries take ~60 % (closest hits ~48 %: ~6 nodes and ~5
triangles per ray here; shadow rays ~12 %), and 23 % of the samples fall on instructions that touch the stack
(spills: the kernel is one ~40 kB function). What helped (paired A/B rounds in one process, median ratio):
compiling the forward without the replay's code (0.89x) and, for scenes without environment map, GGX or lights,
without theirs (0.94x forward, 0.94x replay): fewer live values, fewer spills; the replay kernels in a module of
their own with LLVM's default inlining (replay 0.93x; the forward, then compiled without the replay kernel next
to it, 0.92x). What did not: FMA contraction (``-ffp-contract=fast``: 0.985x, results change in the last
digits), no SLP vectorisation or its default depth (within 1.5 %), LLVM's default inlining for the forward
(1.01x), a 16-entry instead of 64-entry traversal stack (the zeroing is cheap), no float64 re-computation of the
hit distance, a constant single pass in the forward, a branch-free two-sided triangle test (all within 1 %); a
brute-force loop over the 36 triangles instead of the BVH (1.7x slower); the replay's radiance pass by the
forward kernel into a temporary (1.10x slower: in the replay kernel it shares the camera ray and its hit with
the gradient pass); BVH changes: see :mod:`lumigrad.ops._bvh_kernels`.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._bvh_kernels import bvh_anyhit, bvh_closest
from lumigrad.ops._common import KERNEL_MODULE_OPTIONS
from lumigrad.ops._qmc_funcs import QMC_BOUNCES, qmc2, qmc_bits, qmc_key
from lumigrad.ops._path_tex_funcs import _cf_tex, _g_color, _g_scalar, _g_tint, _hit_tex, _tex_color, _tex_scalar
from lumigrad.ops._trace_kernels import _light_at, _reattach, _unit, _v3

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["path_kernel", "MIRROR", "GGX"]

GGX = 2  # lumigrad.render._bsdf_sampling._GGX
MIRROR = 3  # lumigrad.render._bsdf_sampling._MIRROR; any other kind is Lambert here
_INV_PI = 0.3183098861837907
_TWO_PI = 6.283185307179586
_MIN_COS = 1.0e-4  # lumigrad.shade.brdf._MIN_COS
_MIN_ROUGHNESS = 0.02  # lumigrad.shade.brdf._MIN_ROUGHNESS
_EPS_SQ = 1.0e-12  # lumigrad.shade.brdf._EPS_SQ (the half vector's normalisation)


@wp.func
def _f32(v: Any):
    return wp.vec3(wp.float32(v[0]), wp.float32(v[1]), wp.float32(v[2]))


@wp.func
def _visible(nodes: wp.array(dtype=wp.vec3), kids: wp.array(dtype=wp.vec2i), tris: wp.array(dtype=wp.vec3),
             p: Any, ng: Any, l: Any, dist: Any, eps: Any, shadows: int):
    """1 when nothing lies between ``p`` and ``dist`` along ``l`` (:func:`lumigrad.render.path._visible`)."""
    one = type(eps)(1.0)
    if shadows == 0:
        return one
    step = eps / wp.max(wp.abs(wp.dot(ng, l)), type(eps)(0.05))
    tm = wp.max(dist - step - eps, type(eps)(0.0))
    if bvh_anyhit(nodes, kids, tris, _f32(p + step * l), _f32(l), wp.float32(tm)):
        return type(eps)(0.0)
    return one


@wp.func
def _attrs(corners: wp.array2d(dtype=Any), faces: wp.array2d(dtype=wp.int32), f: int, o: Any, d: Any, tiny: Any,
           ntiny: Any):
    """``(p, ns, ng)``: the ray re-attached to face ``f`` (:func:`lumigrad.ops.trace.hit_attributes`)."""
    one = type(tiny)(1.0)
    i0 = faces[f, 0]
    i1 = faces[f, 1]
    i2 = faces[f, 2]
    p0 = _v3(corners, i0, 0)
    p1 = _v3(corners, i1, 0)
    p2 = _v3(corners, i2, 0)
    t, b1, b2, inv, guarded = _reattach(o, d, p0, p1, p2, tiny)
    ns, rs = _unit((one - b1 - b2) * _v3(corners, i0, 3) + b1 * _v3(corners, i1, 3) + b2 * _v3(corners, i2, 3),
                   ntiny)
    ng, rg = _unit(wp.cross(p1 - p0, p2 - p0), ntiny)
    return o + t * d, ns, ng


@wp.func
def _power(a: Any, b: Any):
    """Power-heuristic weight of the strategy with density ``a`` (:func:`lumigrad.render.path._power`)."""
    a2 = a * a
    if a2 > type(a)(0.0):
        return a2 / (a2 + b * b)
    return type(a)(0.0)


@wp.func
def _pick(cdf: wp.array(dtype=Any), lo: int, hi: int, u: Any):
    """First index in ``[lo, hi)`` with ``cdf > u`` (the last one if none): area-proportional triangles."""
    a = lo
    b = hi - 1
    while a < b:
        m = (a + b) // 2
        if cdf[m] > u:
            b = m
        else:
            a = m + 1
    return a


@wp.func
def _frame(n: Any):
    """``(t, b)``: tangents completing the unit normal ``n`` to a right-handed frame (``_bsdf_sampling.frame``)."""
    zero = n[0] * type(n[0])(0.0)
    one = zero + type(n[0])(1.0)
    a = wp.vector(one, zero, zero)
    if wp.abs(n[0]) > type(n[0])(0.9):
        a = wp.vector(zero, one, zero)
    t = wp.normalize(wp.cross(a, n))
    return t, wp.cross(n, t)


@wp.func
def _cosine(n: Any, u1: Any, u2: Any):
    """Cosine-weighted direction about ``n`` (frame and mapping of ``_bsdf_sampling.sample_cosine``)."""
    zero = u1 * type(u1)(0.0)
    one = zero + type(u1)(1.0)
    t, b = _frame(n)
    r = wp.sqrt(u1)
    phi = type(u1)(_TWO_PI) * u2
    return (r * wp.cos(phi)) * t + (r * wp.sin(phi)) * b + wp.sqrt(wp.max(one - u1, zero)) * n


@wp.func
def _ggx(n: Any, l: Any, v: Any, base: Any, rough: Any, metal: Any, grads: int):
    """``(f, df/dbase, df/droughness, df/dmetallic)`` per channel of :func:`lumigrad.shade.brdf._ggx` (the
    derivatives only when ``grads``; they follow torch's clamp rule: zero outside the clamped range)."""
    zero = rough * type(rough)(0.0)
    one = zero + type(rough)(1.0)
    hv = l + v
    h = hv / wp.sqrt(wp.dot(hv, hv) + type(rough)(_EPS_SQ))
    nl = wp.max(wp.dot(n, l), type(rough)(_MIN_COS))
    nv = wp.max(wp.dot(n, v), type(rough)(_MIN_COS))
    nh = wp.min(wp.max(wp.dot(n, h), zero), one)
    vh = wp.min(wp.max(wp.dot(v, h), zero), one)
    r = wp.min(wp.max(rough, type(rough)(_MIN_ROUGHNESS)), one)
    alpha = r * r
    a2 = alpha * alpha
    sa = wp.sqrt(nv * nv * (one - a2) + a2)
    sb = wp.sqrt(nl * nl * (one - a2) + a2)
    den = nl * sa + nv * sb
    vis = type(rough)(0.5) / den
    m = wp.min(wp.max(metal, zero), one)
    s5 = (one - vh) * (one - vh) * (one - vh) * (one - vh) * (one - vh)
    ones = wp.vector(one, one, one)
    f0 = type(rough)(0.04) * (one - m) * ones + m * base
    fres = f0 + wp.cw_mul(ones - f0, ones * s5)
    t = nh * nh * (a2 - one) + one
    d = a2 / (type(rough)(3.141592653589793) * t * t)
    f = ((one - m) * type(rough)(_INV_PI)) * base + (d * vis) * fres
    dfb = ones * zero
    dfr = dfb
    dfm = dfb
    if grads != 0:
        dfb = ((one - m) * type(rough)(_INV_PI) + d * vis * m * (one - s5)) * ones
        if metal >= zero and metal <= one:
            dfm = type(rough)(-_INV_PI) * base + (d * vis * (one - s5)) * (base - type(rough)(0.04) * ones)
        if rough >= type(rough)(_MIN_ROUGHNESS) and rough <= one:
            dd = (t - type(rough)(2.0) * a2 * nh * nh) / (type(rough)(3.141592653589793) * t * t * t)
            dvis = -type(rough)(0.5) / (den * den) * (nl * (one - nv * nv) / (type(rough)(2.0) * sa)
                                                      + nv * (one - nl * nl) / (type(rough)(2.0) * sb))
            dfr = ((dd * vis + d * dvis) * type(rough)(4.0) * r * r * r) * fres
    return f, dfb, dfr, dfm


@wp.func
def _ggx_pdf(n: Any, wo: Any, wi: Any, ps: Any, alpha: Any):
    """Density of :func:`_ggx_sample` (``MaterialTable.pdf``): ``ps`` GGX ``D cos`` lobe, else cosine."""
    zero = ps * type(ps)(0.0)
    ni = wp.dot(n, wi)
    cosp = wp.max(ni, zero) * type(ps)(_INV_PI)
    if ps <= zero:
        return cosp
    hv = wo + wi
    h = hv / wp.max(wp.length(hv), type(ps)(1.0e-12))
    nh = wp.min(wp.max(wp.dot(n, h), zero), type(ps)(1.0))
    oh = wp.max(wp.abs(wp.dot(wo, h)), type(ps)(1.0e-8))
    a2 = alpha * alpha
    t = nh * nh * (a2 - type(ps)(1.0)) + type(ps)(1.0)
    spec = a2 / (type(ps)(3.141592653589793) * t * t) * nh / (type(ps)(4.0) * oh)
    if ni <= zero:
        spec = zero
    return ps * spec + (type(ps)(1.0) - ps) * cosp


@wp.func
def _ggx_sample(n: Any, wo: Any, u0: Any, u1: Any, u2: Any, ps: Any, alpha: Any):
    """One direction of the GGX material's mixture (``MaterialTable.sample``): with probability ``ps`` the
    mirror image of ``wo`` about a half vector drawn from ``D cos``, else cosine about ``n``."""
    if u2 >= ps:
        return _cosine(n, u0, u1)
    zero = ps * type(ps)(0.0)
    one = zero + type(ps)(1.0)
    t, b = _frame(n)
    a2 = alpha * alpha
    cos2 = (one - u0) / (one + (a2 - one) * u0)
    ct = wp.sqrt(wp.min(wp.max(cos2, zero), one))
    st = wp.sqrt(wp.min(wp.max(one - cos2, zero), one))
    phi = type(ps)(_TWO_PI) * u1
    h = (st * wp.cos(phi)) * t + (st * wp.sin(phi)) * b + ct * n
    return (type(ps)(2.0) * wp.dot(wo, h)) * h - wo


@wp.func
def _nee_add(ggx: bool, n: Any, l: Any, v: Any, a: Any, rough: Any, metal: Any, grads: bool, le: Any, k: Any,
             nee: Any, dnb: Any, dnr: Any, dnm: Any):
    """One light sample (radiance ``le``, geometry ``k``) added to a vertex's NEE sum and, when ``grads``, to its
    derivatives w.r.t. the albedo / base colour, roughness and metallic; returns the BRDF too:
    ``(f, nee, dnb, dnr, dnm)``."""
    zero = rough * type(rough)(0.0)
    ipi = zero + type(rough)(_INV_PI)
    f = a * ipi
    fb = wp.vector(ipi, ipi, ipi)
    fr = a * zero
    fm = fr
    if ggx:
        f, fb, fr, fm = _ggx(n, l, v, a, rough, metal, wp.where(grads, 1, 0))
    nee = nee + wp.cw_mul(f, le) * k
    if grads:
        dnb = dnb + wp.cw_mul(fb, le) * k
        dnr = dnr + wp.cw_mul(fr, le) * k
        dnm = dnm + wp.cw_mul(fm, le) * k
    return f, nee, dnb, dnr, dnm


@wp.func
def _env_uv(rot: wp.array2d(dtype=Any), d: Any):
    """``(u, v)`` of world direction ``d`` in the map (``_envmap._uv`` of ``d_map = d rot``)."""
    one = d[0] * type(d[0])(0.0) + type(d[0])(1.0)
    dm = wp.vector(d[0] * rot[0, 0] + d[1] * rot[1, 0] + d[2] * rot[2, 0],
                   d[0] * rot[0, 1] + d[1] * rot[1, 1] + d[2] * rot[2, 1],
                   d[0] * rot[0, 2] + d[1] * rot[1, 2] + d[2] * rot[2, 2])
    u = wp.atan2(dm[0], -dm[2]) / type(one)(_TWO_PI)
    return u - wp.floor(u), wp.acos(wp.min(wp.max(dm[1], -one), one)) / type(one)(3.141592653589793)


@wp.func
def _env_lookup(tex: wp.array2d(dtype=Any), rot: wp.array2d(dtype=Any), h: int, w: int, d: Any):
    """Radiance of the environment map from world direction ``d`` and its 4 bilinear taps:
    ``(value, k00, k10, k01, k11, w00, w10, w01, w11)`` (``lumigrad.render._envmap.EnvMap.eval``: Mitsuba's
    lookup, column ``u W - 0.5`` periodic, row ``v (H - 1)`` clamped; ``d_map = d rot``)."""
    one = d[0] * type(d[0])(0.0) + type(d[0])(1.0)
    u, v = _env_uv(rot, d)
    pu = u * type(one)(w) - type(one)(0.5)
    x0f = wp.floor(pu)
    fx = pu - x0f
    x0 = int(x0f) % w
    if x0 < 0:
        x0 = x0 + w
    x1 = (x0 + 1) % w
    pv = wp.min(wp.max(v * type(one)(h - 1), one * type(one)(0.0)), type(one)(h - 1))
    y0f = wp.min(wp.floor(pv), type(one)(h - 2))
    fy = pv - y0f
    y0 = int(y0f)
    k00 = y0 * w + x0
    k10 = (y0 + 1) * w + x0
    k01 = y0 * w + x1
    k11 = (y0 + 1) * w + x1
    w00 = (one - fx) * (one - fy)
    w10 = (one - fx) * fy
    w01 = fx * (one - fy)
    w11 = fx * fy
    val = w00 * _v3(tex, k00, 0) + w10 * _v3(tex, k10, 0) + w01 * _v3(tex, k01, 0) + w11 * _v3(tex, k11, 0)
    return val, k00, k10, k01, k11, w00, w10, w01, w11


@wp.func
def _env_grad(g_env: wp.array2d(dtype=Any), row: int, k00: int, k10: int, k01: int, k11: int, w00: Any, w10: Any,
              w01: Any, w11: Any, gv: Any):
    """Adds ``gv`` (d loss / d looked-up radiance) to the 4 taps' texel gradients (``atomic_add``: one row per CPU
    task, where a task runs serially, and one shared row on CUDA)."""
    for c in range(3):
        wp.atomic_add(g_env, row, 3 * k00 + c, w00 * gv[c])
        wp.atomic_add(g_env, row, 3 * k10 + c, w10 * gv[c])
        wp.atomic_add(g_env, row, 3 * k01 + c, w01 * gv[c])
        wp.atomic_add(g_env, row, 3 * k11 + c, w11 * gv[c])


@wp.func
def _env_pdf(prob: wp.array(dtype=Any), rot: wp.array2d(dtype=Any), h: int, w: int, d: Any):
    """Solid-angle density of :func:`_env_sample` at world direction ``d`` (``EnvMap.pdf``)."""
    one = d[0] * type(d[0])(0.0) + type(d[0])(1.0)
    u, v = _env_uv(rot, d)
    j = wp.min(wp.max(int(u * type(one)(w)), 0), w - 1)
    i = wp.min(wp.max(int(v * type(one)(h)), 0), h - 1)
    s = wp.max(wp.sin(type(one)(3.141592653589793) * v), type(one)(1.0e-12))
    return prob[i * w + j] * type(one)(h * w) / (type(one)(2.0 * 3.141592653589793 * 3.141592653589793) * s)


@wp.func
def _env_sample(cdf: wp.array(dtype=Any), prob: wp.array(dtype=Any), rot: wp.array2d(dtype=Any), h: int, w: int,
                u0: Any, u1: Any, u2: Any):
    """``(d, pdf)``: a cell by the luminance CDF, uniform inside it (``EnvMap.sample``), rotated to the world."""
    cell = _pick(cdf, 0, h * w, u0)
    u = (type(u0)(cell % w) + u1) / type(u0)(w)
    v = (type(u0)(cell // w) + u2) / type(u0)(h)
    th = type(u0)(3.141592653589793) * v
    ph = type(u0)(_TWO_PI) * u
    st = wp.sin(th)
    dm = wp.vector(st * wp.sin(ph), wp.cos(th), -st * wp.cos(ph))
    d = wp.vector(rot[0, 0] * dm[0] + rot[0, 1] * dm[1] + rot[0, 2] * dm[2],
                  rot[1, 0] * dm[0] + rot[1, 1] * dm[1] + rot[1, 2] * dm[2],
                  rot[2, 0] * dm[0] + rot[2, 1] * dm[1] + rot[2, 2] * dm[2])
    s = wp.max(st, type(u0)(1.0e-12))
    pdf = prob[cell] * type(u0)(h * w) / (type(u0)(2.0 * 3.141592653589793 * 3.141592653589793) * s)
    return d, pdf


@wp.func
def _camera_ray(cam: wp.array2d(dtype=Any), offsets: wp.array2d(dtype=Any), mode: int, w: int, hw: int, spp: int,
                r: int, pseed: int):
    """``(o, d)`` of camera sample ``r`` as :func:`lumigrad.render.path._chunk_rays` (and ``_camera_rays``); with
    ``pseed >= 0`` its sub-pixel offset is dimension pair 0 of the Sobol sampler keyed by ``(pseed, pixel)``."""
    p = r // spp
    view = p // hw
    q = p - view * hw
    row = view * spp + (r - p * spp)
    du = offsets[row, 0]
    dv = offsets[row, 1]
    if pseed >= 0:
        qv = qmc2(qmc_key(pseed, p), r - p * spp, qmc_bits(spp), 0)
        du = type(du)(qv[0])
        dv = type(du)(qv[1])
    u = type(cam[0, 0])(q % w) + du
    v = type(cam[0, 0])(q // w) + dv
    y = (v - cam[view, 16]) / cam[view, 15]
    x = (u - cam[view, 14] - cam[view, 13] * y) / cam[view, 12]
    r0 = _v3(cam, view, 0)
    r1 = _v3(cam, view, 3)
    r2 = _v3(cam, view, 6)
    t = _v3(cam, view, 9)
    zero = x * type(x)(0.0)
    if mode == 2:
        o = t + wp.vector(r0[0] * x + r0[1] * y, r1[0] * x + r1[1] * y, r2[0] * x + r2[1] * y)
        return o, wp.vector(r0[2], r1[2], r2[2])
    one = zero + type(x)(1.0)
    d = wp.vector(wp.dot(r0, wp.vector(x, y, one)), wp.dot(r1, wp.vector(x, y, one)), wp.dot(r2, wp.vector(x, y, one)))
    return t, wp.normalize(d)


@wp.func
def _add(g: wp.array2d(dtype=Any), row: int, col: int, v: Any):
    g[row, col] = g[row, col] + v


@wp.func
def _add3(g: wp.array2d(dtype=Any), row: int, col: int, v: Any):
    _add(g, row, col, v[0])
    _add(g, row, col + 1, v[1])
    _add(g, row, col + 2, v[2])


@wp.func
def _cf(g: wp.array2d(dtype=Any), row: int, zs: wp.vec3i, v: Any):
    """A term's gradient w.r.t. the first zero reflectance factor of each channel (``zs``: its shape, or -1)."""
    for c in range(3):
        if zs[c] >= 0:
            _add(g, row, 3 * zs[c] + c, v[c])


@wp.func
def _sky_eval(sky: wp.array2d(dtype=Any), norm: wp.array(dtype=Any), order: int, d: Any, grads: bool,
              g_sky: wp.array2d(dtype=Any), row: int, gv: Any):
    """Radiance ``sum_k sky[k] Y_k(d)`` of the ambient / SH environment at unit ``d`` and, when ``grads``, ``gv Y_k``
    added to ``g_sky[row, 3 k ..]``. ``Y_k`` is :func:`lumigrad.scene.lights._sh_basis`'s (index ``l l + l + m``,
    ``norm[k]`` its constant, times sqrt 2 for ``m != 0``): ``N Q_l^|m|(z) {Re, Im}((x + i y)^|m|)``, with ``Q`` by
    the same recurrences; an ambient colour is ``sky[0]`` (``Y_0 = norm[0]``)."""
    x = d[0]
    y = d[1]
    z = d[2]
    zero = x * type(x)(0.0)
    one = zero + type(x)(1.0)
    val = d * zero
    re = one
    im = zero
    qmm = one
    for m in range(order + 1):
        if m > 0:  # (x + i y)^m and Q_m^m = (2 m - 1)!!
            ren = re * x - im * y
            im = re * y + im * x
            re = ren
            qmm = qmm * type(x)(2 * m - 1)
        q0 = zero  # Q_{l-2}^m
        q1 = zero  # Q_{l-1}^m
        q = qmm
        for l in range(m, order + 1):
            if l == m + 1:
                q = type(x)(2 * m + 1) * z * qmm
            elif l > m + 1:
                q = (type(x)(2 * l - 1) * z * q1 - type(x)(l + m - 1) * q0) / type(x)(l - m)
            c = l * l + l
            if m == 0:
                yv = norm[c] * q
                val = val + yv * _v3(sky, c, 0)
                if grads:
                    _add3(g_sky, row, 3 * c, gv * yv)
            else:
                yp = norm[c + m] * q * re
                ym = norm[c - m] * q * im
                val = val + yp * _v3(sky, c + m, 0) + ym * _v3(sky, c - m, 0)
                if grads:
                    _add3(g_sky, row, 3 * (c + m), gv * yp)
                    _add3(g_sky, row, 3 * (c - m), gv * ym)
            q0 = q1
            q1 = q
    return val


def _make_trace_kernel(replay: bool, full: bool, tex: bool = False, sky: bool = False):
    """The path kernel with (``replay``: ``npass = 2`` launches) or without (``npass = 1``) the replay's gradient
    code, and with (``full``) or without the code of environment maps, GGX surfaces and point / directional
    lights (``has_env``, ``kind == GGX`` and ``nl`` then count as 0 / False). What is compiled out frees
    registers and stack spills in the hot loop; see :func:`path_kernel` for the figures. With ``tex`` the
    colour / roughness / metallic of shapes with a texture slot are looked up at each hit's UV
    (:mod:`lumigrad.ops._path_tex_funcs`), the meshes' tint (vertex colours times their own texture) multiplies
    the BRDF, and the gradients go to the texels and vertex colours; without it those arguments are unused."""

    def trace_paths_kernel(
        offset: int,
        nodes: wp.array(dtype=wp.vec3),  # the BVH (lumigrad.ops._bvh.BVHData.args)
        kids: wp.array(dtype=wp.vec2i),
        tris: wp.array(dtype=wp.vec3),
        tface: wp.array(dtype=wp.int32),
        corners: wp.array2d(dtype=Any),  # [V, 6] vertex position | unit vertex normal
        faces: wp.array2d(dtype=wp.int32),  # [F, 3]
        owner: wp.array(dtype=wp.int32),  # [F] shape of each face
        kind: wp.array(dtype=wp.int32),  # [S] MIRROR, GGX or Lambert
        refl: wp.array2d(dtype=Any),  # [S, 3] Lambert albedo / mirror reflectance / GGX base colour
        rough: wp.array(dtype=Any),  # [S] GGX roughness (0 elsewhere)
        metal: wp.array(dtype=Any),  # [S] GGX metallic
        sprob: wp.array(dtype=Any),  # [S] GGX: probability of sampling the specular lobe (a constant)
        salpha: wp.array(dtype=Any),  # [S] GGX: alpha of that lobe's sampling (a constant)
        emis: wp.array2d(dtype=Any),  # [S, 3] emitted radiance (0 for non-emitters)
        is_em: wp.array(dtype=wp.int32),  # [S]
        em_area: wp.array(dtype=Any),  # [S] total area (emitters)
        ne: int,
        em_shape: wp.array(dtype=wp.int32),  # [ne] shape of each emitter
        em_start: wp.array(dtype=wp.int32),  # [ne + 1] emitter e's triangles: em_face[em_start[e] : em_start[e + 1]]
        em_face: wp.array(dtype=wp.int32),  # [T] merged face ids
        em_cdf: wp.array(dtype=Any),  # [T] per-emitter cumulative area fractions (last = 1)
        nl: int,
        lkind: wp.array(dtype=wp.int32),  # [nl] 0 point, 1 directional
        lvec: wp.array2d(dtype=Any),  # [nl, 3] position / unit direction towards the light
        lscale: wp.array2d(dtype=Any),  # [nl, 3] colour * intensity
        lfall: wp.array2d(dtype=Any),  # [nl, 3] attenuation constants
        has_env: int,  # 1: an environment map (below) lights the scene and is seen by rays that escape
        env_tex: wp.array2d(dtype=Any),  # [H * W, 3] its radiance (scale applied)
        env_prob: wp.array(dtype=Any),  # [H * W] cell probabilities of its sampler
        env_cdf: wp.array(dtype=Any),  # [H * W] their running sum (last = 1)
        env_rot: wp.array2d(dtype=Any),  # [3, 3] d_map = d_world rot
        env_h: int,
        env_w: int,
        sky_k: wp.array2d(dtype=Any),  # [K, 3] ambient / SH radiance coefficients (sky variant; escaping BSDF rays)
        sky_norm: wp.array(dtype=Any),  # [K] constants of the SH basis (_sky_eval)
        sky_order: int,  # K = (sky_order + 1)^2
        tex_slot: wp.array2d(dtype=wp.int32),  # [S, 4] texture of each shape's colour / roughness / metallic / tint
        vcol: wp.array2d(dtype=Any),  # [V, 3] vertex colours (tint; ones for shapes without) when has_vc
        has_vc: int,
        tex_meta: wp.array2d(dtype=wp.int32),  # [T, 6] offset, H, W, C, boundary, nearest (_path_tex_funcs)
        texels: wp.array(dtype=Any),  # [N] all textures' texels
        uvs: wp.array2d(dtype=Any),  # [U, 2] texture coordinates
        faces_uv: wp.array2d(dtype=wp.int32),  # [F, 3] rows of uvs at each face's corners
        org: wp.array2d(dtype=Any),  # [R, 3] camera rays (cam_mode = 0)
        dirs: wp.array2d(dtype=Any),  # [R, 3] unit
        cam_mode: int,  # 0: rays given; 1: pinhole, 2: orthographic camera rays of samples first + i
        cam: wp.array2d(dtype=Any),  # [B, 18] camera to world rotation (row-major) | its translation | K (6 entries)
        offsets: wp.array2d(dtype=Any),  # [B * spp, 2] sub-pixel position of sample s of view b at row b * spp + s
        cam_w: int,
        cam_hw: int,  # width * height
        spp: int,
        first: int,  # index of sample 0 of this launch
        given: int,  # 1: face_in holds the camera rays' closest hits
        face_in: wp.array(dtype=wp.int32),  # [R] (-1: miss) when given
        bg: wp.array2d(dtype=Any),  # [1, 3] radiance of camera rays that miss
        eps64: wp.float64,  # ray offset (absolute)
        tiny64: wp.float64,  # determinant guard of ray_triangle
        ntiny64: wp.float64,  # squared-norm guard of safe_normalize
        shadows: int,
        max_bounces: int,
        rr_depth: int,
        mis: int,
        trace_last: int,  # 1: the last vertex's BSDF ray is traced (emitters may be found)
        seed: int,
        pseed: int,  # >= 0: camera rays through each pixel's own Sobol offsets (keyed with this seed), not `offsets`
        qseed: int,  # >= 0: the Sobol sampler's seed (lumigrad.ops._qmc_funcs); -1: independent numbers from seed
        npass: int,  # 1: forward; 2: replay (gradients)
        grad: wp.array2d(dtype=Any),  # d loss / d L (npass = 2): row (first + i) // gdiv - gbase, times gscale
        gdiv: int,
        gbase: int,
        gscale64: wp.float64,
        need: int,  # bit 0: g_refl, 1: g_emis, 2: g_ls, 3: g_rm, 4: g_env; tex variant: 5 tint texels, 6 g_vc; 7: g_sky
        l_known: int,  # 1: l_fwd holds each path's radiance (from the forward pass): the replay skips its pass 0
        l_fwd: wp.array2d(dtype=Any),  # [R, 3] when l_known
        blk: int,  # gradient row of thread i: i // blk
        out_l: wp.array2d(dtype=Any),  # [R, 3] radiance (npass = 1)
        out_hit: wp.array(dtype=wp.int32),  # [R] 1 when the camera ray hits (npass = 1)
        g_refl: wp.array2d(dtype=Any),  # [rows, 3 S]
        g_emis: wp.array2d(dtype=Any),  # [rows, 3 S]
        g_ls: wp.array2d(dtype=Any),  # [rows, 3 nl]
        g_rm: wp.array2d(dtype=Any),  # [rows, 2 S]: roughness at 2 s, metallic at 2 s + 1
        g_env: wp.array2d(dtype=Any),  # [erows, 3 H W] environment texels' gradients (need bit 4), row i // eblk
        g_tex: wp.array2d(dtype=Any),  # [erows, N] texture texels' gradients (with bits 0 / 3 / 5), row i // eblk
        g_vc: wp.array2d(dtype=Any),  # [erows, 3 V] vertex colours' gradients (bit 5), row i // eblk
        g_sky: wp.array2d(dtype=Any),  # [rows, 3 K] ambient / SH coefficients' gradients (bit 7); npass = 1 with
        # bit 7: [R, 3 K] (blk = 1) each sample's dL / dsky (tp Y_k of its escaping ray), for a backward without replay
        eblk: int,
    ):
        i = wp.tid() + offset
        env_on = wp.static(full) and has_env != 0
        n_lights = nl
        if wp.static(not full):
            n_lights = 0
        zero = refl.dtype(0.0)
        one = refl.dtype(1.0)
        ipi = refl.dtype(_INV_PI)
        eps = refl.dtype(eps64)
        tiny = refl.dtype(tiny64)
        ntiny = refl.dtype(ntiny64)
        row = i // blk
        trow = i // eblk
        o0 = zero * _v3(bg, 0, 0)
        d0 = o0
        if cam_mode == 0:
            o0 = _v3(org, i, 0)
            d0 = _v3(dirs, i, 0)
        else:
            o0, d0 = _camera_ray(cam, offsets, cam_mode, cam_w, cam_hw, spp, first + i, pseed)
        f0 = int(-1)
        if given != 0:
            f0 = face_in[i]
        else:
            fq, tq = bvh_closest(nodes, kids, tris, tface, _f32(o0), _f32(d0), 3.0e38)
            f0 = fq
        vzero = o0 * zero
        vone = vzero + wp.vector(one, one, one)
        g = vzero
        if npass == 2:
            g = _v3(grad, (first + i) // gdiv - gbase, 0) * refl.dtype(gscale64)
        ltot = vzero
        passes = npass
        pass0 = 0
        if npass == 2 and need & 105 == 0:
            pass0 = 1  # emission and light gradients need no radiance from pass 0: their terms are added directly
        if npass == 2 and l_known != 0:
            pass0 = 1
            ltot = _v3(l_fwd, i, 0)
        if f0 < 0:
            ltot = _v3(bg, 0, 0)
            if env_on:
                ev, k00, k10, k01, k11, w00, w10, w01, w11 = _env_lookup(env_tex, env_rot, env_h, env_w, d0)
                ltot = ev
                if npass == 2 and need & 16 != 0:
                    _env_grad(g_env, i // eblk, k00, k10, k01, k11, w00, w10, w01, w11, g)
            passes = 0  # nothing to trace
        for ps in range(pass0, passes):
            adj = wp.static(replay) and ps == 1  # a constant False in the forward kernel
            rng = wp.rand_init(seed, i)
            qmc = bool(False)
            qkey = qmc_key(qseed, (first + i) // spp)
            qs = (first + i) % spp
            qm = qmc_bits(spp)
            # Dimension pairs of bounce k: 1 + k qstride + (one per emitter, two for the map, one for the sky,
            # then the BSDF's direction and its (lobe, roulette)), fixed, so a pixel's samples stay stratified.
            qnl = ne + wp.where(env_on, 2, 0)
            if wp.static(sky):
                qnl = qnl + 1
            qstride = qnl + 2
            lsum = vzero
            lrem = ltot  # replay: the radiance of the path not yet accounted for
            tp = vone  # throughput
            zs = wp.vec3i(-1, -1, -1)  # per channel: shape of the first zero reflectance factor, or -1
            tz = vzero  # per channel: throughput without that factor
            p, ns, ng = _attrs(corners, faces, f0, o0, d0, tiny, ntiny)
            if wp.static(tex):
                hu, hv, tnt, hb1, hb2 = _hit_tex(corners, faces, faces_uv, uvs, vcol, has_vc, texels, tex_meta,
                                                 tex_slot, owner[f0], f0, o0, d0, tiny)  # the hit's UV, tint, bary
                hf = f0
                # Per channel, the first zero factor's hit (UV, face, barycentrics) and the coefficients of the
                # albedo's and the tint's gradients in d/dF (the rest of the factor): its record.
                zu = vzero
                zv = vzero
                zf = wp.vec3i(0, 0, 0)
                zb1 = vzero
                zb2 = vzero
                zka = vzero
                zkt = vzero
            wo = wp.normalize(-d0)
            s = owner[f0]
            if is_em[s] != 0 and wp.dot(ng, wo) > zero:
                le = _v3(emis, s, 0)
                lsum = lsum + le
                if adj:
                    lrem = lrem - le
                    if need & 2 != 0:
                        _add3(g_emis, row, 3 * s, g)
            for depth in range(max_bounces):
                last = depth + 1 == max_bounces
                qd = 1 + depth * qstride
                qmc = qseed >= 0 and depth < QMC_BOUNCES
                a = _v3(refl, s, 0)
                mirror = kind[s] == MIRROR
                ggx = wp.static(full) and kind[s] == GGX
                rs = zero
                ms = zero
                pspec = zero
                al = one
                if ggx:
                    rs = rough[s]
                    ms = metal[s]
                    pspec = sprob[s]
                    al = salpha[s]
                if wp.static(tex):
                    if tex_slot[s, 0] >= 0:
                        a = _tex_color(texels, tex_meta, tex_slot[s, 0], hu, hv)
                    if ggx and tex_slot[s, 1] >= 0:
                        rs = _tex_scalar(texels, tex_meta, tex_slot[s, 1], hu, hv)
                    if ggx and tex_slot[s, 2] >= 0:
                        ms = _tex_scalar(texels, tex_meta, tex_slot[s, 2], hu, hv)
                want = adj and need & 9 != 0
                if not mirror:
                    nee = vzero  # sum over light samples of BRDF * radiance * geometry
                    dnb = vzero  # its derivative w.r.t. the albedo / base colour (per channel)
                    dnr = vzero  # ... w.r.t. roughness, per channel (GGX)
                    dnm = vzero  # ... w.r.t. metallic, per channel (GGX)
                    for j in range(n_lights):
                        l, atten, dv, dsq, r, den = _light_at(lkind[j], _v3(lvec, j, 0), _v3(lfall, j, 0), p)
                        c = wp.dot(ns, l)
                        if c > zero:
                            dist = refl.dtype(1.0e30)
                            if lkind[j] == 0:
                                dist = wp.sqrt(dsq)
                            k = atten * c * _visible(nodes, kids, tris, p, ng, l, dist, eps, shadows)
                            fl, nee, dnb, dnr, dnm = _nee_add(ggx, ns, l, wo, a, rs, ms, want, _v3(lscale, j, 0), k,
                                                              nee, dnb, dnr, dnm)
                            if wp.static(tex):
                                fl = wp.cw_mul(fl, tnt)
                            if adj and need & 4 != 0:
                                _add3(g_ls, row, 3 * j, wp.cw_mul(g, wp.cw_mul(tp, fl)) * k)
                    for e in range(ne):
                        u0 = refl.dtype(wp.randf(rng))
                        u1 = refl.dtype(wp.randf(rng))
                        u2 = refl.dtype(wp.randf(rng))
                        if qmc:
                            qv = qmc2(qkey, qs, qm, qd + e)
                            u0 = refl.dtype(qv[0])
                            u2 = refl.dtype(qv[1])
                        se = em_shape[e]
                        area = em_area[se]
                        kf = _pick(em_cdf, em_start[e], em_start[e + 1], u0)
                        ef = em_face[kf]
                        if qmc:  # the triangle's share of u0, rescaled: one pair stratifies the whole emitter
                            clo = zero
                            if kf > em_start[e]:
                                clo = em_cdf[kf - 1]
                            u1 = wp.min(wp.max((u0 - clo) / wp.max(em_cdf[kf] - clo, refl.dtype(1.0e-30)), zero),
                                        refl.dtype(0.99999994))
                        q0 = _v3(corners, faces[ef, 0], 0)
                        q1 = _v3(corners, faces[ef, 1], 0)
                        q2 = _v3(corners, faces[ef, 2], 0)
                        su = wp.sqrt(u1)
                        y = (one - su) * q0 + (su * (one - u2)) * q1 + (su * u2) * q2
                        ny, rny = _unit(wp.cross(q1 - q0, q2 - q0), ntiny)
                        dv = y - p
                        dist2 = wp.max(wp.dot(dv, dv), refl.dtype(1.0e-12))
                        dist = wp.sqrt(dist2)
                        l = dv / dist
                        cos_y = -wp.dot(l, ny)
                        c = wp.dot(ns, l)
                        if area > zero and cos_y > zero and c > zero:
                            k = cos_y * area / dist2 * c * _visible(nodes, kids, tris, p, ng, l, dist, eps, shadows)
                            if mis != 0 and k > zero:
                                bp = c * ipi
                                if ggx:
                                    bp = _ggx_pdf(ns, wo, l, pspec, al)
                                k = k * _power(dist2 / (cos_y * area), bp)
                            fl, nee, dnb, dnr, dnm = _nee_add(ggx, ns, l, wo, a, rs, ms, want, _v3(emis, se, 0), k, nee,
                                                              dnb, dnr, dnm)
                            if wp.static(tex):
                                fl = wp.cw_mul(fl, tnt)
                            if adj and need & 2 != 0:
                                _add3(g_emis, row, 3 * se, wp.cw_mul(g, wp.cw_mul(tp, fl)) * k)
                    if env_on:
                        u0 = refl.dtype(wp.randf(rng))
                        u1 = refl.dtype(wp.randf(rng))
                        u2 = refl.dtype(wp.randf(rng))
                        if qmc:
                            qv = qmc2(qkey, qs, qm, qd + ne)
                            qw = qmc2(qkey, qs, qm, qd + ne + 1)
                            u0 = refl.dtype(qv[0])
                            u1 = refl.dtype(qv[1])
                            u2 = refl.dtype(qw[0])
                        l, pe = _env_sample(env_cdf, env_prob, env_rot, env_h, env_w, u0, u1, u2)
                        c = wp.dot(ns, l)
                        if c > zero and pe > zero:
                            k = c / pe * _visible(nodes, kids, tris, p, ng, l, refl.dtype(1.0e30), eps, shadows)
                            if mis != 0 and k > zero:
                                bp = c * ipi
                                if ggx:
                                    bp = _ggx_pdf(ns, wo, l, pspec, al)
                                k = k * _power(pe, bp)
                            if k > zero:
                                ev, k00, k10, k01, k11, w00, w10, w01, w11 = _env_lookup(env_tex, env_rot, env_h,
                                                                                         env_w, l)
                                fl, nee, dnb, dnr, dnm = _nee_add(ggx, ns, l, wo, a, rs, ms, want, ev, k, nee, dnb, dnr,
                                                                  dnm)
                                if wp.static(tex):
                                    fl = wp.cw_mul(fl, tnt)
                                if adj and need & 16 != 0:
                                    _env_grad(g_env, i // eblk, k00, k10, k01, k11, w00, w10, w01, w11,
                                              wp.cw_mul(g, wp.cw_mul(tp, fl)) * k)
                    if wp.static(sky):  # one cosine light sample of the ambient / SH sky (path._sky_sample)
                        u0 = refl.dtype(wp.randf(rng))
                        u1 = refl.dtype(wp.randf(rng))
                        if qmc:
                            qv = qmc2(qkey, qs, qm, qd + qnl - 1)
                            u0 = refl.dtype(qv[0])
                            u1 = refl.dtype(qv[1])
                        l = _cosine(ns, u0, u1)
                        c = wp.dot(ns, l)
                        if c > zero:
                            pl = c * ipi
                            k = c / pl * _visible(nodes, kids, tris, p, ng, l, refl.dtype(1.0e30), eps, shadows)
                            if mis != 0 and k > zero:
                                bp = pl
                                if ggx:
                                    bp = _ggx_pdf(ns, wo, l, pspec, al)
                                k = k * _power(pl, bp)
                            if k > zero:
                                sv = _sky_eval(sky_k, sky_norm, sky_order, l, False, g_sky, row, vzero)
                                fl, nee, dnb, dnr, dnm = _nee_add(ggx, ns, l, wo, a, rs, ms, want, sv, k, nee, dnb, dnr,
                                                                  dnm)
                                if wp.static(tex):
                                    fl = wp.cw_mul(fl, tnt)
                                # Its share of d L / d sky: g tp f k Y (replay), or tp f k Y kept by the forward.
                                if (adj and need & 128 != 0) or (wp.static(not replay) and need & 128 != 0):
                                    gv = wp.cw_mul(tp, fl) * k
                                    if adj:
                                        gv = wp.cw_mul(g, gv)
                                    _sky_eval(sky_k, sky_norm, sky_order, l, True, g_sky, row, gv)
                    if wp.static(tex):  # the tint multiplies the BRDF, hence the sum and its derivatives
                        nee_u = nee
                        nee = wp.cw_mul(tnt, nee)
                        dnb = wp.cw_mul(tnt, dnb)
                        dnr = wp.cw_mul(tnt, dnr)
                        dnm = wp.cw_mul(tnt, dnm)
                    term = wp.cw_mul(tp, nee)
                    lsum = lsum + term
                    if adj:
                        lrem = lrem - term
                        if wp.static(tex):
                            if need & 1 != 0:
                                _g_color(g_refl, row, s, g_tex, trow, tex_slot, tex_meta, hu, hv,
                                         wp.cw_mul(g, wp.cw_mul(tp, dnb)))
                            if need & 96 != 0:
                                _g_tint(g_vc, g_tex, trow, vcol, has_vc, texels, tex_meta, tex_slot, faces, need, s, hf, hb1,
                                        hb2, hu, hv, wp.cw_mul(g, wp.cw_mul(tp, nee_u)))
                            if need & 97 != 0:
                                _cf_tex(g_refl, g_vc, row, zs, zu, zv, zf, zb1, zb2, zka, zkt, g_tex, trow, vcol, has_vc,
                                        texels, tex_meta, tex_slot, faces, need, wp.cw_mul(g, wp.cw_mul(tz, nee)))
                        elif need & 1 != 0:
                            _add3(g_refl, row, 3 * s, wp.cw_mul(g, wp.cw_mul(tp, dnb)))
                            _cf(g_refl, row, zs, wp.cw_mul(g, wp.cw_mul(tz, nee)))
                        if ggx and need & 8 != 0:
                            gt = wp.cw_mul(g, tp)
                            if wp.static(tex):
                                _g_scalar(g_rm, row, s, 0, g_tex, trow, tex_slot, tex_meta, hu, hv, wp.dot(gt, dnr))
                                _g_scalar(g_rm, row, s, 1, g_tex, trow, tex_slot, tex_meta, hu, hv, wp.dot(gt, dnm))
                            else:
                                _add(g_rm, row, 2 * s, wp.dot(gt, dnr))
                                _add(g_rm, row, 2 * s + 1, wp.dot(gt, dnm))
                if last and trace_last == 0:
                    break
                # One BSDF sample and its weight f cos / pdf (Lambert: the albedo; mirror: the reflectance).
                u1 = refl.dtype(wp.randf(rng))
                u2 = refl.dtype(wp.randf(rng))
                qr = wp.vec2(0.0, 0.0)  # (GGX lobe, roulette) of the Sobol sampler, drawn only where used
                if qmc:
                    qv = qmc2(qkey, qs, qm, qd + qnl)
                    u1 = refl.dtype(qv[0])
                    u2 = refl.dtype(qv[1])
                    if ggx or (depth + 1 >= rr_depth and not last):
                        qr = qmc2(qkey, qs, qm, qd + qnl + 1)
                wi = vzero
                pdf = one
                bw = a
                fw = vzero
                fwb = vzero
                fwr = vzero
                fwm = vzero
                if mirror:
                    wi = (refl.dtype(2.0) * wp.dot(ns, wo)) * ns - wo
                elif ggx:
                    u3 = refl.dtype(wp.randf(rng))
                    if qmc:
                        u3 = refl.dtype(qr[0])
                    wi = _ggx_sample(ns, wo, u1, u2, u3, pspec, al)
                    pdf = _ggx_pdf(ns, wo, wi, pspec, al)
                    cw = wp.dot(ns, wi)
                    if pdf <= zero or cw <= zero:
                        break  # zero weight: nothing more from this path
                    fw, fwb, fwr, fwm = _ggx(ns, wi, wo, a, rs, ms, wp.where(want, 1, 0))
                    bw = fw * (cw / pdf)
                else:
                    wi = _cosine(ns, u1, u2)
                    pdf = wp.max(wp.dot(ns, wi), zero) * ipi
                    if pdf <= zero:
                        break  # zero weight: nothing more from this path
                if wp.static(tex):
                    bwu = bw  # the weight without the tint
                    bw = wp.cw_mul(bw, tnt)
                q = one
                keep = True
                if depth + 1 >= rr_depth and not last:
                    tn = wp.cw_mul(tp, bw)
                    q = wp.min(wp.max(wp.max(tn[0], wp.max(tn[1], tn[2])), refl.dtype(0.05)), refl.dtype(0.95))
                    ur = refl.dtype(wp.randf(rng))
                    if qmc:
                        ur = refl.dtype(qr[1])
                    keep = ur < q
                if wp.static(tex):
                    if adj and need & 105 != 0:
                        # Everything after this vertex carries its factor F = u t / q (u: the albedo / reflectance, or
                        # GGX f cos / pdf; t: the tint): lrem / a and lrem / t are their shares; GGX parameters' share
                        # is lrem df / f. A zero F starts the channel's zero record (tz: the throughput without F).
                        if ggx and need & 9 != 0:
                            share = vzero
                            for ch in range(3):
                                if fw[ch] > zero:
                                    share[ch] = g[ch] * lrem[ch] / fw[ch]
                            if need & 1 != 0:
                                _g_color(g_refl, row, s, g_tex, trow, tex_slot, tex_meta, hu, hv, wp.cw_mul(share, fwb))
                            if need & 8 != 0:
                                _g_scalar(g_rm, row, s, 0, g_tex, trow, tex_slot, tex_meta, hu, hv, wp.dot(share, fwr))
                                _g_scalar(g_rm, row, s, 1, g_tex, trow, tex_slot, tex_meta, hu, hv, wp.dot(share, fwm))
                        gsh = vzero  # a's share (Lambert / mirror)
                        gts = vzero  # the tint's share
                        for ch in range(3):
                            if zs[ch] < 0:
                                if tnt[ch] != zero and (ggx or a[ch] != zero):
                                    if not ggx:
                                        gsh[ch] = g[ch] * lrem[ch] / a[ch]
                                    gts[ch] = g[ch] * lrem[ch] / tnt[ch]
                                else:
                                    zs[ch] = s
                                    tz[ch] = tp[ch] / q
                                    zu[ch] = hu
                                    zv[ch] = hv
                                    zf[ch] = hf
                                    zb1[ch] = hb1
                                    zb2[ch] = hb2
                                    zka[ch] = wp.where(ggx, zero, tnt[ch])
                                    zkt[ch] = bwu[ch]
                            else:
                                tz[ch] = tz[ch] * bw[ch] / q
                        if not ggx and need & 1 != 0:
                            _g_color(g_refl, row, s, g_tex, trow, tex_slot, tex_meta, hu, hv, gsh)
                        if need & 96 != 0:
                            _g_tint(g_vc, g_tex, trow, vcol, has_vc, texels, tex_meta, tex_slot, faces, need, s, hf, hb1, hb2,
                                    hu, hv, gts)
                elif adj and ggx and need & 9 != 0:
                    # Everything after this vertex carries f(wi) cos / pdf: d/dtheta of it is lrem df/dtheta / f.
                    share = vzero
                    for ch in range(3):
                        if fw[ch] > zero:
                            share[ch] = g[ch] * lrem[ch] / fw[ch]
                    if need & 1 != 0:
                        _add3(g_refl, row, 3 * s, wp.cw_mul(share, fwb))
                    if need & 8 != 0:
                        _add(g_rm, row, 2 * s, wp.dot(share, fwr))
                        _add(g_rm, row, 2 * s + 1, wp.dot(share, fwm))
                    for ch in range(3):
                        if zs[ch] >= 0:
                            tz[ch] = tz[ch] * bw[ch] / q
                elif adj and need & 1 != 0:
                    # Everything after this vertex carries the factor a / q: lrem / a is a's share, per channel.
                    for ch in range(3):
                        if zs[ch] < 0:
                            if a[ch] != zero:
                                _add(g_refl, row, 3 * s + ch, g[ch] * lrem[ch] / a[ch])
                            else:
                                zs[ch] = s
                                tz[ch] = tp[ch] / q
                        else:
                            tz[ch] = tz[ch] * a[ch] / q
                if not keep:
                    break
                tp = wp.cw_mul(tp, bw) / q
                side = one
                if wp.dot(ng, wi) < zero:
                    side = -one
                o = p + (side * eps) * ng
                f2, t2 = bvh_closest(nodes, kids, tris, tface, _f32(o), _f32(wi), 3.0e38)
                if f2 < 0:
                    if env_on:  # the environment seen by the BSDF ray, MIS-weighted against its light sampling
                        we = one
                        if not mirror:
                            we = zero
                            if mis != 0:
                                we = _power(pdf, _env_pdf(env_prob, env_rot, env_h, env_w, wi))
                        if we > zero:
                            ev, k00, k10, k01, k11, w00, w10, w01, w11 = _env_lookup(env_tex, env_rot, env_h, env_w, wi)
                            term = wp.cw_mul(tp, ev) * we
                            lsum = lsum + term
                            if adj:
                                lrem = lrem - term
                                if need & 16 != 0:
                                    _env_grad(g_env, i // eblk, k00, k10, k01, k11, w00, w10, w01, w11,
                                              wp.cw_mul(g, tp) * we)
                                if wp.static(tex):
                                    if need & 97 != 0:
                                        _cf_tex(g_refl, g_vc, row, zs, zu, zv, zf, zb1, zb2, zka, zkt, g_tex, trow, vcol,
                                                has_vc, texels, tex_meta, tex_slot, faces, need,
                                                wp.cw_mul(g, wp.cw_mul(tz, ev)) * we)
                                elif need & 1 != 0:
                                    _cf(g_refl, row, zs, wp.cw_mul(g, wp.cw_mul(tz, ev)) * we)
                    if wp.static(sky):  # the ambient / SH sky, MIS-weighted against its light sample (weight 1
                        ws = one  # after a mirror)
                        if not mirror:
                            ws = zero
                            if mis != 0:
                                ws = _power(pdf, wp.max(wp.dot(ns, wi), zero) * ipi)
                        if ws > zero:
                            gtp = wp.cw_mul(g, tp) * ws
                            moments = wp.static(not replay) and need & 128 != 0  # forward: dL / dsky of the sample
                            if moments:
                                gtp = tp * ws
                            sv = _sky_eval(sky_k, sky_norm, sky_order, wi, (adj and need & 128 != 0) or moments,
                                           g_sky, row, gtp)
                            term = wp.cw_mul(tp, sv) * ws
                            lsum = lsum + term
                            if adj:
                                lrem = lrem - term
                                if wp.static(tex):
                                    if need & 97 != 0:
                                        _cf_tex(g_refl, g_vc, row, zs, zu, zv, zf, zb1, zb2, zka, zkt, g_tex, trow,
                                                vcol, has_vc, texels, tex_meta, tex_slot, faces, need,
                                                wp.cw_mul(g, wp.cw_mul(tz, sv)) * ws)
                                elif need & 1 != 0:
                                    _cf(g_refl, row, zs, wp.cw_mul(g, wp.cw_mul(tz, sv)) * ws)
                    break
                p2, ns2, ng2 = _attrs(corners, faces, f2, o, wi, tiny, ntiny)
                if wp.static(tex):
                    hu, hv, tnt, hb1, hb2 = _hit_tex(corners, faces, faces_uv, uvs, vcol, has_vc, texels, tex_meta,
                                                     tex_slot, owner[f2], f2, o, wi, tiny)
                    hf = f2
                wo2 = wp.normalize(-wi)
                s2 = owner[f2]
                cy = wp.dot(ng2, wo2)
                if is_em[s2] != 0 and cy > zero:
                    w = one
                    if not mirror:
                        w = zero
                        if mis != 0:
                            w = one  # a zero-area emitter: no light sample competes (as the torch path)
                            if em_area[s2] > zero:
                                dp = p2 - o
                                w = _power(pdf, wp.dot(dp, dp) / (wp.max(cy, refl.dtype(1.0e-12)) * em_area[s2]))
                    le = _v3(emis, s2, 0)
                    term = wp.cw_mul(tp, le) * w
                    lsum = lsum + term
                    if adj:
                        lrem = lrem - term
                        if need & 2 != 0:
                            _add3(g_emis, row, 3 * s2, wp.cw_mul(g, tp) * w)
                        if wp.static(tex):
                            if need & 97 != 0:
                                _cf_tex(g_refl, g_vc, row, zs, zu, zv, zf, zb1, zb2, zka, zkt, g_tex, trow, vcol, has_vc,
                                        texels, tex_meta, tex_slot, faces, need, wp.cw_mul(g, wp.cw_mul(tz, le)) * w)
                        elif need & 1 != 0:
                            _cf(g_refl, row, zs, wp.cw_mul(g, wp.cw_mul(tz, le)) * w)
                if last:
                    break
                p = p2
                ns = ns2
                ng = ng2
                wo = wo2
                s = s2
            ltot = lsum
        if npass == 1:
            out_l[i, 0] = ltot[0]
            out_l[i, 1] = ltot[1]
            out_l[i, 2] = ltot[2]
            out_hit[i] = wp.where(f0 >= 0, 1, 0)
    # The textured variants compile in modules of their own: a kernel added to a module rebuilds all of it, and
    # untextured scenes should not pay for their compilation.
    module = (_REPLAY_MODULE if replay else __name__) + ("_tex" if tex else "") + ("_sky" if sky else "")
    if module == __name__:
        return wp.kernel(trace_paths_kernel)
    return wp.kernel(trace_paths_kernel, module=module)


# The replay kernels live in a module of their own, compiled with LLVM's default inlining thresholds instead of
# Warp's raised ones (its default cpu_compiler_flags): paired A/B, single thread, Cornell box replay 0.93x the
# time, same gradients bit for bit (the forward with those flags: 1.01x, so it keeps Warp's). Apart, the forward
# kernels no longer share helper functions (and LLVM's inlining decisions) with the replay's: forward 0.92x when
# both have been compiled, as in training. It also spares the forward a rebuild when a replay overload compiles.
_REPLAY_MODULE = __name__ + "_replay"
wp.set_module_options({**KERNEL_MODULE_OPTIONS, "cpu_compiler_flags": "-march=native"}, module=_REPLAY_MODULE)
wp.set_module_options(KERNEL_MODULE_OPTIONS, module=__name__ + "_tex")
wp.set_module_options({**KERNEL_MODULE_OPTIONS, "cpu_compiler_flags": "-march=native"}, module=_REPLAY_MODULE + "_tex")
for _m in (__name__ + "_sky", __name__ + "_tex_sky"):
    wp.set_module_options(KERNEL_MODULE_OPTIONS, module=_m)
for _m in (_REPLAY_MODULE + "_sky", _REPLAY_MODULE + "_tex_sky"):
    wp.set_module_options({**KERNEL_MODULE_OPTIONS, "cpu_compiler_flags": "-march=native"}, module=_m)
_KERNELS = {(replay, full, False, False): _make_trace_kernel(replay, full) for replay in (False, True)
            for full in (False, True)}
_KERNELS.update({(replay, True, tex, sky): _make_trace_kernel(replay, True, tex, sky) for replay in (False, True)
                 for tex, sky in ((True, False), (False, True), (True, True))})


def path_kernel(replay: bool, full: bool, tex: bool = False, sky: bool = False):
    """The kernel for ``npass = 2`` (``replay``) or 1 launches, with (``full``) or without the code of environment
    maps, GGX surfaces and point / directional lights (it must be ``full`` when the scene has any of them), and
    with (``tex``) or without texture lookups (the textured variants are always ``full``: one more variant each,
    compiled only for textured scenes, in modules of their own; on a fresh cache a textured scene's first render
    took ~2.5 s more to compile its forward than the lean variant, ~1 s more its replay, and untextured scenes
    compile as before).

    Each variant compiles only when first launched (the kernels are generic). Measured single-threaded on the
    Cornell box (64^2, 16 spp, 3 bounces, Lambert, one emitter; paired A/B rounds in one process, median ratio):
    the forward kernel without the replay code 0.89x the time of the one kernel before; without the environment /
    GGX / light code as well 0.94x (forward) and 0.92x (replay) the time of the full variants (each of the three
    alone: 0.97-1.0x; together they free enough registers to matter). The replay variants compile in a module of
    their own (see ``_REPLAY_MODULE``).

    With ``sky`` (always ``full``; textured or not): each vertex takes a cosine light sample of an ambient / SH
    environment (:func:`_sky_eval`) and BSDF rays that escape see it (MIS between the two), and the replay sends gradients to its SH rows (need bit 7). Scenes without one run the
    variants they ran before (the sky arguments unused): paired A/B against the kernels before the sky
    (``bench/path_kernel_ab.py``, 1 thread, 30 rounds, two runs): lean forward 1.002-1.003, replay 1.000-1.002; full
    1.001-1.006 / 0.997-1.003. The
    sky variants compile in modules of their own (``..._sky``), so adding them rebuilds nothing else.
    """
    return _KERNELS[(bool(replay), bool(full) or bool(tex) or bool(sky), bool(tex), bool(sky))]
