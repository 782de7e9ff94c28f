"""Whole light paths in one Warp kernel: forward radiance and path-replay gradients (fixed geometry).

:func:`trace_paths` traces each camera ray's path through all its bounces in one thread
(:mod:`lumigrad.ops._path_kernels`); :func:`replay_paths` re-runs the same paths (same random
numbers: ``seed`` and the ray's index in the launch) and returns the gradients of ``sum(grad * L)``
w.r.t. the per-shape reflectance rows, the shapes' emission, the lights' scales, the GGX roughness / metallic
rows, the environment map's texels, the texels of textured colour / roughness / metallic parameters and of the
meshes' own textures (looked up at each hit's UV: :mod:`lumigrad.ops._path_tex_funcs`), the vertex colours and
the SH rows of an ambient / SH environment (``sky``: one set of real SH coefficients; a light sample per vertex and
the BSDF rays that escape see it).
Only those can have gradients: geometry, camera and light positions are constants here. The estimator is
that of :func:`lumigrad.render.path._radiance` (the spec; tests compare the two within Monte Carlo
noise, as their random numbers differ). Rays are given (``origins``, ``dirs``) or made in the kernel
from a :class:`PathCamera` (what the renderer uses: no per-sample tensors in either pass).
Differentiable use goes through :mod:`lumigrad.render._path_fused` (a ``torch.autograd.Function`` per
chunk whose backward is :func:`replay_paths`). There is no separate torch reference module: the spec is
the renderer's torch path, which cannot live in ``ops`` (it needs the scene types).

Why a hand-written kernel: the torch path runs ~hundreds of small ops on ``[paths, 3]`` tensors per
bounce (plus their autograd graph); here a path stays in registers. Figures: ``bench/trace_gi.py``
and :mod:`lumigrad.render._path_fused`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import warp as wp
from torch import Tensor

from lumigrad._runtime.checks import _desc
from lumigrad._runtime.launch import launch, launch_chunks, num_threads, to_warp, warp_device
from lumigrad.ops import _path_kernels as _k
from lumigrad.ops._common import placeholder

__all__ = ["PathScene", "PathCamera", "PathSettings", "trace_paths", "replay_paths", "sh_norms", "MIRROR", "GGX"]

MIRROR = _k.MIRROR
GGX = _k.GGX
# CPU replay: at most ~this many texel / vertex-colour gradient entries over all task rows (or one row per thread).
_TEX_GRAD_ELEMS = 1 << 25


class PathScene(NamedTuple):
    """The constant part of a scene for :func:`trace_paths` (no gradients)."""

    corners: Tensor  # [V, 6] vertex position | unit vertex normal (float32 or float64)
    faces: Tensor  # [F, 3] int32
    owner: Tensor  # [F] int32 shape id of each face
    kind: Tensor  # [S] int32: MIRROR, GGX or anything else (Lambert)
    is_em: Tensor  # [S] int32 1 for emissive shapes
    em_area: Tensor  # [S] total area of each emissive shape
    em_shape: Tensor  # [ne] int32 shape id of each emitter
    em_start: Tensor  # [ne + 1] int32 offsets of each emitter's triangles in em_face
    em_face: Tensor  # [T] int32 merged face ids
    em_cdf: Tensor  # [T] per-emitter cumulative area fractions (each emitter's last = 1)
    lkind: Tensor  # [nl] int32 0 point, 1 directional
    lvec: Tensor  # [nl, 3] light position / unit direction towards it
    lfall: Tensor  # [nl, 3] attenuation constants 1 / (c + l d + q d^2)
    sprob: Tensor  # [S] GGX: probability of sampling the specular lobe (MaterialTable.spec_prob; 0 elsewhere)
    salpha: Tensor  # [S] GGX: alpha of the specular lobe's sampling (MaterialTable.alpha; 1 elsewhere)
    env_prob: Tensor | None = None  # [H * W] cell probabilities of the environment map's sampler (None: no map)
    env_cdf: Tensor | None = None  # [H * W] their running sum, last = 1
    env_rot: Tensor | None = None  # [3, 3] d_map = d_world rot
    env_size: tuple = (0, 0)  # (H, W)
    tex_slot: Tensor | None = None  # [S, 4] int32 texture of each shape's colour / roughness / metallic / tint or -1
    tex_meta: Tensor | None = None  # [T, 6] int32 per texture: offset in the texels, H, W, C, boundary, nearest
    uvs: Tensor | None = None  # [U, 2] texture coordinates (u right, v up)
    faces_uv: Tensor | None = None  # [F, 3] int32 rows of uvs at each face's corners
    vcol: Tensor | None = None  # [V, 3] vertex colours multiplying the BRDF (ones for shapes without; None: no colours)
    sky_norm: Tensor | None = None  # [K] constants of the SH basis up to the sky's order (sh_norms; None: no sky)


class PathCamera(NamedTuple):
    """Camera rays generated in the kernel: sample ``r`` (``first + i`` of a launch) is sample ``r % spp`` of
    pixel ``p = r // spp`` (view-major, then row, column), the ray through the pixel's corner plus
    ``offsets[view, r % spp]`` (as :func:`lumigrad.render.path._chunk_rays`), or, with
    ``PathSettings.pixel_offsets`` and the Sobol sampler, plus the pixel's own offset (pair 0 keyed by the pixel)."""

    cam_to_world: Tensor  # [B, 4, 4]
    K: Tensor  # [B, 3, 3] intrinsics in pixels
    offsets: Tensor  # [B, spp, 2] sub-pixel sample positions
    width: int
    height: int
    orthographic: bool
    first: int  # sample index of ray 0


