"""lumigrad's triangle BVH: a vectorised torch builder and the refit that fills in its boxes.

Why not ``wp.Mesh``: Warp's query (``wp.mesh_query_ray``) does three dependent loads per leaf
triangle (primitive index -> vertex indices -> points), sets up the watertight test's ray shear per
triangle, and does not skip stack entries that lie beyond the closest hit found so far. The layout
here (see :mod:`lumigrad.ops._bvh_kernels`) stores each node's two child boxes together, the
triangles' corners in leaf order, and the stack holds entry distances. ``bench/bvh.py`` measures it
against ``wp.mesh_query_ray`` / ``wp.mesh_query_ray_anyhit`` in one run.

Build (:func:`build_topology`, torch, runs on the vertices' device): a linear BVH. Triangles are
sorted by the 63-bit Morton code of their box centres; then, one tree level at a time for all nodes
of the level at once, a node's range of sorted triangles is split where the highest bit that
differs between its first and last code flips (found with one ``searchsorted`` over the sorted
codes), i.e. at the spatial median of its Morton cell. Equal codes (and any node deeper than
``_MAX_MORTON_DEPTH``) split at the middle of the range, which bounds the depth (stack size).
Ranges of at most ``leaf_size`` triangles become leaves. Only the topology is built in torch; the
boxes come from the refit kernels, so a build is a refit plus a sort and ~40 rounds of small torch
ops.

Refit (:meth:`BVHData.refit`): gather the triangles' corners in leaf order (one parallel kernel),
then the boxes bottom-up: on CPU in one thread over all nodes (children always have larger ids than
their parent), on CUDA one launch per level.

Pure-torch reference queries (brute force over all triangles, for tests): :mod:`lumigrad.ops._bvh_ref`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import warp as wp

from lumigrad._runtime.launch import launch, to_warp, warp_device
from lumigrad.ops import _bvh_kernels as _k

__all__ = ["BVHData", "build_topology"]

_MAX_MORTON_DEPTH = 32  # below this depth every split is a median split: depth <= 32 + 31 < STACK_SIZE
DEFAULT_LEAF_SIZE = 4


def _spread3(x: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits after each of the low 21 bits of ``x`` (int64)."""
    x = x & 0x1FFFFF
    x = (x | (x << 32)) & 0x1F00000000FFFF
    x = (x | (x << 16)) & 0x1F0000FF0000FF
    x = (x | (x << 8)) & 0x100F00F00F00F00F
    x = (x | (x << 4)) & 0x10C30C30C30C30C3
    x = (x | (x << 2)) & 0x1249249249249249
    return x


def _highest_bit(x: torch.Tensor) -> torch.Tensor:
    """Index of the highest set bit of each positive int64 (0 for 0)."""
    hb = torch.zeros_like(x)
    for sh in (32, 16, 8, 4, 2, 1):
        big = (x >> (hb + sh)) != 0
        hb = hb + sh * big
    return hb


@dataclass
class Topology:
    perm: torch.Tensor  # [F] int32 face of each leaf slot
    kids: torch.Tensor  # [N, 2] int32 child references
    levels: list  # [(first node, count)] per level, root first
    leaf_ref: torch.Tensor  # [L] int32 the leaves' references
    leaf_pos: torch.Tensor  # [L] int32 row of each leaf's box in nodes: 4 parent + 2 side


