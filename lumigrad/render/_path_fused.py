"""The fused path tracer of :func:`lumigrad.render.path.render_trace` for scenes with fixed geometry.

Inverse rendering often fits only materials and lights to images of known geometry. Then
:func:`fused_path_ok` holds and every chunk of camera samples goes to one Warp kernel that traces whole
paths (:func:`lumigrad.ops.path_trace.trace_paths`: one thread per sample, all bounces, next-event
estimation with MIS and Russian roulette, the estimator of :func:`lumigrad.render.path._radiance`),
and its backward is path replay (:func:`lumigrad.ops.path_trace.replay_paths`), which re-generates
the chunk's camera rays and re-traces the same paths. With ``TraceSettings.replay`` nothing per sample
is kept between the passes (the replay runs each path twice: once for its radiance, once to spread
the gradients); without it each sample's radiance is kept (12 bytes in float32, against the torch
path's whole autograd graph) and the replay runs each path once. Gradients reach the shapes' albedo / mirror reflectance /
GGX base colour, roughness and metallic (rows or texels), meshes' own textures and vertex colours,
their emission, the lights' colour and intensity, and the ambient colours and SH coefficients; the boundary
(edge) term is skipped, as it is zero without geometric gradients.

Scope (else the torch path runs): Lambert, GGX and mirror materials, their albedo / base colour, roughness and
metallic constant or textured (:class:`lumigrad.scene.materials.TextureParam`), meshes' own ``texture`` /
``vert_colors``, emissive shapes, point / directional lights, an environment map, and ambient / SH lights when
``max_bounces > 1`` (with one bounce they are shaded analytically, as in ``render_mesh``: the torch path),
and no gradient or forward-mode tangent on vertices, camera or light positions / directions, and
no forward-mode tangent at all. The direct-lighting fast path (``path._fused_ok``) keeps priority.

Why: the torch path runs hundreds of small ops on ``[paths, 3]`` tensors per bounce and keeps (or, with
replay, rebuilds) their autograd graph; here a path lives in one thread's registers. Measured
(``bench/trace_gi.py --res 128 --spp 16 --reps 5 --general``: Cornell box, 3 bounces, float32, 2 threads
on a loaded 2-core machine, every configuration alternated in one process; CPU seconds, all threads):
forward 0.57 -> 0.26 s (torch path -> kernel), fwd+bwd 0.79 -> 0.52 s, fwd+bwd with replay
1.32 -> 0.69 s; Mitsuba 3 ``path`` 0.22 s and ``prb`` 0.65 s in the same run, so 1.2x Mitsuba's
forward and 1.05x ``prb`` with replay (0.8x without). In the kernel a path costs ~850 ns single-threaded
here, about what Mitsuba's SIMD-vectorised LLVM kernels spend per path; the issue's 0.5x target is not met.
GGX (added after the figures above): the BRDF, its sampling mixture (``MaterialTable.sample``: the
specular lobe with probability ``spec_prob``, its half vector from ``D cos`` with the sampling alpha) and
density, and the BRDF's derivatives w.r.t. base colour, roughness and metallic are written out in the
kernel; the replay's share of a GGX vertex's BSDF weight ``f cos / pdf`` is ``lrem * (df/dtheta) / f``
per channel (a channel with ``f = 0``, possible only with metallic 1 and a zero base channel, gets no
such share). Measured on ``lumigrad trace material``'s scene (64^2, 16 spp, 3 bounces, replay, fwd+bwd,
2 threads, alternating in one process): 0.16 s vs 0.46 s wall (0.30 vs 0.86 CPU s) for the torch path.
Environment maps (added after the figures above): lookup, density and sampler are
:class:`lumigrad.render._envmap.EnvMap`'s, written out in the kernel (the sampler's cell probabilities and
their running sum are constants of the render); camera and BSDF rays that escape see the map
(MIS-weighted as the torch path), and each non-mirror vertex takes one light sample from it. Texel
gradients go to the 4 bilinear taps of every lookup (one row per CPU task, atomics into one row on CUDA).
On an open scene under a 8 x 16 map (64^2, 16 spp, 3 bounces, replay, texel gradients, 2 threads): 0.057 s
vs 0.21 s wall for the torch path.
Later (``bench/trace_gi.py --res 128 --spp 16 --reps 5``, main before / after, 3 alternating runs each; CPU
seconds, medians): the forward kernel compiled without the replay's code, lean variants for scenes without
environment map, GGX or lights, and the replay kernels in a module of their own with LLVM's default inlining
(:func:`lumigrad.ops._path_kernels.path_kernel`): forward 0.28-0.29 -> 0.24 s, fwd+bwd 0.56-0.57 -> 0.49-0.50 s,
with replay 0.75-0.77 -> 0.67-0.68 s; Mitsuba ``path`` 0.22 s, ``prb`` 0.64-0.66 s in the same runs, so
1.08-1.09x Mitsuba's forward (was 1.31-1.34x) and 1.04-1.05x ``prb`` (was 1.15-1.19x). Where the time goes
(BVH queries ~60 % of the forward): :mod:`lumigrad.ops._path_kernels`.
Textures (added after the figures above): a textured parameter is looked up at each hit's UV as the torch path's
``_sample_texture`` does (bilinear or nearest at level 0, wrap / clamp / zero boundary), and a mesh's own texture
and vertex colours multiply the BRDF there (``_tint_at``), in a kernel variant of its own
(:func:`lumigrad.ops._path_kernels.path_kernel` with ``tex``), so untextured scenes run the code they ran before,
with the texture arguments unused. A/B of the untextured kernels against those before the textures, both loaded in
one process (``bench/path_kernel_ab.py``: Cornell box 64^2, 16 spp, 3 bounces, float32, 1 thread,
``time.thread_time``, 4 x 30 alternating launches): forward paired ratio 0.991-1.017, replay 1.008-1.018 (medians;
the minima equal), with a GGX floor (the full variant) 0.974 / 0.982, i.e. within the noise of the loaded machine,
at most ~1 %; whole renders against main in alternating processes agree as well (0.97-1.05). The texel gradients go
to the 4 taps of each lookup as the environment map's (one row per CPU task, atomics on CUDA), the tint's to the
mesh texture's taps and the hit triangle's vertex colours; a channel whose factor (albedo times tint, or GGX weight
times tint) is zero at a hit keeps that hit (UV, face, barycentrics) and both coefficients, so the terms after it
reach its texels and vertex colours. Measured (``bench/trace_gi_textures.py``: the Cornell box with a 256^2 albedo
texture on the floor and 256^2 base colour and roughness textures on a GGX back wall, 64^2, 16 spp, 3 bounces,
replay; CPU seconds, medians of 5, alternating in one process): 1 thread, forward 0.258 s torch path -> 0.085 s
kernel (3.0x), fwd+bwd w.r.t. the three textures 0.549 -> 0.270 s (2.0x); 2 threads 0.317 -> 0.094 s (3.4x) and
0.748 -> 0.315 s (2.4x). The kernel on the same scene with constant parameters: 0.071 / 0.230 s (1 thread), so the
lookups and texel gradients cost 1.2x. With vertex colours (with gradients) on the two blocks as well (``--tint``, 1
thread): forward 0.288 -> 0.091 s (3.2x), fwd+bwd 0.711 -> 0.316 s (2.25x).
Ambient and SH lights (added after the figures above; ``max_bounces > 1``): one set of real SH rows
(:func:`_sky_rows`: the SH lights padded to the highest order, ambient colours ``c`` as ``c sqrt(4 pi)`` in row 0)
that BSDF rays see when they escape, MIS-weighted against one cosine light sample per vertex, as
:func:`lumigrad.render.path._sky_radiance` and ``_sky_sample``; the basis is
evaluated in the kernel by the recurrences of :func:`lumigrad.scene.lights._sh_basis`, in kernel variants of their
own (``sky``), so other scenes run the code they ran before (``bench/path_kernel_ab.py`` against main, 1 thread,
30 alternating rounds: paired ratios forward 1.002-1.003, replay 1.000-1.002; full variant 1.001-1.006 /
0.997-1.003). The image is linear
in the SH rows: when they alone need a gradient (and ``TraceSettings.replay`` is off) the forward keeps each
pixel's ``d image / d rows`` (``3 K`` values) and the backward is a contraction, without path replay (the torch
path's graph is as cheap there: it holds only the terms that see the sky). Measured (``bench/trace_sky.py --reps 7
--replay``: the Cornell box without ceiling and light under an order-2 SH sky and an ambient light, 64^2, 16 spp,
3 bounces, float32, 2 threads, alternating in one process; CPU seconds, medians): forward 0.122 s torch path ->
0.056 s kernel (0.46x), fwd+bwd w.r.t. the SH coefficients and ambient colour 0.120 -> 0.062 s (0.52x), with replay
0.250 -> 0.121 s (0.48x); 1 thread: 0.093 -> 0.056 s (0.60x) and 0.101 -> 0.061 s (0.61x). Before, these scenes ran
the torch path only. The sky's light sample costs the kernel 1.45-1.49x the time of BSDF rays alone and gives 0.56x
the per-pixel variance (0.78-0.82x variance x time).
The camera rays' closest hits come from the kernel's own BVH query: on this scene it costs about
nothing next to the rest of a path, while the 16 raster passes of ``primary="raster"`` took 10-20 %
of the forward.
"""
from __future__ import annotations