class PathSettings(NamedTuple):
    eps: float  # absolute ray offset
    shadows: bool
    max_bounces: int
    rr_depth: int
    mis: bool
    seed: int  # 31-bit
    background: tuple  # (r, g, b) of camera rays that miss
    qseed: int = -1  # >= 0 (31-bit): Sobol sampler (lumigrad.ops._qmc_funcs) with this seed; -1: independent
    pixel_offsets: bool = False  # with qseed: camera rays through each pixel's own Sobol offsets (pair 0 keyed by the
    # pixel), not the camera's offsets shared by a view's pixels


def sh_norms(order: int, dtype: torch.dtype, device=None) -> Tensor:
    """``[(order + 1)^2]`` constants of :func:`lumigrad.scene.lights._sh_basis`'s ``Y_lm`` (index ``l l + l + m``):
    ``sqrt((2 l + 1) / (4 pi) (l - |m|)! / (l + |m|)!)``, times ``sqrt 2`` for ``m != 0``."""
    out = []
    for l in range(order + 1):
        for m in range(-l, l + 1):
            k = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - abs(m)) / math.factorial(l + abs(m)))
            out.append(k * (math.sqrt(2.0) if m else 1.0))
    return torch.tensor(out, dtype=dtype, device=device)


def _num_rays(fn: str, origins, dirs, camera: PathCamera | None, count: int | None) -> int:
    if camera is None:
        return int(origins.shape[0]) if isinstance(origins, Tensor) and origins.ndim == 2 else -1
    if origins is not None or dirs is not None or count is None or count < 0:
        raise ValueError(f"{fn}(): give origins and dirs, or a camera and count (not both)")
    B, spp = camera.offsets.shape[0], camera.offsets.shape[1]
    total = B * camera.width * camera.height * spp
    if camera.first < 0 or camera.first + count > total or total >= 2**31:
        raise ValueError(f"{fn}(): camera samples {camera.first} .. {camera.first + count} must lie in [0, {total}) "
                         f"and the total below 2^31")
    return count


