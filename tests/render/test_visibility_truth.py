"""Gradient truth of the default visibility method on a real mesh (Spot), shaded.

Truth: central differences of 8x8-supersampled hard renders (the derivative of
the area-averaged image), steps of about half a pixel; see
:mod:`lumigrad.testing.pose_truth`. ``bench/visibility_truth.py`` prints the
same cases for every visibility method and DRTK side by side.
"""
import pytest
import torch

from lumigrad.testing.pose_truth import SpotPoseCase


def _check(res: int, move: str, bound: float, shaded: bool = True):
    case = SpotPoseCase(res, move, shaded)
    grad, fd = case.gradient(), case.finite_differences()
    rel = float((grad - fd).norm() / fd.norm())
    assert rel < bound, (move, res, rel, grad.tolist(), fd.tolist())
    big = fd.abs() > 0.2 * fd.abs().max()
    assert torch.equal(torch.sign(grad[big]), torch.sign(fd[big])), (grad.tolist(), fd.tolist())


@pytest.mark.parametrize("move", ["object", "camera"])
def test_spot_pose_gradient_128(move):
    # Measured 0.037 (object), 0.13 (camera); DRTK's estimator on the same images: 0.095, 0.55.
    _check(128, move, 0.15)


@pytest.mark.slow
@pytest.mark.parametrize("move", ["object", "camera"])
def test_spot_pose_gradient_256_flat(move):
    # Flat colour: only visibility terms. Measured 0.014 (object; per component <= 2 %, one rotation 6.6 %).
    _check(256, move, 0.05, shaded=False)


@pytest.mark.slow
def test_spot_pose_gradient_256_shaded():
    # Measured 0.075 (DRTK on the same images: 0.069).
    _check(256, "object", 0.12)


def test_pose_case_rejects_unknown_motion():
    with pytest.raises(ValueError, match="move must be"):
        SpotPoseCase(16, "light")
