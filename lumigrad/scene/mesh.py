"""Triangle meshes: a validated dataclass, normals, sampling, and packing of ragged batches."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from lumigrad._runtime.checks import check_faces, check_finite
from lumigrad.geometry.normals import face_cross, safe_normalize, vertex_normals

__all__ = ["Mesh", "PackedMeshes", "pack_meshes", "unpack_verts"]


def _desc(t: Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}"


def _check_float_field(name: str, t, shape_desc: str, ndim: int, last: int | None, ref: Tensor | None) -> None:
    fn = "Mesh"
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor {shape_desc}, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64) or t.ndim != ndim or (last is not None and t.shape[-1] != last):
        raise ValueError(f"{fn}(): {name} must be float32/float64 {shape_desc}, got {_desc(t)}")
    if ref is not None and (t.dtype != ref.dtype or t.device != ref.device):
        raise ValueError(f"{fn}(): {name} must match verts' dtype and device ({_desc(ref)} on {ref.device}), "
                         f"got {_desc(t)} on {t.device} (use Mesh.to() to convert all fields)")
    check_finite(fn, name, t)


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh, validated once at construction.

    Attributes:
        verts: ``[V, 3]`` float32/float64 positions (world units). ``V >= 1``, finite.
        faces: ``[F, 3]`` int32 vertex indices, ``F >= 1``; int64 is accepted and
            stored as int32. Winding: the right-hand normal ``(v1-v0) x (v2-v0)`` is the outside.
        vert_colors: optional ``[V, C]`` per-vertex attributes (e.g. linear RGB in [0, 1]).
        vert_normals: optional ``[V, 3]`` normals as read from a file. ``vertex_normals()``
            recomputes them from ``verts``; ``with_verts`` drops these (they go stale).
        uvs: optional ``[T, 2]`` texture coordinates (u right, v up, (0, 0) = bottom-left
            of the texture image; OBJ/OpenGL style).
        faces_uvs: optional ``[F, 3]`` int32 indices into ``uvs``: UVs have their own
            topology, as in OBJ, so seams need no duplicated positions. If ``uvs`` is given
            with ``T == V`` and no ``faces_uvs``, ``faces`` is used.
        texture: optional ``[Ht, Wt, C]`` float image, row 0 = top of the image (as stored
            in the file), so ``v = 1`` is row 0. Needs ``uvs``.

    All float fields share ``verts``' dtype and device. Instances are immutable:
    use :meth:`with_verts` or ``dataclasses.replace`` (which re-validates).

    Example:
        >>> from lumigrad.geometry.primitives import icosphere
        >>> mesh = Mesh(*icosphere(2))
        >>> mesh.vertex_normals().shape
        torch.Size([162, 3])
    """

    verts: Tensor
    faces: Tensor
    vert_colors: Tensor | None = None
    vert_normals: Tensor | None = None
    uvs: Tensor | None = None
    faces_uvs: Tensor | None = None
    texture: Tensor | None = None

    def __post_init__(self) -> None:
        _check_float_field("verts", self.verts, "[V, 3]", 2, 3, None)
        if self.verts.shape[0] == 0:
            raise ValueError("Mesh(): verts is empty (0 vertices)")
        v = self.verts
        faces = self._checked_index("faces", self.faces, v.shape[0])
        object.__setattr__(self, "faces", faces)
        if self.vert_colors is not None:
            _check_float_field("vert_colors", self.vert_colors, "[V, C]", 2, None, v)
            if self.vert_colors.shape[0] != v.shape[0]:
                raise ValueError(f"Mesh(): vert_colors must be [V={v.shape[0]}, C], got {_desc(self.vert_colors)}")
        if self.vert_normals is not None:
            _check_float_field("vert_normals", self.vert_normals, "[V, 3]", 2, 3, v)
            if self.vert_normals.shape[0] != v.shape[0]:
                raise ValueError(f"Mesh(): vert_normals must be [V={v.shape[0]}, 3], got {_desc(self.vert_normals)}")
        self._validate_uvs()

    def _checked_index(self, name: str, idx, n: int) -> Tensor:
        idx = check_faces("Mesh", idx, n, name=name)
        if idx.device != self.verts.device:
            raise ValueError(f"Mesh(): {name} must be on verts' device {self.verts.device}, got {idx.device}")
        return idx

    def _validate_uvs(self) -> None:
        v = self.verts
        if self.uvs is None:
            if self.faces_uvs is not None:
                raise ValueError("Mesh(): faces_uvs given without uvs")
            if self.texture is not None:
                raise ValueError("Mesh(): texture given without uvs (a texture needs texture coordinates)")
            return
        _check_float_field("uvs", self.uvs, "[T, 2]", 2, 2, v)
        if self.faces_uvs is None:
            if self.uvs.shape[0] != v.shape[0]:
                raise ValueError(f"Mesh(): faces_uvs is required when uvs is not per-vertex: uvs {_desc(self.uvs)}, "
                                 f"verts {_desc(v)}")
            object.__setattr__(self, "faces_uvs", self.faces)
        else:
            fuv = self._checked_index("faces_uvs", self.faces_uvs, self.uvs.shape[0])
            if fuv.shape != self.faces.shape:
                raise ValueError(f"Mesh(): faces_uvs must be [F={self.faces.shape[0]}, 3] like faces, got {_desc(fuv)}")
            object.__setattr__(self, "faces_uvs", fuv)
        if self.texture is not None:
            _check_float_field("texture", self.texture, "[Ht, Wt, C]", 3, None, v)
            if min(self.texture.shape) == 0:
                raise ValueError(f"Mesh(): texture must be a non-empty [Ht, Wt, C] image, got {_desc(self.texture)}")

    # -- sizes -----------------------------------------------------------------

    @property
    def num_verts(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.verts.dtype

    @property
    def device(self) -> torch.device:
        return self.verts.device

    # -- geometry --------------------------------------------------------------

    def face_normals(self) -> Tensor:
        """``[F, 3]`` unit face normals (right-hand rule); zero for degenerate faces. Differentiable."""
        return safe_normalize(face_cross(self.verts, self.faces))

    def face_areas(self) -> Tensor:
        """``[F]`` triangle areas. Differentiable."""
        c = face_cross(self.verts, self.faces)
        return 0.5 * torch.sqrt((c * c).sum(-1) + torch.finfo(c.dtype).tiny)

    def vertex_normals(self) -> Tensor:
        """``[V, 3]`` area-weighted unit vertex normals computed from ``verts``.

        Each face adds its un-normalised normal (length = twice its area) to its
        three vertices. Degenerate faces add nothing; a vertex whose sum is zero
        (isolated, or only degenerate faces) gets a zero normal. Gradients flow
        to ``verts`` and are finite everywhere.
        """
        return vertex_normals(self.verts, self.faces)

    def bounding_box(self) -> Tensor:
        """``[2, 3]``: row 0 the minimum corner, row 1 the maximum. Differentiable (like min/max)."""
        return torch.stack([self.verts.amin(0), self.verts.amax(0)])

    def diagonal(self) -> Tensor:
        """Scalar: length of the bounding-box diagonal."""
        lo, hi = self.bounding_box()
        return torch.linalg.vector_norm(hi - lo)

    def sample_points(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Uniform samples over the surface (faces chosen by area), e.g. for Chamfer.

        Args:
            n: number of points (> 0).
            generator: optional ``torch.Generator`` on the mesh's device, for
                reproducible samples.

        Returns:
            ``[n, 3]`` points. Differentiable w.r.t. ``verts`` (the face choice and
            barycentrics are fixed random draws).
        """
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"Mesh.sample_points(): n must be a positive int, got {n!r}")
        area = face_cross(self.verts.detach(), self.faces).norm(dim=-1)
        if not bool(area.sum() > 0):
            raise ValueError("Mesh.sample_points(): the mesh has zero total area")
        face = torch.multinomial(area, n, replacement=True, generator=generator)
        r = torch.rand(n, 2, dtype=self.dtype, device=self.device, generator=generator)
        # sqrt warp (Osada et al. 2002) gives uniform barycentrics.
        s = torch.sqrt(r[:, 0])
        w0, w1, w2 = 1 - s, s * (1 - r[:, 1]), s * r[:, 1]
        f = self.faces.long()[face]
        v = self.verts
        return w0[:, None] * v[f[:, 0]] + w1[:, None] * v[f[:, 1]] + w2[:, None] * v[f[:, 2]]

    # -- conversion ------------------------------------------------------------

    def with_verts(self, new_verts: Tensor) -> "Mesh":
        """Same topology, UVs, colours and texture with new positions (e.g. an optimised tensor).

        Faces are not re-validated (the vertex count must match); ``new_verts`` is
        checked for shape, dtype, device and finiteness. ``vert_normals`` is dropped
        because it describes the old positions; use :meth:`vertex_normals`.
        """
        _check_float_field("verts", new_verts, f"[V={self.num_verts}, 3]", 2, 3, None)
        if new_verts.shape[0] != self.num_verts or new_verts.dtype != self.dtype or new_verts.device != self.device:
            raise ValueError(f"Mesh.with_verts(): new_verts must be {_desc(self.verts)} on {self.device}, "
                             f"got {_desc(new_verts)} on {new_verts.device}")
        out = object.__new__(Mesh)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(verts=new_verts, vert_normals=None)
        for k, val in fields.items():
            object.__setattr__(out, k, val)
        return out

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Mesh":
        """Move every tensor to ``device`` and cast float fields to ``dtype`` (indices stay int32)."""
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise ValueError(f"Mesh.to(): dtype must be torch.float32 or torch.float64, got {dtype}")
        changes = {}
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            if val is None:
                continue
            changes[f.name] = val.to(device=device, dtype=dtype if val.is_floating_point() else None)
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        extras = [n for n in ("vert_colors", "vert_normals", "uvs", "texture") if getattr(self, n) is not None]
        return (f"Mesh(verts={_desc(self.verts)}, faces={_desc(self.faces)}, device={self.device}"
                + (f", with {', '.join(extras)}" if extras else "") + ")")


class PackedMeshes(NamedTuple):
    """Meshes of different sizes concatenated into one ("packed", as in nerfacc).

    Mesh ``b`` owns ``verts[vert_offsets[b]:vert_offsets[b+1]]`` and
    ``faces[face_offsets[b]:face_offsets[b+1]]``; its face indices are already
    shifted by ``vert_offsets[b]``, so ``faces`` indexes the packed ``verts``.

    Attributes:
        verts: ``[sumV, 3]``.
        faces: ``[sumF, 3]`` int32 into the packed ``verts``.
        vert_offsets: ``[B+1]`` int32, starts at 0, ends at sumV.
        face_offsets: ``[B+1]`` int32, starts at 0, ends at sumF.
        face_to_mesh: ``[sumF]`` int32, the mesh index of each face.
    """

    verts: Tensor
    faces: Tensor
    vert_offsets: Tensor
    face_offsets: Tensor
    face_to_mesh: Tensor


def pack_meshes(meshes: Sequence[Mesh]) -> PackedMeshes:
    """Concatenate meshes (same dtype and device) into :class:`PackedMeshes`.

    Gradients flow from the packed ``verts`` to each mesh's ``verts``.

    Example:
        >>> packed = pack_meshes([mesh_a, mesh_b])
        >>> verts_a, verts_b = unpack_verts(packed.verts, packed.vert_offsets)
    """
    meshes = list(meshes)
    if not meshes:
        raise ValueError("pack_meshes(): meshes is empty")
    for i, m in enumerate(meshes):
        if not isinstance(m, Mesh):
            raise TypeError(f"pack_meshes(): meshes[{i}] must be a Mesh, got {type(m).__name__}")
        if m.dtype != meshes[0].dtype or m.device != meshes[0].device:
            raise ValueError(f"pack_meshes(): meshes[{i}] is {m.dtype} on {m.device}, meshes[0] is "
                             f"{meshes[0].dtype} on {meshes[0].device}")
    dev = meshes[0].device
    nv = torch.tensor([0] + [m.num_verts for m in meshes], device=dev).cumsum(0)
    nf = torch.tensor([0] + [m.num_faces for m in meshes], device=dev).cumsum(0)
    faces = torch.cat([m.faces + int(nv[i]) for i, m in enumerate(meshes)])
    counts = torch.tensor([m.num_faces for m in meshes], device=dev)
    face_to_mesh = torch.repeat_interleave(torch.arange(len(meshes), device=dev), counts)
    return PackedMeshes(
        verts=torch.cat([m.verts for m in meshes]),
        faces=faces.to(torch.int32),
        vert_offsets=nv.to(torch.int32),
        face_offsets=nf.to(torch.int32),
        face_to_mesh=face_to_mesh.to(torch.int32),
    )


def unpack_verts(packed: Tensor, vert_offsets: Tensor) -> list[Tensor]:
    """Split packed per-vertex data ``[sumV, ...]`` back into a list of ``[V_b, ...]`` views.

    Works for any per-vertex tensor (positions, colours, gradients); with
    ``face_offsets`` it splits per-face data the same way.
    """
    if not isinstance(packed, Tensor) or not isinstance(vert_offsets, Tensor):
        raise TypeError("unpack_verts(): packed and vert_offsets must be torch.Tensors")
    if vert_offsets.ndim != 1 or vert_offsets.numel() < 2 or vert_offsets.dtype.is_floating_point:
        raise ValueError(f"unpack_verts(): vert_offsets must be integer [B+1], got {_desc(vert_offsets)}")
    offs = [int(o) for o in vert_offsets.tolist()]
    if offs[0] != 0 or offs[-1] != packed.shape[0] or any(b < a for a, b in zip(offs, offs[1:])):
        raise ValueError(f"unpack_verts(): vert_offsets must rise from 0 to {packed.shape[0]} (packed rows), got {offs}")
    return list(packed.split([b - a for a, b in zip(offs, offs[1:])]))
