"""The Cornell box with an icosphere on its short block, shared by ``trace_gi.py --mesh-level`` and
``trace_gi_shape.py``: a closed scene (every path stays in the box) whose triangle count is set by the sphere
(subdivision level 4 / 6 / 8: 5,120 / 81,920 / 1,310,720 triangles; the box is 36 more). The sphere is matte
white, radius 0.3, floating 0.05 above the short block (top at y = -0.45; not touching it, so that moving
the sphere changes no contact and the image is differentiable in its position), seen whole by the camera, lit by the ceiling
light and by the walls, and it casts a soft shadow onto the block and the floor: moving it changes primary
silhouettes, soft-shadow boundaries and indirect visibility at once."""
from __future__ import annotations

import numpy as np
import torch
from mitsuba_scenes import cornell_box

from lumigrad.geometry.primitives import icosphere
from lumigrad.scene import Mesh
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape

SPHERE_CENTRE = (0.4, -0.1, 0.35)
SPHERE_RADIUS = 0.3


def unit_sphere(level: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Icosphere verts / faces; past lumigrad's 7 subdivisions trimesh builds the same sphere."""
    if level <= 7:
        return icosphere(level, dtype=dtype)
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=level)
    return torch.tensor(np.asarray(m.vertices), dtype=dtype), torch.tensor(np.asarray(m.faces), dtype=torch.int32)


def box_with_sphere(res: int, level: int, shift: torch.Tensor | None = None, dtype=torch.float64):
    """``(shapes, camera)``: the validation Cornell box (float64, floor = shape 0, light last) plus the sphere as
    the last shape, translated by ``shift [3]`` (may require grad), all in ``dtype``."""
    shapes64, cam64, _ = cornell_box(res)
    v, f = unit_sphere(level)
    centre = torch.tensor(SPHERE_CENTRE, dtype=torch.float64)
    v = (v * SPHERE_RADIUS + centre).to(dtype)
    if shift is not None:
        v = v + shift.to(dtype)
    out = []
    for s in shapes64:
        a = s.material.albedo
        a = a.to(dtype) if isinstance(a, torch.Tensor) else a
        out.append(Shape(Mesh(s.mesh.verts.to(dtype), s.mesh.faces), LambertMaterial(a),
                         None if s.emission is None else s.emission.to(dtype)))
    out.append(Shape(Mesh(v, f), LambertMaterial(torch.tensor([0.73, 0.71, 0.68], dtype=dtype))))
    return out, cam64.to(dtype=dtype)
