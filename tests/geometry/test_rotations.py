"""Rotation parameterisations: round trips, properties, gradients."""
import math

import pytest
import torch

from lumigrad.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
)

D = torch.float64


def _random_rotations(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return quaternion_to_matrix(torch.randn(n, 4, dtype=D, generator=g))


def _is_rotation(m, tol=1e-12):
    eye = torch.eye(3, dtype=m.dtype).expand_as(m)
    return (m @ m.transpose(-1, -2) - eye).abs().max() < tol and (torch.linalg.det(m) - 1).abs().max() < tol


def test_quaternion_matrix_round_trip():
    q = torch.randn(500, 4, dtype=D, generator=torch.Generator().manual_seed(1))
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    m = quaternion_to_matrix(q)
    assert _is_rotation(m)
    torch.testing.assert_close(matrix_to_quaternion(m), q, atol=1e-12, rtol=0)


def test_quaternion_is_normalised_inside_and_sign_invariant():
    q = torch.tensor([0.3, -1.2, 0.5, 2.0], dtype=D)
    torch.testing.assert_close(quaternion_to_matrix(5 * q), quaternion_to_matrix(q))
    torch.testing.assert_close(quaternion_to_matrix(-q), quaternion_to_matrix(q))


def test_quaternion_order_is_wxyz():
    # 90 degrees about +z: (w, x, y, z) = (cos 45, 0, 0, sin 45) maps x to y.
    h = math.sqrt(0.5)
    m = quaternion_to_matrix(torch.tensor([h, 0.0, 0.0, h], dtype=D))
    torch.testing.assert_close(m @ torch.tensor([1.0, 0, 0], dtype=D), torch.tensor([0.0, 1, 0], dtype=D))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_matrix_to_quaternion_near_180_degrees(axis):
    v = torch.zeros(3, dtype=D)
    v[axis] = math.pi - 1e-9
    m = axis_angle_to_matrix(v)
    torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(m)), m, atol=1e-12, rtol=0)


def test_axis_angle_matches_quaternion_and_is_smooth_at_zero():
    v = torch.randn(50, 3, dtype=D, generator=torch.Generator().manual_seed(2))
    th = v.norm(dim=-1, keepdim=True)
    q = torch.cat([torch.cos(th / 2), torch.sin(th / 2) * v / th], dim=-1)
    torch.testing.assert_close(axis_angle_to_matrix(v), quaternion_to_matrix(q))
    zero = torch.zeros(3, dtype=D, requires_grad=True)
    m = axis_angle_to_matrix(zero)
    torch.testing.assert_close(m, torch.eye(3, dtype=D))
    (g,) = torch.autograd.grad((m * torch.arange(9, dtype=D).reshape(3, 3)).sum(), zero)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # Across the Taylor switch: tiny angles agree with the closed form.
    tiny = torch.tensor([1e-4, -2e-4, 3e-4], dtype=D)
    th = tiny.norm()
    q = torch.cat([torch.cos(th / 2)[None], torch.sin(th / 2) * tiny / th])
    torch.testing.assert_close(axis_angle_to_matrix(tiny), quaternion_to_matrix(q), atol=1e-15, rtol=0)


def test_rotation_6d_round_trip_and_gram_schmidt():
    m = _random_rotations(100)
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(m)), m, atol=1e-12, rtol=0)
    d6 = torch.randn(100, 6, dtype=D, generator=torch.Generator().manual_seed(3))
    assert _is_rotation(rotation_6d_to_matrix(d6))


@pytest.mark.parametrize(
    "fn, shape",
    [(quaternion_to_matrix, (4, 4)), (axis_angle_to_matrix, (4, 3)), (rotation_6d_to_matrix, (4, 6)),
     (matrix_to_quaternion, (4, 3, 3))],
)
def test_gradcheck(fn, shape):
    x = torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(4))
    if fn is matrix_to_quaternion:
        x = _random_rotations(4, seed=5)
    assert torch.autograd.gradcheck(fn, (x.requires_grad_(),))


def test_bad_inputs():
    with pytest.raises(TypeError, match="quat"):
        quaternion_to_matrix([1.0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"quaternion_to_matrix\(\): quat must be .*got float32 \[3\]"):
        quaternion_to_matrix(torch.zeros(3))
    with pytest.raises(ValueError, match="d6"):
        rotation_6d_to_matrix(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="matrix"):
        matrix_to_quaternion(torch.zeros(3, 3, dtype=torch.int64))


def test_float32_works():
    m = quaternion_to_matrix(torch.randn(10, 4))
    assert m.dtype == torch.float32
    assert matrix_to_quaternion(m).dtype == torch.float32
