"""Scene pieces the ray tracer needs beyond the rasterizer's: shapes with emission, and a mirror.

A :class:`Shape` pairs a :class:`~lumigrad.scene.mesh.Mesh` with a material and
an optional emitted radiance, which makes it an area light (emission leaves
the front side, the side of the right-hand normal ``(v1-v0) x (v2-v0)``, as in
Mitsuba's ``area`` emitter). Point, directional, ambient and SH lights are the
ones of :mod:`lumigrad.scene.lights`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lumigrad._runtime.checks import check_finite, check_float_tensor
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, MaterialParam, _check_param
from lumigrad.scene.mesh import Mesh

__all__ = ["MirrorMaterial", "Shape", "TRACE_MATERIALS"]


@dataclass
class MirrorMaterial:
    """Perfect specular reflector: ``f = reflectance * delta(wi = reflect(wo))``.

    Args:
        reflectance: 1 or 3 channels in [0, 1] (float or tensor, no texture).
    """

    reflectance: MaterialParam = 1.0

    def __post_init__(self):
        self.reflectance = _check_param("MirrorMaterial", "reflectance", self.reflectance, (1, 3))


TRACE_MATERIALS = (LambertMaterial, BlinnPhongMaterial, GGXMaterial, MirrorMaterial)


@dataclass
class Shape:
    """A mesh, its material, and optionally its emitted radiance (an area light).

    Args:
        mesh: the geometry.
        material: Lambert, Blinn-Phong, GGX or :class:`MirrorMaterial` with
            constant (non-texture) parameters.
        emission: optional ``[3]`` radiance leaving the front side.
    """

    mesh: Mesh
    material: object = None
    emission: Tensor | None = None  # [3]

    def __post_init__(self):
        if not isinstance(self.mesh, Mesh):
            raise TypeError(f"Shape(): mesh must be a lumigrad Mesh, got {type(self.mesh).__name__}")
        if self.material is None:
            self.material = LambertMaterial()
        if not isinstance(self.material, TRACE_MATERIALS):
            raise TypeError(f"Shape(): material must be one of {[c.__name__ for c in TRACE_MATERIALS]}, "
                            f"got {type(self.material).__name__}")
        for v in vars(self.material).values():
            if not isinstance(v, (float, Tensor)):
                raise TypeError(f"Shape(): the ray tracer takes constant material parameters, got {type(v).__name__}")
        if self.emission is not None:
            check_float_tensor("Shape", "emission", self.emission, (1,), 3, expected="[3]")
            check_finite("Shape", "emission", self.emission)
            if self.emission.dtype != self.mesh.verts.dtype or self.emission.device != self.mesh.verts.device:
                raise ValueError("Shape(): emission must share the mesh's dtype and device")

    @property
    def is_emitter(self) -> bool:
        return self.emission is not None

    def area(self) -> Tensor:
        """Total surface area (differentiable)."""
        v, f = self.mesh.verts, self.mesh.faces.long()
        return 0.5 * torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1).norm(dim=-1).sum()
