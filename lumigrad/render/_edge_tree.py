"""Edge picks for the indirect-visibility boundary term: a tree over the mesh edges with silhouette culling.

:mod:`lumigrad.render._trace_edges_indirect` needs, at a path vertex ``x``, mesh edges that are silhouettes seen
from ``x`` (one adjacent face turned towards ``x``, the other away; or an open edge) and lie in the hemisphere of
``x``'s shading normal. Picked by length among all edges, almost none is: on ``bench/trace_gi_shape.py``'s
1.3M-triangle sphere the silhouette seen from a point is a few thousand of its 2M edges.

Chosen (after Li et al. 2018, who use a 6-D bounding volume hierarchy over edges): the candidate edges, in the
order of their midpoints' Morton code, fill leaves of ``_LEAF`` edges; ``_BRANCH`` consecutive nodes make a node
of the level above, up to a top level of at most ``_TOP`` nodes. Each node keeps the bounding sphere of its
edges' end points, the cone of its faces' unit normals (axis, half angle), whether it holds an open edge, and its
edges' total length. A pick descends from the top: at each level the node's children get the weight

    ``w = length x [not culled]``,

culled where every face of the child is turned towards ``x`` or every face away from it (no silhouette inside:
the faces' planes pass through the end points, within the bounding sphere, and their normals lie in the cone;
bounds with a margin for rounding), unless the child holds an open edge, or where the bounding sphere lies below
``x``'s tangent plane (``ns . (p - x) < 0`` for all its points: every point of it fails the term's hemisphere
test). At a leaf each edge gets ``length x [silhouette from x] x [an end point above the tangent plane]`` with the
term's own silhouette test (:func:`lumigrad.render._trace_edges_indirect._silhouette_from`). A child is drawn with
probability ``w / sum(w)`` (weighted reservoir sampling with one uniform per level, the weights computed once),
so the edge's probability is the product of the ratios along its path, returned with the pick: the estimator
divides by exactly the probability with which it drew. Where every child weighs 0 (a leaf without silhouettes
under a node the bounds could not cull) the pick is void (probability 0, contributes nothing): unbiased, since
no edge the exact tests would keep is ever culled. Checked in ``tests/trace/test_trace_edge_tree.py``: kernel
vs the torch reference :func:`_pick_ref` (same picks from the same uniforms), frequencies of 200k picks within
5 standard deviations of the stated probabilities, every silhouette above the tangent plane reached, and a sum
over them estimated without bias.

Cost (2M candidate edges, the 1.3M-triangle sphere of ``bench/trace_gi_shape.py``, CPU seconds, 2 threads):
the Morton order 0.2-0.4 (kept on the accel across renders as ``_edge_tree_order``: it depends on the topology
only for correctness), the build 0.22 per render (its leaves in the Warp kernel
:func:`lumigrad.ops._edge_tree_kernels.edge_tree_leaves`: 0.4 more in torch, :meth:`EdgeTree._leaves_ref`), 64k
picks 0.07-0.09 (kernel :func:`lumigrad.ops._edge_tree_kernels.edge_tree_pick`; a first torch version took
0.56 s wall per 131k picks at 82k triangles). Levels there:
246k leaves, 31k, 3.8k, 488, 64, 8. Weighing by the angle an edge subtends at ``x`` (``BY_ANGLE``; nodes by
``length / max(distance, radius)``) instead of length was tried: no gain on the bench scene.

:func:`light_silhouette_masks` gives the edges that are silhouettes seen from point / directional lights (the
shadow terms' casters), from the faces' facing bits of up to 32 lights per kernel pass: 35 lights on 2M edges
0.33 CPU s against 1.84 in torch, the same masks.
"""
from __future__ import annotations

import math

import torch
import warp as wp
from torch import Tensor

from lumigrad.geometry.normals import dot, safe_normalize

__all__ = ["EdgeTree", "edge_order", "light_silhouette_masks"]

_LEAF = 8  # edges per leaf
_BRANCH = 8  # children per node
_TOP = 8  # at most this many nodes at the top level
BY_ANGLE = False  # weigh by the angle subtended at x instead of length (module docstring)
_CULL_TOL = 1e-5  # culling margin, relative to the distance and radius (float32 rounding is ~1e-7)


