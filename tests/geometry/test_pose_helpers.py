"""Pose helpers: quaternion product, axis-angle from matrices, rotation angle, random rotations."""
import math

import pytest
import torch

from lumigrad.geometry.rotations import (
    axis_angle_to_matrix, matrix_to_axis_angle, quaternion_invert, quaternion_multiply, quaternion_to_matrix,
    random_rotation, random_rotation_near, rotation_6d_to_matrix, rotation_angle, rotation_to_matrix,
)


def test_quaternion_multiply_matches_matrix_product():
    a, b = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    lhs = quaternion_to_matrix(quaternion_multiply(a, b))
    rhs = quaternion_to_matrix(a) @ quaternion_to_matrix(b)
    torch.testing.assert_close(lhs, rhs)
    q = torch.nn.functional.normalize(a, dim=-1)
    torch.testing.assert_close(quaternion_to_matrix(quaternion_multiply(q, quaternion_invert(q))),
                               torch.eye(3, dtype=torch.float64).expand(10, 3, 3))


@pytest.mark.parametrize("angle", [0.0, 1e-5, 0.3, 2.0, math.pi - 1e-4])
def test_axis_angle_round_trip(angle):
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
    v = axis * angle
    back = matrix_to_axis_angle(axis_angle_to_matrix(v))
    torch.testing.assert_close(back, v, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(rotation_angle(axis_angle_to_matrix(v)), torch.tensor(angle, dtype=torch.float64),
                               atol=1e-7, rtol=1e-7)


def test_rotation_angle_between_and_degrees():
    r1 = random_rotation(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    delta = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.radians(7.0)], dtype=torch.float64))
    deg = rotation_angle(r1, r1 @ delta, degrees=True)
    torch.testing.assert_close(deg, torch.full((5,), 7.0, dtype=torch.float64))


def test_random_rotations_are_rotations_and_spread():
    g = torch.Generator().manual_seed(1)
    r = random_rotation(2000, generator=g, dtype=torch.float64)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2000, 3, 3))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(2000, dtype=torch.float64))
    # Haar measure: E[angle] = pi/2 + 2/pi (~ 126.5 degrees).
    mean = float(rotation_angle(r, degrees=True).mean())
    assert abs(mean - math.degrees(math.pi / 2 + 2 / math.pi)) < 3.0
    near = random_rotation_near(2000, 90.0, generator=g, dtype=torch.float64)
    ang = rotation_angle(near, degrees=True)
    assert float(ang.max()) <= 90.0 + 1e-6
    # Haar restricted to the 90-degree ball: CDF(t) = (t - sin t) / (pi/2 - 1); median ~ 71.2 degrees.
    assert abs(float(ang.median()) - 71.2) < 3.0


def test_rotation_to_matrix_dispatch_and_errors():
    aa = torch.tensor([0.1, 0.2, 0.3])
    m = axis_angle_to_matrix(aa)
    torch.testing.assert_close(rotation_to_matrix(aa), m)
    torch.testing.assert_close(rotation_to_matrix(m), m)
    from lumigrad.geometry.rotations import matrix_to_quaternion, matrix_to_rotation_6d
    torch.testing.assert_close(rotation_to_matrix(matrix_to_quaternion(m)), m)
    torch.testing.assert_close(rotation_to_matrix(matrix_to_rotation_6d(m)), rotation_6d_to_matrix(matrix_to_rotation_6d(m)))
    with pytest.raises(ValueError, match="rotation_to_matrix"):
        rotation_to_matrix(torch.zeros(5))
    with pytest.raises(ValueError, match="max_angle_deg"):
        random_rotation_near(3, 0.0)