def build_topology(points: torch.Tensor, faces: torch.Tensor, leaf_size: int = DEFAULT_LEAF_SIZE) -> Topology:
    """LBVH topology of triangles ``points[faces]`` (``[V, 3]`` float32, ``[F, 3]`` int, F >= 1)."""
    dev = points.device
    nf = faces.shape[0]
    if nf == 1:  # the root's two children are the same one-triangle leaf
        i32 = dict(dtype=torch.int32, device=dev)
        return Topology(torch.zeros(1, **i32), torch.full((1, 2), -1, **i32), [(0, 1)], torch.full((2,), -1, **i32),
                        torch.tensor([0, 2], **i32))
    tri = points[faces.long()]  # [F, 3, 3]
    cen = tri.amin(1) + tri.amax(1)
    lo, hi = cen.amin(0), cen.amax(0)
    scale = (2 ** 21 - 1) / (hi - lo).clamp_min(1e-30)
    q = ((cen - lo) * scale).clamp(0, 2 ** 21 - 1).to(torch.int64)
    code = _spread3(q[:, 0]) << 2 | _spread3(q[:, 1]) << 1 | _spread3(q[:, 2])
    code, order = torch.sort(code, stable=True)
    perm = order.to(torch.int32)

    kids_levels, leaf_refs, leaf_rows = [], [], []
    levels = []
    start = torch.zeros(1, dtype=torch.int64, device=dev)
    end = torch.full((1,), nf, dtype=torch.int64, device=dev)
    next_id, depth = 1, 0
    while start.numel():
        n = start.numel()
        levels.append((next_id - n, n))
        ca, cb = code[start], code[end - 1]
        x = ca ^ cb
        hb = _highest_bit(x)
        target = ((ca >> (hb + 1)) << (hb + 1)) | (torch.ones_like(hb) << hb)
        mid = torch.searchsorted(code, target)
        median = (x == 0) | (depth >= _MAX_MORTON_DEPTH)
        mid = torch.where(median, (start + end) // 2, mid)
        cs = torch.stack([start, mid], 1)  # [n, 2] children's ranges (both non-empty: count >= 2)
        ce = torch.stack([mid, end], 1)
        cnt = ce - cs
        leaf = cnt <= leaf_size
        inner = ~leaf
        ids = next_id + torch.cumsum(inner.reshape(-1).to(torch.int64), 0).reshape(n, 2) - 1
        leaf_ref = -1 - ((cs << _k.LEAF_BITS) | (cnt - 1).clamp(min=0))
        kids_levels.append(torch.where(leaf, leaf_ref, ids))
        rows = 4 * (next_id - n + torch.arange(n, device=dev))[:, None] + torch.tensor([0, 2], device=dev)
        leaf_refs.append(leaf_ref[leaf])
        leaf_rows.append(rows[leaf])
        next_id += int(inner.sum())
        start, end = cs[inner], ce[inner]
        depth += 1
    kids = torch.cat(kids_levels).to(torch.int32).contiguous()
    return Topology(perm.contiguous(), kids, levels, torch.cat(leaf_refs).to(torch.int32),
                    torch.cat(leaf_rows).to(torch.int32))


class BVHData:
    """Arrays of one BVH (see :mod:`lumigrad.ops._bvh_kernels` for the layout) over float32 ``points``.

    ``points`` (``[V, 3]`` float32, contiguous) is held by reference: write new positions into it and
    call :meth:`refit`.
    """

    def __init__(self, points: torch.Tensor, indices: torch.Tensor, leaf_size: int = DEFAULT_LEAF_SIZE) -> None:
        if not 1 <= leaf_size <= 1 << _k.LEAF_BITS:
            raise ValueError(f"BVHData(): leaf_size must be in [1, {1 << _k.LEAF_BITS}], got {leaf_size}")
        self.points = points
        self.indices = indices  # [3F] int32
        dev = points.device
        nf = indices.shape[0] // 3
        if nf == 0:
            self.perm = torch.zeros(0, dtype=torch.int32, device=dev)
            self.kids = torch.zeros(0, 2, dtype=torch.int32, device=dev)
            self.levels = []
            self.leaf_ref = self.leaf_pos = torch.zeros(0, dtype=torch.int32, device=dev)
        else:
            top = build_topology(points, indices.reshape(-1, 3), leaf_size)
            self.perm, self.kids, self.levels = top.perm, top.kids, top.levels
            self.leaf_ref, self.leaf_pos = top.leaf_ref, top.leaf_pos
        n = self.kids.shape[0]
        self.nodes = torch.zeros(max(4 * n, 1), 3, dtype=torch.float32, device=dev)
        self.tris = torch.zeros(max(4 * nf, 1), 3, dtype=torch.float32, device=dev)
        if nf == 0:  # placeholders for the kernels' arguments; kids is empty, so nothing is read
            self.perm = torch.zeros(1, dtype=torch.int32, device=dev)
        self.num_faces = nf
        self.slot = torch.empty_like(self.perm)  # leaf slot of each face
        self.slot[self.perm.long()] = torch.arange(self.perm.shape[0], dtype=torch.int32, device=dev)
        self.refit()

    @property
    def wdevice(self) -> str:
        return warp_device(self.points)

    def args(self) -> list:
        """``[nodes, kids, tris, tface]`` as kernel arguments (``bvh_closest``'s first four)."""
        return [to_warp(self.nodes, wp.vec3), to_warp(self.kids, wp.vec2i), to_warp(self.tris, wp.vec3),
                to_warp(self.perm)]

    def refit(self) -> None:
        """Recompute the leaf-ordered corners and every box from ``points`` (same topology)."""
        n = self.kids.shape[0]
        if n == 0:
            return
        dev = self.wdevice
        kids, nodes = to_warp(self.kids, wp.vec2i), to_warp(self.nodes, wp.vec3)
        launch(_k.bvh_tris, self.num_faces, [to_warp(self.points, wp.vec3), to_warp(self.indices),
                                             to_warp(self.slot), to_warp(self.tris, wp.vec3)], dev)
        launch(_k.bvh_leaves, self.leaf_ref.shape[0], [to_warp(self.tris, wp.vec3), to_warp(self.leaf_ref),
                                                       to_warp(self.leaf_pos), nodes], dev)
        if dev == "cpu":
            launch(_k.bvh_refit_serial, 1, [n, kids, nodes], dev)
        else:
            for first, count in reversed(self.levels):
                launch(_k.bvh_refit_level, count, [first, kids, nodes], dev)
