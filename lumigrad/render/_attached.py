"""Camera hits attached to the surface: ``TraceSettings(interior="attached")``, and ``"auto"`` wherever it
applies (the default is ``"detached"``).

The interior derivative of ``render_trace`` normally keeps each camera ray fixed and lets its intersection with
the moved triangle slide along it ("detached", as Mitsuba 3's projective integrators): a face met at grazing
angle moves along the ray by ``(n . dv) / cos``, so the outline pixels of a smooth mesh carry a derivative that
grows as 1 / cos where their chance of being hit shrinks as cos, a heavy tail that holds most of a shape
gradient's variance (``bench/results_trace13.md``, section 4).

Here a camera sample's hit on a moving shape is the material point ``y = sum_i b_i v_i`` at its barycentrics
``b`` (fixed): the sample moves with the surface, at screen velocity ``V = d project(y) / d theta``. By the
divergence theorem (a reparameterisation of each pixel's integral, as Bangaru et al. 2020's warped-area
sampling), with ``f`` the radiance and the box filter over pixel ``P``,

    dI/dtheta = int_P d/dtheta (f(y) A(theta) / A(theta_0)) dp
                + sum_edges int [f- (v_e - V-) - f+ (v_e - V+)] . n dl  -  int_{border of P} f V . n_out dl

* **area change** ``A = det d project(y) / d(b1, b2)``: the screen area of the sample's triangle around it, so
  ``A(theta) / A(theta_0)`` is 1 whose derivative is the divergence of ``V`` (:func:`attach_camera_hits`);
* **edge terms**: every boundary sample of :func:`lumigrad.render._trace_edges.boundary_term` adds, to its jump
  ``(f- - f+) v_e . n``, the screen velocity of what each of its side rays sees, ``-f- V- . n + f+ V+ . n``
  (:func:`screen_motion`; 0 on still shapes and on mirrors, which stay detached). On a moving silhouette the
  near side's ``V`` is the edge's own motion and cancels; a still silhouette in front of a moving surface, or a
  shadow boundary on a moving receiver, gets a term it did not have, so still silhouettes whose screen box
  meets the moving shapes' are sampled too (:func:`near_motion`);
* **border flux**: the pixel grid lines across the moving shapes' screen box, cut at every pixel corner and
  where silhouettes cross them, ``spp`` stratified points per piece (:func:`border_flux`); the pixel before the
  line gets ``-f V . e``, the one after ``+f V . e``, times the piece's length.

* **paths** (``max_bounces >= 2``): the later hits on attached shapes are material points too
  (:func:`attach_path_hits`, after every non-mirror vertex): the direction from the previous vertex follows them,
  and the sample's weight the change of BSDF, geometry term and area that its fixed density does not. The
  indirect edge and shadow terms of :mod:`lumigrad.render._trace_edges_indirect` take their vertices attached
  too, and count each edge's motion relative to the attached surfaces seen on either side, as the screen-space
  terms do (a floor sliding in its own plane under a lit card: with detached first vertices in that term alone,
  5.6 standard errors off central differences). Until session 16 the later hits were detached, ray-plane
  intersections sliding along their rays by ``(n . dv) / cos``: at grazing incidence one edge sample at the second
  vertex put a gradient 10-15 norms off (``bench/results_trace15.md``).

Scope: a camera without gradient (its derivative needs the detached ray); mirrors stay detached. Checked
against the detached estimator and central differences in ``tests/trace/test_attached.py``.

Measured (``bench/results_trace13.md``, section 5): the Cornell box's sphere under its area light (64^2, 4 spp,
1 bounce), relative RMSE of the translation gradient 0.12 / 0.12 at 5k / 82k triangles against 0.33 / 0.21
detached, for 1.1-1.3x the CPU time; a smooth-shaded sphere shadowing itself (32^2), within 0.1 % of central
differences where the detached estimator is 3.5-4.3 standard errors off (the self-shadow past the terminator is
not sampled; it moves with the surface, so only the attached estimator's remainder is small). Flat emissive
quads under per-pixel weights (``tests/trace/test_trace_motion.py``'s scene), where the detached interior has no
variance at all: 0.4-0.5x the detached spread; with one sample per whole border segment (uncut) it was 6-16x,
the segments crossing an outline landing on either side by chance, and with every still silhouette sampled
3-4x.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.geometry.normals import dot, safe_normalize

__all__ = ["attached_shapes", "attach_camera_hits", "attach_path_hits", "screen_motion", "border_flux", "check_attached", "moving_box",
           "near_motion"]


def check_attached(sc, fn: str) -> None:
    """The settings and motions ``interior="attached"`` supports, else a ValueError naming what is not."""
    from lumigrad.render._trace_edges import motion

    st = sc.settings
    if st.interior != "attached":
        return
    if st.boundary != "edge":
        raise ValueError(f"{fn}(): interior='attached' needs boundary='edge' (its edge and border terms are part "
                         f"of the estimator), got boundary={st.boundary!r}")
    if motion(sc).camera:
        raise ValueError(f"{fn}(): interior='attached' needs a camera without gradient (world_to_cam and K): "
                         "use interior='detached' to differentiate the camera")


def supported(sc) -> bool:
    """Whether attached camera hits apply to render scene ``sc``: edge-sampled boundaries and a camera without
    gradient (what ``interior="auto"`` checks)."""
    from lumigrad.render._trace_edges import motion

    st = sc.settings
    return st.boundary == "edge" and not motion(sc).camera


def attached_shapes(sc) -> Tensor | None:
    """``[S]`` bool: the shapes whose camera hits are attached (moving, not mirrors), or None when none is
    (``interior="detached"``, or ``"auto"`` where :func:`supported` is False)."""
    interior = sc.settings.interior
    if interior == "detached":
        return None
    if getattr(sc, "_attached", None) is None:
        from lumigrad.render._trace_edges import motion

        on = interior == "attached" or supported(sc)
        sc._attached = motion(sc).shapes & ~sc.mats.mirror.to(torch.bool) & on
    return sc._attached if bool(sc._attached.any()) else None


def _view(sc, view: int) -> tuple[Tensor, Tensor, bool]:
    cam = sc.camera
    return cam.world_to_cam[view].detach(), cam.K[view].detach(), cam.projection == "perspective"


def _screen_step(w2c: Tensor, k: Tensor, y: Tensor, e: Tensor, persp: bool) -> Tensor:
    """``[N, 2]`` the pixel displacement of world points ``y [N, 3]`` moved by ``e [N, 3]`` (first order)."""
    c = y @ w2c[:3, :3].T + w2c[:3, 3]
    dc = e @ w2c[:3, :3].T
    if persp:
        z = c[:, 2]
        dx = (dc[:, 0] * z - c[:, 0] * dc[:, 2]) / (z * z)
        dy = (dc[:, 1] * z - c[:, 1] * dc[:, 2]) / (z * z)
    else:
        dx, dy = dc[:, 0], dc[:, 1]
    return torch.stack([k[0, 0] * dx + k[0, 1] * dy, k[1, 1] * dy], -1)


def _project(w2c: Tensor, k: Tensor, y: Tensor, persp: bool) -> Tensor:
    """``[N, 2]`` pixels of world points ``y`` (the edge sampler's projection)."""
    from lumigrad.render._trace_edges import _project as project

    return project(w2c, k, y, persp)[0]


def _material_points(sc, face: Tensor, bary: Tensor) -> tuple[Tensor, Tensor]:
    """``(y [N, 3], tri [N, 3, 3])``: the points at fixed barycentrics ``bary`` of faces ``face`` (differentiable
    w.r.t. the vertices), and the faces' corners."""
    tri = sc.verts.index_select(0, sc.faces_long.index_select(0, face).reshape(-1)).reshape(-1, 3, 3)
    return (bary[:, :, None] * tri).sum(1), tri


def _material_frame(sc, face: Tensor, b: Tensor, ng_old: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(y, ns, ng, tri)`` of the material points at barycentrics ``b`` of faces ``face``: position, shading and
    geometric normal (``ng`` on the side of ``ng_old``), and the faces' corners."""
    y, tri = _material_points(sc, face, b)
    nrm = sc.vnormals.index_select(0, sc.faces_long.index_select(0, face).reshape(-1)).reshape(-1, 3, 3)
    ns = safe_normalize((b[:, :, None] * nrm).sum(1))
    gn = safe_normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1))
    ng = gn * torch.where(dot(gn.detach(), ng_old.detach(), keepdim=True) < 0, -1.0, 1.0).to(gn.dtype)
    return y, ns, ng, tri