def _spread_bits(v: Tensor) -> Tensor:
    """10-bit integers with two zero bits after each bit (the Morton code's interleave)."""
    v = (v | (v << 16)) & 0x030000FF
    v = (v | (v << 8)) & 0x0300F00F
    v = (v | (v << 4)) & 0x030C30C3
    return (v | (v << 2)) & 0x09249249


def edge_order(verts: Tensor, edges: Tensor) -> Tensor:
    """``[E]`` permutation of the edges along a 30-bit Morton (Z-order) curve of their midpoints. Any order gives
    the same (unbiased) estimator; this one makes a node's edges close in space and in normal, so its bounds are
    tight. Depends on the positions only for that: a caller may keep it across renders of one topology."""
    p = 0.5 * (verts[edges[:, 0]] + verts[edges[:, 1]])
    lo, hi = p.min(0).values, p.max(0).values
    q = ((p - lo) / (hi - lo).clamp_min(1e-30) * 1023.0).long().clamp(0, 1023)
    return torch.argsort(_spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << 1) | (_spread_bits(q[:, 2]) << 2))


def _pad_to(t: Tensor, n: int) -> Tensor:
    """``t`` extended to ``n`` rows with copies of its last row (zero-length copies of the last edge or node: the
    reductions' boxes and cones are unchanged, and their weight is 0 through the length)."""
    if t.shape[0] == n:
        return t
    return torch.cat([t, t[-1:].expand(n - t.shape[0], *t.shape[1:])], 0)


class _Level:
    """One level's nodes: bounding box ``lo, hi [n, 3]``, normal cone ``axis [n, 3]`` and half angle ``theta [n]``,
    ``open [n]`` bool, ``length [n]``; and the derived bounding sphere ``centre, radius``."""

    def __init__(self, lo, hi, axis, theta, open_, length) -> None:
        self.lo, self.hi, self.axis, self.theta, self.open, self.length = lo, hi, axis, theta, open_, length
        self.centre = 0.5 * (lo + hi)
        self.radius = 0.5 * (hi - lo).norm(dim=-1)

    @staticmethod
    def merge(lo, hi, axis, theta, open_, length, group: int) -> "_Level":
        """The level above ``group``-sized runs of rows (the row count a multiple of ``group``)."""
        n = lo.shape[0] // group
        lo, hi = lo.reshape(n, group, 3).min(1).values, hi.reshape(n, group, 3).max(1).values
        a = axis.reshape(n, group, 3)
        w = length.reshape(n, group, 1)
        up = safe_normalize((a * (w > 0)).sum(1))
        spread = torch.acos(dot(up[:, None], a).clamp(-1.0, 1.0)) + theta.reshape(n, group)
        # Zero-length rows (padding) hold no faces: they do not widen the cone.
        spread = torch.where(w[..., 0] > 0, spread, torch.zeros_like(spread)).max(1).values
        theta_up = torch.where(up.norm(dim=-1) > 0.5, spread.clamp(max=math.pi), torch.full_like(spread, math.pi))
        return _Level(lo, hi, up, theta_up, open_.reshape(n, group).any(1), length.reshape(n, group).sum(1))