def _check(fn: str, bvh, sc: PathScene, refl: Tensor, emis: Tensor, lscale: Tensor, origins: Tensor, dirs: Tensor,
           face: Tensor | None, camera: PathCamera | None = None, count: int | None = None, rough: Tensor | None = None,
           metal: Tensor | None = None, env: Tensor | None = None, tex: Tensor | None = None,
           sky: Tensor | None = None) -> int:
    dt, dev = sc.corners.dtype, sc.corners.device
    if dt not in (torch.float32, torch.float64):
        raise TypeError(f"{fn}(): corners must be float32 or float64, got {dt}")
    S, F, ne, nl = int(sc.kind.shape[0]), int(sc.faces.shape[0]), int(sc.em_shape.shape[0]), int(sc.lkind.shape[0])
    R = _num_rays(fn, origins, dirs, camera, count)
    T = int(sc.em_face.shape[0])
    want = {"corners": (sc.corners, (int(sc.corners.shape[0]), 6), dt), "kind": (sc.kind, (S,), torch.int32),
            "em_shape": (sc.em_shape, (ne,), torch.int32), "lkind": (sc.lkind, (nl,), torch.int32),
            "faces": (sc.faces, (F, 3), torch.int32), "owner": (sc.owner, (F,), torch.int32),
            "is_em": (sc.is_em, (S,), torch.int32), "em_area": (sc.em_area, (S,), dt),
            "em_start": (sc.em_start, (ne + 1,), torch.int32), "em_face": (sc.em_face, (T,), torch.int32),
            "em_cdf": (sc.em_cdf, (T,), dt), "lvec": (sc.lvec, (nl, 3), dt), "lfall": (sc.lfall, (nl, 3), dt),
            "refl": (refl, (S, 3), dt), "emis": (emis, (S, 3), dt), "lscale": (lscale, (nl, 3), dt),
            "sprob": (sc.sprob, (S,), dt), "salpha": (sc.salpha, (S,), dt)}
    for name, v in (("rough", rough), ("metal", metal)):
        if v is not None:
            want[name] = (v, (S,), dt)
    if env is not None:
        H, W = sc.env_size
        if H < 2 or W < 2:
            raise ValueError(f"{fn}(): env needs sc.env_size (H, W) >= (2, 2), got {sc.env_size}")
        want.update({"env": (env, (H * W, 3), dt), "env_prob": (sc.env_prob, (H * W,), dt),
                     "env_cdf": (sc.env_cdf, (H * W,), dt), "env_rot": (sc.env_rot, (3, 3), dt)})
    if (sky is None) != (sc.sky_norm is None):
        raise ValueError(f"{fn}(): give sky (the ambient / SH coefficients) together with sc.sky_norm, or neither")
    if sky is not None:
        k = int(sky.shape[0]) if isinstance(sky, Tensor) and sky.ndim == 2 else -1
        if k < 1 or math.isqrt(k) ** 2 != k:
            raise ValueError(f"{fn}(): sky must be {dt} [(order + 1)^2, 3] on {dev}, got "
                             f"{_desc(sky) if isinstance(sky, Tensor) else type(sky).__name__}")
        want.update({"sky": (sky, (k, 3), dt), "sky_norm": (sc.sky_norm, (k,), dt)})
    if (tex is None) != (sc.tex_slot is None):
        raise ValueError(f"{fn}(): give tex (the texels) together with sc.tex_slot, tex_meta, uvs and faces_uv, or "
                         f"none")
    if tex is not None:
        nt, nu = int(sc.tex_meta.shape[0]) if isinstance(sc.tex_meta, Tensor) else -1, \
            int(sc.uvs.shape[0]) if isinstance(sc.uvs, Tensor) else -1
        want.update({"tex": (tex, (int(tex.shape[0]) if isinstance(tex, Tensor) else -1,), dt),
                     "tex_slot": (sc.tex_slot, (S, 4), torch.int32), "tex_meta": (sc.tex_meta, (nt, 6), torch.int32),
                     "uvs": (sc.uvs, (nu, 2), dt), "faces_uv": (sc.faces_uv, (F, 3), torch.int32)})
        if sc.vcol is not None:
            want["vcol"] = (sc.vcol, (int(sc.corners.shape[0]), 3), dt)
    if camera is None:
        want.update({"origins": (origins, (R, 3), dt), "dirs": (dirs, (R, 3), dt)})
    else:
        B = int(camera.offsets.shape[0])
        want.update({"camera.cam_to_world": (camera.cam_to_world, (B, 4, 4), dt), "camera.K": (camera.K, (B, 3, 3), dt),
                     "camera.offsets": (camera.offsets, (B, int(camera.offsets.shape[1]), 2), dt)})
    if face is not None:
        want["face"] = (face, (R,), torch.int32)
    for name, (v, shape, dtype) in want.items():
        if not isinstance(v, Tensor) or tuple(v.shape) != tuple(shape) or v.dtype != dtype or v.device != dev:
            raise ValueError(f"{fn}(): {name} must be {dtype} {list(shape)} on {dev}, got "
                             f"{_desc(v) if isinstance(v, Tensor) else type(v).__name__}")
    if F != bvh.num_faces:
        raise ValueError(f"{fn}(): faces has {F} rows, the BVH {bvh.num_faces} faces")
    V = sc.corners.shape[0]
    for name, v, lo, hi in (("faces", sc.faces, 0, V), ("owner", sc.owner, 0, S), ("em_shape", sc.em_shape, 0, S),
                            ("em_face", sc.em_face, 0, F), ("em_start", sc.em_start, 0, T + 1),
                            ("lkind", sc.lkind, 0, 2), ("face", face, -1, F)):
        if v is not None and v.numel() and (int(v.min()) < lo or int(v.max()) >= hi):
            raise ValueError(f"{fn}(): {name} must lie in [{lo}, {hi})")
    if tex is not None:
        _check_textures(fn, sc, int(tex.shape[0]))
    if ne and (int(sc.em_start[0]) != 0 or int(sc.em_start[-1]) != T or bool((sc.em_start.diff() < 1).any())):
        raise ValueError(f"{fn}(): em_start must rise from 0 to {T}, each emitter with >= 1 triangle")
    return R


