"""Camera-to-clip matrices from pixel intrinsics, and NDC <-> pixel maps.

Clip space is OpenGL's (``w > 0`` in front, ``z_ndc`` in [-1, 1] with near -> -1)
but image row 0 is the top: pixel ``(u, v)`` (from the top-left corner, centres
at +0.5) is at ``x_ndc = 2u/W - 1``, ``y_ndc = 1 - 2v/H``. See docs/conventions.md.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.geometry._checks import check_trailing

__all__ = [
    "perspective_clip_from_K",
    "orthographic_clip_from_K",
    "intrinsics_from_fov",
    "ndc_to_pixel",
    "pixel_to_ndc",
]


def _check_size(fn: str, width, height) -> tuple[int, int]:
    ok = all(isinstance(s, int) or (isinstance(s, float) and s.is_integer()) for s in (width, height))
    if not ok or width <= 0 or height <= 0:
        raise ValueError(f"{fn}(): width and height must be positive ints, got width={width!r}, height={height!r}")
    return int(width), int(height)


def _check_range(fn: str, near, far, positive: bool) -> None:
    try:
        n, f = float(near), float(far)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}(): near and far must be floats, got near={near!r}, far={far!r}") from None
    if not (math.isfinite(n) and math.isfinite(f)) or not n < f or (positive and n <= 0):
        need = "0 < near < far" if positive else "near < far"
        raise ValueError(f"{fn}(): need {need} (finite), got near={near!r}, far={far!r}")


def _batched_K(fn: str, K: Tensor) -> Tensor:
    check_trailing(fn, "K", K, (3, 3), "[B, 3, 3] or [3, 3]", ndims=(2, 3))
    return K if K.ndim == 3 else K.unsqueeze(0)


def perspective_clip_from_K(K: Tensor, width: int, height: int, near: float, far: float) -> Tensor:
    """OpenCV camera frame -> clip space for a pinhole camera with intrinsics ``K``.

    With ``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` (pixels):
    ``x_clip = (2fx/W) x + (2s/W) y + (2cx/W - 1) z``,
    ``y_clip = -(2fy/H) y + (1 - 2cy/H) z``,
    ``z_clip = (f+n)/(f-n) z - 2fn/(f-n)``, ``w_clip = z``.
    After the divide, ``(x_ndc, y_ndc)`` is the pixel ``u = fx x/z + s y/z + cx``,
    ``v = fy y/z + cy`` under the NDC <-> pixel map of this module, and depth
    ``z = near`` maps to ``z_ndc = -1``, ``z = far`` to ``+1``.

    Args:
        K: ``[B, 3, 3]`` or ``[3, 3]`` intrinsics in pixels.
        width: image width W in pixels.
        height: image height H in pixels.
        near: near plane depth (> 0, camera z units).
        far: far plane depth (> near).

    Returns:
        ``[B, 4, 4]`` camera-to-clip matrices. Gradients flow to ``K``.
    """
    fn = "perspective_clip_from_K"
    w, h = _check_size(fn, width, height)
    _check_range(fn, near, far, positive=True)
    k = _batched_K(fn, K)
    n, f = float(near), float(far)
    fx, s, cx, fy, cy = k[:, 0, 0], k[:, 0, 1], k[:, 0, 2], k[:, 1, 1], k[:, 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    a, b = (f + n) / (f - n), -2.0 * f * n / (f - n)
    rows = [
        [2 * fx / w, 2 * s / w, 2 * cx / w - 1, zero],
        [zero, -2 * fy / h, 1 - 2 * cy / h, zero],
        [zero, zero, a * one, b * one],
        [zero, zero, one, zero],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def orthographic_clip_from_K(K: Tensor, width: int, height: int, near: float, far: float) -> Tensor:
    """OpenCV camera frame -> clip space for an orthographic camera.

    ``K``'s ``fx, fy`` are pixels per camera-frame unit and ``cx, cy`` the pixel
    of the camera axis: ``u = fx x + s y + cx``, ``v = fy y + cy``. Depth
    ``z = near`` maps to ``z_ndc = -1`` and ``z = far`` to ``+1``; ``w_clip = 1``.

    Args:
        K: ``[B, 3, 3]`` or ``[3, 3]``.
        width: image width W in pixels.
        height: image height H in pixels.
        near: near plane depth (camera z).
        far: far plane depth (> near).

    Returns:
        ``[B, 4, 4]`` camera-to-clip matrices. Gradients flow to ``K``.
    """
    fn = "orthographic_clip_from_K"
    w, h = _check_size(fn, width, height)
    _check_range(fn, near, far, positive=False)
    k = _batched_K(fn, K)
    n, f = float(near), float(far)
    fx, s, cx, fy, cy = k[:, 0, 0], k[:, 0, 1], k[:, 0, 2], k[:, 1, 1], k[:, 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        [2 * fx / w, 2 * s / w, zero, 2 * cx / w - 1],
        [zero, -2 * fy / h, zero, 1 - 2 * cy / h],
        [zero, zero, (2.0 / (f - n)) * one, (-(f + n) / (f - n)) * one],
        [zero, zero, zero, one],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def intrinsics_from_fov(
    fov_y_deg, width: int, height: int, *, dtype: torch.dtype = torch.float32, device=None
) -> Tensor:
    """Pinhole ``K`` with square pixels and the principal point at the image centre.

    Args:
        fov_y_deg: vertical field of view in degrees, a float or a ``[B]``/scalar
            tensor (then differentiable, and its dtype/device are used).
        width: image width W in pixels.
        height: image height H in pixels.
        dtype: dtype when ``fov_y_deg`` is a float.
        device: device when ``fov_y_deg`` is a float.

    Returns:
        ``[B, 3, 3]`` (``B = 1`` for a scalar): ``fx = fy = (H/2) / tan(fov_y/2)``,
        ``cx = W/2``, ``cy = H/2``.
    """
    fn = "intrinsics_from_fov"
    w, h = _check_size(fn, width, height)
    fov = fov_y_deg if isinstance(fov_y_deg, Tensor) else torch.tensor(float(fov_y_deg), dtype=dtype, device=device)
    if fov.ndim > 1 or not fov.is_floating_point():
        raise ValueError(f"{fn}(): fov_y_deg must be a float or a float tensor [B], got {fov.dtype} {list(fov.shape)}")
    fov = fov.reshape(-1)
    if not bool(((fov > 0) & (fov < 180)).all()):
        raise ValueError(f"{fn}(): fov_y_deg must be in (0, 180) degrees, got {fov_y_deg!r}")
    f = (0.5 * h) / torch.tan(torch.deg2rad(fov) * 0.5)
    zero, one = torch.zeros_like(f), torch.ones_like(f)
    rows = [[f, zero, one * (w / 2)], [zero, f, one * (h / 2)], [zero, zero, one]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def ndc_to_pixel(xy_ndc: Tensor, width: int, height: int) -> Tensor:
    """``[..., 2]`` NDC ``(x, y)`` -> pixel ``(u, v)`` from the top-left corner.

    ``u = (x + 1) W / 2``, ``v = (1 - y) H / 2``; pixel ``(row i, col j)`` has its
    centre at ``(j + 0.5, i + 0.5)``.
    """
    w, h = _check_size("ndc_to_pixel", width, height)
    check_trailing("ndc_to_pixel", "xy_ndc", xy_ndc, (2,), "[..., 2]")
    return torch.stack([(xy_ndc[..., 0] + 1) * (0.5 * w), (1 - xy_ndc[..., 1]) * (0.5 * h)], dim=-1)


def pixel_to_ndc(uv: Tensor, width: int, height: int) -> Tensor:
    """``[..., 2]`` pixel ``(u, v)`` -> NDC ``(x, y)``: ``x = 2u/W - 1``, ``y = 1 - 2v/H``."""
    w, h = _check_size("pixel_to_ndc", width, height)
    check_trailing("pixel_to_ndc", "uv", uv, (2,), "[..., 2]")
    return torch.stack([uv[..., 0] * (2.0 / w) - 1, 1 - uv[..., 1] * (2.0 / h)], dim=-1)