class EdgeTree:
    """The tree over candidate edges (module docstring). ``pick(x, ns, u)`` draws edges for path vertices."""

    def __init__(self, verts: Tensor, edges: Tensor, edge_faces: Tensor, face_normal: Tensor, face_v0: Tensor,
                 length: Tensor, order: Tensor | None = None) -> None:
        """``verts [V, 3]`` (detached), ``edges [E, 2]``, ``edge_faces [E, 2]`` (-1: open), ``face_normal [F, 3]``,
        ``face_v0 [F, 3]`` (a corner of each face; :attr:`TraceAccel._face_data`), ``length [E]``: each edge's
        length where it may be picked, else 0; ``order``: :func:`edge_order` (computed here when None)."""
        self.fn, self.v0 = face_normal, face_v0
        self._tables: dict = {}
        order = edge_order(verts, edges) if order is None else order
        slot = order[length[order] > 0]
        self.total = float(length.sum())
        self.empty = slot.numel() == 0
        if self.empty:
            return
        n_leaf = -(-slot.numel() // _LEAF)
        levels_n = [n_leaf]
        while levels_n[-1] > _TOP:
            levels_n.append(-(-levels_n[-1] // _BRANCH))
        # Pad the leaves to whole groups of the level above (the levels above are padded as they are built).
        n_leaf = n_leaf if len(levels_n) == 1 else levels_n[1] * _BRANCH
        n_slots = _LEAF * n_leaf
        self.edge = _pad_to(slot, n_slots)  # [n_slots] edge id of each leaf slot
        self.length = torch.cat([length[slot], length.new_zeros(n_slots - slot.numel())])
        self.levels = [self._leaves(n_leaf, verts, edges, edge_faces, face_normal)]  # leaves first
        ef = self.ef
        for n_up in levels_n[1:]:
            lev = self.levels[-1]
            n_pad = n_up * _BRANCH
            lev = _Level(*(_pad_to(t, n_pad) for t in (lev.lo, lev.hi, lev.axis, lev.theta, lev.open)),
                         torch.cat([lev.length, lev.length.new_zeros(n_pad - lev.length.shape[0])]))
            self.levels[-1] = lev
            self.levels.append(_Level.merge(lev.lo, lev.hi, lev.axis, lev.theta, lev.open, lev.length, _BRANCH))
        self.ef32 = ef.to(torch.int32).contiguous()
        self._flatten()

    def _leaves(self, n: int, verts: Tensor, edges: Tensor, edge_faces: Tensor, face_normal: Tensor) -> _Level:
        """The ``n`` leaves (and the slots' end points ``a``, ``c`` and faces ``ef``): Warp kernel
        :func:`lumigrad.ops._edge_tree_kernels.edge_tree_leaves` (the torch form, :meth:`_leaves_ref`, took 0.4 of
        the 0.5 CPU s of a build at 2M edges)."""
        from lumigrad.ops import _edge_tree_kernels as _k
        from lumigrad.ops._common import launch, to_warp, warp_device

        like = dict(dtype=verts.dtype, device=verts.device)
        v3 = wp.vec3d if verts.dtype == torch.float64 else wp.vec3
        n_slots = n * _LEAF
        self.a, self.c = torch.empty(n_slots, 3, **like), torch.empty(n_slots, 3, **like)
        self.ef = torch.empty(n_slots, 2, dtype=torch.int32, device=verts.device)
        lo, hi, axis = (torch.empty(n, 3, **like) for _ in range(3))
        theta, length = torch.empty(n, **like), torch.empty(n, **like)
        is_open = torch.empty(n, dtype=torch.int32, device=verts.device)
        one = (wp.float64 if verts.dtype == torch.float64 else wp.float32)(1.0)
        args = [_LEAF, to_warp(self.edge.to(torch.int32)), to_warp(self.length.contiguous()),
                to_warp(edges.to(torch.int32).contiguous(), wp.vec2i), to_warp(edge_faces.to(torch.int32).contiguous(), wp.vec2i),
                to_warp(verts.contiguous(), v3), to_warp(face_normal.contiguous(), v3), one, to_warp(self.a, v3),
                to_warp(self.c, v3), to_warp(self.ef, wp.vec2i), to_warp(lo, v3), to_warp(hi, v3), to_warp(axis, v3),
                to_warp(theta), to_warp(is_open), to_warp(length)]
        launch(_k.edge_tree_leaves, n, args, warp_device(verts), min_chunk=1024)
        self.ef = self.ef.long()
        return _Level(lo, hi, axis, theta, is_open > 0, length)

    def _leaves_ref(self, n: int, verts: Tensor, edges: Tensor, edge_faces: Tensor, face_normal: Tensor) -> _Level:
        """Pure-torch reference of :meth:`_leaves`: box of the end points, cone of both faces' unit normals."""
        e = edges[self.edge]
        self.a, self.c = verts[e[:, 0]], verts[e[:, 1]]
        self.ef = ef = edge_faces[self.edge]
        unit_fn = safe_normalize(face_normal)
        lo = torch.minimum(self.a, self.c).view(n, _LEAF, 3).amin(1)
        hi = torch.maximum(self.a, self.c).view(n, _LEAF, 3).amax(1)
        fa = unit_fn[ef[:, 0]]
        fb = torch.where((ef[:, 1] >= 0)[:, None], unit_fn[ef[:, 1].clamp(min=0)], fa)
        real = (self.length > 0).view(n, _LEAF, 1)
        axis = safe_normalize(((fa + fb).view(n, _LEAF, 3) * real).sum(1))
        cos_min = torch.minimum(dot(axis[:, None], fa.view(n, _LEAF, 3)), dot(axis[:, None], fb.view(n, _LEAF, 3)))
        theta = torch.where(real[..., 0], torch.acos(cos_min.clamp(-1.0, 1.0)), torch.zeros_like(cos_min)).amax(1)
        theta = torch.where(axis.norm(dim=-1) > 0.5, theta, torch.full_like(theta, math.pi))
        length = self.length.view(n, _LEAF)
        return _Level(lo, hi, axis, theta, (ef[:, 1] < 0).view(n, _LEAF).any(1), length.sum(1))

    def _flatten(self) -> None:
        """The levels top first, concatenated (the kernel's layout): ``level_off [L + 1]`` and per node centre,
        radius, axis, cosine and sine of the half angle, open flag, length."""
        top_first = self.levels[::-1]
        counts = [lev.length.shape[0] for lev in top_first]
        off = [0]
        for n in counts:
            off.append(off[-1] + n)
        dev = self.a.device
        self.level_off = torch.tensor(off, dtype=torch.int32, device=dev)
        cat = lambda name: torch.cat([getattr(lev, name) for lev in top_first]).contiguous()  # noqa: E731
        self.centre, self.radius, self.axis = cat("centre"), cat("radius"), cat("axis")
        theta = cat("theta")
        self.cos_t, self.sin_t = torch.cos(theta), torch.sin(theta)
        self.is_open, self.node_len = cat("open").to(torch.int32), cat("length")

    @property
    def depth(self) -> int:
        """Uniforms a pick takes (one per level and one for the leaf)."""
        return len(self.levels) + 1

    def pick(self, x: Tensor, ns: Tensor, picks: int, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(edge [N * picks] long, prob [N * picks])``: ``picks`` edges for each vertex ``x [N, 3]`` (shading
        normal ``ns [N, 3]``; vertex ``i``'s picks are rows ``i * picks ..``), drawn with the uniforms
        ``u [N * picks, depth]``, and the probability with which each was drawn (0: a void pick, whose ``edge``
        is arbitrary). Warp kernel :func:`lumigrad.ops._edge_tree_kernels.edge_tree_pick`."""
        from lumigrad.ops import _edge_tree_kernels as _k
        from lumigrad.ops._common import launch, to_warp, warp_device

        K = x.shape[0] * picks
        slot = torch.empty(K, dtype=torch.int32, device=x.device)
        prob = torch.empty(K, dtype=x.dtype, device=x.device)
        if K == 0 or self.empty:  # no edge to pick: every pick void
            return torch.zeros(K, dtype=torch.long, device=x.device), prob.zero_()
        v3 = wp.vec3d if x.dtype == torch.float64 else wp.vec3
        sc = wp.float64 if x.dtype == torch.float64 else wp.float32
        t = self.dtype_tables(x.dtype)
        args = [picks, _BRANCH, _LEAF, to_warp(self.level_off), to_warp(t["centre"], v3), to_warp(t["radius"]),
                to_warp(t["axis"], v3), to_warp(t["cos_t"]), to_warp(t["sin_t"]), to_warp(self.is_open),
                to_warp(t["node_len"]), to_warp(t["a"], v3), to_warp(t["c"], v3), to_warp(self.ef32, wp.vec2i),
                to_warp(t["length"]), to_warp(t["fn"], v3), to_warp(t["v0"], v3), to_warp(x.contiguous(), v3),
                to_warp(ns.contiguous(), v3), to_warp(u.to(x.dtype).contiguous()), sc(_CULL_TOL), int(BY_ANGLE), to_warp(slot),
                to_warp(prob)]
        launch(_k.edge_tree_pick, K, args, warp_device(x), min_chunk=256)
        slot = slot.long()
        return self.edge[slot.clamp(min=0)], torch.where(slot >= 0, prob, torch.zeros_like(prob))

    def dtype_tables(self, dtype: torch.dtype) -> dict:
        """The tree's float tables in ``dtype`` (the path vertices'), converted once."""
        if dtype not in self._tables:
            names = ("centre", "radius", "axis", "cos_t", "sin_t", "node_len", "a", "c", "length")
            t = {n: getattr(self, n).to(dtype).contiguous() for n in names}
            t["fn"], t["v0"] = self.fn.to(dtype).contiguous(), self.v0.to(dtype).contiguous()
            self._tables[dtype] = t
        return self._tables[dtype]


def _node_weight_ref(tree: EdgeTree, j: Tensor, x: Tensor, ns: Tensor) -> Tensor:
    """``[K]`` weights of nodes ``j [K]`` (flattened index) seen from ``x [K, 3]`` (normal ``ns``)."""
    c, r, ax = tree.centre[j], tree.radius[j], tree.axis[j]
    cos_t, sin_t, length = tree.cos_t[j], tree.sin_t[j], tree.node_len[j]
    u = x - c
    d = u.norm(dim=-1)
    tol = _CULL_TOL * (d + r)
    below = dot(ns, c - x) + r < -tol
    cp = (dot(u, ax) / d.clamp_min(1e-30)).clamp(-1.0, 1.0)
    sp = (1.0 - cp * cp).clamp_min(0.0).sqrt()
    low = torch.where(cp >= -cos_t, d * (cp * cos_t - sp * sin_t), -d)  # least n . (x - c) over the cone
    high = torch.where(cp <= cos_t, d * (cp * cos_t + sp * sin_t), d)  # greatest
    one_sided = ((low - r > tol) | (high + r < -tol)) & (tree.is_open[j] == 0) & (d > 0)
    w = length / torch.maximum(d, r) if BY_ANGLE else length
    return torch.where(below | one_sided, torch.zeros_like(length), w)


def _edge_weight_ref(tree: EdgeTree, slot: Tensor, x: Tensor, ns: Tensor) -> Tensor:
    """``[K]`` weights of leaf slots ``slot [K]``: length where the edge is a silhouette seen from ``x`` with an
    end point above the tangent plane."""
    ef = tree.ef[slot]
    f0, f1 = ef[:, 0], ef[:, 1]
    g1 = f1.clamp(min=0)
    sil = (f1 < 0) | ((dot(tree.fn[f0], x - tree.v0[f0]) > 0) != (dot(tree.fn[g1], x - tree.v0[g1]) > 0))
    a, c = tree.a[slot], tree.c[slot]
    above = (dot(ns, a - x) > -_CULL_TOL * (a - x).norm(dim=-1)) | (dot(ns, c - x) > -_CULL_TOL * (c - x).norm(dim=-1))
    w = tree.length[slot]
    if BY_ANGLE:
        cs = dot(safe_normalize(a - x), safe_normalize(c - x)).clamp(-1.0, 1.0)
        w = torch.where(w > 0, torch.acos(cs), w)
    return torch.where(sil & above, w, torch.zeros_like(w))


def _pick_ref(tree: EdgeTree, x: Tensor, ns: Tensor, picks: int, u: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :meth:`EdgeTree.pick` (the kernel's steps: weighted reservoir sampling of each
    level's children with one uniform)."""
    rows = torch.arange(x.shape[0], device=x.device).repeat_interleave(picks)
    x, ns = x[rows], ns[rows]
    K = x.shape[0]
    off = tree.level_off.long().tolist()
    n_levels = len(off) - 1
    first = torch.full((K,), off[0], dtype=torch.long, device=x.device)
    count = off[1] - off[0]
    prob = torch.ones(K, dtype=x.dtype, device=x.device)
    alive = torch.ones(K, dtype=torch.bool, device=x.device)
    for lv in range(n_levels + 1):
        ui = u[:, lv].to(x.dtype).clone()
        total = torch.zeros(K, dtype=x.dtype, device=x.device)
        chosen = torch.full((K,), -1, dtype=torch.long, device=x.device)
        w_chosen = torch.zeros(K, dtype=x.dtype, device=x.device)
        for k in range(count):
            j = first + k
            w = _node_weight_ref(tree, j, x, ns) if lv < n_levels else _edge_weight_ref(tree, j, x, ns)
            has = w > 0
            total = total + w
            p = torch.where(has, w / total.clamp_min(1e-300), torch.zeros_like(w))
            take = has & ((ui < p) | (total == w))
            chosen = torch.where(take, j, chosen)
            w_chosen = torch.where(take, w, w_chosen)
            ui = torch.where(take, ui / p.clamp_min(1e-300), torch.where(has, (ui - p) / (1 - p).clamp_min(1e-300), ui))
        alive = alive & (chosen >= 0)
        prob = prob * torch.where(alive, w_chosen / total.clamp_min(1e-300), torch.zeros_like(total))
        chosen = chosen.clamp(min=off[lv] if lv < n_levels else 0)
        if lv + 1 < n_levels:
            first, count = off[lv + 1] + (chosen - off[lv]) * _BRANCH, _BRANCH
        elif lv + 1 == n_levels:
            first, count = (chosen - off[lv]) * _LEAF, _LEAF
        else:
            return tree.edge[chosen], prob


def light_silhouette_masks(edge_faces: Tensor, face_normal: Tensor, face_v0: Tensor, lights: list) -> list[Tensor]:
    """``[E]`` bool per light of ``lights`` (point / directional): the edges that are silhouettes seen from it, as
    ``_silhouette(edge_faces, _facing_one(light, ...))`` of :mod:`lumigrad.render._trace_edges` (the reference), by
    the Warp kernel :func:`lumigrad.ops._edge_tree_kernels.light_silhouette_bits`: one pass over the edges for up
    to 32 lights (at 2M edges and 16 light samples, 0.6 s in torch)."""
    from lumigrad.ops import _edge_tree_kernels as _k
    from lumigrad.ops._common import launch, to_warp, warp_device
    from lumigrad.render._trace_edges import _EDGE_ON
    from lumigrad.scene.lights import PointLight

    like = dict(dtype=face_normal.dtype, device=face_normal.device)
    v3 = wp.vec3d if face_normal.dtype == torch.float64 else wp.vec3
    sc = wp.float64 if face_normal.dtype == torch.float64 else wp.float32
    fn, v0 = to_warp(face_normal.detach().contiguous(), v3), to_warp(face_v0.detach().contiguous(), v3)
    f0, f1 = edge_faces[:, 0], edge_faces[:, 1]
    out = []
    for start in range(0, len(lights), 32):
        group = lights[start:start + 32]
        vec = torch.stack([(lt.position if isinstance(lt, PointLight) else lt.to_light).detach().to(**like)
                           for lt in group]).contiguous()
        point = torch.tensor([isinstance(lt, PointLight) for lt in group], dtype=torch.int32, device=like["device"])
        facing = torch.empty(face_normal.shape[0], dtype=torch.int32, device=like["device"])
        launch(_k.light_facing_bits, facing.shape[0], [fn, v0, to_warp(vec, v3), to_warp(point), sc(_EDGE_ON),
                                                       to_warp(facing)], warp_device(face_normal))
        # Silhouette: the faces' bits differ (an open edge always is one).
        bits = torch.where(f1 >= 0, facing[f0] ^ facing[f1.clamp(min=0)], torch.full_like(facing[f0], -1))
        out += [((bits >> i) & 1).bool() for i in range(len(group))]
    return out


def candidate_lengths(verts: Tensor, edges: Tensor, edge_faces: Tensor, face_normal: Tensor, flat: float) -> Tensor:
    """``[E]`` each edge's length where it can be a silhouette (open, or its faces' unit normals' cross product
    longer than ``flat`` or their dot negative), else 0: Warp kernel
    :func:`lumigrad.ops._edge_tree_kernels.candidate_lengths`; the reference is
    ``length * _candidate_edges`` of :mod:`lumigrad.render._trace_edges_indirect` (0.19 s in torch at 2M edges)."""
    from lumigrad.ops import _edge_tree_kernels as _k
    from lumigrad.ops._common import launch, to_warp, warp_device

    v3 = wp.vec3d if verts.dtype == torch.float64 else wp.vec3
    sc = wp.float64 if verts.dtype == torch.float64 else wp.float32
    out = torch.empty(edges.shape[0], dtype=verts.dtype, device=verts.device)
    launch(_k.candidate_lengths, edges.shape[0], [to_warp(edges.to(torch.int32).contiguous(), wp.vec2i),
                                                   to_warp(edge_faces.to(torch.int32).contiguous(), wp.vec2i),
                                                   to_warp(verts.contiguous(), v3), to_warp(face_normal.contiguous(), v3),
                                                   sc(flat), to_warp(out)], warp_device(verts))
    return out
