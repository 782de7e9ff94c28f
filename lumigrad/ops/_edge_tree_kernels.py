"""Warp kernel of the indirect edge term's edge picks (:class:`lumigrad.render._edge_tree.EdgeTree`; one module).

One thread per pick descends the tree from its top level to a leaf slot: at each level it weighs the current
node's children (the top level: all of its nodes) and keeps one by weighted reservoir sampling with one uniform
(child ``j`` replaces the choice with probability ``w_j / W_j``, ``W_j`` the weight so far, the uniform rescaled
to the part of ``[0, 1)`` left: the last kept child is ``j`` with probability ``w_j / W``); the pick's probability
is the product of ``w / W`` along the path, or 0 where a level has no weight (a void pick, slot -1). The torch
reference :func:`lumigrad.render._edge_tree._pick_ref` follows the same steps (and draws the same picks from the
same uniforms). Not differentiable (ids and probabilities); each thread writes only its own pick.
"""
from __future__ import annotations

from typing import Any

import warp as wp

from lumigrad.ops._common import KERNEL_MODULE_OPTIONS

wp.set_module_options(KERNEL_MODULE_OPTIONS)

__all__ = ["edge_tree_pick", "edge_tree_leaves", "light_facing_bits", "candidate_lengths"]


@wp.func
def _node_weight(c: Any, r: Any, ax: Any, cos_t: Any, sin_t: Any, is_open: int, length: Any, x: Any, ns: Any,
                 tol_rel: Any, by_angle: int):
    """A node's weight seen from ``x`` (shading normal ``ns``): ``length``, or 0 where the node is culled (all
    faces turned one way as seen from ``x`` and no open edge, or all below ``x``'s tangent plane)."""
    zero = length - length
    u = x - c
    d = wp.length(u)
    tol = tol_rel * (d + r)
    if wp.dot(ns, c - x) + r < -tol:
        return zero
    if is_open == 0 and d > zero:
        cp = wp.clamp(wp.dot(u, ax) / d, -d / d, d / d)
        sp = wp.sqrt(wp.max(zero, d / d - cp * cp))
        low = -d
        if cp >= -cos_t:
            low = d * (cp * cos_t - sp * sin_t)
        high = d
        if cp <= cos_t:
            high = d * (cp * cos_t + sp * sin_t)
        if low - r > tol or high + r < -tol:
            return zero
    if by_angle != 0:  # about the angle the node's edges subtend at x
        return length / wp.max(d, r)
    return length


@wp.func
def _edge_weight(a: Any, c: Any, ef: wp.vec2i, length: Any, fn: wp.array(dtype=Any), v0: wp.array(dtype=Any),
                 x: Any, ns: Any, tol_rel: Any, by_angle: int):
    """A leaf slot's weight: its length where the edge is a silhouette seen from ``x`` (open, or its faces turned
    different ways) with an end point above the tangent plane, else 0."""
    zero = length - length
    sil = ef[1] < 0
    if not sil:
        s0 = wp.dot(fn[ef[0]], x - v0[ef[0]]) > zero
        s1 = wp.dot(fn[ef[1]], x - v0[ef[1]]) > zero
        sil = s0 != s1
    if not sil:
        return zero
    if wp.dot(ns, a - x) > -tol_rel * wp.length(a - x) or wp.dot(ns, c - x) > -tol_rel * wp.length(c - x):
        if by_angle != 0 and length > zero:  # the angle the edge subtends at x
            cs = wp.dot(wp.normalize(a - x), wp.normalize(c - x))
            return wp.acos(wp.clamp(cs, -length / length, length / length))
        return length
    return zero


