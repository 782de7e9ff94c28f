"""Rotation parameterisations, all differentiable and batched over leading dims.

Quaternions are ``(w, x, y, z)`` (scalar first). Rotation matrices act on column
vectors (``p' = R @ p``). The 6D representation (Zhou et al., "On the Continuity
of Rotation Representations in Neural Networks", CVPR 2019) is the first two
*rows* of the matrix, as in PyTorch3D; see ``docs/conventions.md``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.geometry._checks import check_trailing

__all__ = [
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_matrix",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
    "matrix_to_axis_angle",
    "quaternion_multiply",
    "quaternion_invert",
    "rotation_angle",
    "random_rotation",
    "random_rotation_near",
    "rotation_to_matrix",
]


def quaternion_to_matrix(quat: Tensor) -> Tensor:
    """Rotation matrices from quaternions; the quaternion is normalised inside.

    Args:
        quat: ``[..., 4]`` float, ``(w, x, y, z)`` order. Any non-zero norm;
            ``q`` and ``-q`` give the same matrix.

    Returns:
        ``[..., 3, 3]`` rotation matrices. Gradients flow to ``quat``.

    Example:
        >>> quaternion_to_matrix(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # identity
    """
    check_trailing("quaternion_to_matrix", "quat", quat, (4,), "[..., 4] (w, x, y, z)")
    # 2/|q|^2 scaling is the same as normalising first, without a sqrt.
    w, x, y, z = quat.unbind(-1)
    s = 2.0 / (quat * quat).sum(-1)
    m = torch.stack(
        [
            1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
            s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
            s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
        ],
        dim=-1,
    )
    return m.reshape(quat.shape[:-1] + (3, 3))


def matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` from rotation matrices.

    Picks, per matrix, the best-conditioned of the four standard formulas
    (largest of ``|w|, |x|, |y|, |z|``), so it is accurate and differentiable
    near 180-degree rotations too.

    Args:
        matrix: ``[..., 3, 3]`` rotation matrices (column-vector convention).

    Returns:
        ``[..., 4]`` unit quaternions, ``w >= 0``. Gradients flow to ``matrix``.
    """
    check_trailing("matrix_to_quaternion", "matrix", matrix, (3, 3), "[..., 3, 3]")
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4*w^2, 4*x^2, 4*y^2, 4*z^2 (clamped: sqrt'(0) is inf).
    sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    r = torch.sqrt(sq.clamp_min(1e-12))  # 2|w|, 2|x|, 2|y|, 2|z|
    # Candidate k is 4 q_k q / (2 r_k) with q_k = r_k / 2: exact for any k, stable for the largest.
    cands = torch.stack(
        [
            torch.stack([r[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, r[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, r[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, r[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    ) / (2.0 * r[..., :, None])
    best = sq.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula: rotation by ``|v|`` radians about ``v / |v|``.

    Smooth at ``v = 0`` (a Taylor series is used for tiny angles, so gradients
    there are finite and exact).

    Args:
        axis_angle: ``[..., 3]`` rotation vectors (radians).

    Returns:
        ``[..., 3, 3]`` rotation matrices. Gradients flow to ``axis_angle``.
    """
    check_trailing("axis_angle_to_matrix", "axis_angle", axis_angle, (3,), "[..., 3]")
    v = axis_angle
    theta2 = (v * v).sum(-1)
    small = theta2 < 1e-6
    # Evaluate sqrt only on safe values so the unused branch cannot inject NaN gradients.
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1 - theta2 / 6 + theta2 * theta2 / 120, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2 * theta2 / 720, (1 - torch.cos(theta)) / (theta * theta))
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(v.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """Gram-Schmidt map from the 6D representation to a rotation matrix.

    Args:
        d6: ``[..., 6]``: two 3-vectors ``a1, a2`` (need not be unit or
            orthogonal, but must not be parallel).

    Returns:
        ``[..., 3, 3]`` rotation matrices whose rows are ``b1, b2, b1 x b2``,
        ``b1 = a1/|a1|``. Gradients flow to ``d6``.
    """
    check_trailing("rotation_6d_to_matrix", "d6", d6, (6,), "[..., 6]")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rotation_6d(matrix: Tensor) -> Tensor:
    """The 6D representation of rotation matrices: their first two rows.

    Args:
        matrix: ``[..., 3, 3]`` rotation matrices.

    Returns:
        ``[..., 6]``; ``rotation_6d_to_matrix`` inverts it exactly for rotations.
    """
    check_trailing("matrix_to_rotation_6d", "matrix", matrix, (3, 3), "[..., 3, 3]")
    return matrix[..., :2, :].reshape(matrix.shape[:-2] + (6,))



def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Rotation vectors (axis * angle, angle in ``[0, pi]``) from rotation matrices.

    Goes through :func:`matrix_to_quaternion` (stable near 0 and 180 degrees);
    inverse of :func:`axis_angle_to_matrix` for angles below pi.

    Args:
        matrix: ``[..., 3, 3]`` rotation matrices.

    Returns:
        ``[..., 3]`` rotation vectors (radians). Differentiable.
    """
    check_trailing("matrix_to_axis_angle", "matrix", matrix, (3, 3), "[..., 3, 3]")
    q = matrix_to_quaternion(matrix)
    w, xyz = q[..., :1], q[..., 1:]
    s2 = (xyz * xyz).sum(-1, keepdim=True)
    small = s2 < 1e-12
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    angle = 2.0 * torch.atan2(s, w)
    # angle / sin(angle / 2) -> 2 (1 + s^2 / 6) as s -> 0.
    factor = torch.where(small, 2.0 / w.clamp_min(1e-12) * (1 + s2 / 6), angle / s)
    return xyz * factor


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of ``(w, x, y, z)`` quaternions (rotation ``b`` first, then ``a``).

    ``quaternion_to_matrix(quaternion_multiply(a, b)) == quaternion_to_matrix(a) @ quaternion_to_matrix(b)``.

    Args:
        a: ``[..., 4]``.
        b: ``[..., 4]`` (broadcast against ``a``).

    Returns:
        ``[..., 4]`` (not re-normalised). Differentiable.
    """
    check_trailing("quaternion_multiply", "a", a, (4,), "[..., 4] (w, x, y, z)")
    check_trailing("quaternion_multiply", "b", b, (4,), "[..., 4] (w, x, y, z)")
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quaternion_invert(quat: Tensor) -> Tensor:
    """Inverse rotation of unit quaternions: the conjugate ``(w, -x, -y, -z)``."""
    check_trailing("quaternion_invert", "quat", quat, (4,), "[..., 4] (w, x, y, z)")
    return quat * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=quat.dtype, device=quat.device)


def rotation_angle(r1: Tensor, r2: Tensor | None = None, *, degrees: bool = False) -> Tensor:
    """Geodesic angle between rotations: the angle of ``r1^T r2`` (or of ``r1`` alone).

    Computed as ``2 atan2(|xyz|, |w|)`` of the relative quaternion, which is
    accurate for tiny angles (unlike ``acos((tr - 1) / 2)``).

    Args:
        r1: ``[..., 3, 3]`` rotation matrices.
        r2: optional ``[..., 3, 3]`` (broadcast against ``r1``).
        degrees: return degrees instead of radians.

    Returns:
        ``[...]`` angles in ``[0, pi]`` (or ``[0, 180]``).
    """
    check_trailing("rotation_angle", "r1", r1, (3, 3), "[..., 3, 3]")
    rel = r1
    if r2 is not None:
        check_trailing("rotation_angle", "r2", r2, (3, 3), "[..., 3, 3]")
        rel = r1.transpose(-1, -2) @ r2
    q = matrix_to_quaternion(rel)
    ang = 2.0 * torch.atan2(q[..., 1:].norm(dim=-1), q[..., 0].abs())
    return torch.rad2deg(ang) if degrees else ang


def _check_n(fn: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{fn}(): n must be a positive int, got {n!r}")
    return n


def random_rotation(
    n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32, device=None
) -> Tensor:
    """``n`` rotation matrices drawn uniformly (Haar measure) from SO(3).

    Uses normalised 4D Gaussian quaternions, which are uniform on the 3-sphere.

    Returns:
        ``[n, 3, 3]``.
    """
    _check_n("random_rotation", n)
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


def random_rotation_near(
    n: int, max_angle_deg: float, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """``n`` rotations drawn uniformly (Haar measure) from the ball of angle <= ``max_angle_deg`` about identity.

    Rejection sampling from :func:`random_rotation` would waste most samples
    for small balls, so the angle is drawn from the Haar density restricted to
    the ball, ``p(t) ~ 1 - cos t``, by inverse-CDF on a fine grid, and the
    axis uniformly.

    Returns:
        ``[n, 3, 3]``; ``R0 @ random_rotation_near(...)`` perturbs ``R0``.
    """
    fn = "random_rotation_near"
    _check_n(fn, n)
    if not (0.0 < float(max_angle_deg) <= 180.0):
        raise ValueError(f"{fn}(): max_angle_deg must be in (0, 180], got {max_angle_deg!r}")
    tmax = math.radians(float(max_angle_deg))
    grid = torch.linspace(0.0, tmax, 4097, dtype=torch.float64)
    cdf = grid - torch.sin(grid)  # integral of 1 - cos t
    u = torch.rand(n, generator=generator, dtype=torch.float64) * cdf[-1]
    idx = torch.searchsorted(cdf, u).clamp(1, grid.numel() - 1)
    c0, c1 = cdf[idx - 1], cdf[idx]
    t = grid[idx - 1] + (u - c0) / (c1 - c0).clamp_min(1e-300) * (grid[idx] - grid[idx - 1])
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=torch.float64), dim=-1)
    return axis_angle_to_matrix(axis * t[:, None]).to(dtype=dtype, device=device)


def rotation_to_matrix(rotation: Tensor) -> Tensor:
    """Any supported rotation parameterisation, told apart by its trailing shape, to matrices.

    ``[..., 3, 3]`` matrix (returned as is), ``[..., 4]`` quaternion ``(w, x, y, z)``,
    ``[..., 3]`` axis-angle, ``[..., 6]`` 6D representation.
    """
    if not isinstance(rotation, Tensor):
        raise TypeError(f"rotation_to_matrix(): rotation must be a torch.Tensor, got {type(rotation).__name__}")
    if rotation.ndim >= 2 and tuple(rotation.shape[-2:]) == (3, 3):
        return rotation
    last = rotation.shape[-1] if rotation.ndim else 0
    if last == 4:
        return quaternion_to_matrix(rotation)
    if last == 3:
        return axis_angle_to_matrix(rotation)
    if last == 6:
        return rotation_6d_to_matrix(rotation)
    raise ValueError(
        "rotation_to_matrix(): rotation must be [..., 3, 3] (matrix), [..., 4] (quaternion w, x, y, z), "
        f"[..., 3] (axis-angle) or [..., 6] (6D), got {list(rotation.shape)}"
    )