def _unit_ratio(x: Tensor) -> Tensor:
    """``x / x.detach()`` (1 in value, the relative derivative of ``x``), 1 where ``x`` is 0."""
    x0 = x.detach()
    zero = x0 == 0
    return torch.where(zero, torch.ones_like(x), x / torch.where(zero, torch.ones_like(x0), x0))


def attach_path_hits(sc, h, h2, delta: Tensor):
    """``(h2', weight [h2])``: the hits ``h2`` of the BSDF rays leaving hits ``h`` (``h2.idx`` indexes ``h``), those
    on attached shapes after a non-delta sample replaced by their material points, as :func:`attach_camera_hits`
    does for camera rays; ``delta [h]``: the samples of a mirror (whose reflected ray stays fixed).

    An attached hit ``y`` changes the sample's direction ``w = normalize(y - x)`` from ``h``'s point ``x``, so
    its weight is the ratio of ``f(w) cos(w) G(x, y) A`` to its value (``G = |cos_y| / r^2``, ``A`` the
    triangle's area): 1, whose derivative is the change of the integrand and of the measure that the
    sample's density (fixed) no longer follows. Without it, the hit slides along the fixed ray by ``(n . dv) /
    cos_y``, which at grazing incidence put single samples of the indirect edge terms 10-15 gradient norms
    off (``bench/results_trace15.md``)."""
    from lumigrad.render.path import _Hit, _hit_material, _take

    mask = attached_shapes(sc)
    weight = torch.ones(h2.idx.shape[0], dtype=sc.dtype, device=sc.device)
    if mask is None:
        return h2, weight
    rows = torch.nonzero(mask[h2.shape] & ~delta[h2.idx]).squeeze(1)
    if rows.numel() == 0:
        return h2, weight
    face, b = h2.face.index_select(0, rows), h2.bary.index_select(0, rows).detach()
    y, ns, ng, tri = _material_frame(sc, face, b, h2.ng.index_select(0, rows))
    src = h2.idx.index_select(0, rows)
    hs = _Hit(*(None if v is None else _take(v, src) for v in h))
    d = y - hs.points
    r2 = (d * d).sum(-1).clamp_min(1e-30)
    w = d / r2.sqrt()[:, None]
    with torch.no_grad():
        ns_x, wo_x = hs.ns.detach(), hs.wo.detach()
        at = {key: val.detach() for key, val in _hit_material(sc, hs).items()}
    f = (sc.mats.brdf(hs.shape, ns_x, w, wo_x, at) * dot(ns_x, w, keepdim=True)).sum(-1)
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1)
    ratio = _unit_ratio(f) * _unit_ratio(dot(ng, w).abs() / r2) * _unit_ratio(area)
    weight = weight.index_put((rows,), ratio)
    out = _Hit(h2.idx, h2.shape, h2.points.index_put((rows,), y), h2.ns.index_put((rows,), ns),
               h2.ng.index_put((rows,), ng), h2.wo.index_put((rows,), -w), h2.face,
               h2.bary.index_put((rows,), b) if h2.bary is not None else None)
    return out, weight