import math

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from lumigrad.ops._common import first_order
from lumigrad.ops.path_trace import (GGX, MIRROR, PathCamera, PathScene, PathSettings, replay_paths, sh_norms,
                                     trace_paths)
from lumigrad.render._bsdf_sampling import _GGX, _LAMBERT, _MIRROR
from lumigrad.render.path import (_Scene, _fused_ok, _geometric_tensors, _geometry_needs_grad, _light_rows,
                                  _pixel_sums)

__all__ = ["fused_path_ok", "chunk"]


def _tangent(x) -> bool:
    return isinstance(x, Tensor) and fwAD.unpack_dual(x).tangent is not None


# Textured parameters the kernel looks up per hit, with the channel counts it takes (the torch path expands a
# one-channel colour texture to RGB).
_TEXTURED = {"albedo": (1, 3), "base_color": (1, 3), "roughness": (1,), "metallic": (1,)}
_TEX_SLOT = {"albedo": 0, "base_color": 0, "roughness": 1, "metallic": 2}


def _textures_ok(sc: _Scene) -> bool:
    """Whether every textured parameter is one the kernel looks up (not a mirror's reflectance, say), no texture
    or vertex colour carries a forward-mode tangent, and the UVs of a textured scene need no gradient."""
    if not all(name in _TEXTURED and tp.texture.shape[-1] in _TEXTURED[name] and not _tangent(tp.texture)
               for name, entries in sc.tex.items() for _, tp in entries):
        return False
    tints = [tp.texture for _, tp in sc.tint_tex] + ([sc.vcolors] if sc.vcolors is not None else [])
    if any(_tangent(t) for t in tints):
        return False
    # UVs are constants in the kernel: a gradient or tangent on them needs the torch path.
    uvs = [s.mesh.uvs for s in sc.shapes if isinstance(s.mesh.uvs, Tensor)] if sc.tex or sc.tint_tex else []
    return not any((u.requires_grad and torch.is_grad_enabled()) or _tangent(u) for u in uvs)


