"""Pure-torch reference for :mod:`lumigrad.ops._bvh`: brute-force closest / any hit, and the tree's invariants.

``O(R * F)`` memory and time: the spec, for tests on tiny scenes. Semantics of the BVH queries:
closest hit with ``0 <= t < tmax`` (face id and ``t``; a miss gives ``-1`` and ``tmax``), any hit with
``0 < t < tmax``; rays need not be unit length (``t`` is in units of ``|dir|``); degenerate (zero-area)
triangles are never hit.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.ops._trace_ref import ray_triangle

__all__ = ["closest_ref", "anyhit_ref", "all_hits_ref", "check_tree_ref"]


def all_hits_ref(verts: Tensor, faces: Tensor, origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """``(ok [R, F], t [R, F])``: which triangles each ray's line meets (inside, non-degenerate), and where."""
    v = verts.double()
    tri = v[faces.long()]  # [F, 3, 3]
    o, d = origins.double()[:, None], dirs.double()[:, None]
    t, b1, b2 = ray_triangle(o, d, tri[None, :, 0], tri[None, :, 1], tri[None, :, 2])
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    det = -(d * n[None]).sum(-1)
    ok = (b1 >= 0) & (b2 >= 0) & (b1 + b2 <= 1) & (det != 0) & (n.norm(dim=-1) > 0)[None]
    return ok, t


def closest_ref(verts: Tensor, faces: Tensor, origins: Tensor, dirs: Tensor, tmax: Tensor) -> tuple[Tensor, Tensor]:
    """``(face [R] int32, t [R] float32)``: the closest hit with ``0 <= t < tmax``, ``(-1, tmax)`` on a miss."""
    ok, t = all_hits_ref(verts, faces, origins, dirs)
    ok = ok & (t >= 0) & (t < tmax.double()[:, None])
    t = torch.where(ok, t, torch.full_like(t, float("inf")))
    tmin, arg = t.min(dim=1)
    hit = ok.any(dim=1)
    face = torch.where(hit, arg, torch.full_like(arg, -1)).to(torch.int32)
    return face, torch.where(hit, tmin.float(), tmax.float())


def anyhit_ref(verts: Tensor, faces: Tensor, origins: Tensor, dirs: Tensor, tmax: Tensor) -> Tensor:
    """``[R]`` bool: whether any triangle is hit with ``0 < t < tmax``."""
    ok, t = all_hits_ref(verts, faces, origins, dirs)
    return (ok & (t > 0) & (t < tmax.double()[:, None])).any(dim=1)


def check_tree_ref(bvh, verts: Tensor, faces: Tensor, stack_size: int) -> None:
    """Raise ``AssertionError`` unless ``bvh`` (a :class:`lumigrad.ops._bvh.BVHData`) is a valid hierarchy of
    ``verts[faces]``: every leaf slot used once, each face's data in its slot, every child box inside its
    parent's slot box and every triangle inside its leaf's box, depth below ``stack_size``."""
    nf = faces.shape[0]
    kids = bvh.kids.long()
    nodes = bvh.nodes.reshape(-1, 4, 3).double()
    tri = verts.double()[faces.long()]
    seen = torch.zeros(nf, dtype=torch.long)
    stack = [(0, 0)]
    max_depth = 0
    while stack:
        n, depth = stack.pop()
        max_depth = max(max_depth, depth)
        for side in range(2):
            lo, hi = nodes[n, 2 * side], nodes[n, 2 * side + 1]
            ref = int(kids[n, side])
            if ref >= 0:
                clo, chi = nodes[ref, 0::2].amin(0), nodes[ref, 1::2].amax(0)
                assert bool((clo >= lo).all() and (chi <= hi).all()), f"node {ref} not inside its parent {n}"
                stack.append((ref, depth + 1))
            else:
                code = -1 - ref
                k0, cnt = code >> 3, (code & 7) + 1
                for k in range(k0, k0 + cnt):
                    f = int(bvh.perm[k])
                    if nf > 1 or side == 0:
                        seen[k] += 1
                    t = tri[f]
                    assert bool((t >= lo).all() and (t <= hi).all()), f"face {f} outside its leaf box"
                    got = bvh.tris[4 * k: 4 * k + 3].double()
                    want = torch.stack([t[0], t[1] - t[0], t[2] - t[0]])
                    assert torch.allclose(got, want, atol=1e-6, rtol=1e-6), f"slot {k} does not hold face {f}"
    assert bool((seen == 1).all()), "every leaf slot must be reached exactly once"
    assert sorted(bvh.perm.tolist()) == list(range(nf)), "perm must be a permutation of the faces"
    assert max_depth + 1 < stack_size, f"depth {max_depth} too deep for the stack"
