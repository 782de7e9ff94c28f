"""Visibility-discontinuity gradients for :func:`lumigrad.render.path.render_trace` by edge sampling.

Method (Li, Aittala, Durand, Lehtinen 2018, "Differentiable Monte Carlo ray
tracing through edge sampling", in screen space). A pixel value is
``I = int_pixel f(x) dx``. Where ``f`` jumps along a curve that moves with the
parameters, ``dI/dtheta`` gains ``int_curve (f_minus - f_plus) v_n dl``, with
``v_n`` the curve's normal velocity. We sample points on every such curve,
measure the jump by shading the silhouette's own face at the point (primary
silhouettes: its camera ray re-attached to that face) and tracing a camera ray
a thousandth of a pixel beyond it (two such rays, one either side, for shadow
curves), and add the term ``delta_f * w * (n . (x_b - stop_grad(x_b)))`` to the pixel
holding ``x_b``: its value is zero and its gradient is the boundary integral.
Two kinds of curves are sampled:

* **Primary silhouettes**: mesh edges whose two faces face opposite ways
  from the camera (and open boundary edges), projected to the screen
  (``x_b`` is a differentiable function of the vertices *and the camera*, so
  camera pose and intrinsics get silhouette gradients too). Edges sampled in
  proportion to their projected length; with a still camera only the edges of
  shapes that move (:class:`Motion`: the others' terms are exactly zero). On
  the 32^2 Cornell box with one block moved (1 spp, 1024 samples, 32 seeds)
  that halved the standard error of its x / y translation gradient (0.00088 /
  0.00107 vs 0.00186 / 0.00222; the same restriction for the indirect term's
  edges was tried and not kept: near a block resting on the floor it picks
  the block's edges from points a hair away, whose 1 / distance weights gave
  one seed 30x the others').
* **Hard shadow boundaries** of point and directional lights: silhouette
  edges as seen from the light; a point ``e`` on the edge is pushed along the
  light ray ``L -> e`` onto the receiver (found by the BVH, re-attached in
  torch) and projected to the screen. Its screen-space tangent ``dx_b/ds``
  (central differences) gives the line element. The edges are picked by the
  on-screen length of their shadows (:func:`_shadow_lengths`). Faces the light sees edge-on
  (an icosphere's equator band under a light from straight above: 32 of a
  level-3 sphere's faces) count as turned away, so the silhouette is their near
  edge, and a receiver ray that grazes the caster (along such a face, or over
  the border of a face it meets from behind) goes on to the receiver: left to
  rounding, half of those edges' rays hit the sphere and the others failed the
  lit test, and the missing outline biased d/dz of the icosphere test scene
  (``tests/trace/test_trace_edge_on_shadows.py``) to 0.0002 +- 0.0003 for
  finite differences' -0.0028 +- 0.0004 (fixed: -0.0029 +- 0.0004).

* **Silhouettes and shadows seen in planar mirrors**: silhouette edges as
  seen from the mirror's virtual (reflected) camera, and shadow receiver
  points, reflected across the mirror plane and projected with the real camera;
  points are kept where the camera ray hits that mirror and its reflection
  reaches the point unoccluded (:mod:`lumigrad.render._trace_edges_mirror`;
  silhouettes through chains of two planar mirrors too). Silhouettes seen in
  *curved* mirrors: per sampled edge point, the mirror points whose reflection
  (about the interpolated shading normal) reaches it, by a Newton solve per
  mirror face (:mod:`lumigrad.render._trace_edges_curved`; shadows seen in
  curved mirrors are not sampled).

* **Soft shadow boundaries** (penumbrae) of area and environment lights: the
  light integral's boundary term is the average, over light samples, of the
  hard-shadow terms of the samples, so ``TraceSettings.shadow_light_samples``
  points on each emitter (or directions from the environment map, importance
  sampled) are treated as point (directional) lights, each with its share of
  the boundary samples; the jump is measured with that light alone (a copy of
  the scene lit only by it, direct light only), and an emitter point's cosine
  towards the receiver weights its boundary points.

Each sampled boundary point is tested for visibility (the edge point from the
camera, or from the light and its receiver point from the camera), because a
hidden edge can project onto a visible boundary (grazing back faces next to
an outline) and would count that boundary twice.

Why edge sampling and not reparameterization / projective sampling: edge
sampling gives unbiased boundary terms for exactly the discontinuities the
direct-illumination tracer has (silhouettes, hard shadows of point and
directional lights), needs no tuning of warp-field kernels (Loubet et al.
2019 are biased and their variance depends on a kernel width), and its
boundary points are explicit functions of the camera, so camera gradients
come for free, which Mitsuba 3's projective integrators do not give. Its
limits here: occlusion of indirect light seen from the path vertices has its
own term (:mod:`lumigrad.render._trace_edges_indirect`), and so have shadows
seen from them (a shadow on the floor seen by the wall:
:mod:`lumigrad.render._trace_edges_shadow_indirect`, which reuses this module's
shadow-curve pieces), and silhouettes seen in planar mirrors theirs
(:mod:`lumigrad.render._trace_edges_mirror`, also through two planar mirrors,
and from path vertices in the indirect term), silhouettes seen in curved
mirrors theirs (:mod:`lumigrad.render._trace_edges_curved`), but shadows seen
in curved mirrors or through two mirrors, visibility changes seen through more
than two mirrors or through a curved mirror from a diffuse surface, are *not*
sampled, so those gradients are interior-only (biased). Neither is the
shadow terminator of smooth-shaded meshes (points just past a light-silhouette
edge are shadowed by their own mesh while the interpolated normal still faces
the light): its jump is proportional to the angle between neighbouring faces,
and sampling it by side rays is unreliable next to outlines, where grazing faces
are thinner than the side-ray spacing (measured: it changed a sphere's
gradient by 60 % instead of the 0.03 % finite differences show). """
from __future__ import annotations