def fused_path_ok(sc: _Scene) -> bool:
    """Whether the fused kernel renders ``sc`` (see the module docstring)."""
    if _fused_ok(sc) or not _textures_ok(sc):
        return False
    if (sc.sh or sc.ambient) and sc.analytic_sky:
        return False  # analytic, unshadowed ambient / SH shading (render_mesh's): the torch path's

    if not set(sc.mats.present) <= {_LAMBERT, _GGX, _MIRROR}:
        return False
    if _geometry_needs_grad(sc, sc.point_lights):
        return False
    rows = [sc.mats.p.get(k) for k in ("albedo", "reflectance", "base_color", "roughness", "metallic")]
    rows.append(getattr(sc, "emission", None))
    rows += [l.color for l in sc.point_lights] + [l.intensity for l in sc.point_lights]
    rows += [a.color for a in sc.ambient] + [s.coeffs for s in sc.sh]
    return not any(_tangent(t) for t in _geometric_tensors(sc, sc.point_lights) + rows)


def _path_scene(sc: _Scene) -> PathScene:
    """The constant arrays of the kernel, built once per render (kept on ``sc``)."""
    if getattr(sc, "_path_scene", None) is not None:
        return sc._path_scene
    dev, dt, i32 = sc.device, sc.dtype, torch.int32
    with torch.no_grad():
        nf = torch.tensor([s.mesh.faces.shape[0] for s in sc.shapes], device=dev)
        face_off = torch.cumsum(nf, 0) - nf
        em_face, em_cdf, start = [], [], [0]
        for e_id, (_, areas) in zip(sc.emitters, sc.emit_tris):
            a = areas.detach()
            em_face.append(torch.arange(int(a.shape[0]), device=dev) + face_off[e_id])
            c = torch.nan_to_num(torch.cumsum(a, 0) / a.sum())
            c[-1] = 1.0
            em_cdf.append(c)
            start.append(start[-1] + int(a.shape[0]))
        lk, lv, _, lf = _light_rows(sc)
        is_em = torch.zeros(len(sc.shapes), dtype=i32, device=dev)
        is_em[sc.emitters] = 1
        sc._path_scene = PathScene(
            corners=sc.corners.detach().contiguous(), faces=sc.faces.contiguous(), owner=sc.owner.to(i32),
            kind=torch.where(sc.mats.mirror, MIRROR, torch.where(sc.mats.kind == _GGX, GGX, 0)).to(i32), is_em=is_em,
            em_area=sc.emit_area.detach(),
            em_shape=torch.tensor(sc.emitters, dtype=i32, device=dev),
            em_start=torch.tensor(start, dtype=i32, device=dev),
            em_face=torch.cat(em_face).to(i32) if em_face else torch.zeros(0, dtype=i32, device=dev),
            em_cdf=torch.cat(em_cdf).to(dt) if em_cdf else torch.zeros(0, dtype=dt, device=dev),
            lkind=lk, lvec=lv.detach(), lfall=lf, sprob=sc.mats.spec_prob.detach().to(dt).contiguous(),
            salpha=sc.mats.alpha.detach().to(dt).reshape(-1).contiguous(), **_env_tables(sc), **_tex_tables(sc),
            sky_norm=sh_norms(_sky_order(sc), dt, dev) if sc.sh or sc.ambient else None)
    return sc._path_scene