def _check_textures(fn: str, sc: PathScene, n: int) -> None:
    """Texture table and UV indices in range (shapes and dtypes are checked by :func:`_check`)."""
    T, U = int(sc.tex_meta.shape[0]), int(sc.uvs.shape[0])
    for name, v, lo, hi in (("tex_slot", sc.tex_slot, -1, T), ("faces_uv", sc.faces_uv, 0, U)):
        if v.numel() and (int(v.min()) < lo or int(v.max()) >= hi):
            raise ValueError(f"{fn}(): {name} must lie in [{lo}, {hi})")
    if T:
        off, h, w, c, bnd, near = sc.tex_meta.long().unbind(1)
        bad = (off < 0) | (h < 1) | (w < 1) | (c < 1) | (off + h * w * c > n) | (bnd < 0) | (bnd > 2) | (near < 0) \
            | (near > 1)
        if bool(bad.any()):
            raise ValueError(f"{fn}(): tex_meta row {int(bad.nonzero()[0])} is not (offset, H >= 1, W >= 1, C >= 1, "
                             f"boundary 0-2, nearest 0/1) inside the {n} texels")
    nc = sc.tex_meta[sc.tex_slot.clamp_min(0).long(), 3] if T else sc.tex_slot
    if bool(((sc.tex_slot[:, 1:3] >= 0) & (nc[:, 1:3] != 1)).any()):
        raise ValueError(f"{fn}(): roughness / metallic textures must have 1 channel")
    if bool(((sc.tex_slot[:, 3] >= 0) & (nc[:, 3] != 1) & (nc[:, 3] != 3)).any()):
        raise ValueError(f"{fn}(): tint textures must have 1 or 3 channels")


def _tex_args(sc: PathScene, tex: Tensor | None) -> list:
    """The kernel's texture arguments (``tex_slot .. faces_uv``); placeholders without textures."""
    like = sc.corners
    ones = torch.ones(1, 3, dtype=like.dtype, device=like.device)
    if tex is None:
        i1 = torch.zeros(1, 4, dtype=torch.int32, device=like.device)
        return [to_warp(i1 - 1), to_warp(ones), 0, to_warp(torch.zeros(1, 6, dtype=torch.int32, device=like.device)),
                to_warp(torch.zeros(1, dtype=like.dtype, device=like.device)),
                to_warp(torch.zeros(1, 2, dtype=like.dtype, device=like.device)),
                to_warp(torch.zeros(1, 3, dtype=torch.int32, device=like.device))]
    meta = sc.tex_meta if sc.tex_meta.shape[0] else torch.zeros(1, 6, dtype=torch.int32, device=like.device)
    texels = tex.detach().contiguous() if tex.shape[0] else torch.zeros(1, dtype=like.dtype, device=like.device)
    vc = sc.vcol is not None
    return [to_warp(sc.tex_slot.contiguous()), to_warp(sc.vcol.contiguous() if vc else ones), int(vc),
            to_warp(meta.contiguous()), to_warp(texels), to_warp(sc.uvs.contiguous()),
            to_warp(sc.faces_uv.contiguous())]


def _ray_args(origins, dirs, camera: PathCamera | None, like: Tensor) -> list:
    """The kernel's ray / camera arguments (``org .. first``)."""
    ph = torch.zeros(1, 3, dtype=like.dtype, device=like.device)
    if camera is None:
        return [to_warp(origins.detach().contiguous()), to_warp(dirs.detach().contiguous()), 0,
                to_warp(torch.zeros(1, 18, dtype=like.dtype, device=like.device)),
                to_warp(torch.zeros(1, 2, dtype=like.dtype, device=like.device)), 1, 1, 1, 0]
    B, spp = camera.offsets.shape[:2]
    c2w, k = camera.cam_to_world.detach(), camera.K.detach()
    cam = torch.cat([c2w[:, :3, :3].reshape(B, 9), c2w[:, :3, 3], k[:, 0], k[:, 1, 1:], k[:, 2, 2:]], 1).contiguous()
    return [to_warp(ph), to_warp(ph), 2 if camera.orthographic else 1, to_warp(cam),
            to_warp(camera.offsets.detach().reshape(B * spp, 2).contiguous()), int(camera.width),
            int(camera.width * camera.height), int(spp), int(camera.first)]


