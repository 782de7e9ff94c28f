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
    ``verts[faces]``: every leaf slot reached once, each face's data in its slot, every child box inside its
    parent's slot box and every triangle inside its leaf's box, depth below ``stack_size``."""
    nf = faces.shape[0]
    kids = bvh.kids.long()  # [N, 2]
    nodes = bvh.nodes.reshape(-1, 2, 2, 3).double()  # [N, side, lo/hi, 3]
    tri = verts.double()[faces.long()]  # [F, 3, 3]
    inner = kids >= 0
    par, side = torch.nonzero(inner, as_tuple=True)
    child = kids[par, side]
    assert bool((child > par).all()), "children must be numbered after their parents"
    box = nodes[par, side]  # [M, 2, 3]
    clo, chi = nodes[child, :, 0].amin(1), nodes[child, :, 1].amax(1)
    assert bool((clo >= box[:, 0]).all() and (chi <= box[:, 1]).all()), "a node is not inside its parent's box"
    lpar, lside = torch.nonzero(~inner, as_tuple=True)
    code = -1 - kids[lpar, lside]
    k0, cnt = code >> 3, (code & 7) + 1
    leaf = torch.repeat_interleave(torch.arange(k0.numel()), cnt)
    slot = k0[leaf] + torch.arange(leaf.numel()) - (torch.cumsum(cnt, 0) - cnt)[leaf]
    if nf > 1:
        assert torch.equal(torch.sort(slot).values, torch.arange(nf)), "every leaf slot must be reached exactly once"
    assert torch.equal(torch.sort(bvh.perm.long()).values, torch.arange(nf)), "perm must permute the faces"
    face = bvh.perm.long()[slot]
    lbox = nodes[lpar, lside][leaf]  # [S, 2, 3]
    t = tri[face]  # [S, 3, 3]
    assert bool((t >= lbox[:, None, 0]).all() and (t <= lbox[:, None, 1]).all()), "a face is outside its leaf box"
    got = bvh.tris.reshape(-1, 4, 3)[slot, :3].double()
    want = torch.stack([t[:, 0], t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]], 1)
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-6), "a slot does not hold its face's corner and edges"
    assert len(bvh.levels) < stack_size, f"depth {len(bvh.levels)} too deep for the stack"