def _textures(sc: _Scene) -> list:
    """``[(shape id, slot, TextureParam)]`` of the scene's textured parameters and meshes' own textures (slot 3,
    the tint), in the kernel's texel order."""
    return sorted([(i, _TEX_SLOT[name], tp) for name, entries in sc.tex.items() for i, tp in entries]
                  + [(i, 3, tp) for i, tp in sc.tint_tex], key=lambda e: e[:2])


def _tex_tables(sc: _Scene) -> dict:
    """The texture table of :class:`PathScene` (none without textures or vertex colours): a slot per textured
    parameter and mesh texture."""
    tex = _textures(sc)
    if not tex and sc.vcolors is None:
        return {}
    slot = torch.full((len(sc.shapes), 4), -1, dtype=torch.int32)
    meta, off = [], 0
    for t, (i, j, tp) in enumerate(tex):
        h, w, c = tp.texture.shape[-3:]
        slot[i, j] = t
        meta.append([off, h, w, c, ("wrap", "clamp", "zero").index(tp.boundary_mode or "wrap"),
                     int(tp.filter_mode == "nearest")])
        off += h * w * c
    dev, dt = sc.device, sc.dtype
    has_uv = getattr(sc, "uvs", None) is not None
    vcol = None if sc.vcolors is None else sc.vcolors.detach().to(dt).expand(-1, 3).contiguous()
    return dict(tex_slot=slot.to(dev), tex_meta=torch.tensor(meta, dtype=torch.int32, device=dev).reshape(-1, 6),
                uvs=sc.uvs.detach().to(dt).contiguous() if has_uv else torch.zeros(1, 2, dtype=dt, device=dev),
                faces_uv=sc.faces_uv.to(torch.int32).contiguous() if has_uv else
                torch.zeros(sc.faces.shape[0], 3, dtype=torch.int32, device=dev), vcol=vcol)


def _env_tables(sc: _Scene) -> dict:
    """The environment map's sampling tables for :class:`PathScene` (none without a map)."""
    env = sc.env
    if env is None:
        return {}
    with torch.no_grad():
        cdf = torch.cumsum(env.cell_prob, 0)
        cdf[-1] = 1.0
        rot = torch.eye(3, dtype=sc.dtype, device=sc.device) if env.rot is None else env.rot.detach()[:3, :3]
        return dict(env_prob=env.cell_prob.contiguous(), env_cdf=cdf.contiguous(), env_rot=rot.contiguous(),
                    env_size=(env.H, env.W))