def _env_args(sc: PathScene, env: Tensor | None) -> list:
    """The kernel's environment-map arguments (``has_env .. env_w``); placeholders without a map."""
    like = sc.corners
    if env is None:
        z1 = torch.zeros(1, dtype=like.dtype, device=like.device)
        return [0, to_warp(torch.zeros(1, 3, dtype=like.dtype, device=like.device)), to_warp(z1), to_warp(z1),
                to_warp(torch.eye(3, dtype=like.dtype, device=like.device)), 2, 2]
    H, W = sc.env_size
    return [1, to_warp(env.detach().contiguous()), to_warp(sc.env_prob.contiguous()), to_warp(sc.env_cdf.contiguous()),
            to_warp(sc.env_rot.contiguous()), int(H), int(W)]


def _sky_args(sc: PathScene, sky: Tensor | None) -> list:
    """The kernel's ambient / SH arguments (``sky_k .. sky_order``); placeholders without."""
    like = sc.corners
    if sky is None:
        return [to_warp(torch.zeros(1, 3, dtype=like.dtype, device=like.device)),
                to_warp(torch.zeros(1, dtype=like.dtype, device=like.device)), 0]
    return [to_warp(sky.detach().contiguous()), to_warp(sc.sky_norm.contiguous()), math.isqrt(int(sky.shape[0])) - 1]


def _args(bvh, sc: PathScene, refl, emis, lscale, rough, metal, origins, dirs, face, st: PathSettings, tiny, ntiny,
          camera: PathCamera | None = None, env: Tensor | None = None, tex: Tensor | None = None,
          sky: Tensor | None = None) -> list:
    dt = sc.corners.dtype
    given = face is not None
    nl, ne = int(sc.lkind.shape[0]), int(sc.em_shape.shape[0])
    one_i = torch.zeros(1, dtype=torch.int32, device=sc.corners.device)

    def nz(t, shape):  # Warp arrays stay non-empty
        return t if t.shape[0] else torch.zeros(shape, dtype=t.dtype, device=t.device)

    bg = torch.tensor([st.background], dtype=dt, device=sc.corners.device)
    return [*bvh.args(), to_warp(sc.corners), to_warp(sc.faces), to_warp(sc.owner), to_warp(sc.kind),
            to_warp(refl), to_warp(rough), to_warp(metal), to_warp(sc.sprob), to_warp(sc.salpha), to_warp(emis),
            to_warp(sc.is_em), to_warp(sc.em_area), ne, to_warp(nz(sc.em_shape, 1)),
            to_warp(sc.em_start), to_warp(nz(sc.em_face, 1)), to_warp(nz(sc.em_cdf, 1)), nl,
            to_warp(nz(sc.lkind, 1)), to_warp(nz(sc.lvec, (1, 3))), to_warp(nz(lscale, (1, 3))),
            to_warp(nz(sc.lfall, (1, 3))), *_env_args(sc, env), *_sky_args(sc, sky), *_tex_args(sc, tex),
            *_ray_args(origins, dirs, camera, sc.corners), int(given),
            to_warp(face if given else one_i), to_warp(bg), wp.float64(st.eps), wp.float64(tiny), wp.float64(ntiny),
            int(bool(st.shadows)), int(st.max_bounces), int(st.rr_depth), int(bool(st.mis)),
            int(ne > 0 or env is not None or sky is not None),
            int(st.seed) & 0x7FFFFFFF, int(st.qseed) if st.pixel_offsets else -1, int(st.qseed)]


def _rm(sc: PathScene, rough: Tensor | None, metal: Tensor | None) -> tuple[Tensor, Tensor]:
    """The roughness / metallic rows (zeros when not given: no GGX shape)."""
    z = torch.zeros(int(sc.kind.shape[0]), dtype=sc.corners.dtype, device=sc.corners.device)
    return (z if rough is None else rough.detach().contiguous()), (z if metal is None else metal.detach().contiguous())


def _full(sc: PathScene, env: Tensor | None) -> bool:
    """Whether the scene needs the kernel variant with environment-map, GGX and light code (else the lean one runs,
    which gives the same results ~6-8 % faster: :func:`lumigrad.ops._path_kernels.path_kernel`)."""
    return env is not None or int(sc.lkind.shape[0]) > 0 or bool((sc.kind == GGX).any())


def _guards(dtype: torch.dtype) -> tuple[float, float]:
    tiny = torch.finfo(dtype).tiny
    return tiny ** 0.5, tiny  # ray_triangle's determinant guard, safe_normalize's


