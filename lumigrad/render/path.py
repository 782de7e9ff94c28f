"""Physically based ray / path tracing with visibility gradients.

Pipeline per view: camera rays through jittered pixel samples (one sub-pixel offset per
view and sample index) -> their closest triangles, by rasterization (:func:`_raster_primary`)
or a Warp BVH query (:func:`lumigrad.ops.trace.intersect`, triangle ids only) -> the hit is
re-attached in torch (:func:`lumigrad.ops.trace.reattach`), so points,
normals and shading are differentiable w.r.t. vertices, camera, materials and
lights -> next-event estimation with shadow rays to point, directional and
area lights (emissive :class:`~lumigrad.scene.trace_types.Shape`) and an
environment map (:class:`~lumigrad.scene.trace_types.EnvironmentLight`), using
the BRDFs of :mod:`lumigrad.shade.brdf` -> one BSDF sample per vertex
(:mod:`lumigrad.render._bsdf_sampling`), whose hits on emitters and the
environment are MIS-weighted (power heuristic) -> further bounces with Russian
roulette.

Units and BRDFs are those of :func:`lumigrad.render.render_mesh`: with
``max_bounces=1`` and ``shadows=False``, ``render_trace`` converges to the
rasterizer's image (box pixel filter; ambient and SH lights are evaluated
analytically and unshadowed in that mode, as in ``shade``). With
``max_bounces > 1`` an :class:`AmbientLight` (constant radiance) and an :class:`SHEnvironmentLight`
(radiance ``sum_lm c_lm Y_lm(w)``, the basis of :func:`lumigrad.shade.lighting.sh_basis`) are a distant
environment (:func:`_sky_radiance`: shadowed and interreflected): each vertex takes one cosine-distributed light
sample of it (:func:`_sky_sample`), MIS-weighted against the BSDF ray, which sees it when it escapes (camera rays
that miss see the background). Before, the SH light was dropped in that mode and the ambient light had no light
sample.

Textured materials (:class:`~lumigrad.scene.materials.TextureParam`): :func:`_material_at`
samples them at each hit's barycentric UV (bilinear: rays have no screen derivatives for
mip-mapping); untextured scenes skip it. A mesh's own ``texture`` and ``vert_colors`` multiply the BRDF
at its hits (``at["tint"]``), as they multiply the shaded colour in ``render_mesh``.

Fast path: direct lighting only (``max_bounces=1``) of Lambert surfaces by point,
directional and ambient lights (no emitters, environment or SH light) skips the
torch pipeline above for :func:`_radiance_direct`: one Warp launch finds the
hits and their shadow rays, and one fused Warp kernel with a hand-written
backward re-attaches the hit and shades it (same estimator, same values up to
float rounding; ``test_fused_direct_path_matches_generic_path``).

Fused path tracing: when nothing geometric needs a gradient (vertices, camera, light positions and
directions; the common inverse-rendering case of fitting materials and lights), Lambert / GGX / mirror
scenes lit by emitters, point / directional lights, an environment map and ambient / SH lights (the latter with
``max_bounces > 1``; textured albedo / base colour / roughness / metallic, a mesh's own ``texture`` /
``vert_colors``) are rendered by
:mod:`lumigrad.render._path_fused`: one Warp thread per camera sample
traces its whole path (same estimator as :func:`_radiance`, its random numbers drawn in Warp), and
the backward pass is path replay in Warp, so nothing per sample is kept (about 2x less CPU time
than this torch path on the Cornell box; figures in that module).

Visibility gradients (silhouettes, hard shadow boundaries) come from
:mod:`lumigrad.render._trace_edges` (edge sampling); see its docstring for the
method and why it was chosen. Memory: without ``TraceSettings.replay`` gradients
keep torch's autograd graph of every bounce, so memory grows with
``spp * max_bounces``; with it, each chunk of ``chunk_rays`` samples is re-traced
in the backward pass (same seed, same paths) and memory is that of one chunk.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from typing import NamedTuple, Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from lumigrad.geometry.normals import dot, face_cross, safe_normalize
from lumigrad.geometry.projection import orthographic_clip_from_K, perspective_clip_from_K
from lumigrad.ops import _qmc_ref as _qmc
from lumigrad.render._attached import attach_camera_hits, attach_path_hits, attached_shapes, check_attached
from lumigrad.render._sampler import SobolDraws, is_sobol, pick_and_rescale
from lumigrad.render._trace_edges import _varies
from lumigrad.ops.rasterize import RasterizeWorkspace, _rasterize_ids
from lumigrad.ops.trace import TraceBVH, hit_attributes, intersect, occluded, shade_direct, trace_direct
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight, _sh_basis
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, TextureParam
from lumigrad.render._bsdf_sampling import _LAMBERT, MaterialTable, sample_cosine
from lumigrad.render._envmap import EnvMap
from lumigrad.scene.trace_types import EnvironmentLight, Shape, TraceSettings, grad_seed
from lumigrad.shade.brdf import _blinn_phong, _ggx, _lambert
from lumigrad.shade.brdf import _normalize
from lumigrad.shade.lighting import _eval_light, _match, _sh_irradiance
from lumigrad.ops._trace_ref import ray_triangle

__all__ = ["TraceSettings", "TraceOutput", "TraceAccel", "prepare_trace", "render_trace"]

log = logging.getLogger(__name__)
_FN = "render_trace"


class TraceOutput(NamedTuple):
    """Result of :func:`render_trace`."""

    image: Tensor  # [B, H, W, 3] linear radiance, box-filtered
    alpha: Tensor  # [B, H, W, 1] fraction of samples that hit geometry (no gradient)


class TraceAccel:
    """What the tracer reuses across renders of one topology: the BVH, the edge adjacency, and caches.

    Build with :func:`prepare_trace`; :func:`render_trace` refits the BVH to
    the current vertices (topology must not change). Work that depends only on
    vertex values is cached here and redone only when a mesh's vertices change:
    the refit, the vertex normals of meshes whose vertices need no gradient,
    and the detached face normals of the edge sampler. "Change" is decided by
    value (a copy of each mesh's last vertices is kept and compared, O(V)), so
    in-place edits of any kind are seen.

    One accel per thread: a render refits its BVH and reuses its rasterization
    buffers in place, so two threads rendering with the same accel at once would
    overwrite each other's (``render_trace`` without ``accel`` builds a private one).
    """

    def __init__(self, verts: Tensor, faces: Tensor, vert_owner: Tensor | None = None) -> None:
        self._verts_seen: dict = {}  # shape index -> detached copy of that mesh's vertices at the last render
        self._normals: dict = {}  # shape index -> [V_i, 3] unit normals of _verts_seen[i] (no-grad meshes)
        self._face_data = None  # (face_cross [F, 3], first corner [F, 3]) of the detached vertices, or None
        self._raster_ws = RasterizeWorkspace()  # buffers of the camera samples' rasterization (_raster_primary)
        self.bvh = TraceBVH(verts, faces)
        self.num_faces = int(faces.shape[0])
        self.num_verts = int(verts.shape[0])
        f = _weld(verts, vert_owner)[faces.long()]
        e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
        face_of = torch.arange(f.shape[0], device=f.device).repeat(3)
        key = e.sort(dim=1).values
        uniq, inv, counts = _unique_pairs(key)
        order = torch.argsort(inv, stable=True)
        start = torch.cumsum(counts, 0) - counts
        f0 = face_of[order[start]]
        f1 = torch.where(counts >= 2, face_of[order[(start + 1).clamp(max=order.numel() - 1)]], -1)
        self.edges = uniq  # [E, 2] vertex ids (of the first copy of each welded vertex)
        self.edge_faces = torch.stack([f0, torch.where(counts == 2, f1, torch.full_like(f1, -1))], 1)  # [E, 2]


def _unique_pairs(key: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.unique(key, dim=0, return_inverse=True, return_counts=True)`` of ``[N, 2]`` non-negative ids, as a
    1-D unique of ``a * n + b`` (same lexicographic order). Why: ``unique(dim=0)`` took 2.1 of the 3.1 CPU
    seconds of ``prepare_trace`` on a 328k-triangle icosphere (the 1D form 0.04 s); at 1.3M triangles
    ``prepare_trace`` took ~60 s wall on the loaded 2-core VM."""
    n = int(key.max()) + 1 if key.numel() else 1
    u, inv, counts = torch.unique(key[:, 0] * n + key[:, 1], return_inverse=True, return_counts=True)
    return torch.stack([u // n, u % n], 1), inv, counts


def _weld(verts: Tensor, vert_owner: Tensor | None) -> Tensor:
    """``[V]`` long: for each vertex, the first vertex of its shape (``vert_owner [V]``) at the same position.

    The edge adjacency of the edge sampler is built on welded vertices: a mesh whose faces do not share
    vertices (flat shaded, split at seams) would otherwise have every edge open, each silhouette counted
    once per copy (twice) and every edge between its faces taken for a silhouette. Positions at build time;
    the boundary gradient of a welded edge goes to its first copy's vertices."""
    n = verts.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=verts.device)
    key = verts.detach()
    if vert_owner is not None:
        key = torch.cat([vert_owner.to(key.dtype)[:, None], key], 1)
    _, inv = torch.unique(key, dim=0, return_inverse=True)
    ids = torch.arange(n, device=verts.device)
    first = torch.full((int(inv.max()) + 1,), n, dtype=torch.long, device=verts.device).scatter_reduce(
        0, inv, ids, "amin")
    return first[inv]


def _merge(shapes: Sequence[Shape]) -> tuple[Tensor, Tensor, Tensor]:
    verts, faces, owner, off = [], [], [], 0
    for i, s in enumerate(shapes):
        verts.append(s.mesh.verts)
        faces.append(s.mesh.faces + off)
        owner.append(torch.full((s.mesh.faces.shape[0],), i, dtype=torch.int64, device=s.mesh.verts.device))
        off += s.mesh.verts.shape[0]
    return torch.cat(verts, 0), torch.cat(faces, 0), torch.cat(owner, 0)


def prepare_trace(shapes: Sequence[Shape]) -> TraceAccel:
    """Build the caller-held :class:`TraceAccel` for ``shapes`` (reuse it while only vertices move)."""
    shapes = _check_shapes("prepare_trace", shapes)
    v, f, owner = _merge(shapes)
    vert_owner = torch.zeros(v.shape[0], dtype=torch.long, device=v.device)
    vert_owner[f.long().reshape(-1)] = owner.repeat_interleave(3)
    return TraceAccel(v, f, vert_owner)


def _check_shapes(fn: str, shapes) -> list[Shape]:
    if isinstance(shapes, Shape):
        shapes = [shapes]
    if not isinstance(shapes, Sequence) or not shapes:
        raise TypeError(f"{fn}(): shapes must be a non-empty sequence of Shape, got {type(shapes).__name__}")
    for i, s in enumerate(shapes):
        if not isinstance(s, Shape):
            raise TypeError(f"{fn}(): shapes[{i}] must be a Shape, got {type(s).__name__}")
    d = shapes[0].mesh.verts
    for i, s in enumerate(shapes):
        if s.mesh.verts.dtype != d.dtype or s.mesh.verts.device != d.device:
            raise ValueError(f"{fn}(): shapes[{i}] has {s.mesh.verts.dtype} on {s.mesh.verts.device}; all shapes "
                             f"must share {d.dtype} on {d.device}")
    return list(shapes)


def _check_textures(fn: str, shapes: list[Shape]) -> None:
    """Textured materials need UVs and a shared (``[Ht, Wt, C]`` or batch-1) texture of the meshes' dtype/device."""
    for i, s in enumerate(shapes):
        for name, v in vars(s.material).items():
            if not isinstance(v, TextureParam):
                continue
            if s.mesh.uvs is None:
                raise ValueError(f"{fn}(): shapes[{i}].material.{name} is a TextureParam but shapes[{i}].mesh has "
                                 f"no uvs (texture coordinates)")
            t = v.texture
            if t.ndim == 4 and t.shape[0] != 1:
                raise ValueError(f"{fn}(): shapes[{i}].material.{name}: the ray tracer takes one texture for all "
                                 f"views ([Ht, Wt, C] or [1, Ht, Wt, C]), got {list(t.shape)}")
            if t.dtype != s.mesh.verts.dtype or t.device != s.mesh.verts.device:
                raise ValueError(f"{fn}(): shapes[{i}].material.{name}.texture must share the mesh's dtype and device "
                                 f"({s.mesh.verts.dtype}, {s.mesh.verts.device}), got {t.dtype} on {t.device}")


class _Scene:
    """Merged, per-render view of the scene (differentiable tensors)."""

    def __init__(self, shapes, camera, lights, settings, accel):
        self.shapes, self.camera, self.settings, self.lights = shapes, camera, settings, lights
        self.verts, self.faces, self.owner = _merge(shapes)
        self.faces_long = self.faces.long()
        self.accel = accel
        changed = [_note_verts(accel, i, s.mesh.verts) for i, s in enumerate(shapes)]
        if any(changed):
            accel.bvh.refit(self.verts)
            accel._face_data = None
        self.vnormals = torch.cat([_cached_normals(accel, i, c, s) for i, (c, s) in enumerate(zip(changed, shapes))], 0)
        self.dtype, self.device = self.verts.dtype, self.verts.device
        lo, hi = self.verts.detach().min(0).values, self.verts.detach().max(0).values
        self.eps = float((hi - lo).norm()) * settings.ray_eps + 1e-7
        self.point_lights = [l for l in lights if isinstance(l, (PointLight, DirectionalLight))]
        self.ambient = [l for l in lights if isinstance(l, AmbientLight)]
        # Ambient / SH lights are shaded analytically with one bounce (as render_mesh) and are a distant environment
        # otherwise; fixed by the render, so the copies of _trace_edges_indirect._incoming (fewer bounces) keep it.
        self.analytic_sky = settings.max_bounces == 1
        self.sh = [l for l in lights if isinstance(l, SHEnvironmentLight)]
        envs = [l for l in lights if isinstance(l, EnvironmentLight)]
        self.env = EnvMap(envs[0], self.dtype, self.device) if envs else None
        self.emitters = [i for i, s in enumerate(shapes) if s.is_emitter]
        # Per-shape rows (materials, emission) gathered by shape id: hits on all shapes are shaded together.
        self.mats = MaterialTable([s.material for s in shapes], self.dtype, self.device)
        self._init_tint(shapes)
        self._init_textures(shapes)
        if self.emitters:
            zero = torch.zeros(3, dtype=self.dtype, device=self.device)
            self.emission = torch.stack([s.emission.to(self.dtype) if s.is_emitter else zero for s in shapes], 0)
            self.is_emitter = torch.tensor([s.is_emitter for s in shapes], dtype=torch.bool, device=self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(settings.seed)
        # Per-emitter triangle areas for light sampling; total area per shape for MIS densities.
        self.emit_tris = []
        self.emit_area = torch.zeros(len(shapes), dtype=self.dtype, device=self.device)
        for i in self.emitters:
            m = shapes[i].mesh
            off = int(sum(s.mesh.verts.shape[0] for s in shapes[:i]))
            a = 0.5 * face_cross(m.verts, m.faces).norm(dim=-1)
            self.emit_tris.append((m.faces.long() + off, a))
            self.emit_area[i] = a.detach().sum()
        # [V, 6] verts | vnormals, gathered per hit by _trace and _radiance_direct; built here (not lazily
        # inside a chunk, which may run under no_grad or a checkpoint); copies of the scene made by the edge
        # sampler build theirs on use.
        self.corners = torch.cat([self.verts, self.vnormals], 1)
        self.offsets = _sample_offsets(settings, camera.batch_size, self.dtype, self.device)  # [B, spp, 2]
        self.primary = None  # [B, spp, H * W] int32 rasterized closest hits of the camera samples, or None (BVH)
        self.grad_scene = None  # TraceSettings.decorrelate on the fused kernel: the copy its backward replays

    def _init_tint(self, shapes) -> None:
        """The meshes' own ``texture`` and ``vert_colors`` multiply the BRDF at their hits (as they multiply the
        shaded colour in ``render_mesh``): ``self.tint_tex`` [(shape id, TextureParam)] and ``self.vcolors``
        ``[V, 1 or 3]`` merged vertex colours (ones for shapes without), or None."""
        self.tint_tex = [(i, TextureParam(t[..., :3] if t.shape[-1] >= 3 else t[..., :1], filter_mode="linear"))
                         for i, t in ((i, s.mesh.texture) for i, s in enumerate(shapes)) if t is not None]
        self.vcolors = None
        if any(s.mesh.vert_colors is not None for s in shapes):
            width = max(min(s.mesh.vert_colors.shape[1], 3) for s in shapes if s.mesh.vert_colors is not None)
            self.vcolors = torch.cat([
                s.mesh.vert_colors[:, :3].to(self.dtype).expand(-1, width) if s.mesh.vert_colors is not None else
                torch.ones(s.mesh.verts.shape[0], width, dtype=self.dtype, device=self.device) for s in shapes], 0)
        self.tinted = bool(self.tint_tex) or self.vcolors is not None

    def _init_textures(self, shapes) -> None:
        """``self.tex``: textured parameter name -> [(shape id, TextureParam)], and, when there is any texture
        (material or mesh), the merged ``uvs [1 + T, 2]`` and ``faces_uv [F, 3]`` (faces of shapes without UVs
        point at row 0, unused)."""
        self.tex: dict[str, list] = {}
        for i, s in enumerate(shapes):
            for name, v in vars(s.material).items():
                if isinstance(v, TextureParam):
                    self.tex.setdefault(name, []).append((i, v))
        if not self.tex and not self.tint_tex:
            return
        uvs, fuv, off = [torch.zeros(1, 2, dtype=self.dtype, device=self.device)], [], 1
        for s in shapes:
            m = s.mesh
            if m.uvs is None:
                fuv.append(torch.zeros_like(m.faces, dtype=torch.long))
            else:
                uvs.append(m.uvs)
                fuv.append(m.faces_uvs.long() + off)
                off += m.uvs.shape[0]
        self.uvs, self.faces_uv = torch.cat(uvs, 0), torch.cat(fuv, 0)

    def rand(self, *shape) -> Tensor:
        return torch.rand(*shape, generator=self.gen, dtype=self.dtype, device=self.device)

    def chunk_gen(self, chunk: int) -> torch.Generator:
        """The generator of sample chunk ``chunk``: a fixed function of (seed, chunk), so replay re-draws it."""
        return torch.Generator(device=self.device).manual_seed((self.settings.seed * 1_000_003 + chunk) % (2**63))


def _vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """:func:`lumigrad.geometry.normals.vertex_normals` for ``[V, 3]`` with gathers by ``index_select`` and one
    ``index_add`` (cheaper backward: no sorting ``index_put``); same values up to summation order."""
    f = faces.long()
    tri = verts.index_select(0, f.reshape(-1)).reshape(-1, 3, 3)
    c = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    acc = torch.zeros_like(verts).index_add(0, f.t().reshape(-1), c.repeat(3, 1))
    return safe_normalize(acc)


def _note_verts(accel: "TraceAccel", i: int, v: Tensor) -> bool:
    """Whether mesh ``i``'s vertices differ from those of the last render with ``accel`` (then remember them)."""
    prev = accel._verts_seen.get(i)
    vd = v.detach()
    if prev is not None and prev.shape == vd.shape and prev.dtype == vd.dtype and torch.equal(prev, vd):
        return False
    accel._verts_seen[i] = vd.clone()
    accel._normals.pop(i, None)
    return True


def _cached_normals(accel: "TraceAccel", i: int, changed: bool, shape: Shape) -> Tensor:
    v = shape.mesh.verts
    if v.requires_grad and torch.is_grad_enabled():
        return _vertex_normals(v, shape.mesh.faces)
    n = None if changed else accel._normals.get(i)
    if n is None:
        with torch.no_grad():
            n = _vertex_normals(v, shape.mesh.faces)
        accel._normals[i] = n
    return n


def _take(x: Tensor, i: Tensor) -> Tensor:
    """``x[i]`` for a 1-D index: ``index_select``, whose backward is an ``index_add`` (advanced indexing's
    backward is an accumulating ``index_put``, which sorts the indices: 2-4x slower on CPU)."""
    return x.index_select(0, i)


def _param(v, like: Tensor) -> Tensor:
    if isinstance(v, Tensor):
        return v.reshape(1) if v.ndim == 0 else v
    return torch.tensor([float(v)], dtype=like.dtype, device=like.device)


def _brdf(material, n: Tensor, l: Tensor, v: Tensor) -> Tensor:
    """``[R, 3]`` BRDF value (no cosine) of one constant material; 0 for a mirror (delta lobe).

    The per-material spec of :meth:`MaterialTable.brdf` (which the renderer uses).
    """
    if isinstance(material, LambertMaterial):
        return _lambert(n, _param(material.albedo, n)).expand(n.shape[0], 3)
    if isinstance(material, BlinnPhongMaterial):
        p = [_param(getattr(material, k), n) for k in ("diffuse", "specular", "shininess")]
        return _blinn_phong(n, l, v, *p).expand(n.shape[0], 3)
    if isinstance(material, GGXMaterial):
        p = [_param(getattr(material, k), n) for k in ("base_color", "roughness", "metallic")]
        return _ggx(n, l, v, *p).expand(n.shape[0], 3)
    return torch.zeros_like(n)


class _Hit(NamedTuple):
    idx: Tensor  # [h] indices of rays that hit
    shape: Tensor  # [h] shape id
    points: Tensor  # [h, 3]
    ns: Tensor  # [h, 3] shading normal
    ng: Tensor  # [h, 3] geometric unit normal
    wo: Tensor  # [h, 3] unit direction back along the ray
    face: Tensor | None = None  # [h] int64 merged face id (needed for textured materials)
    bary: Tensor | None = None  # [h, 3] barycentrics of the hit in that face (differentiable)


def _sample_texture(tp: TextureParam, uv: Tensor) -> Tensor:
    """``[n, C]`` texels of ``tp`` at ``uv [n, 2]``: bilinear (``"nearest"`` if asked for). Rays carry no screen
    derivatives, so the rasterizer's mip-mapped filters become level 0 (bilinear) here."""
    from lumigrad.ops.texture import texture

    if uv.shape[0] == 0:
        return uv.new_zeros(0, tp.channels)
    mode = "nearest" if tp.filter_mode == "nearest" else "linear"
    t = tp.texture if tp.texture.ndim == 3 else tp.texture[0]
    return texture(t, uv[None, None], filter_mode=mode, boundary_mode=tp.boundary_mode or "wrap")[0, 0]


def _material_at(sc: _Scene, shape: Tensor, face: Tensor, bary: Tensor) -> dict:
    """Per-hit values ``name -> [h, width]`` of the textured material parameters (``{}`` when none is textured).

    The hit's UV is the barycentric blend of its triangle's UVs (gradients reach the texels, and the
    vertices and ray through ``bary``); hits on shapes whose ``name`` is constant get their shape's row.
    """
    if not sc.tex and not sc.tinted:
        return {}
    out = {}
    uv = None
    if sc.tex or sc.tint_tex:
        uvc = _take(sc.uvs, _take(sc.faces_uv, face).reshape(-1)).reshape(-1, 3, 2)
        uv = (bary[..., None] * uvc).sum(1)  # [h, 2]
    if sc.tinted:
        out["tint"] = _tint_at(sc, shape, face, bary, uv)
    for name, entries in sc.tex.items():
        rows = sc.mats.p[name]
        width = rows.shape[1]
        if len(entries) == 1 and len(sc.shapes) == 1:
            out[name] = _sample_texture(entries[0][1], uv).expand(-1, width)
            continue
        v = _take(rows, shape)
        for i, tp in entries:
            sel = torch.nonzero(shape == i).squeeze(1)
            if sel.numel():
                v = v.index_put((sel,), _sample_texture(tp, _take(uv, sel)).expand(-1, width))
        out[name] = v
    return out


def _tint_at(sc: _Scene, shape: Tensor, face: Tensor, bary: Tensor, uv: Tensor | None) -> Tensor:
    """``[h, 1 or 3]`` product of the hit meshes' texture (bilinear at ``uv``) and vertex colours (1 elsewhere)."""
    tint = torch.ones(shape.shape[0], 1, dtype=sc.dtype, device=sc.device)
    if sc.vcolors is not None:
        vc = _take(sc.vcolors, _take(sc.faces_long, face).reshape(-1)).reshape(face.shape[0], 3, -1)
        tint = (bary[..., None] * vc).sum(1)
    for i, tp in sc.tint_tex:
        if len(sc.shapes) == 1:
            return tint * _sample_texture(tp, uv)
        sel = torch.nonzero(shape == i).squeeze(1)
        if sel.numel():
            t = _take(tint, sel) * _sample_texture(tp, _take(uv, sel))
            tint = tint.expand(-1, t.shape[1]).index_put((sel,), t)
    return tint


def _hit_material(sc: _Scene, h: _Hit) -> dict:
    """:func:`_material_at` of a :class:`_Hit`."""
    if not sc.tex and not sc.tinted:
        return {}
    if h.face is None or h.bary is None:
        raise RuntimeError(f"{_FN}(): internal error: a hit without face / bary reached a textured material")
    return _material_at(sc, h.shape, h.face, h.bary)


def _trace(sc: _Scene, origins: Tensor, dirs: Tensor, face: Tensor | None = None) -> _Hit:
    """Closest hits of the rays, re-attached; ``face [R]`` int32 (-1: miss) when already known (rasterized)."""
    if face is None:
        face = intersect(sc.accel.bvh, origins, dirs).face
    idx = torch.nonzero(face >= 0).squeeze(1)
    face = _take(face, idx).long()
    o, d = _take(origins, idx), _take(dirs, idx)
    # One gather of the hit triangles' corners (positions and vertex normals side by side) and one fused
    # kernel for the re-attached point, barycentrics and both normals (hand-written backward).
    if sc.corners is None:
        sc.corners = torch.cat([sc.verts, sc.vnormals], 1)
    corners = _take(sc.corners, _take(sc.faces_long, face).reshape(-1)).reshape(-1, 18)
    points, bary, ns, ng = hit_attributes(corners, o, d)
    return _Hit(idx, _take(sc.owner, face), points, ns, ng, safe_normalize(-d), face, bary)


def _visible(sc: _Scene, p: Tensor, ng: Tensor, l: Tensor, dist: Tensor) -> Tensor:
    if not sc.settings.shadows:
        return torch.ones_like(p[:, :1])
    # Step off the surface *along* the shadow ray, so the ray's line (hence where a shadow
    # boundary falls) is unchanged; grazing rays step further to clear the surface.
    step = sc.eps / dot(ng, l).abs().clamp_min(0.05)
    o = (p + step[:, None] * l).detach()
    occ = occluded(sc.accel.bvh, o, l.detach(), (dist.detach() - step - sc.eps).clamp_min(0))
    return (~occ).to(p.dtype)[:, None]


def _power(a: Tensor, b: Tensor) -> Tensor:
    """Power-heuristic weight ``a^2 / (a^2 + b^2)`` of the strategy with density ``a`` (no gradient)."""
    a2, b2 = a * a, b * b
    return torch.where(a2 > 0, a2 / (a2 + b2).clamp_min(1e-300), torch.zeros_like(a))


def _direct(sc: _Scene, h: _Hit, gen: torch.Generator | SobolDraws, analytic_env: bool) -> Tensor:
    """``[h, 3]`` reflected radiance from all lights at the hits (next-event estimation, MIS-weighted).

    All hits are shaded at once (materials are gathered per hit from :class:`MaterialTable`); hits on
    mirrors get 0 (their delta lobe meets no light sample).
    """
    out = torch.zeros_like(h.points)
    if h.idx.numel() == 0:
        return out
    mis, mats = sc.settings.mis, sc.mats
    at = _hit_material(sc, h)
    if mats.mirror.any():
        sel = torch.nonzero(~mats.mirror[h.shape]).squeeze(1)
        if sel.numel() == 0:
            return out
        sid, p, ns, ng, wo = (_take(x, sel) for x in (h.shape, h.points, h.ns, h.ng, h.wo))
        at = {k: _take(v, sel) for k, v in at.items()}
        if is_sobol(gen):
            gen = gen.take(sel)
    else:
        sel = None
        sid, p, ns, ng, wo = h.shape, h.points, h.ns, h.ng, h.wo
    n = p.shape[0]

    def rand(k):
        return torch.rand(k, 1, generator=gen, dtype=sc.dtype, device=sc.device)

    rgb = torch.zeros_like(p)
    for light in sc.point_lights:
        l, e_perp = _eval_light(_FN, light, p)
        if isinstance(light, PointLight):
            dist = (light.position - p).norm(dim=-1)
        else:
            dist = torch.full_like(p[:, 0], 1e30)
        cos = dot(ns, l, keepdim=True).clamp_min(0.0)
        rgb = rgb + mats.brdf(sid, ns, l, wo, at) * e_perp * cos * _visible(sc, p, ng, l, dist)
    for j, (e_id, (tris, areas)) in enumerate(zip(sc.emitters, sc.emit_tris)):
        if is_sobol(gen):  # one pair: the triangle pick, rescaled, is the first coordinate (as the kernel)
            u = gen.emitter(j)
            k, u1 = pick_and_rescale(torch.cumsum(areas.detach(), 0) / areas.detach().sum(), u[:, 0])
            u1, u2 = u1[:, None], u[:, 1:]
        else:
            k = torch.multinomial(areas.detach(), n, replacement=True, generator=gen)
            u1, u2 = rand(n), rand(n)
        su = u1.sqrt()
        tv = _take(sc.verts, _take(tris, k).reshape(-1)).reshape(-1, 3, 3)  # [n, 3, 3]
        y = (1 - su) * tv[:, 0] + su * (1 - u2) * tv[:, 1] + su * u2 * tv[:, 2]
        ny = safe_normalize(torch.linalg.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0], dim=-1))
        d = y - p
        dist2 = dot(d, d, keepdim=True).clamp_min(1e-12)
        dist = dist2.sqrt()
        l = d / dist
        cos_y = (-dot(l, ny, keepdim=True)).clamp_min(0.0)
        cos = dot(ns, l, keepdim=True).clamp_min(0.0)
        area = areas.sum()
        e_perp = sc.shapes[e_id].emission * cos_y * area / dist2
        term = mats.brdf(sid, ns, l, wo, at) * e_perp * cos * _visible(sc, p, ng, l, dist[:, 0])
        if mis:
            with torch.no_grad():
                p_light = (dist2 / (cos_y.clamp_min(1e-12) * area))[:, 0]
                w = _power(p_light, mats.pdf(sid, ns.detach(), wo.detach(), l.detach()))
            term = term * w[:, None]
        rgb = rgb + term
    if sc.env is not None:
        l, pdf = sc.env.sample(n, gen)
        cos = dot(ns, l, keepdim=True).clamp_min(0.0)
        term = mats.brdf(sid, ns, l, wo, at) * sc.env.eval(l) * cos / pdf[:, None]
        term = term * _visible(sc, p, ng, l, torch.full_like(p[:, 0], 1e30))
        if mis:
            term = term * _power(pdf, mats.pdf(sid, ns.detach(), wo.detach(), l))[:, None]
        rgb = rgb + term
    if not analytic_env and (sc.ambient or sc.sh):
        rgb = rgb + _sky_sample(sc, sid, p, ns, ng, wo, at, gen)
    if analytic_env and (sc.ambient or sc.sh):
        kd = mats.kd(sid, at)
        for amb in sc.ambient:
            rgb = rgb + amb.color * kd
        for shl in sc.sh:
            rgb = rgb + (kd / math.pi) * _sh_irradiance(shl.coeffs, ns)
    return rgb if sel is None else out.index_add(0, sel, rgb)


def _sky_sample(sc: _Scene, sid: Tensor, p: Tensor, ns: Tensor, ng: Tensor, wo: Tensor, at: dict,
                gen: torch.Generator | SobolDraws) -> Tensor:
    """``[n, 3]`` one light sample of the ambient / SH sky (``max_bounces > 1``) at non-mirror hits: a cosine
    direction about ``ns``, shadowed, MIS-weighted (power heuristic) against the BSDF ray that escapes to the sky.

    Why cosine: the sky is smooth (band <= ``order``), so ``cos`` is most of the integrand's variation; for a
    Lambert vertex this makes two sky samples per vertex (one a shadow ray only). Measured against BSDF rays alone
    (the open Cornell box of ``bench/trace_sky.py``, 64^2, 16 spp, 3 bounces, float32, per-pixel variance over 16
    seeds, 1 thread, two alternating runs): per-pixel variance 0.56x in both renderers; CPU time 1.45-1.49x in the
    fused kernel (variance x time 0.78-0.82x) and 1.6-1.7x in this torch path (0.90-0.98x).
    """
    n = p.shape[0]
    u = gen.sky() if is_sobol(gen) else torch.rand(n, 2, generator=gen, dtype=sc.dtype, device=sc.device)
    l = sample_cosine(ns.detach(), u[:, 0], u[:, 1])
    cos = dot(ns, l, keepdim=True).clamp_min(0.0)
    pdf = dot(ns.detach(), l).clamp_min(0.0) / math.pi
    term = sc.mats.brdf(sid, ns, l, wo, at) * _sky_radiance(sc, l) * cos / pdf.clamp_min(1e-30)[:, None]
    term = torch.where((pdf > 0)[:, None], term, 0.0) * _visible(sc, p, ng, l, torch.full_like(p[:, 0], 1e30))
    if sc.settings.mis:
        term = term * _power(pdf, sc.mats.pdf(sid, ns.detach(), wo.detach(), l))[:, None]
    return term


def _emission(sc: _Scene, h: _Hit) -> Tensor:
    """``[h, 3]`` radiance emitted towards the ray by the front sides of emissive shapes."""
    if not sc.emitters:
        return torch.zeros_like(h.points)
    front = (sc.is_emitter[h.shape] & (dot(h.ng, h.wo) > 0)).to(h.points.dtype)[:, None]
    return front * sc.emission[h.shape]


def _sample_bsdf(sc: _Scene, h: _Hit, gen: torch.Generator | SobolDraws) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(weight [h, 3] = f cos / pdf, wi [h, 3], pdf [h], delta [h] bool)`` of one BSDF sample per hit."""
    mats = sc.mats
    wi, pd = mats.sample(h.shape, h.ns.detach(), h.wo.detach(), gen)
    cos = dot(h.ns, wi, keepdim=True).clamp_min(0.0)
    ok = (pd > 0)[:, None]
    w = torch.where(ok, mats.brdf(h.shape, h.ns, wi, h.wo, _hit_material(sc, h)) * cos / pd.clamp_min(1e-30)[:, None], 0.0)
    delta = mats.mirror[h.shape]
    if mats.mirror.any():
        refl = 2 * dot(h.ns, h.wo, keepdim=True) * h.ns - h.wo
        wi = torch.where(delta[:, None], refl, wi)
        refl_rgb = mats.reflectance(h.shape)
        if sc.tinted:
            refl_rgb = refl_rgb * _hit_material(sc, h)["tint"]
        w = torch.where(delta[:, None], refl_rgb, w)
        pd = torch.where(delta, torch.ones_like(pd), pd)
    return w, wi, pd, delta


def _fused_ok(sc: _Scene) -> bool:
    """Whether :func:`_radiance_direct` computes ``sc``'s radiance: direct light only, from point and
    directional lights (and analytic ambient light), on Lambert surfaces."""
    return (sc.settings.max_bounces == 1 and not sc.emitters and sc.env is None and not sc.sh
            and (sc.analytic_sky or not sc.ambient) and sc.mats.present == [_LAMBERT])


def _light_rows(sc: _Scene) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(kind [nl] int32, vec [nl, 3], scale [nl, 3], falloff [nl, 3])`` of the point / directional lights,
    as :func:`lumigrad.ops.trace.shade_direct` takes them (differentiable w.r.t. the lights' tensors)."""
    like = sc.verts
    kinds, vecs, scales, falls = [], [], [], []
    for light in sc.point_lights:
        color = _match(_FN, "light.color", light.color, like)
        scales.append(color * _match(_FN, "light.intensity", light.intensity, like).reshape(()))
        if isinstance(light, PointLight):
            kinds.append(0)
            vecs.append(_match(_FN, "light.position", light.position, like))
            f = light.falloff
            falls.append((0.0, 0.0, 1.0) if f == "inverse_square" else (1.0, 0.0, 0.0) if f == "none" else
                         tuple(float(x) for x in f))
        else:
            kinds.append(1)
            vecs.append(_normalize(_match(_FN, "light.to_light", light.to_light, like)))
            falls.append((1.0, 0.0, 0.0))
    kw = dict(dtype=sc.dtype, device=sc.device)
    if not kinds:
        z = torch.zeros(0, 3, **kw)
        return torch.zeros(0, dtype=torch.int32, device=sc.device), z, z, z
    return (torch.tensor(kinds, dtype=torch.int32, device=sc.device), torch.stack(vecs, 0),
            torch.stack(scales, 0), torch.tensor(falls, **kw))


def _radiance_direct(sc: _Scene, origins: Tensor, dirs: Tensor, face: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """:func:`_radiance` when :func:`_fused_ok`: the same estimator (no random numbers are drawn).

    Closest hits and one shadow ray per light come from one Warp launch
    (:func:`lumigrad.ops.trace.trace_direct`), and the re-attached hit, its shading normal
    and the Lambert sum over lights from one fused kernel with a hand-written backward
    (:func:`lumigrad.ops.trace.shade_direct`), instead of ~60 torch ops on ``[h, 3]``
    tensors, their backward, and an ``occluded`` launch per light. Measured on the
    ``bench/raytrace.py`` scene (256^2, 4 spp, fwd+bwd, 2 threads, loaded machine, A/B
    in one process): 803 -> 587 ms at 5k triangles, 1144 -> 953 ms at 82k. The hit
    points of the shadow rays are float32 (as the BVH's), which moves their origins
    by ~1e-7 of the scene size, far below ``ray_eps``.
    """
    st = sc.settings
    R = origins.shape[0]
    lk, lv, ls, lf = _light_rows(sc)
    face, vis = trace_direct(sc.accel.bvh, origins, dirs, lk, lv, sc.eps, st.shadows, face=face)
    hit = face >= 0
    idx = torch.nonzero(hit).squeeze(1)
    f = _take(face, idx).long()
    if sc.corners is None:  # positions and normals side by side: one gather (and one index_add backward)
        sc.corners = torch.cat([sc.verts, sc.vnormals], 1)
    corners = _take(sc.corners, _take(sc.faces_long, f).reshape(-1)).reshape(-1, 18)
    sid = _take(sc.owner, f)
    alb = _take(sc.mats.p["albedo"], sid)
    if "albedo" in sc.tex or sc.tinted:  # per-hit albedo at the (differentiable, torch) barycentrics of the hits
        o, d = _take(origins, idx), _take(dirs, idx)
        _, b1, b2 = ray_triangle(o, d, corners[:, 0:3], corners[:, 6:9], corners[:, 12:15])
        at = _material_at(sc, sid, f, torch.stack([1.0 - b1 - b2, b1, b2], -1))
        alb = at.get("albedo", alb) * at.get("tint", 1.0)
    rgb = shade_direct(corners, _take(origins, idx), _take(dirs, idx), alb, _take(vis, idx).to(sc.dtype),
                       lk, lv, ls, lf)
    for amb in sc.ambient:
        rgb = rgb + amb.color * alb
    bg = torch.tensor(st.background, dtype=sc.dtype, device=sc.device)
    if bool((bg != 0).any()):
        L = bg.expand(R, 3) * (~hit).to(sc.dtype)[:, None]
    else:
        L = torch.zeros(R, 3, dtype=sc.dtype, device=sc.device)
    return L.index_add(0, idx, rgb), hit


def _radiance(sc: _Scene, origins: Tensor, dirs: Tensor, gen: torch.Generator | SobolDraws,
              face: Tensor | None = None, attach: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(L [R, 3], hit [R] bool)`` along camera rays (closest hits ``face [R]`` int32 when known, else BVH).

    Path ``camera -> x_0 -> ... -> x_k``: next-event estimation at every ``x_i``
    with ``i < max_bounces``, and one BSDF sample from each of them; what the BSDF
    ray finds (an emitter's front, the environment) is added with the MIS weight
    (1 after a mirror). Paths therefore have at most ``max_bounces + 1``
    segments, like Mitsuba's ``max_depth = max_bounces + 1``.

    ``face [R, C]``: the first ``C`` hits of each path, known where ``>= 0`` (column 0 given, the later ones
    only after mirror bounces, whose rays are fixed: the boundary term's silhouettes seen in mirrors).
    ``attach [R]``: the camera rays' views, when their hits on moving shapes are attached
    (``TraceSettings(interior="attached")``, :mod:`lumigrad.render._attached`): each path's radiance then
    carries its sample's area change.
    """
    chain = None
    if face is not None and face.dim() == 2:
        face, chain = face[:, 0].contiguous(), face[:, 1:]
    if attach is not None and attached_shapes(sc) is None:
        attach = None
    if _fused_ok(sc) and attach is None:
        return _radiance_direct(sc, origins, dirs, face)
    st = sc.settings
    R = origins.shape[0]
    h = _trace(sc, origins, dirs, face)
    change = None  # the attached samples' area change (1 in value)
    if attach is not None:
        h, change = attach_camera_hits(sc, h, attach)
        change = torch.ones(R, dtype=sc.dtype, device=sc.device).index_put((h.idx,), change)[:, None]
    hit = torch.zeros(R, dtype=torch.bool, device=sc.device)
    hit[h.idx] = True
    if sc.env is not None:
        miss = torch.nonzero(~hit).squeeze(1)
        L = torch.zeros_like(origins).index_add(0, miss, sc.env.eval(dirs[miss]).to(origins.dtype))
    else:
        bg = torch.tensor(st.background, dtype=sc.dtype, device=sc.device)
        L = bg.expand(R, 3) * (~hit).to(sc.dtype)[:, None]
    L = L.index_add(0, h.idx, _emission(sc, h))
    sky = bool(sc.ambient or sc.sh) and not sc.analytic_sky  # ambient / SH lights as a distant environment
    trace_last = bool(sc.emitters) or sc.env is not None or sky
    beta = torch.ones_like(h.points)
    idx = h.idx
    draws = gen
    for depth in range(st.max_bounces):
        if idx.numel() == 0:
            break
        if is_sobol(gen):
            draws = gen.take(idx).at(depth)
        L = L.index_add(0, idx, beta * _direct(sc, h, draws, analytic_env=sc.analytic_sky))
        last = depth + 1 == st.max_bounces
        if last and not trace_last:
            break
        weight, new_d, pdf, delta = _sample_bsdf(sc, h, draws)
        beta = beta * weight
        if depth + 1 >= st.rr_depth and not last:
            q = beta.detach().max(-1).values.clamp(0.05, 0.95)
            u = draws.roulette() if is_sobol(draws) else \
                torch.rand(q.shape[0], generator=gen, dtype=sc.dtype, device=sc.device)
            keep = u < q
            beta = beta / q[:, None]
            sel = torch.nonzero(keep).squeeze(1)
            beta, idx, delta, new_d, pdf = (_take(x, sel) for x in (beta, idx, delta, new_d, pdf))
            h = _Hit(*(None if x is None else _take(x, sel) for x in h))
        side = torch.where(dot(h.ng, new_d, keepdim=True) >= 0, 1.0, -1.0).to(sc.dtype)
        o = h.points + side * h.ng * sc.eps
        known = None
        if chain is not None and depth < chain.shape[1]:
            known = _fill_unknown_hits(sc, o, new_d, _take(chain[:, depth], idx).contiguous())
        h2 = _trace(sc, o, new_d, known)
        beta_h2 = _take(beta, h2.idx)
        if attach is not None:  # the later hits attached too (their samples' weights follow the moved measure)
            h2, moved = attach_path_hits(sc, h, h2, delta)
            beta_h2 = beta_h2 * moved[:, None]
        # What the BSDF ray finds: emitters, or (escaping) the environment / ambient / SH light.
        esc = torch.ones(idx.shape[0], dtype=torch.bool, device=sc.device)
        esc[h2.idx] = False
        esc = torch.nonzero(esc).squeeze(1)
        if sc.emitters:
            le = _emission(sc, h2)
            with torch.no_grad():
                if st.mis:
                    d2 = ((h2.points - _take(o, h2.idx)) ** 2).sum(-1)
                    cos_y = dot(h2.ng, h2.wo).abs().clamp_min(1e-12)
                    area = sc.emit_area[h2.shape]
                    p_light = torch.where(area > 0, d2 / (cos_y * area.clamp_min(1e-30)), torch.zeros_like(d2))
                    w = torch.where(delta[h2.idx], 1.0, _power(pdf[h2.idx], p_light))
                else:
                    w = delta[h2.idx].to(sc.dtype)
            L = L.index_add(0, _take(idx, h2.idx), beta_h2 * le * w[:, None])
        if sc.env is not None and esc.numel():
            with torch.no_grad():
                if st.mis:
                    w = torch.where(delta[esc], 1.0, _power(pdf[esc], sc.env.pdf(new_d[esc])))
                else:
                    w = delta[esc].to(sc.dtype)
            L = L.index_add(0, _take(idx, esc), _take(beta, esc) * sc.env.eval(_take(new_d, esc)) * w[:, None])
        if sky and esc.numel():  # MIS-weighted against the sky's light sample (_sky_sample)
            with torch.no_grad():
                if st.mis:
                    p_sky = dot(h.ns[esc], new_d[esc]).clamp_min(0) / math.pi
                    w = torch.where(delta[esc], 1.0, _power(pdf[esc], p_sky))
                else:
                    w = delta[esc].to(sc.dtype)
            L = L.index_add(0, _take(idx, esc), _take(beta, esc) * _sky_radiance(sc, _take(new_d, esc)) * w[:, None])
        if last:
            break
        beta = beta_h2
        idx = _take(idx, h2.idx)
        h = h2
    return (L if change is None else L * change), hit


def _sky_radiance(sc: _Scene, dirs: Tensor) -> Tensor:
    """``[n, 3]`` radiance of the ambient and SH lights seen along unit ``dirs [n, 3]`` when they act as a distant
    environment (``max_bounces > 1``): ``sum color + sum_lm c_lm Y_lm(dirs)`` (the basis of
    :func:`lumigrad.shade.lighting.sh_basis`, whose cosine-weighted integral is ``_sh_irradiance``). Negative SH
    radiance is kept, as ``shade`` keeps negative irradiance. Differentiable w.r.t. the colours and coefficients.

    BSDF rays that escape see it, MIS-weighted against one light sample per vertex (:func:`_sky_sample`).
    """
    L = torch.zeros_like(dirs)
    for amb in sc.ambient:
        L = L + amb.color.to(sc.dtype)
    for shl in sc.sh:
        L = L + _sh_basis(dirs, shl.order) @ shl.coeffs.to(sc.dtype)
    return L


def _camera_rays(camera: Camera, view: Tensor, pix: Tensor) -> tuple[Tensor, Tensor]:
    """World rays ``(origins [R, 3], dirs [R, 3] unit)`` through pixel coordinates ``pix [R, 2]`` of views ``view [R]``."""
    if camera.batch_size == 1:
        # One view: broadcast its matrices instead of gathering [R, 4, 4] copies for a batched matmul.
        c2w, k = torch.linalg.inv(camera.world_to_cam[0]), camera.K[0]
        y = (pix[:, 1] - k[1, 2]) / k[1, 1]
        x = (pix[:, 0] - k[0, 2] - k[0, 1] * y) / k[0, 0]
        rot, t = c2w[:3, :3], c2w[:3, 3]
        if camera.projection == "perspective":
            d = torch.stack([x, y, torch.ones_like(x)], -1) @ rot.T
            return t.expand_as(d), safe_normalize(d)
        o = torch.stack([x, y, torch.zeros_like(x)], -1) @ rot.T + t
        return o, rot[:, 2].expand_as(o)
    c2w = torch.linalg.inv(camera.world_to_cam)[view]
    k = camera.K[view]
    y = (pix[:, 1] - k[:, 1, 2]) / k[:, 1, 1]
    x = (pix[:, 0] - k[:, 0, 2] - k[:, 0, 1] * y) / k[:, 0, 0]
    rot, t = c2w[:, :3, :3], c2w[:, :3, 3]
    if camera.projection == "perspective":
        d = (rot @ torch.stack([x, y, torch.ones_like(x)], -1)[..., None])[..., 0]
        return t, safe_normalize(d)
    o = (rot @ torch.stack([x, y, torch.zeros_like(x)], -1)[..., None])[..., 0] + t
    return o, rot[:, :, 2]


# Perspective cameras: the rasterizer's near plane sits just before the nearest vertex; when the scene's depth
# range far / near (over all views) exceeds this, or a vertex lies at or behind the camera plane (no near
# plane excludes nothing visible then), camera rays use the BVH. float32 depth (z_ndc) resolves surfaces
# ~3e-8 far / near apart (relative depth) near the far plane: 3e-5 at this bound, where the BVH's float32 t
# resolves ~1e-7.
_MAX_DEPTH_RATIO = 1e3


# Rasterize the camera samples only while the faces number at most this many per pixel: a raster
# pass costs per triangle (setup, binning) and per pixel, a BVH query per ray. bench/raytrace.py
# (session 8, quiet machine, CPU ns per ray, raster vs BVH): 82k triangles at 256^2 (1.25 per
# pixel) 158 vs 212, 1.3M at 512^2 (5 per pixel) 359 vs 259, 1.3M at 256^2 (20) 1206 vs 401.
_MAX_FACES_PER_PIXEL = 2.5


def _sample_offsets(settings: TraceSettings, views: int, dtype: torch.dtype, device) -> Tensor:
    """``[B, spp, 2]`` sub-pixel positions ``(u, v)`` in ``[0, 1)^2`` of sample ``s`` of every pixel of view ``b``.

    One uniform jitter per (view, sample index), stratified when ``spp = n^2`` (sample ``s`` in cell
    ``(s // n, s % n)``), drawn from the render's seed on a stream of its own (not a chunk's), so
    replay and any ``chunk_rays`` see the same samples.

    With ``sampler="sobol"``: dimension pair 0 of the Sobol sampler (:mod:`lumigrad.ops._qmc_funcs`), keyed by the
    view, so the offsets are a ``(0, m, 2)``-net when ``spp = 2^m`` (16 strata in x and in y at 16 spp instead of 4:
    on the Cornell box's axis-aligned edges most of the sampler's gain at 64^2). The fused path kernel, which traces
    its camera rays, keys pair 0 by the pixel instead (``PathSettings.pixel_offsets``): errors of neighbouring
    pixels then do not add up coherently (the floor-albedo gradient's variance at 128^2: 2.0e-9 shared, 1.4e-9 per
    pixel).

    Not one jitter per view for all cells (a randomly shifted ``n x n`` grid, which one raster pass at
    ``n`` times the resolution would serve): unbiased too, but every render is then the image shifted
    by one random sub-pixel amount, a coherent error that does not average out over pixels (image
    sums and pixel means vs. ``render_mesh`` are measurably noisier: tests/trace failed with it).
    """
    S = settings.spp
    if settings.sampler == "sobol":  # dimension pair 0 of the Sobol sampler, keyed by the view
        key = _qmc.qmc_key(settings.seed % (2**31), torch.arange(views).repeat_interleave(S))
        u = _qmc.qmc2(key, torch.arange(S).repeat(views), _qmc.qmc_bits(S), 0, torch.float64).reshape(views, S, 2)
        return u.to(dtype).clamp(max=1.0 - torch.finfo(dtype).eps).to(device)
    g = torch.Generator().manual_seed((settings.seed * 1_000_003 + (1 << 62)) % (2**63))
    u = torch.rand(views, S, 2, generator=g, dtype=torch.float64)
    n = math.isqrt(S)
    if n * n == S:
        s = torch.arange(S)
        u = (torch.stack([s // n, s % n], -1).to(torch.float64) + u) / n
    u = u.to(dtype)
    return u.clamp(max=1.0 - torch.finfo(dtype).eps).to(device)


def _raster_primary(sc: _Scene, force: bool = False) -> Tensor | None:
    """``[B, spp, H * W]`` int32 closest hits (-1: miss) of the camera samples, by rasterization, or None.

    Pass ``s`` rasterizes the views with their principal points moved by ``0.5 - offsets[b, s]``
    pixels (a clip-space shift ``x += -2 dx w / W``, ``y += 2 dy w / H``): the rasterizer's pixel
    centre ``j + 0.5`` is then the ray through ``j + offsets[b, s]``, the ray of sample ``s`` of that
    pixel. Near / far come from the vertices' depths, so nothing the ray tracer can hit is clipped.
    None (use the BVH) when that cannot be exact: a perspective view with a vertex at or behind the
    camera plane, or a depth range beyond ``_MAX_DEPTH_RATIO``; and, unless ``force``, when the
    faces outnumber the pixels more than ``_MAX_FACES_PER_PIXEL`` times (the BVH is cheaper then).
    """
    cam, S = sc.camera, sc.settings.spp
    B, H, W = cam.batch_size, cam.height, cam.width
    if not force and sc.faces.shape[0] > _MAX_FACES_PER_PIXEL * H * W:
        log.debug("render_trace: camera rays use the BVH (%d faces for %d pixels)", sc.faces.shape[0], H * W)
        return None
    with torch.no_grad():
        w2c = cam.world_to_cam.detach()
        v = sc.verts.detach()
        # Camera-frame depths (one pass over the vertices per view) for near / far.
        z = torch.stack([torch.addmv(w2c[b, 2, 3], v, w2c[b, 2, :3]) for b in range(B)])
        zmin, zmax = float(z.min()), float(z.max())
        if cam.projection == "perspective":
            if not (zmin > 0 and zmax < _MAX_DEPTH_RATIO * zmin):
                log.debug("render_trace: camera rays use the BVH (vertex depths %.3g .. %.3g)", zmin, zmax)
                return None
            near, far = zmin * (1 - 1e-3), zmax * (1 + 1e-3)
            clip = perspective_clip_from_K
        else:
            if zmax <= 0:  # everything behind the rays' origins: all miss
                return torch.full((B, S, H * W), -1, dtype=torch.int32, device=sc.device)
            near, far = max(zmin, 0.0) * (1 - 1e-3), zmax * (1 + 1e-3)
            clip = orthographic_clip_from_K
        m = clip(cam.K.detach(), W, H, near, far) @ w2c  # [B, 4, 4] world -> clip
        if sc.faces.shape[0] >= 2**24:  # float32 rast cannot index the faces exactly
            v, m = v.double(), m.double()
        d = sc.offsets.to(m.dtype) - 0.5  # [B, S, 2]
        out = torch.empty(B, S, H * W, dtype=torch.int32, device=sc.device)
        pos = torch.empty(B, v.shape[0], 4, dtype=v.dtype, device=sc.device)
        vb = v.expand(B, -1, -1)
        for s in range(S):
            # Rows 0, 1 of the clip matrix plus multiples of row 3 (w): x += -2 dx w / W, y += 2 dy w / H.
            ms = m.clone()
            ms[:, 0] -= (2.0 * d[:, s, 0] / W)[:, None] * m[:, 3]
            ms[:, 1] += (2.0 * d[:, s, 1] / H)[:, None] * m[:, 3]
            torch.baddbmm(ms[:, None, :, 3], vb, ms[:, :, :3].transpose(1, 2), out=pos)  # [B, V, 4]
            _rasterize_ids(pos, sc.faces, (H, W), workspace=sc.accel._raster_ws, out=out[:, s])
    return out


def _chunk(sc: _Scene, first: int, count: int, chunk: int) -> tuple[Tensor, Tensor]:
    """``(image [P, 3], coverage [P])``: the mean over ``spp`` restricted to samples ``first .. first + count``.

    When ``chunk_rays`` (hence ``first`` and ``count``) is a multiple of ``spp`` the chunk holds whole
    pixels and only their rows are returned (``[count / spp, 3]`` and ``[count / spp]``): no image-sized buffers per chunk.

    Sample ``r`` is sample ``s = r % spp`` of pixel ``r // spp`` (view-major, then row, column), at
    the pixel's corner plus ``sc.offsets[view, s]`` (:func:`_sample_offsets`: one sub-pixel offset per
    view and sample index, stratified when ``spp`` is a square). Its closest hit is
    ``sc.primary[view, s, pixel]`` when the samples were rasterized (:func:`_raster_primary`), else a
    BVH query. Everything else random is drawn from ``sc.chunk_gen(chunk)``, and ``sc.offsets`` /
    ``sc.primary`` are fixed for the render, so calling this twice gives the same paths (path replay).
    """
    gen = sc.chunk_gen(chunk)
    p, o, d, face = _chunk_rays(sc, first, count)
    if sc.settings.sampler == "sobol":
        S = sc.settings.spp
        r = torch.arange(first, first + count, device=sc.device)
        sky = int(bool(sc.ambient or sc.sh) and not sc.analytic_sky)
        gen = SobolDraws(_qmc.qmc_key(sc.settings.seed % (2**31), r // S), r % S, _qmc.qmc_bits(S),
                         (len(sc.emitters), int(sc.env is not None), sky), gen, sc.dtype)
    H, W = sc.camera.height, sc.camera.width
    L, hit = _radiance(sc, o, d, gen, face, attach=p // (H * W))
    return _pixel_sums(sc, p, L, hit)


def _camera_radiance(sc: _Scene, view: Tensor, pix: Tensor, face: Tensor | None = None,
                     with_hits: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """``[R, 3]`` radiance of camera rays through ``pix [R, 2]`` of views ``view [R]``; ``face [R]`` or ``[R, C]``
    int32: their first (``C``) hits where ``>= 0`` (re-attached, not traced; the boundary term's silhouette
    faces, seen directly or after ``C - 1`` mirrors: :func:`_radiance`). ``with_hits``: also the rays' first hits
    ``[R]`` int32 (-1: a miss)."""
    o, d = _camera_rays(sc.camera, view, pix)
    first = None
    if face is not None or with_hits:
        known = torch.full((pix.shape[0],), -1, dtype=torch.int32, device=sc.device) if face is None else \
            face if face.dim() == 1 else face[:, 0].contiguous()
        first = _fill_unknown_hits(sc, o, d, known)
        face = first if face is None or face.dim() == 1 else torch.cat([first[:, None], face[:, 1:]], 1)
    L = _radiance(sc, o, d, sc.gen, face)[0]
    return (L, first) if with_hits else L


def _fill_unknown_hits(sc: _Scene, origins: Tensor, dirs: Tensor, face: Tensor) -> Tensor:
    """``face [R]`` int32 with its entries ``< 0`` replaced by the BVH's closest hits of those rays."""
    todo = torch.nonzero(face < 0).squeeze(1)
    if todo.numel() == 0:
        return face
    return face.index_put((todo,), intersect(sc.accel.bvh, origins[todo], dirs[todo]).face.to(face.dtype))


def _chunk_rays(sc: _Scene, first: int, count: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``(pixel [n], origins [n, 3], dirs [n, 3], face [n] or None)`` of samples ``first .. first + count``
    (see :func:`_chunk`)."""
    cam = sc.camera
    S, H, W = sc.settings.spp, cam.height, cam.width
    r = torch.arange(first, first + count, device=sc.device)
    p, s = r // S, r % S
    view, q = p // (H * W), p % (H * W)
    pix = torch.stack([(q % W).to(sc.dtype), (q // W).to(sc.dtype)], -1) + sc.offsets[view, s]  # (u, v) = (col, row)
    o, d = _camera_rays(cam, view, pix)
    face = None if sc.primary is None else sc.primary[view, s, q]
    return p, o, d, face


def _pixel_sums(sc: _Scene, p: Tensor, L: Tensor, hit: Tensor) -> tuple[Tensor, Tensor]:
    """A chunk's samples ``L [n, 3]``, ``hit [n]`` of pixels ``p [n]`` as :func:`_chunk` returns them."""
    cam = sc.camera
    S, H, W = sc.settings.spp, cam.height, cam.width
    if sc.settings.chunk_rays % S == 0:  # then first and count are multiples of S
        # Whole pixels, each one's samples consecutive: the rows of pixels first / S .. (first + count) / S.
        return L.reshape(-1, S, 3).sum(1) / S, hit.to(sc.dtype).reshape(-1, S).mean(1)
    # Per-pixel sums inside the chunk: the caller adds dense images, so no per-sample index is kept.
    P = cam.batch_size * H * W
    return (torch.zeros(P, 3, dtype=sc.dtype, device=sc.device).index_add(0, p, L / S),
            torch.zeros(P, dtype=sc.dtype, device=sc.device).index_add(0, p, hit.to(sc.dtype) / S))


def _geometric_tensors(sc: _Scene, lights) -> list:
    """The tensors that place things: vertices, camera, point / directional light placement and the
    environment map's rotation (what visibility, hence the boundary term, depends on)."""
    geo = [s.mesh.verts for s in sc.shapes] + [sc.camera.world_to_cam, sc.camera.K]
    for light in lights:
        if isinstance(light, PointLight):
            geo.append(light.position)
        elif isinstance(light, DirectionalLight):
            geo.append(light.to_light)
        elif isinstance(light, EnvironmentLight):
            geo.append(light.to_world)
    return [t for t in geo if isinstance(t, Tensor)]


def _geometry_needs_grad(sc: _Scene, lights) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in _geometric_tensors(sc, lights))


def _boundary_needed(sc: _Scene, lights: list, image: Tensor) -> bool:
    """Whether the boundary term can carry a derivative: its weights are detached, so only the
    geometric tensors (:func:`_geometric_tensors`) receive any."""
    if fwAD.unpack_dual(image).tangent is not None:
        return True
    return image.requires_grad and _geometry_needs_grad(sc, lights)


def _tensors(obj, depth: int = 3) -> list:
    """The tensors among ``obj``'s attributes and theirs, ``depth`` levels down (a shape's material's TextureParam)."""
    if isinstance(obj, Tensor):
        return [obj]
    if depth == 0 or not hasattr(obj, "__dict__"):
        return []
    return [t for v in vars(obj).values() for t in _tensors(v, depth - 1)]


def _differentiated(shapes, camera, lights) -> bool:
    """Whether the render will carry a derivative: an input that requires grad (grad mode on) or has a
    forward-mode tangent."""
    return any(_varies(t) for obj in (*shapes, camera, *lights) for t in _tensors(obj))


def _reseeded(sc: _Scene, seed: int) -> _Scene:
    """A shallow copy of render scene ``sc`` drawing its samples from ``seed``."""
    other = copy.copy(sc)
    other.settings = dataclasses.replace(sc.settings, seed=seed)
    other.gen = torch.Generator(device=sc.device).manual_seed(seed)
    other.offsets = _sample_offsets(other.settings, sc.camera.batch_size, sc.dtype, sc.device)
    other._path_camera = None
    other._attached = None  # computed again in this copy's grad mode (a render without gradient sees no motion)
    return other


def render_trace(
    shapes: Sequence[Shape] | Shape,
    camera: Camera,
    lights: Sequence = (),
    settings: TraceSettings = TraceSettings(),
    accel: TraceAccel | None = None,
) -> TraceOutput:
    """Ray-trace ``shapes`` from every view of ``camera``.

    Args:
        shapes: one or more :class:`Shape` (mesh + material + optional
            emission); all share one dtype and device. Material parameters may be
            :class:`~lumigrad.scene.materials.TextureParam` (sampled bilinearly at each hit's
            UV; the mesh needs ``uvs``; see ``docs/tracing.md``). The mesh's own ``texture`` and
            ``vert_colors`` multiply the BRDF at its hits, as in ``render_mesh``.
        camera: batched camera (B views), as for ``render_mesh``.
        lights: :class:`PointLight`, :class:`DirectionalLight` (shadowed),
            :class:`AmbientLight`, :class:`SHEnvironmentLight` (see module docstring).
            Emissive shapes are area lights.
        settings: :class:`TraceSettings`.
        accel: a :class:`TraceAccel` from :func:`prepare_trace` for the same
            topology (built here when None); it is refitted when the vertices changed since its last render.

    Camera samples: sample ``s`` of pixel ``p`` of view ``b`` is the ray through ``p +
    offset[b, s]``, with one sub-pixel offset per (view, sample index) shared by all pixels
    (stratified in an ``n x n`` grid when ``spp = n^2``, uniform otherwise), drawn from
    ``settings.seed`` alone: each pixel's estimate stays an unbiased box-filter estimate (neighbours
    share sample positions, so the noise is correlated), and path replay and ``chunk_rays`` see the
    same samples. Why: then the closest hits of all samples with index ``s`` are one raster pass of
    the scene with a sub-pixel shift (``settings.primary = "raster"``, default), far cheaper than a
    BVH query per ray; it is used whenever it is exact (pinhole or orthographic camera, every vertex
    in front of the camera with depth range ``far / near <= 1e3``) and the faces do not outnumber
    the pixels more than 2.5 times, else the BVH finds them (as with ``primary = "bvh"``).
    docs/tracing.md has the details.

    Returns:
        :class:`TraceOutput` ``(image [B, H, W, 3], alpha [B, H, W, 1])``.
        ``image`` has gradients w.r.t. vertices, camera (``world_to_cam`` and
        ``K``), material tensors and texture images, light tensors and emission, including the
        visibility terms described in :mod:`lumigrad.render._trace_edges`.

    Example:
        >>> from lumigrad.geometry.primitives import icosphere
        >>> from lumigrad.scene import Mesh
        >>> cam = Camera.look_at(torch.tensor([0., 0., 3.]), torch.zeros(3), width=16, height=16)
        >>> out = render_trace([Shape(Mesh(*icosphere(2)))], cam, [PointLight(torch.tensor([0., 2., 3.]), intensity=10.)])
        >>> out.image.shape
        torch.Size([1, 16, 16, 3])
    """
    shapes = _check_shapes(_FN, shapes)
    _check_textures(_FN, shapes)
    if not isinstance(camera, Camera):
        raise TypeError(f"{_FN}(): camera must be a Camera, got {type(camera).__name__}")
    if not isinstance(settings, TraceSettings):
        raise TypeError(f"{_FN}(): settings must be TraceSettings, got {type(settings).__name__}")
    kinds = (PointLight, DirectionalLight, AmbientLight, SHEnvironmentLight, EnvironmentLight)
    lights = [lights] if isinstance(lights, kinds) else list(lights)
    for i, l in enumerate(lights):
        if not isinstance(l, kinds):
            raise TypeError(f"{_FN}(): lights[{i}] must be a Point/Directional/Ambient/SH/Environment light, got "
                            f"{type(l).__name__}")
    if sum(isinstance(l, EnvironmentLight) for l in lights) > 1:
        raise ValueError(f"{_FN}(): at most one EnvironmentLight, got several (merge their texels)")
    v0 = shapes[0].mesh.verts
    if camera.dtype != v0.dtype or camera.device != v0.device:
        raise ValueError(f"{_FN}(): camera must share the meshes' dtype and device ({v0.dtype}, {v0.device}), got "
                         f"{camera.dtype} on {camera.device}")
    nv, nf = sum(s.mesh.verts.shape[0] for s in shapes), sum(s.mesh.faces.shape[0] for s in shapes)
    if accel is None:
        accel = prepare_trace(shapes)
    elif not isinstance(accel, TraceAccel) or accel.num_verts != nv or accel.num_faces != nf:
        raise ValueError(f"{_FN}(): accel must be a TraceAccel built by prepare_trace() for these shapes "
                         f"({nv} vertices, {nf} faces)")
    from lumigrad.render import _path_fused

    sc = _Scene(shapes, camera, lights, settings, accel)
    check_attached(sc, _FN)
    fused = _path_fused.fused_path_ok(sc)
    if not (settings.decorrelate and _differentiated(shapes, camera, lights)):
        return _render(sc, fused)
    seed = grad_seed(settings.seed)
    if fused and settings.replay:  # the kernel's backward re-traces the paths anyway: from the other seed
        sc.grad_scene = _reseeded(sc, seed)
        return _render(sc, fused)
    # TraceSettings.decorrelate: the image of settings.seed without autograd graph (the fused kernel where it
    # applies then), plus a zero-valued term carrying the derivatives of grad_seed's samples.
    with torch.no_grad():
        primal = _render(sc, _path_fused.fused_path_ok(sc))
    grad = _render(_reseeded(sc, seed), fused)
    return TraceOutput(primal.image.detach() + (grad.image - grad.image.detach()), primal.alpha)


def _render(sc: _Scene, fused: bool) -> TraceOutput:
    """One render of ``sc`` (:func:`render_trace` after its checks); ``fused``: by the fused path kernel."""
    from lumigrad.render import _path_fused

    settings, camera = sc.settings, sc.camera
    # The fused path kernel finds the camera hits itself: a BVH query costs it less than the raster passes.
    sc.primary = _raster_primary(sc) if settings.primary == "raster" and not fused else None
    B, H, W, S = camera.batch_size, camera.height, camera.width, settings.spp
    total, n = B * H * W * S, settings.chunk_rays
    replay = settings.replay and torch.is_grad_enabled()
    imgs, covs = [], []  # pixel rows of consecutive chunks (n % S == 0), or dense images to add
    for c, first in enumerate(range(0, total, n)):
        count = min(n, total - first)
        if fused:  # path replay is the kernel's own backward: nothing per sample is kept
            img_c, hit_c = _path_fused.chunk(sc, first, count, c)
        elif replay:
            # Non-reentrant checkpoint: the forward keeps no saved tensors of the chunk; backward re-runs
            # _chunk (same generator seed, same BVH) and back-propagates through the re-traced paths.
            img_c, hit_c = checkpoint(_chunk, sc, first, count, c, use_reentrant=False)
        else:
            img_c, hit_c = _chunk(sc, first, count, c)
        imgs.append(img_c)
        covs.append(hit_c)
    if n % S == 0:
        image, hits = torch.cat(imgs, 0), torch.cat(covs, 0)
    else:
        image, hits = imgs[0], covs[0]
        for img_c, hit_c in zip(imgs[1:], covs[1:]):
            image, hits = image + img_c, hits + hit_c
    image = image.reshape(B, H, W, 3)
    alpha = hits.reshape(B, H, W, 1)
    # The boundary term is zero-valued; it only carries derivatives, and only to the geometry. Without any
    # (no_grad and no forward-mode tangent, or no geometric tensor that needs a gradient) it is skipped.
    if settings.boundary == "edge" and not fused and _boundary_needed(sc, sc.lights, image):
        from lumigrad.render._trace_edges import boundary_term

        image = image + boundary_term(sc, _camera_radiance)
    return TraceOutput(image, alpha)
