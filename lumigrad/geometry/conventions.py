"""Converters between lumigrad's OpenCV camera frame and the OpenGL/Blender one.

lumigrad cameras are OpenCV: x right, y down, z forward (looking along +z).
OpenGL/Blender/NeRF cameras: x right, y up, z backward (looking along -z).
The two differ by ``F = diag(1, -1, -1, 1)`` (a 180-degree turn about x), so

    cam_to_world_cv = cam_to_world_gl @ F        world_to_cam_cv = F @ world_to_cam_gl

and each converter is its own inverse. See docs/conventions.md.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.geometry._checks import check_trailing
from lumigrad.geometry.transforms import invert_rigid

__all__ = [
    "opengl_to_opencv_cam_to_world",
    "opencv_to_opengl_cam_to_world",
    "opengl_to_opencv_world_to_cam",
    "opencv_to_opengl_world_to_cam",
    "opengl_cam_to_world_to_opencv_world_to_cam",
    "opencv_world_to_cam_to_opengl_cam_to_world",
    "fov_to_focal",
    "focal_to_fov",
]

_EXPECTED = "[..., 4, 4]"


def _flip(t: Tensor) -> Tensor:
    return torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=t.dtype, device=t.device)


def opengl_to_opencv_cam_to_world(cam_to_world_gl: Tensor) -> Tensor:
    """``[..., 4, 4]`` OpenGL camera-to-world -> OpenCV camera-to-world (negate columns 1, 2)."""
    check_trailing("opengl_to_opencv_cam_to_world", "cam_to_world_gl", cam_to_world_gl, (4, 4), _EXPECTED)
    return cam_to_world_gl * _flip(cam_to_world_gl)


def opencv_to_opengl_cam_to_world(cam_to_world_cv: Tensor) -> Tensor:
    """``[..., 4, 4]`` OpenCV camera-to-world -> OpenGL camera-to-world (negate columns 1, 2)."""
    check_trailing("opencv_to_opengl_cam_to_world", "cam_to_world_cv", cam_to_world_cv, (4, 4), _EXPECTED)
    return cam_to_world_cv * _flip(cam_to_world_cv)


def opengl_to_opencv_world_to_cam(world_to_cam_gl: Tensor) -> Tensor:
    """``[..., 4, 4]`` OpenGL world-to-camera (view matrix) -> OpenCV world-to-camera (negate rows 1, 2)."""
    check_trailing("opengl_to_opencv_world_to_cam", "world_to_cam_gl", world_to_cam_gl, (4, 4), _EXPECTED)
    return world_to_cam_gl * _flip(world_to_cam_gl)[:, None]


def opencv_to_opengl_world_to_cam(world_to_cam_cv: Tensor) -> Tensor:
    """``[..., 4, 4]`` OpenCV world-to-camera -> OpenGL world-to-camera (negate rows 1, 2)."""
    check_trailing("opencv_to_opengl_world_to_cam", "world_to_cam_cv", world_to_cam_cv, (4, 4), _EXPECTED)
    return world_to_cam_cv * _flip(world_to_cam_cv)[:, None]


def opengl_cam_to_world_to_opencv_world_to_cam(cam_to_world_gl: Tensor) -> Tensor:
    """NeRF/Blender ``transform_matrix`` (OpenGL camera-to-world, rigid) -> lumigrad ``world_to_cam``.

    Args:
        cam_to_world_gl: ``[..., 4, 4]`` rigid transforms.

    Returns:
        ``[..., 4, 4]`` OpenCV world-to-camera. Differentiable.
    """
    return invert_rigid(opengl_to_opencv_cam_to_world(cam_to_world_gl))


def opencv_world_to_cam_to_opengl_cam_to_world(world_to_cam_cv: Tensor) -> Tensor:
    """lumigrad ``world_to_cam`` (rigid) -> OpenGL camera-to-world (NeRF ``transform_matrix``)."""
    check_trailing("opencv_world_to_cam_to_opengl_cam_to_world", "world_to_cam_cv", world_to_cam_cv, (4, 4), _EXPECTED)
    return opencv_to_opengl_cam_to_world(invert_rigid(world_to_cam_cv))


def fov_to_focal(fov_deg, size_px):
    """Focal length in pixels for a full field of view across ``size_px`` pixels.

    ``f = (size_px / 2) / tan(fov / 2)``. Use the height with a vertical fov and
    the width with a horizontal one. Floats in, float out; tensors in, tensor out
    (differentiable).
    """
    if isinstance(fov_deg, Tensor) or isinstance(size_px, Tensor):
        return 0.5 * size_px / torch.tan(torch.deg2rad(torch.as_tensor(fov_deg)) * 0.5)
    return 0.5 * size_px / math.tan(math.radians(fov_deg) * 0.5)


def focal_to_fov(focal_px, size_px):
    """Full field of view in degrees: ``2 atan((size_px / 2) / focal_px)``; inverse of :func:`fov_to_focal`."""
    if isinstance(focal_px, Tensor) or isinstance(size_px, Tensor):
        return torch.rad2deg(2.0 * torch.atan(0.5 * size_px / torch.as_tensor(focal_px)))
    return math.degrees(2.0 * math.atan(0.5 * size_px / focal_px))