import copy
import dataclasses
from typing import NamedTuple

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from lumigrad.geometry.normals import dot, safe_normalize
from lumigrad.render._attached import attached_shapes, border_flux, moving_box, near_motion, screen_motion
from lumigrad.ops.trace import intersect, occluded, reattach
from lumigrad.scene.lights import DirectionalLight, PointLight

__all__ = ["boundary_term"]

_EDGE_ON = 1e-9  # faces a light ray meets at a smaller |cosine| are seen edge-on (parallel to it)
_BORDER = 1e-7  # hits with a smaller barycentric lie on the face's border
_MIN_COS = 1e-3  # a jump's face side is shaded at the edge where the ray meets the face at least this steeply
_SIDE_PX = 1e-3  # half the distance between the two rays that measure a jump, in pixels
_REL_TOL = 1e-4  # visibility tests stop this fraction short of the point
_DS = 1e-3  # step in the edge parameter for the shadow curve's screen tangent


def _project(w2c: Tensor, k: Tensor, p: Tensor, perspective: bool) -> tuple[Tensor, Tensor]:
    c = p @ w2c[:3, :3].T + w2c[:3, 3]
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    if perspective:
        x, y = x / z, y / z
    return torch.stack([k[0, 0] * x + k[0, 1] * y + k[0, 2], k[1, 1] * y + k[1, 2]], -1), z


def _silhouette(edge_faces: Tensor, facing: Tensor) -> Tensor:
    a = facing[edge_faces[:, 0]]
    f1 = edge_faces[:, 1]
    b = torch.where(f1 >= 0, facing[f1.clamp(min=0)], ~a)
    return a != b


def _perp(t: Tensor) -> Tensor:
    return safe_normalize(torch.stack([-t[:, 1], t[:, 0]], -1))


def _seen_from_camera(sc, b: int, c2w: Tensor, pts: Tensor, persp: bool) -> Tensor:
    """``[N]`` bool: nothing lies between view ``b``'s camera and ``pts`` (up to a relative tolerance)."""
    if persp:
        o = c2w[:3, 3].expand_as(pts)
    else:
        depth = dot(pts - c2w[:3, 3], c2w[:3, 2], keepdim=True)
        o = pts - depth * c2w[:3, 2]
    return ~occluded(sc.accel.bvh, o, pts - o, 1.0 - _REL_TOL)


def _varies(t) -> bool:
    """Whether tensor ``t`` carries a derivative: it requires a gradient (with grad mode on) or has a tangent."""
    if not isinstance(t, Tensor):
        return False
    return (torch.is_grad_enabled() and t.requires_grad) or fwAD.unpack_dual(t).tangent is not None


class Motion(NamedTuple):
    """What can move with the parameters: the camera, and each shape's vertices (``shapes [S]`` bool).

    A boundary sample's value is zero and its derivative is that of its boundary point (``x_b`` on screen,
    ``w_b`` on a sphere of directions), which depends only on the edge's vertices and on the viewpoint (the
    camera, or a path vertex). An edge of a still shape seen from a still viewpoint therefore contributes
    exactly nothing, so the samplers pick among the moving shapes' edges then: the same estimate with the
    samples where the gradient is.
    """

    camera: bool
    shapes: Tensor

    def edges(self, sc) -> Tensor:
        """``[E]`` bool: the edges of moving shapes."""
        return self.shapes[sc.owner[sc.accel.edge_faces[:, 0]]]


def motion(sc) -> Motion:
    cam = sc.camera
    moving = [_varies(s.mesh.verts) for s in sc.shapes]
    return Motion(_varies(cam.world_to_cam) or _varies(cam.K), torch.tensor(moving, dtype=torch.bool, device=sc.device))


def light_silhouettes(sc, virtual) -> tuple[list[Tensor], list[Tensor]]:
    """``(point, virtual)``: per point / directional light of ``sc`` and per virtual light (:func:`_virtual_lights`,
    its ``skip`` edges left out), the edges ``[E_i, 2]`` that are silhouettes seen from it. Detached and the same
    for every view and round: computed once per render and shared by the screen-space shadow terms and
    :mod:`lumigrad.render._trace_edges_shadow_indirect` (:func:`lumigrad.render._edge_tree.light_silhouette_masks`)."""
    from lumigrad.render._edge_tree import light_silhouette_masks

    fnorm, v0 = sc.accel._face_data
    edges = sc.accel.edges
    sil = light_silhouette_masks(sc.accel.edge_faces, fnorm, v0, list(sc.point_lights) + [v[0] for v in virtual])
    n = len(sc.point_lights)
    return [edges[m] for m in sil[:n]], [edges[m & ~v[2]] for m, v in zip(sil[n:], virtual)]


