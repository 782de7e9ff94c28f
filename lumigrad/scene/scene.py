"""Object transforms and scenes of several meshes, each with its own material and pose."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from lumigrad._runtime.checks import check_finite
from lumigrad.geometry.rotations import rotation_to_matrix
from lumigrad.scene.mesh import Mesh

__all__ = ["ObjectTransform", "SceneObject", "Scene"]


def _desc(t: Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}"


@dataclass(frozen=True, eq=False)
class ObjectTransform:
    """Object-to-world similarity: ``p_world = R @ (scale * p_object) + translation``.

    Attributes:
        rotation: ``None`` (identity) or any parameterisation of
            :mod:`lumigrad.geometry.rotations`, told apart by its trailing shape:
            ``[..., 3, 3]`` matrix, ``[..., 4]`` quaternion ``(w, x, y, z)``,
            ``[..., 3]`` axis-angle (radians), ``[..., 6]`` 6D. An optional
            leading batch dim ``[B, ...]`` gives one pose per view.
        translation: ``None`` or ``[3]`` / ``[B, 3]`` world units.
        scale: ``None``, a float, or a ``[]``, ``[1]``, ``[3]`` tensor (per-axis,
            in the object frame).

    All tensors may require grad; :meth:`apply` is differentiable w.r.t. each.

    Example:
        >>> t = ObjectTransform(rotation=torch.tensor([0.0, 0.0, 1.5708]), translation=torch.tensor([0., 0., 1.]))
        >>> t.apply(torch.tensor([[1.0, 0.0, 0.0]]))  # ~ [[0, 1, 1]]
    """

    rotation: Tensor | None = None
    translation: Tensor | None = None
    scale: Tensor | float | None = None

    def __post_init__(self) -> None:
        fn = "ObjectTransform"
        if self.rotation is not None:
            if not isinstance(self.rotation, Tensor):
                raise TypeError(f"{fn}(): rotation must be a torch.Tensor, got {type(self.rotation).__name__}")
            try:
                rotation_to_matrix(self.rotation)
            except ValueError as e:
                raise ValueError(f"{fn}(): {e}") from None
            check_finite(fn, "rotation", self.rotation)
        if self.translation is not None:
            t = self.translation
            if not isinstance(t, Tensor):
                raise TypeError(f"{fn}(): translation must be a torch.Tensor [3] or [B, 3], got {type(t).__name__}")
            if t.ndim not in (1, 2) or t.shape[-1] != 3 or not t.is_floating_point():
                raise ValueError(f"{fn}(): translation must be float [3] or [B, 3], got {_desc(t)}")
            check_finite(fn, "translation", t)
        if self.scale is not None and isinstance(self.scale, Tensor):
            s = self.scale
            if s.ndim > 1 or (s.ndim == 1 and s.shape[0] not in (1, 3)) or not s.is_floating_point():
                raise ValueError(f"{fn}(): scale must be a float or a float [], [1] or [3] tensor, got {_desc(s)}")
            check_finite(fn, "scale", s)
        elif self.scale is not None and (isinstance(self.scale, bool) or not isinstance(self.scale, (int, float))):
            raise TypeError(f"{fn}(): scale must be a float or a tensor, got {type(self.scale).__name__}")

    def matrix(self, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """``[4, 4]`` (or ``[B, 4, 4]``) object-to-world matrix (column vectors)."""
        ref = next((t for t in (self.rotation, self.translation, self.scale) if isinstance(t, Tensor)), None)
        if ref is not None:
            dtype, device = ref.dtype, ref.device
        rot = torch.eye(3, dtype=dtype, device=device) if self.rotation is None else rotation_to_matrix(self.rotation)
        if self.scale is not None:
            s = torch.as_tensor(self.scale, dtype=dtype, device=device).reshape(-1)
            rot = rot * s  # scales columns: R @ diag(s)
        t = torch.zeros(3, dtype=dtype, device=device) if self.translation is None else self.translation
        batch = torch.broadcast_shapes(rot.shape[:-2], t.shape[:-1])
        top = torch.cat([rot.expand(batch + (3, 3)), t.expand(batch + (3,))[..., None]], dim=-1)
        last = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=device).expand(batch + (1, 4))
        return torch.cat([top, last], dim=-2)

    def apply(self, verts: Tensor) -> Tensor:
        """Object points ``[V, 3]`` or ``[B, V, 3]`` -> world points (``[B, V, 3]`` if the transform is batched)."""
        if not isinstance(verts, Tensor) or verts.ndim not in (2, 3) or verts.shape[-1] != 3:
            got = _desc(verts) if isinstance(verts, Tensor) else type(verts).__name__
            raise ValueError(f"ObjectTransform.apply(): verts must be [V, 3] or [B, V, 3], got {got}")
        m = self.matrix(verts.dtype, verts.device)
        rot, t = m[..., :3, :3], m[..., :3, 3]
        if m.ndim == 3:
            return verts @ rot.transpose(-1, -2) + t[:, None, :]
        return verts @ rot.T + t


@dataclass(eq=False)
class SceneObject:
    """One mesh in a :class:`Scene`.

    Attributes:
        mesh: geometry (object frame), with optional UVs, texture and vertex colours.
        material: a material from :mod:`lumigrad.scene.materials` (or
            :class:`lumigrad.shade.PhongMaterial`); ``None`` means Lambert with
            albedo 1 (so the mesh's texture / vertex colours are its albedo).
        transform: object-to-world :class:`ObjectTransform` (``None`` = identity).
        name: label used in error messages and reports.
    """

    mesh: Mesh
    material: object = None
    transform: ObjectTransform | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.mesh, Mesh):
            raise TypeError(f"SceneObject(): mesh must be a Mesh, got {type(self.mesh).__name__}")
        if self.transform is not None and not isinstance(self.transform, ObjectTransform):
            raise TypeError(f"SceneObject(): transform must be an ObjectTransform or None, got "
                            f"{type(self.transform).__name__}")


@dataclass(eq=False)
class Scene:
    """Several meshes (each with material and transform) and the lights that light them all.

    Render with :func:`lumigrad.render.render_scene`, which packs every mesh
    into one triangle list and rasterizes once.
    """

    objects: list[SceneObject] = field(default_factory=list)
    lights: Sequence = ()

    def __post_init__(self) -> None:
        if isinstance(self.objects, SceneObject):
            self.objects = [self.objects]
        self.objects = list(self.objects)
        for i, o in enumerate(self.objects):
            if not isinstance(o, SceneObject):
                raise TypeError(f"Scene(): objects[{i}] must be a SceneObject, got {type(o).__name__}")
        dtypes = {o.mesh.dtype for o in self.objects}
        devices = {str(o.mesh.device) for o in self.objects}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ValueError(f"Scene(): all meshes must share dtype and device, got {sorted(map(str, dtypes))} "
                             f"on {sorted(devices)}")

    def add(self, mesh: Mesh, material=None, transform: ObjectTransform | None = None, name: str = "") -> SceneObject:
        """Append an object and return it."""
        obj = SceneObject(mesh, material, transform, name or f"object{len(self.objects)}")
        self.objects.append(obj)
        self.__post_init__()
        return obj

    def world_verts(self) -> list[Tensor]:
        """Each object's vertices in world space (``[V_i, 3]`` or ``[B, V_i, 3]``)."""
        return [o.mesh.verts if o.transform is None else o.transform.apply(o.mesh.verts) for o in self.objects]