def _sky_order(sc: _Scene) -> int:
    return max([s.order for s in sc.sh], default=0)


def _sky_rows(sc: _Scene) -> Tensor:
    """``[K, 3]`` the ambient and SH lights as one SH radiance (order: the highest; ambient colours ``c`` add
    ``c sqrt(4 pi)`` to row 0, as ``Y_00 = 1 / sqrt(4 pi)``), or ``[0, 3]`` without; differentiable."""
    if not sc.sh and not sc.ambient:
        return torch.zeros(0, 3, dtype=sc.dtype, device=sc.device)
    k = (_sky_order(sc) + 1) ** 2
    sky = torch.zeros(k, 3, dtype=sc.dtype, device=sc.device)
    for s in sc.sh:
        c = s.coeffs.to(sc.dtype)
        sky = sky + torch.nn.functional.pad(c, (0, 0, 0, k - c.shape[0]))
    if sc.ambient:
        amb = sum(a.color.to(sc.dtype) for a in sc.ambient) * (4.0 * math.pi) ** 0.5
        sky = sky + torch.nn.functional.pad(amb[None], (0, 0, 0, k - 1))
    return sky


def _rows(sc: _Scene) -> tuple[Tensor, ...]:
    """``(refl [S, 3], emis [S, 3], lscale [nl, 3], rough [S], metal [S], env [H * W, 3] or [0, 3], tex [N] or
    [0], vcol [V, 3] or [0, 3], sky [K, 3] or [0, 3])``, differentiable w.r.t. the scene's tensors (``sky``:
    :func:`_sky_rows`); ``refl`` is the albedo, mirror
    reflectance or GGX base colour of each shape (the rows of the other kinds are zero in each of
    :class:`MaterialTable`'s tables, so they add up); ``tex`` all texels of the textured parameters and mesh
    textures, flattened (the rows of textured parameters are placeholders); ``vcol`` the merged vertex colours."""
    p, S = sc.mats.p, len(sc.shapes)
    refl = sum(p[k] for k in ("albedo", "reflectance", "base_color") if k in p)
    zero = torch.zeros(S, dtype=sc.dtype, device=sc.device)
    rough = p["roughness"][:, 0] if "roughness" in p else zero
    metal = p["metallic"][:, 0] if "metallic" in p else zero
    emis = sc.emission if sc.emitters else torch.zeros(S, 3, dtype=sc.dtype, device=sc.device)
    env = sc.env.texels.reshape(-1, 3) if sc.env is not None else torch.zeros(0, 3, dtype=sc.dtype, device=sc.device)
    tex = _textures(sc)
    texels = torch.cat([tp.texture.reshape(-1) for _, _, tp in tex]) if tex else \
        torch.zeros(0, dtype=sc.dtype, device=sc.device)
    vcol = sc.vcolors.to(sc.dtype).expand(-1, 3) if sc.vcolors is not None else \
        torch.zeros(0, 3, dtype=sc.dtype, device=sc.device)
    return refl, emis, _light_rows(sc)[2], rough, metal, env, texels, vcol, _sky_rows(sc)


def _settings(sc: _Scene, chunk: int) -> PathSettings:
    st = sc.settings
    return PathSettings(eps=sc.eps, shadows=st.shadows, max_bounces=st.max_bounces, rr_depth=st.rr_depth,
                        mis=st.mis, seed=(st.seed * 1_000_003 + chunk) % (2**31), background=tuple(st.background),
                        qseed=st.seed % (2**31) if st.sampler == "sobol" else -1, pixel_offsets=True)


def _camera(sc: _Scene, first: int) -> PathCamera:
    """The kernel's camera (built once per render, kept on ``sc``) for samples from ``first`` on."""
    if getattr(sc, "_path_camera", None) is None:
        cam = sc.camera
        with torch.no_grad():
            sc._path_camera = PathCamera(torch.linalg.inv(cam.world_to_cam.detach()), cam.K.detach(), sc.offsets,
                                         cam.width, cam.height, cam.projection != "perspective", 0)
    return sc._path_camera._replace(first=first)


