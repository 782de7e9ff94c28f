"""Gradient truth for visibility methods on a real mesh: Spot, shaded, posed.

The truth is central differences of 8x8-supersampled hard renders (the
derivative of the area-averaged image) with steps of about half a pixel; the
loss is the summed squared difference to a target rendered at another pose, as
in pose estimation. Parameters: object translation (x, y, z) and rotation
(axis-angle), or the same six applied to the camera. Used by
``tests/render/test_visibility_truth.py`` and ``bench/visibility_truth.py``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lumigrad.geometry.rotations import axis_angle_to_matrix

__all__ = ["SpotPoseCase", "pose_matrix"]

F64 = torch.float64
EYE = (0.0, 1.0, 4.0)
FOV = 40.0
TARGET_OFFSET = (0.06, -0.04, 0.1, 0.05, 0.15, 0.0)


def pose_matrix(params: torch.Tensor) -> torch.Tensor:
    """``[4, 4]`` from (tx, ty, tz, axis-angle)."""
    m = torch.eye(4, dtype=params.dtype)
    m = m.index_put((torch.arange(3)[:, None], torch.arange(3)[None]), axis_angle_to_matrix(params[3:]))
    return m.index_put((torch.arange(3), torch.full((3,), 3)), params[:3])


class SpotPoseCase:
    """Spot at ``res``², moving the object or the camera (``move``), shaded or flat-coloured."""

    def __init__(self, res: int, move: str, shaded: bool = True, supersample: int = 8):
        from lumigrad.scene.lights import AmbientLight, DirectionalLight
        from lumigrad.scene.materials import LambertMaterial
        from lumigrad.tasks.reconstruct import spot_mesh

        if move not in ("object", "camera"):
            raise ValueError(f"SpotPoseCase(): move must be 'object' or 'camera', got {move!r}")
        self.res, self.move, self.supersample = res, move, supersample
        self.mesh = spot_mesh(F64)
        ambient = AmbientLight(torch.tensor([0.1, 0.1, 0.1] if shaded else [0.5, 0.6, 0.7], dtype=F64))
        self.lights = [DirectionalLight(torch.tensor([0.3, 1.0, 0.6], dtype=F64)), ambient] if shaded else [ambient]
        self.material = LambertMaterial(0.7)
        self.background = (0.2, 0.3, 0.4)
        with torch.no_grad():
            self.target = self.image(torch.tensor(TARGET_OFFSET, dtype=F64), res, "hard")

    def camera(self, res: int, params: torch.Tensor):
        from lumigrad.scene.camera import Camera

        cam = Camera.look_at(torch.tensor(EYE, dtype=F64), torch.zeros(3, dtype=F64), width=res, height=res, fov_y_deg=FOV, dtype=F64)
        if self.move == "camera":
            cam = Camera(pose_matrix(params) @ cam.world_to_cam, cam.K, res, res, cam.near, cam.far)
        return cam

    def verts(self, params: torch.Tensor) -> torch.Tensor:
        if self.move != "object":
            return self.mesh.verts
        pose = pose_matrix(params)
        return self.mesh.verts @ pose[:3, :3].T + pose[:3, 3]

    def image(self, params: torch.Tensor, res: int, visibility: str, supersample: int = 1) -> torch.Tensor:
        from lumigrad.render.raster import RasterSettings, render_mesh

        settings = RasterSettings(visibility=visibility, background=self.background, supersample=supersample)
        cam = self.camera(res, params)
        return render_mesh(self.mesh, cam, self.material, self.lights, settings, verts=self.verts(params)).image

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        return ((image - self.target) ** 2).sum()

    def gradient(self, visibility: str = "edge", supersample: int = 1) -> torch.Tensor:
        """d loss / d (the six pose parameters) with ``visibility``'s gradients (``supersample``: RasterSettings')."""
        params = torch.zeros(6, dtype=F64, requires_grad=True)
        return torch.autograd.grad(self.loss(self.image(params, self.res, visibility, supersample)), params)[0]

    def steps(self) -> list[float]:
        """About half a pixel of image motion per parameter."""
        pixel = 2 * 4.1 * math.tan(math.radians(FOV / 2)) / self.res  # world size of a pixel at the object
        # z moves the outline ~r/d as much as x, y do; a camera rotation turns the view by (angle * distance).
        turn = pixel / 4.1 if self.move == "camera" else pixel
        return [0.5 * pixel] * 2 + [2 * pixel] + [0.5 * turn] * 3

    def finite_differences(self) -> torch.Tensor:
        """Central differences of the loss of the supersampled, box-filtered hard render."""
        s = self.supersample
        out = []
        with torch.no_grad():
            for i, h in enumerate(self.steps()):
                e = torch.zeros(6, dtype=F64)
                e[i] = h
                vals = []
                for sign in (1, -1):
                    big = self.image(sign * e, self.res * s, "hard").permute(0, 3, 1, 2)
                    vals.append(self.loss(F.avg_pool2d(big, s).permute(0, 2, 3, 1)))
                out.append((vals[0] - vals[1]) / (2 * h))
        return torch.stack(out)
