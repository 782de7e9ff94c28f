"""BVH4 prototype: collapse of the binary SAH tree into 4-wide nodes (see :mod:`lumigrad.ops._bvh4_kernels`)."""
from __future__ import annotations

import torch
import warp as wp

from lumigrad._runtime.launch import launch, to_warp
from lumigrad.ops import _bvh4_kernels as _k4
from lumigrad.ops._bvh import BVHData

MAX_DEPTH4 = 32  # the query's stack holds 3 entries per level + 3 scratch


def _half_area(nodes2: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    lo, hi = nodes2[rows.clamp(min=0)], nodes2[rows.clamp(min=0) + 1]
    e = hi - lo
    return e[..., 0] * e[..., 1] + e[..., 1] * e[..., 2] + e[..., 2] * e[..., 0]


def collapse(kids2: torch.Tensor, nodes2: torch.Tensor, by_area: bool = True):
    """4-wide topology from the binary one: per node, repeatedly open the inner child of largest surface area
    (``by_area``; else only the node's own children: 2 binary levels per level) until it has 4. Returns ``(kids4 [N4, 4], src [N4, 4], levels)``:
    child references (inner >= 0: BVH4 ids; leaves as in the binary tree; padding 0) and each child's box row
    in the binary ``nodes`` (-1: padding)."""
    dev = kids2.device
    k2 = kids2.long()
    front = torch.zeros(1, dtype=torch.long, device=dev)
    out_ref, out_src, levels = [], [], []
    next_id = 1
    while front.numel():
        n = front.numel()
        levels.append((next_id - n, n))
        ref = torch.zeros(n, 4, dtype=torch.long, device=dev)
        src = torch.full((n, 4), -1, dtype=torch.long, device=dev)
        ref[:, :2] = k2[front]
        src[:, 0], src[:, 1] = 4 * front, 4 * front + 2
        ar = torch.arange(n, device=dev)
        top = torch.ones(n, 4, dtype=torch.bool, device=dev)  # still a child of the binary node itself
        for fill in (2, 3):
            openable = (ref >= 0) & (src >= 0) & (top | by_area)
            score = torch.where(openable, _half_area(nodes2, src), -1.0)
            j = score.argmax(1)
            ok = openable[ar, j]
            c = ref[ar, j].clamp(min=0)
            ref[ar, j] = torch.where(ok, k2[c, 0], ref[ar, j])
            src[ar, j] = torch.where(ok, 4 * c, src[ar, j])
            top[ar, j] &= ~ok
            top[:, fill] = ~ok
            ref[:, fill] = torch.where(ok, k2[c, 1], ref[:, fill])
            src[:, fill] = torch.where(ok, 4 * c + 2, src[:, fill])
        inner = (ref >= 0) & (src >= 0)
        ids = next_id + torch.cumsum(inner.reshape(-1).long(), 0).reshape(n, 4) - 1
        out_ref.append(torch.where(inner, ids, torch.where(src >= 0, ref, 0)))
        out_src.append(src)
        next_id += int(inner.sum())
        front = ref[inner]
    return (torch.cat(out_ref).to(torch.int32).contiguous(), torch.cat(out_src).to(torch.int32).contiguous(), levels)


class BVH4Data:
    """A binary :class:`BVHData` and its 4-wide collapse (refit: the binary refit, then one gather)."""

    def __init__(self, points, indices, by_area: bool = True):
        self.bin = BVHData(points, indices)
        self.kids, self.src, self.levels = collapse(self.bin.kids, self.bin.nodes, by_area)
        if self.bin.kids.shape[0] == 0:
            self.kids = self.kids[:0]
            self.src = self.src[:0]
        if len(self.levels) > MAX_DEPTH4 and by_area:
            self.kids, self.src, self.levels = collapse(self.bin.kids, self.bin.nodes, False)
        self.nodes = torch.zeros(max(6 * self.kids.shape[0], 1), 4, dtype=torch.float32, device=points.device)
        self._gather()

    def refit(self):
        self.bin.refit()
        self._gather()

    def _gather(self):
        if self.kids.shape[0]:
            launch(_k4.bvh4_gather, self.kids.shape[0], [to_warp(self.src, wp.vec4i), to_warp(self.bin.nodes, wp.vec3),
                                                         to_warp(self.nodes, wp.vec4)], self.bin.wdevice,
                   min_chunk=1 << 14)

    def args(self):
        return [to_warp(self.nodes, wp.vec4), to_warp(self.kids, wp.vec4i), to_warp(self.bin.tris, wp.vec3),
                to_warp(self.bin.perm)]


class BVH4SData(BVH4Data):
    """Prototype: BVH4 nodes and SoA leaves of 4 triangles (leaf references ``-1 - leaf``); refit in torch."""

    def __init__(self, points, indices, by_area: bool = True):
        super().__init__(points, indices, by_area)
        b = self.bin
        codes = (-1 - b.leaf_ref.long())  # [L]
        order = torch.argsort(codes)
        self.codes_sorted = codes[order]
        start, cnt = codes >> 3, (codes & 7) + 1
        nl = codes.shape[0]
        lane = torch.arange(4)
        self.lslot = start[:, None] + lane  # [L, 4]
        self.lvalid = lane < cnt[:, None]
        self.lface = torch.where(self.lvalid, b.perm.long()[self.lslot.clamp(max=b.perm.shape[0] - 1)], -1).to(
            torch.int32).reshape(-1).contiguous()
        # remap leaf refs in kids
        k = self.kids.long()
        neg = k < 0
        pos = torch.searchsorted(self.codes_sorted, (-1 - k).clamp(min=0))
        leaf_idx = order[pos.clamp(max=nl - 1)]
        self.kids = torch.where(neg, -1 - leaf_idx, k).to(torch.int32).contiguous()
        self.tris4 = torch.zeros(_k4.LROWS * nl, 4)
        self._fill()

    def refit(self):
        super().refit()
        self._fill()

    def _fill(self):
        b = self.bin
        t = b.tris.reshape(-1, 4, 3)[self.lslot.clamp(max=b.tris.shape[0] // 4 - 1)]  # [L, 4 lanes, 4 rows, 3]
        t = torch.where(self.lvalid[:, :, None, None], t, 0.0)
        r = _k4.LROWS
        self.tris4.view(-1, r, 4).copy_(t.permute(0, 2, 3, 1).reshape(-1, 12, 4)[:, :r])

    def args(self):
        return [to_warp(self.nodes, wp.vec4), to_warp(self.kids, wp.vec4i), to_warp(self.tris4, wp.vec4),
                to_warp(self.lface)]


class BVH2SData(BVH4SData):
    """Prototype: the binary nodes with SoA leaves of 4 triangles (leaf references ``-1 - leaf``)."""

    def __init__(self, points, indices):
        super().__init__(points, indices)
        b = self.bin
        k = b.kids.long()
        pos = torch.searchsorted(self.codes_sorted, (-1 - k).clamp(min=0))
        order = torch.argsort(-1 - b.leaf_ref.long())
        self.kids2 = torch.where(k < 0, -1 - order[pos.clamp(max=order.shape[0] - 1)], k).to(torch.int32).contiguous()

    def args(self):
        return [to_warp(self.bin.nodes, wp.vec3), to_warp(self.kids2, wp.vec2i), to_warp(self.tris4, wp.vec4),
                to_warp(self.lface)]