def _samples(sc: _Scene, first: int, count: int, chunk: int, rows,
             moments: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """A chunk's pixel sums (as :func:`lumigrad.render.path._chunk`) and its samples' radiance ``[count, 3]``;
    camera rays made in the kernel. ``rows``: :func:`_rows`. With ``moments`` (whole-pixel chunks) the third
    output is instead the chunk's pixel rows of ``d image / d sky`` (``[count / spp, 3 K]``, see
    :func:`lumigrad.ops.path_trace.trace_paths`'s ``sky_moments``)."""
    refl, emis, lscale, rough, metal, env, tex, _, sky = rows
    mom = torch.zeros(count, 3 * sky.shape[0], dtype=sc.dtype, device=sc.device) if moments else None
    L, hit = trace_paths(sc.accel.bvh, _path_scene(sc), refl, emis, lscale, None, None, None, _settings(sc, chunk),
                         _camera(sc, first), count, rough, metal, env if env.shape[0] else None,
                         tex if _path_scene(sc).tex_slot is not None else None, sky if sky.shape[0] else None, mom)
    p = torch.arange(first, first + count, device=sc.device) // sc.settings.spp
    if moments:
        S = sc.settings.spp
        return (*_pixel_sums(sc, p, L, hit), mom.reshape(-1, S, mom.shape[1]).sum(1) / S)
    return (*_pixel_sums(sc, p, L, hit), L)


class _FusedChunk(torch.autograd.Function):
    """One chunk's pixel sums; the backward replays its paths (rays re-made in the kernel)."""

    @staticmethod
    def forward(ctx, refl, emis, lscale, rough, metal, env, tex, vcol, sky, sc, first, count, chunk):
        rows = (refl, emis, lscale, rough, metal, env, tex, vcol, sky)
        st = sc.settings
        # Only the sky needs a gradient, and memory may be spent: the image is linear in the sky's rows, so the
        # forward keeps each pixel's d image / d sky (3 K values) and the backward is a contraction, no replay.
        moments = ctx.needs_input_grad[8] and not any(ctx.needs_input_grad[:8]) and not st.replay \
            and st.chunk_rays % st.spp == 0 and sc.grad_scene is None
        img, cov, kept = _samples(sc, first, count, chunk, rows, moments)
        ctx.args = (sc, first, count, chunk, moments)
        # Without TraceSettings.replay the samples' radiance is kept (12 or 24 bytes per sample, far less than
        # the torch path's graph): the replay then runs each path once instead of twice.
        ctx.save_for_backward(*rows, None if st.replay else kept)
        ctx.mark_non_differentiable(cov)
        return img, cov

    @staticmethod
    @first_order
    def backward(ctx, g_img, g_cov):
        sc, first, count, chunk, moments = ctx.args
        refl, emis, lscale, rough, metal, env, tex, vcol, sky, L = ctx.saved_tensors
        # TraceSettings.decorrelate (with replay): the derivatives from other paths than the image's
        sc = sc.grad_scene or sc
        need = ctx.needs_input_grad[:9]
        if g_img is None or not any(need):
            return (None,) * 13
        if moments:  # L holds the chunk's pixel rows of d image / d sky: [P_chunk, 3 K]
            g_sky = (L.reshape(L.shape[0], -1, 3) * g_img[:, None, :]).sum(0)
            return (None,) * 8 + (g_sky, None, None, None, None)
        S = sc.settings.spp
        # Pixel rows of this chunk (whole-pixel chunks) or the dense image: the kernel divides by spp.
        base = first // S if sc.settings.chunk_rays % S == 0 else 0
        grads = replay_paths(sc.accel.bvh, _path_scene(sc), refl, emis, lscale, None, None, None,
                             _settings(sc, chunk), g_img.contiguous(), need, _camera(sc, first), count, base, L,
                             rough, metal, env if env.shape[0] else None,
                             tex if _path_scene(sc).tex_slot is not None else None, sky if sky.shape[0] else None)
        return (*grads, None, None, None, None)


def chunk(sc: _Scene, first: int, count: int, chunk_id: int) -> tuple[Tensor, Tensor]:
    """:func:`lumigrad.render.path._chunk` by the fused kernel (same outputs, same layout)."""
    rows = _rows(sc)
    if not torch.is_grad_enabled() or not any(x.requires_grad for x in rows):
        return _samples(sc, first, count, chunk_id, tuple(x.detach() for x in rows))[:2]
    return _FusedChunk.apply(*rows, sc, first, count, chunk_id)
