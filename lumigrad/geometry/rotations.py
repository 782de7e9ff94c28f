"""Rotation parameterisations, all differentiable and batched over leading dims.

Quaternions are ``(w, x, y, z)`` (scalar first). Rotation matrices act on column
vectors (``p' = R @ p``). The 6D representation (Zhou et al., "On the Continuity
of Rotation Representations in Neural Networks", CVPR 2019) is the first two
*rows* of the matrix, as in PyTorch3D; see ``docs/conventions.md``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lumigrad.geometry._checks import check_trailing

__all__ = [
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_matrix",
    "rotation_6d_to_matrix",
    "matrix_to_rotation_6d",
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