def trace_paths(bvh, sc: PathScene, refl: Tensor, emis: Tensor, lscale: Tensor, origins: Tensor | None,
                dirs: Tensor | None, face: Tensor | None, st: PathSettings, camera: PathCamera | None = None,
                count: int | None = None, rough: Tensor | None = None, metal: Tensor | None = None,
                env: Tensor | None = None, tex: Tensor | None = None, sky: Tensor | None = None,
                sky_moments: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(L [R, 3], hit [R] bool)``: the radiance of one path per ray and whether the ray hit anything.

    Args:
        bvh: :class:`lumigrad.ops.trace.TraceBVH` of the merged meshes (its faces are ``sc.faces``).
        sc: :class:`PathScene`. refl: ``[S, 3]`` albedo (Lambert) / reflectance (mirror) / base colour (GGX)
        per shape; rough, metal: ``[S]`` GGX roughness and metallic (None: zeros, no GGX shape); env:
        ``[H * W, 3]`` environment-map radiance (None: no map; its sampler's tables are in ``sc``); tex: ``[N]``
        all textures' texels (None: no textures; their table, ``sc.tex_slot`` .., says where each lies and
        which shapes read it instead of their ``refl`` / ``rough`` / ``metal`` row). sky: ``[K, 3]`` radiance
        coefficients of a distant environment in the real SH basis of :func:`lumigrad.scene.lights._sh_basis`
        (an ambient colour ``c`` is ``c sqrt(4 pi)`` in row 0): one cosine light sample per vertex and the BSDF rays
        that escape, MIS-weighted as :func:`lumigrad.render.path._sky_sample` (None: none;
        ``sc.sky_norm`` holds :func:`sh_norms`). sky_moments: None, or a zeroed ``[R, 3 K]`` buffer that receives
        each path's ``dL / dsky`` (``L`` is linear in ``sky``: ``L[r, c] = sum_k sky_moments[r, 3 k + c] sky[k, c]``),
        so that a backward w.r.t. ``sky`` alone needs no replay.
        emis: ``[S, 3]`` emission per shape (0 where not emissive). lscale: ``[nl, 3]`` light colour * intensity.
        origins, dirs: ``[R, 3]`` camera rays (unit directions), or None with ``camera`` and ``count``: the
        ``R = count`` rays of :class:`PathCamera` samples ``camera.first ..`` are made in the kernel.
        face: ``[R]`` int32 closest hits of the rays (-1: miss) when known, else None (the kernel finds them).
        st: :class:`PathSettings`; path ``i`` draws its random numbers from ``(st.seed, i)``, or, with
            ``st.qseed >= 0``, from the Sobol sampler (:mod:`lumigrad.ops._qmc_funcs`) keyed by ``(st.qseed,
            pixel)`` where sample ``first + i`` is sample ``(first + i) % spp`` of pixel ``(first + i) // spp``
            (given rays: ``spp = 1``, each its own pixel).

    Not differentiable by itself (see :func:`replay_paths`).
    """
    R = _check("trace_paths", bvh, sc, refl, emis, lscale, origins, dirs, face, camera, count, rough, metal, env, tex,
               sky)
    dt, dev = sc.corners.dtype, sc.corners.device
    out = torch.empty(R, 3, dtype=dt, device=dev)
    hit = torch.empty(R, dtype=torch.int32, device=dev)
    ph = placeholder(sc.corners, 1, 3)
    args = _args(bvh, sc, *(x.detach().contiguous() for x in (refl, emis, lscale)), *_rm(sc, rough, metal), origins,
                 dirs, face, st, *_guards(dt), camera, env, tex, sky)
    mom = sky_moments is not None
    if mom and (sky is None or not isinstance(sky_moments, Tensor) or sky_moments.dtype != dt
                or sky_moments.device != dev or tuple(sky_moments.shape) != (R, 3 * int(sky.shape[0]))):
        raise ValueError(f"trace_paths(): sky_moments must be None or {dt} [{R}, 3 K] on {dev} with sky [K, 3], got "
                         f"{_desc(sky_moments) if isinstance(sky_moments, Tensor) else type(sky_moments).__name__}")
    g_sky = sky_moments if mom and R else ph
    rest = [1, to_warp(ph), 1, 0, wp.float64(1.0), 128 if mom else 0, 0, to_warp(ph), 1 if mom else max(R, 1),
            to_warp(out), to_warp(hit), to_warp(ph), to_warp(ph), to_warp(ph), to_warp(ph), to_warp(ph), to_warp(ph),
            to_warp(ph), to_warp(g_sky), 1]
    launch(_k.path_kernel(False, _full(sc, env), tex is not None, sky is not None), R, args + rest,
           warp_device(sc.corners))
    return out, hit.bool()


def replay_paths(bvh, sc: PathScene, refl: Tensor, emis: Tensor, lscale: Tensor, origins: Tensor | None,
                 dirs: Tensor | None, face: Tensor | None, st: PathSettings, grad: Tensor,
                 need: tuple[bool, ...], camera: PathCamera | None = None, count: int | None = None,
                 pixel_base: int = 0, radiance: Tensor | None = None, rough: Tensor | None = None,
                 metal: Tensor | None = None, env: Tensor | None = None,
                 tex: Tensor | None = None, sky: Tensor | None = None) -> tuple[Tensor | None, ...]:
    """Gradients ``(g_refl [S, 3], g_emis [S, 3], g_lscale [nl, 3], g_rough [S], g_metal [S], g_env [H * W, 3],
    g_tex [N], g_vcol [V, 3], g_sky [K, 3])`` of ``sum(grad * L)`` for the paths of :func:`trace_paths` with the same
    arguments, one per entry of ``need`` (3, 5, 6, 7, 8 or 9 bools; None where False); path replay, two passes per
    path (one when
    neither ``g_refl`` nor the GGX rows nor the texels nor the vertex colours are needed). Rows of textured
    parameters get no gradient (their texels do); ``g_vcol``: of ``sc.vcol``.

    ``grad``: ``[R, 3]`` per ray; with ``camera``, per pixel instead: sample ``r`` of pixel ``p = r // spp``
    takes row ``p - pixel_base`` divided by ``spp`` (the cotangent of the pixel's mean). ``radiance``: the
    ``[R, 3]`` ``L`` of :func:`trace_paths` when kept, which saves the replay's first pass (memory per sample).
    """
    fn = "replay_paths"
    R = _check(fn, bvh, sc, refl, emis, lscale, origins, dirs, face, camera, count, rough, metal, env, tex, sky)
    dt, dev = sc.corners.dtype, sc.corners.device
    n_need = len(need)
    if n_need not in (3, 5, 6, 7, 8, 9):
        raise ValueError(f"{fn}(): need must hold 3, 5, 6, 7, 8 or 9 bools, got {need!r}")
    need = tuple(bool(n) for n in need) + (False,) * (9 - n_need)
    if need[8] and sky is None:
        raise ValueError(f"{fn}(): need asks for the sky coefficients' gradient, but sky is None")
    if need[5] and env is None:
        raise ValueError(f"{fn}(): need asks for the environment map's gradient, but env is None")
    if need[6] and tex is None:
        raise ValueError(f"{fn}(): need asks for the texels' gradient, but tex is None")
    if need[7] and (tex is None or sc.vcol is None):
        raise ValueError(f"{fn}(): need asks for the vertex colours' gradient, but sc.vcol (or tex) is None")
    if camera is None:
        shape, gdiv, gbase, gscale = (R, 3), 1, 0, 1.0
    else:
        spp = int(camera.offsets.shape[1])
        lo, hi = camera.first // spp - pixel_base, (camera.first + max(R, 1) - 1) // spp - pixel_base
        if lo < 0:
            raise ValueError(f"{fn}(): pixel_base {pixel_base} lies after the first pixel {camera.first // spp}")
        shape, gdiv, gbase, gscale = (max(hi + 1, int(grad.shape[0]) if isinstance(grad, Tensor) else 0), 3), spp, \
            pixel_base, 1.0 / spp
    if not isinstance(grad, Tensor) or tuple(grad.shape) != shape or grad.dtype != dt or grad.device != dev:
        raise ValueError(f"{fn}(): grad must be {dt} {list(shape)} on {dev}, got "
                         f"{_desc(grad) if isinstance(grad, Tensor) else type(grad).__name__}")
    if radiance is not None and (not isinstance(radiance, Tensor) or tuple(radiance.shape) != (R, 3)
                                 or radiance.dtype != dt or radiance.device != dev):
        raise ValueError(f"{fn}(): radiance must be None or {dt} [{R}, 3] on {dev}, got "
                         f"{_desc(radiance) if isinstance(radiance, Tensor) else type(radiance).__name__}")
    S, nl = int(sc.kind.shape[0]), int(sc.lkind.shape[0])
    wdev = warp_device(sc.corners)
    N = (int(tex.shape[0]) if need[6] else 0) + (3 * int(sc.corners.shape[0]) if need[7] else 0)
    # CPU: one gradient row per task (a task runs its range serially); CUDA: one per thread. Texel gradients
    # of large textures take a row per task too: fewer tasks keep them under _TEX_GRAD_ELEMS.
    tasks = max(1, min(num_threads() * 4, R // 512, max(num_threads(), _TEX_GRAD_ELEMS // max(N, 1)))) \
        if wdev == "cpu" else R
    blk = -(-R // tasks) if R else 1
    rows = -(-R // blk) if R else 1
    want_rm = need[3] or need[4]
    # Texel gradients ride on the colour / roughness-metallic code (bits 0 and 3): it sends them to the texels
    # of textured shapes and to the rows of the others.
    tex_c, tex_rm, tint = _tex_needs(sc, need[6])
    flags = int(need[0] or tex_c) | int(need[1]) << 1 | int(need[2]) << 2 | int(want_rm or tex_rm) << 3 \
        | int(need[5]) << 4 | int(tint) << 5 | int(need[7]) << 6 | int(need[8]) << 7
    bufs = [torch.zeros(rows if n else 1, 3 * max(w, 1), dtype=dt, device=dev)
            for n, w in zip((need[0] or tex_c, need[1], need[2]), (S, S, nl))]
    bufs.append(torch.zeros(rows if want_rm or tex_rm else 1, 2 * max(S, 1), dtype=dt, device=dev))
    # Texel gradients: a row per CPU task (its range runs serially), one shared row of atomics on CUDA.
    erows, eblk = (rows, blk) if wdev == "cpu" else (1, max(R, 1))
    HW = sc.env_size[0] * sc.env_size[1] if env is not None else 1
    bufs.append(torch.zeros(erows if need[5] else 1, 3 * HW, dtype=dt, device=dev))
    bufs.append(torch.zeros(erows if need[6] else 1, max(int(tex.shape[0]) if need[6] else 0, 1), dtype=dt, device=dev))
    bufs.append(torch.zeros(erows if need[7] else 1, 3 * int(sc.corners.shape[0]) if need[7] else 3, dtype=dt,
                            device=dev))
    K = int(sky.shape[0]) if sky is not None else 1
    bufs.append(torch.zeros(rows if need[8] else 1, 3 * K, dtype=dt, device=dev))  # a row per CPU task / CUDA thread
    ph = placeholder(sc.corners, 1, 3)
    args = _args(bvh, sc, *(x.detach().contiguous() for x in (refl, emis, lscale)), *_rm(sc, rough, metal), origins,
                 dirs, face, st, *_guards(dt), camera, env, tex, sky)
    known = radiance is not None
    args += [2, to_warp(grad.contiguous()), gdiv, gbase, wp.float64(gscale), flags, int(known),
             to_warp(radiance.contiguous() if known else ph), blk, to_warp(ph),
             to_warp(torch.zeros(1, dtype=torch.int32, device=dev))] + [to_warp(b) for b in bufs] + \
        [eblk if need[5] or need[6] or need[7] else R + 1]
    kernel = _k.path_kernel(True, _full(sc, env), tex is not None, sky is not None)
    if wdev == "cpu":
        launch_chunks([(kernel, min(blk, R - t * blk), [t * blk] + args) for t in range(rows)], wdev)
    elif R:
        launch(kernel, R, args, wdev)
    out = [b.sum(0).reshape(w, 3) if n else None for n, b, w in zip(need, bufs, (S, S, nl))]
    rm = bufs[3].sum(0).reshape(max(S, 1), 2)[:S] if want_rm else None
    out += [rm[:, 0] if need[3] else None, rm[:, 1] if need[4] else None]
    out.append(bufs[4].sum(0).reshape(HW, 3) if need[5] else None)
    out.append(bufs[5].sum(0) if need[6] else None)
    out.append(bufs[6].sum(0).reshape(-1, 3) if need[7] else None)
    out.append(bufs[7].sum(0).reshape(K, 3) if need[8] else None)
    return tuple(out[:n_need])


def _tex_needs(sc: PathScene, need_tex: bool) -> tuple[bool, bool, bool]:
    """Whether texel gradients need the colour, the roughness / metallic and the tint code of the replay."""
    if not need_tex:
        return False, False, False
    slot = sc.tex_slot
    return bool((slot[:, 0] >= 0).any()), bool((slot[:, 1:3] >= 0).any()), bool((slot[:, 3] >= 0).any())
