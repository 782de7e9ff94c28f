"""Camera rigs: sets of cameras looking at the origin, for synthetic data, fits and turntables."""
from __future__ import annotations

import math

import torch

from lumigrad.scene.camera import Camera

__all__ = ["orbit_cameras", "turntable_cameras"]


def _check(fn: str, n, resolution, distance) -> None:
    for name, v in (("n", n), ("resolution", resolution)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}(): {name} must be a positive int, got {v!r}")
    if not (isinstance(distance, (int, float)) and math.isfinite(distance) and distance > 0):
        raise ValueError(f"{fn}(): distance must be a positive float, got {distance!r}")


def orbit_cameras(
    n: int, resolution: int, distance: float = 3.0, fov_y_deg: float = 40.0, dtype=torch.float32, device=None
) -> Camera:
    """``n`` perspective cameras on a Fibonacci sphere of radius ``distance``, looking at the origin.

    The views cover the whole sphere nearly uniformly (world +Y up), so every
    side of an object at the origin is seen.

    Args:
        n: number of views.
        resolution: square image size in pixels.
        distance: camera distance from the origin.
        fov_y_deg: vertical field of view.

    Returns:
        A :class:`Camera` with ``B = n``.
    """
    _check("orbit_cameras", n, resolution, distance)
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    eye = torch.stack([torch.sin(phi) * torch.cos(theta), torch.cos(phi), torch.sin(phi) * torch.sin(theta)], -1)
    eye = (eye * distance).to(dtype)
    target = torch.zeros_like(eye)
    # An up vector never parallel to the view direction.
    up = torch.where(eye[:, 1:2].abs() > 0.9 * distance, torch.tensor([[0.0, 0.0, 1.0]], dtype=dtype),
                     torch.tensor([[0.0, 1.0, 0.0]], dtype=dtype))
    cam = Camera.look_at(eye, target, up=up, fov_y_deg=fov_y_deg, width=resolution, height=resolution)
    return cam.to(device=device) if device is not None else cam


def turntable_cameras(
    n: int, resolution: int, distance: float = 3.0, elevation_deg: float = 20.0, fov_y_deg: float = 40.0,
    dtype=torch.float32, device=None,
) -> Camera:
    """``n`` cameras circling the origin at a fixed elevation (for turntable GIFs).

    Returns:
        A :class:`Camera` with ``B = n``; view 0 looks from +Z, azimuth grows towards +X.
    """
    _check("turntable_cameras", n, resolution, distance)
    a = torch.linspace(0, 2 * math.pi, n + 1, dtype=torch.float64)[:-1]
    el = math.radians(elevation_deg)
    eye = torch.stack([torch.sin(a) * math.cos(el), torch.full_like(a, math.sin(el)), torch.cos(a) * math.cos(el)], -1)
    eye = (eye * distance).to(dtype)
    up = torch.tensor([[0.0, 1.0, 0.0]], dtype=dtype).expand(n, 3)
    cam = Camera.look_at(eye, torch.zeros_like(eye), up=up, fov_y_deg=fov_y_deg, width=resolution, height=resolution)
    return cam.to(device=device) if device is not None else cam