@wp.kernel
def edge_tree_pick(
    offset: int,
    picks: int,  # picks per vertex: pick i is vertex i // picks's
    branch: int,  # children per node below the top level
    leaf: int,  # slots per leaf
    level_off: wp.array(dtype=wp.int32),  # [L + 1] first node of each level (top first), then the node count
    centre: wp.array(dtype=Any),  # [nodes] vec3 bounding-sphere centre
    radius: wp.array(dtype=Any),  # [nodes]
    axis: wp.array(dtype=Any),  # [nodes] vec3 normal-cone axis
    cos_t: wp.array(dtype=Any),  # [nodes] cosine and sine of the cone's half angle
    sin_t: wp.array(dtype=Any),
    is_open: wp.array(dtype=wp.int32),  # [nodes] 1 where the node holds an open edge
    node_len: wp.array(dtype=Any),  # [nodes] total length
    slot_a: wp.array(dtype=Any),  # [slots] vec3 end points
    slot_c: wp.array(dtype=Any),
    slot_ef: wp.array(dtype=wp.vec2i),  # [slots] adjacent faces (-1: open)
    slot_len: wp.array(dtype=Any),  # [slots]
    fn: wp.array(dtype=Any),  # [F] vec3 face normals (unnormalised)
    v0: wp.array(dtype=Any),  # [F] vec3 a corner of each face
    xs: wp.array(dtype=Any),  # [N] vec3 path vertices
    nss: wp.array(dtype=Any),  # [N] vec3 shading normals
    u: wp.array2d(dtype=Any),  # [N * picks, L + 1] uniforms
    tol_rel: Any,
    by_angle: int,  # 1: weigh by subtended angle, 0: by length
    out_slot: wp.array(dtype=wp.int32),  # [N * picks] leaf slot, -1: void
    out_prob: wp.array(dtype=Any),  # [N * picks]
):
    i = wp.tid() + offset
    x = xs[i // picks]
    ns = nss[i // picks]
    n_levels = level_off.shape[0] - 1
    prob = tol_rel / tol_rel
    one = prob
    zero = prob - prob
    first = level_off[0]
    count = level_off[1] - level_off[0]
    for lv in range(n_levels + 1):
        ui = u[i, lv]
        total = zero
        chosen = int(-1)
        w_chosen = zero
        for k in range(count):
            j = first + k
            w = zero
            if lv < n_levels:
                w = _node_weight(centre[j], radius[j], axis[j], cos_t[j], sin_t[j], is_open[j], node_len[j], x, ns,
                                 tol_rel, by_angle)
            else:
                w = _edge_weight(slot_a[j], slot_c[j], slot_ef[j], slot_len[j], fn, v0, x, ns, tol_rel, by_angle)
            if w > zero:
                total = total + w
                p = w / total
                if ui < p or total == w:  # the first child with weight is kept whatever ui (even 1 by rounding)
                    chosen = j
                    w_chosen = w
                    ui = ui / p
                else:
                    ui = (ui - p) / (one - p)
        if chosen < 0:
            out_slot[i] = -1
            out_prob[i] = zero
            return
        prob = prob * (w_chosen / total)
        if lv + 1 < n_levels:  # children in the next level
            first = level_off[lv + 1] + (chosen - level_off[lv]) * branch
            count = branch
        elif lv + 1 == n_levels:  # the leaf's slots
            first = (chosen - level_off[lv]) * leaf
            count = leaf
        else:
            out_slot[i] = chosen
            out_prob[i] = prob


@wp.kernel
def edge_tree_leaves(
    offset: int,
    leaf: int,  # slots per leaf
    slot_edge: wp.array(dtype=wp.int32),  # [slots] edge id of each slot
    slot_len: wp.array(dtype=Any),  # [slots] length (0: padding, holds no face)
    edges: wp.array(dtype=wp.vec2i),  # [E] end points' vertex ids
    edge_faces: wp.array(dtype=wp.vec2i),  # [E] adjacent faces (-1: open)
    verts: wp.array(dtype=Any),  # [V] vec3
    fn: wp.array(dtype=Any),  # [F] vec3 face normals (unnormalised)
    one: Any,  # 1 in the float type
    out_a: wp.array(dtype=Any),  # [slots] vec3 end points
    out_c: wp.array(dtype=Any),
    out_ef: wp.array(dtype=wp.vec2i),  # [slots] adjacent faces
    lo: wp.array(dtype=Any),  # [leaves] vec3 box of the end points
    hi: wp.array(dtype=Any),
    axis: wp.array(dtype=Any),  # [leaves] vec3 unit axis of the faces' normal cone (0: none)
    theta: wp.array(dtype=Any),  # [leaves] its half angle (pi where the normals have no common side)
    is_open: wp.array(dtype=wp.int32),  # [leaves]
    length: wp.array(dtype=Any),  # [leaves] total length
):
    """Leaf ``i``'s slots ``i * leaf ..``: their end points and faces, and the leaf's bounds (as
    :meth:`lumigrad.render._edge_tree.EdgeTree._leaves_ref`)."""
    i = wp.tid() + offset
    s0 = i * leaf
    e = edges[slot_edge[s0]]
    b_lo = verts[e[0]]
    b_hi = b_lo
    total = slot_len[s0] - slot_len[s0]
    zero = total
    acc = b_lo - b_lo
    op = int(0)
    for k in range(leaf):
        s = s0 + k
        e = edges[slot_edge[s]]
        ef = edge_faces[slot_edge[s]]
        a = verts[e[0]]
        c = verts[e[1]]
        out_a[s] = a
        out_c[s] = c
        out_ef[s] = ef
        b_lo = wp.min(b_lo, wp.min(a, c))
        b_hi = wp.max(b_hi, wp.max(a, c))
        if ef[1] < 0:
            op = 1
        if slot_len[s] > zero:
            total = total + slot_len[s]
            na = wp.normalize(fn[ef[0]])
            nb = na
            if ef[1] >= 0:
                nb = wp.normalize(fn[ef[1]])
            acc = acc + na + nb
    ax = wp.normalize(acc)
    th = zero
    if wp.length(acc) <= zero:
        th = wp.acos(-one)
    for k in range(leaf):
        s = s0 + k
        if slot_len[s] > zero:
            ef = out_ef[s]
            cm = wp.dot(ax, wp.normalize(fn[ef[0]]))
            if ef[1] >= 0:
                cm = wp.min(cm, wp.dot(ax, wp.normalize(fn[ef[1]])))
            th = wp.max(th, wp.acos(wp.clamp(cm, -one, one)))
    lo[i] = b_lo
    hi[i] = b_hi
    axis[i] = ax
    theta[i] = th
    is_open[i] = op
    length[i] = total


@wp.kernel
def light_facing_bits(
    offset: int,
    fn: wp.array(dtype=Any),  # [F] vec3 face normals (unnormalised)
    v0: wp.array(dtype=Any),  # [F] vec3 a corner of each face
    light_vec: wp.array(dtype=Any),  # [L <= 32] vec3 point light position, or direction towards the light
    is_point: wp.array(dtype=wp.int32),  # [L]
    edge_on: Any,  # lumigrad.render._trace_edges._EDGE_ON
    out: wp.array(dtype=wp.int32),  # [F] bit l: the face is turned towards light l
):
    """Per face, for up to 32 lights, :func:`lumigrad.render._trace_edges._facing_one`'s test: the cosine between
    the normal and the direction to the light above ``edge_on`` (the lengths only computed where it is positive)."""
    i = wp.tid() + offset
    n = fn[i]
    p = v0[i]
    bits = int(0)
    for l in range(light_vec.shape[0]):
        t = light_vec[l]
        if is_point[l] != 0:
            t = t - p
        d = wp.dot(n, t)
        if d > d - d:
            if d > edge_on * wp.length(n) * wp.length(t):
                bits = bits | (1 << l)
    out[i] = bits


@wp.kernel
def candidate_lengths(
    offset: int,
    edges: wp.array(dtype=wp.vec2i),  # [E] end points' vertex ids
    edge_faces: wp.array(dtype=wp.vec2i),  # [E] adjacent faces (-1: open)
    verts: wp.array(dtype=Any),  # [V] vec3
    fn: wp.array(dtype=Any),  # [F] vec3 face normals (unnormalised)
    flat: Any,  # faces whose unit normals' cross product is shorter (and dot positive) are coplanar
    out: wp.array(dtype=Any),  # [E] the edge's length where it can be a silhouette, else 0
):
    """Per edge: its length if open or between non-coplanar faces (as
    :func:`lumigrad.render._trace_edges_indirect._candidate_edges`), else 0."""
    i = wp.tid() + offset
    e = edges[i]
    ef = edge_faces[i]
    length = wp.length(verts[e[1]] - verts[e[0]])
    if ef[1] >= 0:
        n0 = wp.normalize(fn[ef[0]])
        n1 = wp.normalize(fn[ef[1]])
        if wp.length(wp.cross(n0, n1)) <= flat and wp.dot(n0, n1) >= flat - flat:
            length = flat - flat
    out[i] = length