def attach_camera_hits(sc, h, view: Tensor):
    """``(h', weight [h])``: camera-ray hits ``h`` (:class:`lumigrad.render.path._Hit`) of views ``view [R]``, those
    on attached shapes replaced by their material points (point, shading and geometric normal, direction to the
    camera; barycentrics detached), and each hit's area-change weight ``A / A_0`` (1 elsewhere)."""
    from lumigrad.render.path import _Hit

    mask = attached_shapes(sc)
    weight = torch.ones(h.idx.shape[0], dtype=sc.dtype, device=sc.device)
    if mask is None:
        return h, weight
    rows = torch.nonzero(mask[h.shape]).squeeze(1)
    if rows.numel() == 0:
        return h, weight
    face, b = h.face.index_select(0, rows), h.bary.index_select(0, rows).detach()
    y, ns, ng, tri = _material_frame(sc, face, b, h.ng.index_select(0, rows))
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    v = view.index_select(0, h.idx.index_select(0, rows))
    wo = h.wo.index_select(0, rows)
    area = torch.zeros(rows.numel(), dtype=sc.dtype, device=sc.device)
    for b_id in torch.unique(v).tolist():
        sel = torch.nonzero(v == b_id).squeeze(1)
        w2c, k, persp = _view(sc, b_id)
        y_s = y.index_select(0, sel)
        s1 = _screen_step(w2c, k, y_s, e1.index_select(0, sel), persp)
        s2 = _screen_step(w2c, k, y_s, e2.index_select(0, sel), persp)
        area = area.index_put((sel,), s1[:, 0] * s2[:, 1] - s1[:, 1] * s2[:, 0])
        if persp:  # the direction to the (still) camera follows the moving point
            eye = torch.linalg.inv(w2c)[:3, 3]
            wo = wo.index_put((sel,), safe_normalize(eye - y_s))
    # A face seen exactly edge-on has no area: keep its weight constant there (a null set of samples).
    a0 = area.detach()
    tiny = a0.abs() <= 1e-12 * (e1.detach().norm(dim=-1) * e2.detach().norm(dim=-1)).clamp_min(1e-300)
    ratio = torch.where(tiny, torch.ones_like(area), area / torch.where(tiny, torch.ones_like(a0), a0))
    weight = weight.index_put((rows,), ratio)
    h2 = _Hit(h.idx, h.shape, h.points.index_put((rows,), y), h.ns.index_put((rows,), ns),
              h.ng.index_put((rows,), ng), h.wo.index_put((rows,), wo), h.face,
              h.bary.index_put((rows,), b) if h.bary is not None else None)
    return h2, weight


