"""Mesh regularizers: Laplacian smoothing, edge length, normal consistency.

Topology (unique edges, faces sharing an edge) is computed in torch by
:func:`mesh_topology`; build it once per mesh and pass it as ``topology=`` to
skip the face checks and the rebuild on every call. Nothing is cached globally.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import Tensor

from lumigrad._runtime.checks import _desc, check_faces, check_float_tensor

__all__ = [
    "MeshTopology",
    "mesh_topology",
    "mesh_laplacian",
    "laplacian_smoothing",
    "edge_length_loss",
    "normal_consistency",
]

_EPS_SQ = 1e-20  # under square roots of squared lengths: finite gradients at 0
_EPS = 1e-12


@dataclass(frozen=True)
class MeshTopology:
    """Connectivity of a triangle mesh (all index tensors int64, on the faces' device).

    Attributes:
        num_verts: V.
        faces: ``[F, 3]`` vertex indices.
        edges: ``[E, 2]`` unique undirected edges, ``edges[:, 0] < edges[:, 1]``.
        face_pairs: ``[P, 2]`` faces sharing an edge (one pair per manifold
            edge; an edge with k > 2 faces gives k - 1 chained pairs).
        degree: ``[V]`` number of distinct neighbours of each vertex.
    """

    num_verts: int
    faces: Tensor  # [F, 3]
    edges: Tensor  # [E, 2]
    face_pairs: Tensor  # [P, 2]
    degree: Tensor  # [V]


def mesh_topology(
    faces: Tensor,  # [F, 3] int
    num_verts: int,
) -> MeshTopology:
    """Build the edge and adjacency topology of a triangle mesh.

    Args:
        faces: ``[F, 3]`` integer vertex indices in ``[0, num_verts)``.
        num_verts: number of vertices V.

    Returns:
        A :class:`MeshTopology` to pass to the regularizers.

    Example:
        >>> topo = mesh_topology(torch.tensor([[0, 1, 2], [0, 2, 3]]), 4)
        >>> topo.edges.tolist(), topo.face_pairs.tolist()
        ([[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]], [[0, 1]])
    """
    return _build("mesh_topology", faces, num_verts)


def _build(fn: str, faces, num_verts) -> MeshTopology:
    try:
        v = operator.index(num_verts)
    except TypeError:
        raise ValueError(f"{fn}(): num_verts must be an int, got {num_verts!r}") from None
    f = check_faces(fn, faces, v, name="faces").long()
    half = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # [3F, 2]
    lo, hi = half.min(1).values, half.max(1).values
    key = lo * v + hi
    uniq = torch.unique(key)
    edges = torch.stack([uniq // v, uniq % v], dim=1)
    face_of = torch.arange(f.shape[0], device=f.device).repeat_interleave(3)
    order = torch.argsort(key, stable=True)
    sk = key[order]
    same = sk[1:] == sk[:-1]
    face_pairs = torch.stack([face_of[order[:-1]][same], face_of[order[1:]][same]], dim=1)
    degree = torch.bincount(edges.reshape(-1), minlength=v)
    return MeshTopology(num_verts=v, faces=f, edges=edges, face_pairs=face_pairs, degree=degree)


def _resolve(fn: str, verts, faces, topology) -> MeshTopology:
    check_float_tensor(fn, "verts", verts, (2,), 3, expected="[V, 3]")
    if topology is None:
        if faces is None:
            raise ValueError(f"{fn}(): faces must be an int32 tensor [F, 3] when topology is not given, got None")
        return _build(fn, faces, verts.shape[0])
    if not isinstance(topology, MeshTopology):
        raise TypeError(f"{fn}(): topology must be a MeshTopology (from mesh_topology()), got {type(topology).__name__}")
    if topology.num_verts != verts.shape[0]:
        raise ValueError(f"{fn}(): topology was built for {topology.num_verts} vertices, verts is {_desc(verts)}")
    if faces is not None and (not isinstance(faces, Tensor) or faces.shape != topology.faces.shape):
        got = _desc(faces) if isinstance(faces, Tensor) else type(faces).__name__
        raise ValueError(f"{fn}(): faces must match topology.faces {list(topology.faces.shape)}, got {got}")
    if topology.faces.device != verts.device:
        raise ValueError(f"{fn}(): topology is on {topology.faces.device} but verts is on {verts.device}")
    return topology


def _cotangents(verts: Tensor, f: Tensor) -> Tensor:
    """``[F, 3]`` cotangent of the angle at each corner."""
    p = verts[f]  # [F, 3, 3]
    out = []
    for c in range(3):
        a, b, o = p[:, (c + 1) % 3], p[:, (c + 2) % 3], p[:, c]
        u, w = a - o, b - o
        cross = torch.linalg.cross(u, w, dim=-1)
        out.append((u * w).sum(-1) / torch.sqrt((cross * cross).sum(-1) + _EPS_SQ))
    return torch.stack(out, dim=1)


def _laplacian(verts: Tensor, topo: MeshTopology, method: str) -> Tensor:
    v = verts.shape[0]
    if method == "uniform":
        i, j = topo.edges[:, 0], topo.edges[:, 1]
        acc = torch.zeros_like(verts).index_add(0, i, verts[j]).index_add(0, j, verts[i])
        deg = topo.degree.to(verts.dtype)[:, None]
        return torch.where(deg > 0, acc / deg.clamp_min(1.0) - verts, torch.zeros_like(verts))
    cot = _cotangents(verts, topo.faces)  # [F, 3]
    num = torch.zeros_like(verts)
    den = verts.new_zeros(v)
    for c in range(3):
        # The corner-c angle weighs the opposite edge (a, b).
        a, b = topo.faces[:, (c + 1) % 3], topo.faces[:, (c + 2) % 3]
        w = cot[:, c]
        d = verts[b] - verts[a]
        num = num.index_add(0, a, w[:, None] * d).index_add(0, b, -w[:, None] * d)
        den = den.index_add(0, a, w).index_add(0, b, w)
    den = den[:, None]
    ok = den > _EPS
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def mesh_laplacian(
    verts: Tensor,  # [V, 3]
    faces: Tensor | None,  # [F, 3] int
    method: str = "uniform",
    *,
    topology: MeshTopology | None = None,
) -> Tensor:
    """Per-vertex Laplacian vectors ``L v_i = sum_j w_ij (v_j - v_i) / sum_j w_ij``.

    Args:
        verts: ``[V, 3]`` vertex positions.
        faces: ``[F, 3]`` integer indices (may be ``None`` when ``topology`` is given).
        method: ``"uniform"`` (``w_ij = 1`` over neighbours) or
            ``"cotangent"`` (``w_ij = cot a_ij + cot b_ij``, the angles
            opposite edge ij; differentiated through the weights too).
            Vertices with no neighbours, or a cotangent weight sum <= 1e-12,
            get 0.
        topology: optional prebuilt :func:`mesh_topology` result.

    Returns:
        ``[V, 3]``; zero at interior vertices of a flat, regular grid.
    """
    fn = "mesh_laplacian"
    topo = _resolve(fn, verts, faces, topology)
    if method not in ("uniform", "cotangent"):
        raise ValueError(f"{fn}(): method must be 'uniform' or 'cotangent', got {method!r}")
    return _laplacian(verts, topo, method)


def laplacian_smoothing(
    verts: Tensor,  # [V, 3]
    faces: Tensor | None,  # [F, 3] int
    method: str = "uniform",
    *,
    topology: MeshTopology | None = None,
) -> Tensor:
    """Laplacian smoothing loss: mean over vertices of ``|L v_i|**2``.

    Arguments as in :func:`mesh_laplacian`. The squared norm (rather than the
    norm) keeps the loss differentiable where the surface is already smooth.

    Returns:
        Scalar; differentiable w.r.t. ``verts``.
    """
    fn = "laplacian_smoothing"
    topo = _resolve(fn, verts, faces, topology)
    if method not in ("uniform", "cotangent"):
        raise ValueError(f"{fn}(): method must be 'uniform' or 'cotangent', got {method!r}")
    lap = _laplacian(verts, topo, method)
    return (lap * lap).sum(-1).mean()


def edge_length_loss(
    verts: Tensor,  # [V, 3]
    faces: Tensor | None,  # [F, 3] int
    target_length: float | None = None,
    *,
    topology: MeshTopology | None = None,
) -> Tensor:
    """Mean squared deviation of edge lengths from a target.

    Args:
        verts: ``[V, 3]``.
        faces: ``[F, 3]`` (may be ``None`` when ``topology`` is given).
        target_length: a length ``>= 0`` (``0`` pulls edges together, as
            PyTorch3D's ``mesh_edge_loss``), or ``None`` for the current mean
            edge length, which penalises uneven edges without shrinking the mesh.
        topology: optional prebuilt :func:`mesh_topology` result.

    Returns:
        Scalar ``mean_e (|e| - target)**2``; differentiable w.r.t. ``verts``.
    """
    fn = "edge_length_loss"
    topo = _resolve(fn, verts, faces, topology)
    if target_length is not None and not (isinstance(target_length, (int, float)) and target_length >= 0):
        raise ValueError(f"{fn}(): target_length must be None or a float >= 0, got {target_length!r}")
    d = verts[topo.edges[:, 1]] - verts[topo.edges[:, 0]]
    length = torch.sqrt((d * d).sum(-1) + _EPS_SQ)
    target = length.mean() if target_length is None else float(target_length)
    return ((length - target) ** 2).mean()


def normal_consistency(
    verts: Tensor,  # [V, 3]
    faces: Tensor | None,  # [F, 3] int
    *,
    topology: MeshTopology | None = None,
) -> Tensor:
    """Mean of ``1 - cos`` between the normals of faces sharing an edge.

    Faces must be consistently oriented (a flipped neighbour counts as a fold,
    ``1 - cos = 2``). A mesh without shared edges gives 0.

    Args:
        verts: ``[V, 3]``.
        faces: ``[F, 3]`` (may be ``None`` when ``topology`` is given).
        topology: optional prebuilt :func:`mesh_topology` result.

    Returns:
        Scalar in [0, 2]; 0 for a flat sheet, 1 across a right-angle edge.
        Differentiable w.r.t. ``verts``.
    """
    topo = _resolve("normal_consistency", verts, faces, topology)
    if topo.face_pairs.shape[0] == 0:
        return verts.sum() * 0.0
    p = verts[topo.faces]
    n = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1)
    n = n * torch.rsqrt((n * n).sum(-1, keepdim=True) + _EPS_SQ)
    cos = (n[topo.face_pairs[:, 0]] * n[topo.face_pairs[:, 1]]).sum(-1)
    return (1.0 - cos).mean()
