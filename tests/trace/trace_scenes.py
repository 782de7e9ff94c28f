"""Small scenes shared by the tracer tests."""
import torch

from lumigrad.geometry.primitives import icosphere, plane
from lumigrad.scene import Mesh
from lumigrad.scene.camera import Camera
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape

DT = torch.float64


def shadow_scene(tx, res=16):
    """A ground plane seen from above, and a triangle occluder outside the view whose shadow is in it.

    ``tx`` translates the occluder along x: the image depends on it only through the shadow boundary.
    """
    pv, pf = plane(4.0, dtype=DT)
    occ = torch.tensor([[0.8, 1.5, -0.4], [1.4, 1.5, -0.4], [1.1, 1.5, 0.5]], dtype=DT)
    occ = occ + torch.stack([tx, tx * 0, tx * 0])
    of = torch.tensor([[0, 2, 1]], dtype=torch.int32)
    cam = Camera.look_at(torch.tensor([0.0, 3.0, 0.0], dtype=DT), torch.zeros(3, dtype=DT), up=(0.0, 0.0, -1.0),
                         width=res, height=res)
    return [Shape(Mesh(pv, pf), LambertMaterial(0.7)), Shape(Mesh(occ, of), LambertMaterial(0.5))], cam


def sphere_scene(res=16, level=2, shift=None, eye_x=None):
    v, f = icosphere(level, dtype=DT)
    if shift is not None:
        v = v + shift
    eye, target = torch.tensor([0.0, 0.4, 3.0], dtype=DT), torch.zeros(3, dtype=DT)
    if eye_x is not None:  # the camera slides sideways
        shift = torch.stack([eye_x, eye_x * 0, eye_x * 0])
        eye, target = eye + shift, target + shift
    cam = Camera.look_at(eye, target, width=res, height=res)
    return Mesh(v, f), cam


def textured_plane_scene(res=16, resolution=2, shift=None):
    """A plane (y = 0, x and z in [-1, 1]) with UVs ``u = (x + 1) / 2``, ``v = (1 - z) / 2`` (v = 1 at the far
    edge z = -1), seen obliquely from +z and above; it fills the view. ``shift`` moves every vertex."""
    v, f = plane(2.0, resolution, dtype=DT)
    uv = torch.stack([(v[:, 0] + 1) / 2, (1 - v[:, 2]) / 2], -1)
    if shift is not None:
        v = v + shift
    cam = Camera.look_at(torch.tensor([0.0, 1.6, 1.2], dtype=DT), torch.tensor([0.0, 0.0, -0.1], dtype=DT),
                         width=res, height=res, fov_y_deg=30.0)
    return Mesh(v, f, uvs=uv), cam


def smooth_texture(h=4, w=4, c=3, seed=0):
    """A ``[h, w, c]`` float64 texture with values in [0.2, 0.9]."""
    return 0.2 + 0.7 * torch.rand(h, w, c, dtype=DT, generator=torch.Generator().manual_seed(seed))