def ray_material_points(sc, face: Tensor, org: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(rows [k], y [k, 3])``: the rays ``org + t dirs`` whose hit ``face [R]`` (-1: a miss) is on an attached
    shape, and the material points they meet there (barycentrics detached, differentiable w.r.t. the vertices);
    None when there are none."""
    from lumigrad.ops.trace import reattach

    mask = attached_shapes(sc)
    if mask is None:
        return None
    ok = face >= 0
    ok[ok.clone()] = mask[sc.owner[face[ok].long()]]
    rows = torch.nonzero(ok).squeeze(1)
    if rows.numel() == 0:
        return None
    f = face.index_select(0, rows).long()
    with torch.no_grad():
        b = reattach(sc.verts.detach(), sc.faces, f, org.index_select(0, rows), dirs.index_select(0, rows)).bary
    return rows, _material_points(sc, f, b)[0]


def screen_motion(sc, view: int, pix: Tensor, face: Tensor) -> Tensor:
    """``[R, 2]`` zero-valued, whose derivative is the screen velocity ``V`` of the material point that the camera
    ray through ``pix`` of view ``view`` hits on face ``face [R]`` (-1: a miss); 0 where that face is not on an
    attached shape."""
    from lumigrad.render.path import _camera_rays

    out = torch.zeros(pix.shape[0], 2, dtype=sc.dtype, device=sc.device)
    with torch.no_grad():
        o, d = _camera_rays(sc.camera, torch.full((pix.shape[0],), view, dtype=torch.long, device=sc.device), pix)
    got = ray_material_points(sc, face, o, d)
    if got is None:
        return out
    rows, y = got
    w2c, k, persp = _view(sc, view)
    x = _project(w2c, k, y, persp)
    return out.index_put((rows,), x - x.detach())


def moving_box(sc, view: int) -> tuple[list[int], list[int]] | None:
    """``(lo, hi)``: the integer pixel box (clipped to the image) around the attached shapes in view ``view``
    (the whole image when part of them is behind the camera), or None when it is empty."""
    mask = attached_shapes(sc)
    if mask is None:
        return None
    cam = sc.camera
    H, W = cam.height, cam.width
    w2c, k, persp = _view(sc, view)
    moving_faces = torch.nonzero(mask[sc.owner]).squeeze(1)
    pts = sc.verts.detach().index_select(0, sc.faces_long.index_select(0, moving_faces).reshape(-1))
    c = pts @ w2c[:3, :3].T + w2c[:3, 3]
    if persp and not bool((c[:, 2] > cam.near).all()):
        lo, hi = [0, 0], [W, H]
    else:
        p = _project(w2c, k, pts, persp)
        lo = [max(0, int(p[:, 0].min().floor())), max(0, int(p[:, 1].min().floor()))]
        hi = [min(W, int(p[:, 0].max().ceil()) + 1), min(H, int(p[:, 1].max().ceil()) + 1)]
    return None if hi[0] <= lo[0] or hi[1] <= lo[1] else (lo, hi)


def near_motion(box: tuple[list[int], list[int]], P0: Tensor, P1: Tensor) -> Tensor:
    """``[E]`` bool: screen segments ``P0 -> P1`` whose boxes meet the attached shapes' ``box``
    (:func:`moving_box`): the still silhouettes that may lie in front of a moving surface (the others' terms are
    exactly zero)."""
    (lx, ly), (hx, hy) = box
    mn, mx = torch.minimum(P0, P1), torch.maximum(P0, P1)
    return (mx[:, 0] >= lx) & (mn[:, 0] <= hx) & (mx[:, 1] >= ly) & (mn[:, 1] <= hy)


def _outline(sc, view: int) -> Tensor:
    """``[E, 2, 2]`` the screen endpoints (detached) of the silhouette edges of view ``view`` (every shape's),
    both in front of the camera: where the radiance or the screen velocity jumps along a pixel border."""
    from lumigrad.render._trace_edges import _silhouette

    w2c, k, persp = _view(sc, view)
    fnorm, v0 = sc.accel._face_data
    c2w = torch.linalg.inv(w2c)
    facing = dot(fnorm, c2w[:3, 3] - v0) > 0 if persp else dot(fnorm, -c2w[:3, 2].expand_as(fnorm)) > 0
    e = sc.accel.edges[_silhouette(sc.accel.edge_faces, facing)]
    ends = sc.verts.detach().index_select(0, e.reshape(-1))
    z = (ends @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
    front = (z > sc.camera.near).reshape(-1, 2).all(1) if persp else torch.ones_like(e[:, 0], dtype=torch.bool)
    return _project(w2c, k, ends, persp).reshape(-1, 2, 2)[front]


def _border_intervals(outline: Tensor, axis: int, lines: Tensor, lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(line [n], start [n], length [n])``: the grid lines ``lines`` (``x = i`` for ``axis`` 0, ``y = i`` for 1)
    between ``lo`` and ``hi`` along them, cut at every unit (the pixel borders) and where ``outline``'s segments
    cross them. Each piece is then sampled by one point: on a piece the radiance and the screen velocity are
    continuous (up to shadow boundaries), so a border segment half on a moving surface gets no coin-flip noise."""
    o = 1 - axis
    a, b = outline[:, 0], outline[:, 1]
    lo_a, hi_a = torch.minimum(a[:, axis], b[:, axis]), torch.maximum(a[:, axis], b[:, axis])
    count = (hi_a.floor() - lo_a.floor()).long().clamp_min(0)  # integers in (lo_a, hi_a]
    seg = torch.repeat_interleave(torch.arange(outline.shape[0], device=outline.device), count)
    first = torch.cumsum(count, 0) - count
    line = lo_a.floor()[seg] + 1 + (torch.arange(seg.numel(), device=outline.device) - first[seg])
    da = (b[:, axis] - a[:, axis])[seg]
    pos = a[seg, o] + (line - a[seg, axis]) / torch.where(da == 0, torch.ones_like(da), da) * (b[seg, o] - a[seg, o])
    keep = (line >= lines[0]) & (line <= lines[-1]) & (pos > lo) & (pos < hi)
    cells = torch.arange(lo, hi + 1, device=outline.device, dtype=outline.dtype)
    gl, gp = (t.reshape(-1) for t in torch.meshgrid(lines.to(outline.dtype), cells, indexing="ij"))
    L, P = torch.cat([gl, line[keep]]), torch.cat([gp, pos[keep]])
    order = torch.argsort((L - float(lines[0])) * (hi - lo + 2) + (P - lo))
    L, P = L[order], P[order]
    ok = (L[1:] == L[:-1]) & (P[1:] > P[:-1])
    return L[:-1][ok].long(), P[:-1][ok], (P[1:] - P[:-1])[ok]


def border_flux(sc, view: int, radiance, box: tuple[list[int], list[int]]) -> tuple[Tensor, Tensor] | None:
    """``(pixel [n] int64 (flat over views), contrib [n, 3])``: the flux ``-+ f V . e`` through the pixel borders
    of view ``view`` (module docstring) across the attached shapes' screen ``box`` (:func:`moving_box`), ``spp``
    stratified points per piece of grid line (:func:`_border_intervals`); ``radiance`` as ``boundary_term``'s.
    None when no point lands on a moving shape."""
    from lumigrad.ops.trace import intersect
    from lumigrad.render.path import _camera_rays

    mask = attached_shapes(sc)
    lo, hi = box
    cam = sc.camera
    H, W = cam.height, cam.width
    outline = _outline(sc, view)
    pixels, contribs = [], []
    for axis in (0, 1):  # vertical lines x = i (axis 0), horizontal lines y = i (axis 1)
        a, o_ = axis, 1 - axis
        lines = torch.arange(lo[a], min(hi[a], (W, H)[a]) + 1, device=sc.device)
        i, start, length = _border_intervals(outline, axis, lines, lo[o_], hi[o_])
        # spp stratified points per piece: the flux is a pixel's own term, as noisy per pixel as its camera
        # samples only with as many samples (one per piece left the gradient image 3x noisier at 64 spp).
        n = sc.settings.spp
        i, start, length = (t.repeat_interleave(n) for t in (i, start, length))
        k = torch.arange(n, device=sc.device, dtype=sc.dtype).repeat(i.shape[0] // n)
        u = (k + torch.rand(i.shape[0], generator=sc.gen, dtype=sc.dtype, device=sc.device)) / n
        along = start + u * length
        length = length / n
        pix = torch.stack([i.to(sc.dtype), along], -1) if axis == 0 else torch.stack([along, i.to(sc.dtype)], -1)
        with torch.no_grad():
            o, d = _camera_rays(cam, torch.full((pix.shape[0],), view, dtype=torch.long, device=sc.device), pix)
            face = intersect(sc.accel.bvh, o, d).face
            hit = face >= 0
            hit[hit.clone()] = mask[sc.owner[face[hit].long()]]
            rows = torch.nonzero(hit).squeeze(1)
            if rows.numel() == 0:
                continue
            pix, face, i, length = pix[rows], face[rows], i[rows], length[rows]
            j = (start[rows] + 0.5 * n * length).floor().long()  # the cell the piece lies in
            f = radiance(sc, torch.full((rows.numel(),), view, dtype=torch.long, device=sc.device), pix, face)
        flux = (length[:, None] * f) * screen_motion(sc, view, pix, face)[:, axis:axis + 1]  # f V . e over the piece
        for side, sign in ((i - 1, -1.0), (i, 1.0)):  # the pixel before the line (outward +e), the one after
            ok = torch.nonzero((side >= 0) & (side < (W, H)[a])).squeeze(1)
            col, row = (side, j) if axis == 0 else (j, side)
            pixels.append(view * H * W + (row * W + col).index_select(0, ok))
            contribs.append(sign * flux.index_select(0, ok))
    if not pixels:
        return None
    return torch.cat(pixels), torch.cat(contribs)