def face_data(sc) -> tuple[Tensor, Tensor]:
    """``(face_cross [F, 3], first corner [F, 3])`` of the render's detached vertices, kept on its accel (reset when
    the vertices change)."""
    if sc.accel._face_data is None:
        tri = sc.verts.detach().index_select(0, sc.faces.long().reshape(-1)).reshape(-1, 3, 3)
        sc.accel._face_data = (torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1), tri[:, 0])
    return sc.accel._face_data


def boundary_term(sc, radiance) -> Tensor:
    """``[B, H, W, 3]`` zero-valued image whose gradient is the edge-sampled boundary integral.

    ``sc`` is :class:`lumigrad.render.path._Scene`; ``radiance(scene, view [R], pix [R, 2], face=None) -> [R, 3]``
    evaluates camera-ray radiance of ``scene`` (``sc`` or a copy with other lights) at continuous
    pixel positions; ``face [R]`` int32: the rays' first hits where ``>= 0`` (re-attached, not traced);
    ``with_hits=True`` also returns the first hits (:func:`lumigrad.render.path._camera_radiance`).

    The terms (per view: primary silhouettes, the moving surfaces' border flux, the indirect rounds, each
    light's shadows, what mirrors show) are independent tasks, run side by side on the CPU's threads
    (:func:`lumigrad._runtime.tasks.run_tasks`), each with a random stream of its own (:func:`_task_scene`).
    """
    from lumigrad._runtime.tasks import run_tasks

    cam, st = sc.camera, sc.settings
    B, H, W = cam.batch_size, cam.height, cam.width
    M = st.edge_samples or H * W
    face_data(sc)  # the caches the tasks share, filled before they start
    if sc.corners is None:
        sc.corners = torch.cat([sc.verts, sc.vnormals], 1)
    attached = attached_shapes(sc)
    persp = cam.projection == "perspective"
    c2w = torch.linalg.inv(cam.world_to_cam.detach())
    virtual = _virtual_lights(sc) if st.shadows else []
    sil_point, sil_virtual = light_silhouettes(sc, virtual) if st.shadows else ([], [])
    tables = None  # the indirect term's per-render tables
    if st.max_bounces >= 2 and st.indirect_samples != 0:
        from lumigrad.render._trace_edges_indirect import IndirectTables

        tables = IndirectTables(sc, (sil_point, sil_virtual))
        if tables.table.total > 0:
            tables.table.tree()
    tasks = []  # (scene, accumulate, sink) -> None, in order of size (the largest first: the threads end together)
    for b in range(B):
        view = (b, cam.world_to_cam[b], cam.K[b], c2w[b], persp)
        # With attached camera hits, the moving shapes' pixel box (near them still silhouettes count too)
        box = None if attached is None else moving_box(sc, b)
        if tables is not None:
            tasks += _indirect_tasks(sc, b, virtual, tables)
        if bool(sc.mats.mirror.any()):  # silhouettes seen in planar and curved mirrors
            from lumigrad.render._trace_edges_curved import curved_silhouettes
            from lumigrad.render._trace_edges_mirror import mirror_silhouettes

            tasks.append(lambda own, acc, sink, view=view: (mirror_silhouettes(own, view, M, acc),
                                                            curved_silhouettes(own, view, M, acc)))
        tasks.append(lambda own, acc, sink, view=view, box=box: _primary_silhouettes(own, view, M, box, acc))
        if box is not None:
            tasks.append(lambda own, acc, sink, b=b, box=box: sink.append(border_flux(own, b, radiance, box)))
        if st.shadows:  # hard shadow boundaries of point and directional lights
            tasks += [lambda own, acc, sink, view=view, light=light, e=e: _shadow_boundary(own, view, light, e, M, acc, own)
                      for light, e in zip(sc.point_lights, sil_point)]
        # Penumbrae: each area / environment light as point / directional lights drawn from it.
        m = max(1, M // max(1, st.shadow_light_samples))
        tasks += [lambda own, acc, sink, view=view, v=v, e=e: _shadow_boundary(
                      own, view, v[0], e, m, acc, _with_gen(v[1], own.gen), v[3])
                  for v, e in zip(virtual, sil_virtual)]
    sinks = run_tasks([lambda i=i, task=task: _run_task(sc, radiance, i, task) for i, task in enumerate(tasks)],
                      sc.device)
    out = torch.zeros(B * H * W, 3, dtype=sc.dtype, device=sc.device)
    for sink in sinks:  # in the tasks' order: the same sum whichever thread ran which
        for got in sink:
            if got is not None:
                out = out.index_add(0, got[0], got[1])
    return out.reshape(B, H, W, 3)


def _task_scene(sc, task: int):
    """A shallow copy of render scene ``sc`` whose samples come from a generator of its own, seeded from the
    render's seed and the task's index (the same draws whichever thread runs it)."""
    return _with_gen(sc, torch.Generator(device=sc.device).manual_seed(
        (sc.settings.seed * 1_000_003 + (5 << 60) + task) % (2**63)))


def _with_gen(scene, gen: torch.Generator):
    """A shallow copy of ``scene`` drawing from ``gen``."""
    own = copy.copy(scene)
    own.gen = gen
    return own


def _run_task(sc, radiance, i: int, task) -> list:
    """Run boundary task ``i``: ``[(pixel [k] int64, contrib [k, 3]) or None, ...]``, its terms."""
    own, sink = _task_scene(sc, i), []
    task(own, _accumulator(own, radiance, sink), sink)
    return sink


def _indirect_tasks(sc, b: int, virtual, tables) -> list:
    """The indirect term of view ``b`` (:func:`lumigrad.render._trace_edges_indirect.indirect_boundary`) in
    rounds of at most ~2^18 samples (whole multiples of H * W: stratified by pixel), averaged: bounded memory,
    and each round's set-up (edge table, shadow casters) amortised over many samples. (Two rounds where one would
    do, to run side by side, cost more set-up than they saved: 32^2, 16 spp, 3 bounces.)"""
    from lumigrad.render._trace_edges_indirect import indirect_boundary

    st, H, W = sc.settings, sc.camera.height, sc.camera.width
    total = st.indirect_samples if st.indirect_samples is not None else H * W * st.spp
    rounds = -(-total // (H * W * max(1, (1 << 18) // (H * W))))

    def task(own, acc, sink, rnd):
        pixel, contrib = indirect_boundary(own, b, -(-total // rounds), virtual, rnd, tables)
        sink.append((pixel, contrib / rounds))
    return [lambda own, acc, sink, rnd=rnd: task(own, acc, sink, rnd) for rnd in range(rounds)]


def _accumulator(own, radiance, sink: list):
    """``accumulate(b, x_b, n, weight, ok, scene=own, near=None)``: adds boundary samples' terms to ``sink`` as
    ``(pixel, contrib)``. ``near = (face [M] or [M, C], side [M])``: the surface on side ``side * n`` of each
    point (``side`` +-1, 0: unknown) is ``face`` (``face[:, C - 1]``, seen after the mirror faces
    ``face[:, :C - 1]``), evaluated at the boundary point itself (:func:`_jumps`)."""
    H, W = own.camera.height, own.camera.width

    def accumulate(b: int, x_b: Tensor, n: Tensor, weight: Tensor, ok: Tensor, scene=None, near=None) -> None:
        scene = own if scene is None else scene
        xd = x_b.detach()
        inside = (xd[:, 0] >= 0) & (xd[:, 0] < W) & (xd[:, 1] >= 0) & (xd[:, 1] < H) & ok
        sel = torch.nonzero(inside).squeeze(1)
        if sel.numel() == 0:
            return
        xd, n, weight, x_b = xd[sel], n[sel], weight[sel], x_b[sel]
        with torch.no_grad():
            df, rays = _jumps(scene, radiance, b, xd, n, None if near is None else (near[0][sel], near[1][sel]))
        contrib = (df * weight[:, None]) * dot(n, x_b - xd, keepdim=True)
        if rays is not None:  # interior="attached": minus the side surfaces' own screen motion (_attached)
            row, sign, f, pix_r, face_r = rays
            vel = screen_motion(scene, b, pix_r, face_r)
            contrib = contrib.index_add(0, row, sign * weight.index_select(0, row)[:, None] * f
                                        * dot(n.index_select(0, row), vel, keepdim=True))
        sink.append((b * H * W + xd[:, 1].floor().long() * W + xd[:, 0].floor().long(), contrib))
    return accumulate


def _jumps(scene, radiance, b: int, xd: Tensor, n: Tensor, near) -> tuple[Tensor, tuple | None]:
    """``(df [k, 3], rays)``: ``df = f(xd - 0 n) - f(xd + 0 n)``, camera-ray radiance either side of the
    boundary points. Each side is a ray ``_SIDE_PX`` off the point, except the side whose surface ``near``
    names: that one is shaded at the point itself (its ray re-attached to ``face``). A silhouette face seen
    nearly edge-on is narrower on screen than ``_SIDE_PX`` while its shading still varies across it, so the
    ray beside the edge would measure another face: on a lit sphere's rim the primary silhouette term was
    13 % / 3 % low at 1e-2 / 1e-3 pixels (bench/results_trace12.md). ``rays``: with attached camera hits,
    each ray's ``(sample [r], side sign [r, 1] (+1: the +n side), f [r, 3], pixel [r, 2], first hit [r])``,
    else None."""
    k, device = xd.shape[0], xd.device
    if near is None:
        face, side = torch.full((k, 1), -1, dtype=torch.int32, device=device), torch.zeros_like(xd[:, 0])
    else:
        face, side = near
        face = face if face.dim() == 2 else face[:, None]
    sd = side.to(xd.dtype)[:, None]
    at, both = torch.nonzero(side != 0).squeeze(1), torch.nonzero(side == 0).squeeze(1)
    # One ray beyond the edge per point (away from the face; the -n side where no face is known), then the
    # face shaded at the point (its ray re-attached), then the +n side's rays of the points without a face.
    far = torch.where(sd != 0, sd, torch.ones_like(sd))
    pix = torch.cat([xd - far * _SIDE_PX * n, xd[at], xd[both] + _SIDE_PX * n[both]], 0)
    none = torch.full((1, face.shape[1]), -1, dtype=face.dtype, device=face.device)
    known = torch.cat([none.expand(k, -1), face[at], none.expand(both.numel(), -1)]).to(torch.int32)
    view = torch.full((pix.shape[0],), b, dtype=torch.long, device=device)
    attached = attached_shapes(scene) is not None
    if attached:  # with the first hits of all rays, for their screen motion
        f, first = radiance(scene, view, pix, known, with_hits=True)
    else:
        f = radiance(scene, view, pix, None if near is None else known)
    f_far, f_near, f_plus = f[:k], f[k:k + at.numel()], f[k + at.numel():]
    df = torch.empty_like(f_far)
    df[at] = -sd[at] * (f_near - f_far[at])  # f(-n side) - f(+n side), the face on side sd
    df[both] = f_far[both] - f_plus
    if not attached:
        return df, None
    row = torch.cat([torch.arange(k, device=device), at, both])
    sign = torch.cat([-far, sd[at], torch.ones_like(sd[both])])
    return df, (row, sign, f, pix, first)


def _primary_silhouettes(sc, view, M: int, box, accumulate) -> None:
    """``M`` samples on the outlines seen from the camera in view ``view = (b, w2c, K, c2w, persp)``; ``box``: the
    moving shapes' pixel box with attached camera hits (still outlines in it count), else None."""
    b, w2c, k, c2w, persp = view
    cam, H, W = sc.camera, sc.camera.height, sc.camera.width
    edges, ef, verts, faces = sc.accel.edges, sc.accel.edge_faces, sc.verts, sc.faces
    vd = verts.detach()
    fnorm, v0 = face_data(sc)
    facing = dot(fnorm, c2w[:3, 3] - v0) > 0 if persp else dot(fnorm, -c2w[:3, 2]) > 0
    sil = _silhouette(ef, facing)
    moves = motion(sc)
    if not moves.camera:  # only moving shapes' outlines move on screen (Motion)
        keep = moves.edges(sc)
        if box is not None:  # and, with attached hits, still outlines that may lie in front of them
            Pd = _project(w2c.detach(), k.detach(), vd, persp)[0]
            keep = keep | near_motion(box, Pd[edges[:, 0]], Pd[edges[:, 1]])
        sil &= keep
    eid = torch.nonzero(sil).squeeze(1)
    e = edges[eid]
    if e.shape[0]:
        P, z = _project(w2c, k, verts, persp)
        ok = (z[e[:, 0]].detach() > cam.near) & (z[e[:, 1]].detach() > cam.near)
        e, eid = e[ok], eid[ok]
    if not e.shape[0]:
        return
    P0, P1 = P.index_select(0, e[:, 0]), P.index_select(0, e[:, 1])
    length = (P1 - P0).detach().norm(dim=-1)
    if float(length.sum()) <= 0:
        return
    pick = stratified_picks(length, M, sc.gen)
    s = sc.rand(M, 1)
    P0p, P1p = P0.index_select(0, pick), P1.index_select(0, pick)
    x_b = P0p + s * (P1p - P0p)
    n = _perp((P1 - P0).detach()[pick])
    # The 3D edge point behind x_b (perspective-correct) must be seen by the camera:
    # hidden edges can project onto visible ones (grazing back faces near an outline).
    ep = e[pick]
    if persp:
        iz0, iz1 = 1.0 / z[ep[:, 0]].detach(), 1.0 / z[ep[:, 1]].detach()
        t3 = s[:, 0] * iz1 / ((1 - s[:, 0]) * iz0 + s[:, 0] * iz1)
    else:
        t3 = s[:, 0]
    pts = vd[ep[:, 0]] + t3[:, None] * (vd[ep[:, 1]] - vd[ep[:, 0]])
    # Only points that land in the image are tested (accumulate drops the others): most of the
    # projected length can lie outside it (a ground plane's rim), and each test is a BVH query.
    xd = x_b.detach()
    cand = torch.nonzero((xd[:, 0] >= 0) & (xd[:, 0] < W) & (xd[:, 1] >= 0) & (xd[:, 1] < H)).squeeze(1)
    ok = torch.zeros(M, dtype=torch.bool, device=sc.device)
    ok[cand] = _seen_from_camera(sc, b, c2w, pts[cand], persp)
    ray = pts - c2w[:3, 3] if persp else c2w[:3, 2].expand_as(pts)
    near = _silhouette_side(ef[eid[pick]], facing, faces, fnorm, P.detach(), z.detach(), xd, n, ray, cam.near)
    accumulate(b, x_b, n, torch.full((M,), float(length.sum()) / M, dtype=sc.dtype, device=sc.device), ok,
               near=near)


def _silhouette_side(ef: Tensor, facing: Tensor, faces: Tensor, fnorm: Tensor, P: Tensor, z: Tensor, xd: Tensor,
                     n: Tensor, ray: Tensor, near: float) -> tuple[Tensor, Tensor]:
    """``(face [M], side [M])`` of primary silhouette samples (edge faces ``ef``, camera rays ``ray [M, 3]``
    through them): the face seen on the edge (the facing one; an open edge's only face) and the side of the
    edge it lies on, as the sign of ``n`` towards its corners' mean on screen. Corners, not the edge's third
    vertex: edges hold welded vertex ids, which a triangle soup's faces do not share. ``side`` is 0 (measure
    with two rays) where a corner is behind the near plane, or where the ray meets the face's plane at
    less than :data:`_MIN_COS` (re-attaching it there is ill-conditioned: an exactly edge-on face gave NaN)."""
    face = seen_face(ef[:, 0], ef[:, 1], facing[ef[:, 0]])
    corners = faces[face].long()  # [M, 3]
    side = torch.sign(dot(n, P[corners].mean(1) - xd))
    cos = dot(fnorm[face], ray).abs() / (fnorm[face].norm(dim=-1) * ray.norm(dim=-1)).clamp_min(1e-30)
    keep = (z[corners] > near).all(1) & (cos > _MIN_COS)
    return face, torch.where(keep, side, torch.zeros_like(side))


def seen_face(f0: Tensor, f1: Tensor, f0_faces: Tensor) -> Tensor:
    """``[k]`` the face seen on each silhouette edge (faces ``f0``, ``f1``; ``-1``: open): ``f0`` where it is
    turned towards the viewpoint (``f0_faces``) or the edge is open, else ``f1``."""
    return torch.where((f1 >= 0) & ~f0_faces, f1, f0)


def _facing_one(light, fnorm: Tensor, v0: Tensor, fnorm_len: Tensor | None = None) -> Tensor:
    """``[F]`` bool: the faces turned towards ``light``. Faces the light sees edge-on (cosine within
    ``_EDGE_ON``, e.g. the equator faces of an icosphere under a light from straight above) count as turned
    away whatever the rounding: the silhouette is then their near edge, which is lit (from their far edge
    the light ray would cross them, and the lit test would fail), and :func:`_receivers` lets its light ray
    past them."""
    if isinstance(light, PointLight):
        to_light = light.position.detach() - v0
    else:
        to_light = light.to_light.detach().expand_as(fnorm)
    fnorm_len = fnorm.norm(dim=-1) if fnorm_len is None else fnorm_len
    return dot(fnorm, to_light) > _EDGE_ON * fnorm_len * to_light.norm(dim=-1)


def _virtual_lights(sc) -> list:
    """Area and environment lights as ``shadow_light_samples`` point / directional lights each.

    The boundary term of ``int_light L f cos V`` is the light-sample average of the hard-shadow
    boundary terms of its samples: a point ``y`` on an emitter (density 1 / area) acts as a point
    light of intensity ``L_e * area / K`` times ``cos_y`` at the receiver (applied per boundary
    point: ``cos_from = (y, n_y)``), an environment direction ``w`` (density ``pdf``) as a
    directional light of irradiance ``L(w) / (pdf K)``. Each comes with a copy of the scene lit by
    that light alone (direct light only), whose radiance measures its shadow's jump, and the edges
    to skip (those of the emitter itself, which a light point on it sees edge-on).
    """
    K = sc.settings.shadow_light_samples
    if K == 0:
        return []
    out = []
    no_edges = torch.zeros(sc.accel.edges.shape[0], dtype=torch.bool, device=sc.device)
    with torch.no_grad():
        for e_id, (tris, areas) in zip(sc.emitters, sc.emit_tris):
            k = torch.multinomial(areas.detach(), K, replacement=True, generator=sc.gen)
            u1, u2 = sc.rand(K, 1), sc.rand(K, 1)
            su = u1.sqrt()
            tv = sc.verts.detach()[tris[k]]
            y = (1 - su) * tv[:, 0] + su * (1 - u2) * tv[:, 1] + su * u2 * tv[:, 2]
            ny = safe_normalize(torch.linalg.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0], dim=-1))
            own = sc.owner[sc.accel.edge_faces.clamp(min=0)] == e_id
            skip = own[:, 0] & (own[:, 1] | (sc.accel.edge_faces[:, 1] < 0))
            emission = sc.shapes[e_id].emission.detach()
            for i in range(K):
                light = PointLight(y[i], color=emission, intensity=float(areas.sum()) / K)
                out.append((light, _lit_by(sc, light), skip, (y[i], ny[i])))
        if sc.env is not None:
            d, pdf = sc.env.sample(K, sc.gen)
            rad = sc.env.eval(d).to(sc.dtype)
            for i in range(K):
                if float(pdf[i]) <= 0:
                    continue
                light = DirectionalLight(d[i], color=rad[i] / (pdf[i] * K))
                out.append((light, _lit_by(sc, light), no_edges, None))
    return out


def _lit_by(sc, light):
    """A shallow copy of the render scene lit by ``light`` alone, direct light only."""
    v = copy.copy(sc)
    v.point_lights, v.emitters, v.emit_tris, v.env, v.ambient, v.sh = [light], [], [], None, [], []
    v.settings = dataclasses.replace(sc.settings, max_bounces=1)
    return v


def stratified_picks(weight: Tensor, M: int, gen: torch.Generator) -> Tensor:
    """``[M]`` int64 indices drawn with probability ``weight / weight.sum()`` each, stratified: the ``i``-th
    by inverse CDF at ``(i + u_i) / M``, so an entry of weight share ``w`` is drawn within 2 of ``M w`` times
    (multinomial counts scatter by ``sqrt(M w)``); each pick alone has the stated
    distribution, so per-pick estimators stay unbiased. In ascending order (rays from nearby edges traverse
    the same BVH nodes). Zero-weight entries are never drawn."""
    cdf = weight.detach().to(torch.float64).cumsum(0)
    u = (torch.arange(M, dtype=torch.float64, device=weight.device)
         + torch.rand(M, generator=gen, dtype=torch.float64, device=weight.device)) * (float(cdf[-1]) / M)
    # searchsorted(right): the first entry whose CDF exceeds u, which has positive weight; u < cdf[-1] always.
    return torch.searchsorted(cdf, u.clamp(max=float(cdf[-1]) * (1 - 1e-15)), right=True).clamp(max=cdf.numel() - 1)


def _shadow_lengths(sc, light, e: Tensor, project) -> Tensor:
    """``[E]`` the weights by which :func:`_shadow_boundary` picks among the caster edges ``e``: the on-screen
    length of each edge's shadow, its endpoints' shadows projected (``project``: world points to pixels and
    depths), plus a floor of 1e-3 of the mean per unit of 3D length (an edge whose shadow is not found at both
    ends, or lies off screen, keeps a small chance: every edge with a shadow can be drawn).

    Picked by 3D length, a silhouette edge whose shadow falls at grazing incidence (a light near a wall) was as
    likely as any other while its shadow is hundreds of times longer on screen: its samples carried weights of
    ~1000 pixels each and put single gradients 5 norms off (``bench/results_trace15.md``)."""
    with torch.no_grad():
        vd = sc.verts.detach()
        length = (vd[e[:, 1]] - vd[e[:, 0]]).norm(dim=-1)
        ends = vd[e.reshape(-1)]
        sel, face = _receivers(sc, light, ends)
        found = torch.zeros(ends.shape[0], dtype=torch.bool, device=sc.device)
        px = torch.zeros(ends.shape[0], 2, dtype=sc.dtype, device=sc.device)
        if sel.numel():
            q = reattach(vd, sc.faces, face, ends[sel], _light_ray(light)(ends[sel])).points
            x, z = project(q)
            found[sel] = (z > sc.camera.near) & torch.isfinite(x).all(-1)
            px[sel] = torch.where(found[sel][:, None], x, torch.zeros_like(x))
        px, found = px.reshape(-1, 2, 2), found.reshape(-1, 2).all(1)
        H, W = sc.camera.height, sc.camera.width
        lo, hi = px.min(1).values, px.max(1).values
        on = found & (hi[:, 0] >= 0) & (lo[:, 0] <= W) & (hi[:, 1] >= 0) & (lo[:, 1] <= H)
        screen = torch.where(on, (px[:, 1] - px[:, 0]).norm(dim=-1), torch.zeros_like(length))
        total = float(length.sum())
        per_unit = float(screen.sum()) / total if total > 0 else 0.0
        return screen + 1e-3 * max(per_unit, 1e-6) * length


def _pick_edge_points(sc, e: Tensor, M: int, gen=None, sort: bool = True, length: Tensor | None = None
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """``(pick [M], s [M, 1], length [E], e[pick])``: ``M`` points on edges ``e`` picked by length (or by the
    weights ``length`` given; then uniform along the edge, clear of its ends by the tangent's step), or None when
    the edges have no length. ``sort``: stratified picks (:func:`stratified_picks`, in ascending order), which is
    only right where they are not paired with other samples that have an order (stratified pixels): the pairing
    would then be biased; else iid picks in random order."""
    vd = sc.verts.detach()
    if length is None:
        length = (vd[e[:, 1]] - vd[e[:, 0]]).norm(dim=-1)
    if float(length.sum()) <= 0:
        return None
    gen = sc.gen if gen is None else gen
    if sort:
        pick = stratified_picks(length, M, gen)
    else:
        pick = torch.multinomial(length, M, replacement=True, generator=gen)
    s = torch.rand(M, 1, generator=gen, dtype=sc.dtype, device=sc.device).clamp(_DS, 1 - _DS)
    return pick, s, length, e[pick]


def _light_ray(light):
    """``p [R, 3] -> [R, 3]``: the unit direction of ``light``'s rays through ``p`` (differentiable)."""
    if isinstance(light, PointLight):
        return lambda p: safe_normalize(p - light.position)
    tl = safe_normalize(light.to_light)
    return lambda p: (-tl).expand_as(p)


def _receivers(sc, light, ept: Tensor) -> tuple[Tensor, Tensor]:
    """``(sel [k], face [k])``: the edge points ``ept [M, 3]`` whose light ray hits something beyond them, and
    the face it hits (the receiver of the shadow cast by that point). A ray that merely grazes the caster
    (a face seen edge-on, or the border of a face it meets from behind) goes on to the receiver behind."""
    w = _light_ray(light)(ept.detach()).detach()
    face = receiver_faces(sc, ept.detach() + w * sc.eps, w)
    sel = torch.nonzero(face >= 0).squeeze(1)
    return sel, face[sel]


def receiver_faces(sc, org: Tensor, w: Tensor) -> Tensor:
    """``[R]`` int64 the faces (-1: none) that the light rays ``org + t w`` leaving shadow-casting edge points
    cast their shadow on: the closest hits, past a first hit that merely grazes the caster (:func:`_grazing`)."""
    hits = intersect(sc.accel.bvh, org, w)
    face = hits.face.long()
    graze = torch.nonzero(_grazing(sc, face, org, w)).squeeze(1)
    if graze.numel():
        past = org[graze] + (hits.t[graze].to(sc.dtype)[:, None] + sc.eps) * w[graze]
        face = face.index_put((graze,), intersect(sc.accel.bvh, past, w[graze]).face.long())
    return face


def _grazing(sc, face: Tensor, org: Tensor, w: Tensor) -> Tensor:
    """``[R]`` bool: the rays ``org + t w`` hit ``face`` edge-on, or on its border from behind (a light ray
    tangent to a closed mesh along a face parallel to it touches the next face's edge): no shadow there."""
    out = torch.zeros(face.shape[0], dtype=torch.bool, device=face.device)
    cand = torch.nonzero(face >= 0).squeeze(1)
    if cand.numel() == 0:
        return out
    fn, _ = sc.accel._face_data
    n = fn[face[cand]]
    cos = dot(n, w[cand]) / n.norm(dim=-1).clamp_min(1e-300)
    edge_on = cos.abs() <= _EDGE_ON
    behind = torch.nonzero(cos > _EDGE_ON).squeeze(1)
    if behind.numel():
        bary = reattach(sc.verts.detach(), sc.faces, face[cand[behind]], org[cand[behind]], w[cand[behind]]).bary
        edge_on[behind] = bary.min(dim=-1).values < _BORDER
    out[cand] = edge_on
    return out


def _receiver_steps(sc, light, face: Tensor, a: Tensor, c: Tensor, s: Tensor) -> list[Tensor]:
    """``[q(s - _DS), q(s + _DS)]`` (detached ``[k, 3]``): the receiver points (on ``face``'s plane) of the
    edge points ``a + s (c - a)`` a step either side, for the shadow curve's tangent by central differences."""
    ray = _light_ray(light)
    out = []
    with torch.no_grad():
        for ds in (-_DS, _DS):
            ep = a.detach() + (s + ds) * (c.detach() - a.detach())
            out.append(reattach(sc.verts.detach(), sc.faces, face, ep, ray(ep).detach()).points)
    return out


def _edge_lit(sc, light, ed: Tensor) -> Tensor:
    """``[k]`` bool: the edge points ``ed`` are lit by ``light`` (else they cast no shadow boundary)."""
    if isinstance(light, PointLight):
        # Start a hair off the light: a light point on an emitter must not hit that emitter.
        lpd = light.position.detach().expand_as(ed)
        src = lpd + _REL_TOL * (ed - lpd)
    else:
        vd = sc.verts.detach()
        far = 2.0 * float((vd.max(0).values - vd.min(0).values).norm()) + 1.0
        src = ed + far * safe_normalize(light.to_light.detach())
    return ~occluded(sc.accel.bvh, src, ed - src, 1.0 - _REL_TOL)


def _shadow_boundary(sc, view, light, e: Tensor, M: int, accumulate, scene, cos_from=None, via=None) -> None:
    """Sample ``M`` points on the shadow curves cast by edges ``e`` (silhouettes seen from ``light``); with
    ``via`` (a :class:`lumigrad.render._trace_edges_mirror.MirrorView`), the curves as seen in that mirror."""
    b, w2c, k, c2w, persp = view
    if e.shape[0] == 0:
        return

    def project(p: Tensor) -> tuple[Tensor, Tensor]:  # receivers to pixels: directly, or seen in mirror ``via``
        return _project(w2c, k, p, persp) if via is None else via.project(p)

    picked = _pick_edge_points(sc, e, M, length=_shadow_lengths(sc, light, e, project))
    if picked is None:
        return
    pick, s, length, e = picked
    verts, faces = sc.verts, sc.faces
    a, c = verts.index_select(0, e[:, 0]), verts.index_select(0, e[:, 1])
    ept = a + s * (c - a)
    sel, face = _receivers(sc, light, ept)
    if sel.numel() == 0:
        return
    r = reattach(verts, faces, face, ept[sel], _light_ray(light)(ept[sel]))

    x_b, z = project(r.points)
    with torch.no_grad():
        xs = [project(q)[0] for q in _receiver_steps(sc, light, face, a[sel], c[sel], s[sel])]
        dxds = (xs[1] - xs[0]) / (2 * _DS)
    weight = dxds.norm(dim=-1) * float(length.sum()) / length[pick][sel] / M
    # The edge point must be lit (else it casts no boundary) and the receiver point seen. Both are BVH
    # queries, so they are made only for points in front of the camera and inside the image (the others
    # are dropped by accumulate anyway), and the second only for lit points.
    H, W = sc.camera.height, sc.camera.width
    xd = x_b.detach()
    inside = (z.detach() > sc.camera.near) & (xd[:, 0] >= 0) & (xd[:, 0] < W) & (xd[:, 1] >= 0) & (xd[:, 1] < H)
    cand = torch.nonzero(inside if via is None else inside & via.in_window(xd)).squeeze(1)
    cand = cand[_edge_lit(sc, light, ept[sel].detach()[cand])]
    ok = torch.zeros(xd.shape[0], dtype=torch.bool, device=sc.device)
    if via is None:
        ok[cand] = _seen_from_camera(sc, b, c2w, r.points.detach()[cand], persp)
    else:  # seen in the mirror: the boundary point through the mirror hit, re-attached
        ok[cand], face_m = via.visible(xd[cand], r.points.detach()[cand])
        seen = cand[ok[cand]]
        x_b = xd.index_put((seen,), via.attach(xd[seen], face_m[ok[cand]], r.points[seen]))
    if cos_from is not None:
        y, ny = cos_from
        weight = weight * dot(safe_normalize(r.points.detach() - y), ny).clamp_min(0.0)
    accumulate(b, x_b, _perp(dxds), weight, ok, scene)
