"""Rigid transforms and homogeneous point transforms (column vectors, OpenCV camera).

See ``docs/conventions.md`` for the frames. All functions are differentiable.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.geometry._checks import check_trailing, desc

__all__ = ["transform_points", "look_at_world_to_cam", "compose_rigid", "invert_rigid"]

# Result rows (B * V) from which transform_points runs lumigrad.ops.transform's kernels (CPU).
_KERNEL_MIN_ROWS = 8192


def _as_batch(fn: str, name: str, t: Tensor, inner: tuple[int, ...], expected: str) -> Tensor:
    """``inner``-shaped or ``[B, *inner]`` -> ``[B, *inner]``."""
    check_trailing(fn, name, t, inner, expected, ndims=(len(inner), len(inner) + 1))
    return t if t.ndim == len(inner) + 1 else t.unsqueeze(0)


def _broadcast_batch(fn: str, **ts: Tensor) -> list[Tensor]:
    """Broadcast leading batch dims of size 1; other mismatches raise."""
    sizes = {k: t.shape[0] for k, t in ts.items()}
    b = max(sizes.values())
    if any(s not in (1, b) for s in sizes.values()):
        listing = ", ".join(f"{k} {s}" for k, s in sizes.items())
        raise ValueError(f"{fn}(): batch sizes must match or be 1, got {listing}")
    return [t.expand((b,) + t.shape[1:]) for t in ts.values()]


def transform_points(matrix: Tensor, points: Tensor) -> Tensor:
    """Apply 4x4 matrices to 3D points, returning homogeneous results (no divide).

    Args:
        matrix: ``[B, 4, 4]`` or ``[4, 4]``, acting on column vectors.
        points: ``[B, V, 3]`` or ``[V, 3]`` (shared by all B matrices).

    Returns:
        ``[B, V, 4]``: ``matrix @ (p, 1)``. With a projection matrix this is
        clip space. Gradients flow to both inputs.

    Example:
        >>> transform_points(torch.eye(4), torch.zeros(5, 3)).shape
        torch.Size([1, 5, 4])
    """
    fn = "transform_points"
    m = _as_batch(fn, "matrix", matrix, (4, 4), "[B, 4, 4] or [4, 4]")
    check_trailing(fn, "points", points, (3,), "[B, V, 3] or [V, 3]", ndims=(2, 3))
    p = points if points.ndim == 3 else points.unsqueeze(0)
    if m.dtype != p.dtype or m.device != p.device:
        raise ValueError(f"{fn}(): matrix and points must share dtype and device, got {desc(m)} on {m.device} "
                         f"and {desc(p)} on {p.device}")
    mb, pb = _broadcast_batch(fn, matrix=m, points=p)
    if pb.device.type == "cpu" and pb.shape[0] * pb.shape[1] >= _KERNEL_MIN_ROWS:
        # One Warp pass each way instead of a GEMM with inner size 3, a broadcast add and their
        # backwards (see lumigrad.ops.transform; imported on first use, as vertex_normals does).
        from lumigrad.ops import transform

        if transform.use_kernel(mb, p):
            return transform.transform_points_fused(mb, p if p.shape[0] == 1 else pb)
    # p @ R^T + t: no homogeneous copy of the points is built.
    return torch.matmul(pb, mb[:, :, :3].transpose(1, 2)) + mb[:, None, :, 3]


def compose_rigid(rotation: Tensor, translation: Tensor) -> Tensor:
    """Build ``[B, 4, 4]`` matrices ``[[R, t], [0, 1]]``.

    Args:
        rotation: ``[B, 3, 3]`` or ``[3, 3]``.
        translation: ``[B, 3]`` or ``[3]``.

    Returns:
        ``[B, 4, 4]``. Gradients flow to both inputs (e.g. build ``world_to_cam``
        from a 6D or quaternion pose parameter).
    """
    fn = "compose_rigid"
    r = _as_batch(fn, "rotation", rotation, (3, 3), "[B, 3, 3] or [3, 3]")
    t = _as_batch(fn, "translation", translation, (3,), "[B, 3] or [3]")
    r, t = _broadcast_batch(fn, rotation=r, translation=t)
    top = torch.cat([r, t[:, :, None]], dim=2)
    bottom = torch.zeros_like(top[:, :1, :])
    bottom[:, 0, 3] = 1
    return torch.cat([top, bottom], dim=1)


def invert_rigid(matrix: Tensor) -> Tensor:
    """Exact inverse ``[[R^T, -R^T t], [0, 1]]`` of rigid 4x4 transforms.

    More accurate than ``torch.linalg.inv`` in float32, but only valid when the
    upper-left 3x3 block is a rotation.

    Args:
        matrix: ``[..., 4, 4]`` rigid transforms.

    Returns:
        ``[..., 4, 4]``.
    """
    check_trailing("invert_rigid", "matrix", matrix, (4, 4), "[..., 4, 4]")
    rt = matrix[..., :3, :3].transpose(-1, -2)
    t = -(rt @ matrix[..., :3, 3:])
    top = torch.cat([rt, t], dim=-1)
    return torch.cat([top, matrix[..., 3:, :]], dim=-2)


def look_at_world_to_cam(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """OpenCV ``world_to_cam`` for a camera at ``eye`` looking at ``target``.

    The camera's +z points from ``eye`` to ``target``, its +y (image down) is
    the component of ``-up`` orthogonal to +z, and +x = y cross z (image right).
    So ``up`` appears upwards in the image (smaller pixel row).

    Args:
        eye: ``[B, 3]`` or ``[3]`` camera centres (world).
        target: ``[B, 3]`` or ``[3]`` points to look at (world).
        up: ``[B, 3]`` or ``[3]`` world up direction; must not be parallel to
            ``target - eye`` (the result is then undefined; ``Camera.look_at``
            checks this).

    Returns:
        ``[B, 4, 4]`` world-to-camera rigid transforms. Gradients flow to all inputs.

    Example:
        >>> look_at_world_to_cam(torch.tensor([0., 0., 5.]), torch.zeros(3), torch.tensor([0., 1., 0.]))
    """
    fn = "look_at_world_to_cam"
    e = _as_batch(fn, "eye", eye, (3,), "[B, 3] or [3]")
    t = _as_batch(fn, "target", target, (3,), "[B, 3] or [3]")
    u = _as_batch(fn, "up", up, (3,), "[B, 3] or [3]")
    e, t, u = _broadcast_batch(fn, eye=e, target=t, up=u)
    normalize = torch.nn.functional.normalize
    z = normalize(t - e, dim=-1)
    x = normalize(torch.cross(z, u, dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    rot = torch.stack([x, y, z], dim=1)  # rows = camera axes in world coordinates
    trans = -(rot @ e[:, :, None])[:, :, 0]
    return compose_rigid(rot, trans)
