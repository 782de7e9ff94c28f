"""Tests for lumigrad.testing.gradcheck: finite differences, boundary band, supersampled coverage."""
import pytest
import torch

from lumigrad.ops._rasterize_ref import rasterize_ref
from lumigrad.testing.gradcheck import (
    assert_close_with_boundary_band,
    boundary_band,
    finite_difference,
    supersampled_coverage,
)


def _triangle(dtype=torch.float64):
    ndc = torch.tensor([[-0.83, -0.69], [0.79, -0.86], [0.12, 0.84]], dtype=dtype)
    w = torch.tensor([1.5, 2.5, 2.0], dtype=dtype)
    pos = torch.stack([ndc[:, 0] * w, ndc[:, 1] * w, 0.5 * w - 1.0, w], -1)
    return pos, torch.tensor([[0, 1, 2]], dtype=torch.int32)


def _area_px(pos, res):
    H, W = res
    X = (pos[:, 0] / pos[:, 3] + 1) * W / 2
    Y = (1 - pos[:, 1] / pos[:, 3]) * H / 2
    return 0.5 * abs(float((X[1] - X[0]) * (Y[2] - Y[0]) - (X[2] - X[0]) * (Y[1] - Y[0])))


def test_finite_difference_gradient_and_jacobian():
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float32)
    g = finite_difference(lambda t: (t**3).sum(), x, 1e-4)
    assert g.shape == (2, 2) and g.dtype == torch.float64
    torch.testing.assert_close(g, 3 * x.double() ** 2, atol=1e-6, rtol=1e-6)
    jac = finite_difference(lambda t: torch.stack([t.sum(), (t * t).sum()]), x, 1e-4, indices=[1, 3])
    assert jac.shape == (2, 2)
    torch.testing.assert_close(jac, torch.tensor([[1.0, -4.0], [1.0, 6.0]], dtype=torch.float64))
    with pytest.raises(ValueError):
        finite_difference(lambda t: t.sum(), x, 1e-4, indices=[4])
    with pytest.raises(ValueError):
        finite_difference(lambda t: t.sum(), x, 0.0)


def test_boundary_band():
    ids = torch.zeros(1, 5, 6)
    ids[0, 1:3, 2:4] = 1
    band = boundary_band(ids, radius=1)
    assert band.shape == (1, 5, 6)
    assert band[0, 0, 1] and band[0, 3, 4] and band[0, 1, 2]
    assert not band[0, 4, 0] and not band[0, 0, 5]
    assert boundary_band(ids, radius=2)[0, 4, 0]


def test_assert_close_with_boundary_band():
    expected = torch.zeros(1, 4, 4, 2)
    band = torch.zeros(1, 4, 4, 1, dtype=torch.bool)
    band[0, 1] = True  # 4 pixels x 2 channels = 8 band elements
    actual = expected.clone()
    actual[0, 1, 0, 0] = 1.0  # 1 of 8 band elements off
    assert_close_with_boundary_band(actual, expected, band, atol=1e-6, rtol=0, max_flip_fraction=0.2)
    with pytest.raises(AssertionError, match="boundary band"):
        assert_close_with_boundary_band(actual, expected, band, atol=1e-6, rtol=0, max_flip_fraction=0.1)
    actual[0, 3, 3, 1] = 1e-3  # interior mismatch is never tolerated
    with pytest.raises(AssertionError, match="outside the boundary band"):
        assert_close_with_boundary_band(actual, expected, band, atol=1e-6, rtol=0, max_flip_fraction=1.0)
    with pytest.raises(AssertionError, match="NaN"):
        assert_close_with_boundary_band(expected * float("nan"), expected, band, 1e-6, 0, 1.0)


def test_supersampled_coverage_matches_area_and_tiles():
    pos, tri = _triangle()
    res = (24, 20)
    cov = supersampled_coverage(rasterize_ref, pos, tri, res, 8)
    assert cov.shape == (1, 24, 20) and cov.dtype == torch.float64
    assert ((cov >= 0) & (cov <= 1)).all() and (cov == 1).any() and (cov == 0).any()
    assert abs(float(cov.sum()) - _area_px(pos, res)) < 0.5
    # Tiling through the clip-space crop reproduces the single render (uneven tiles too).
    torch.testing.assert_close(supersampled_coverage(rasterize_ref, pos, tri, res, 8, tile=7), cov)
    # factor 1 is the plain rasterizer's coverage.
    rast, _ = rasterize_ref(pos, tri, res)
    torch.testing.assert_close(supersampled_coverage(rasterize_ref, pos, tri, res, 1), (rast[..., 3] > 0).double())


def test_supersampled_coverage_face_values():
    # Two triangles splitting a quad: weights 1 and 0 give the first one's coverage only.
    c = 0.875  # square edges 1 px from the border, between 4x4 samples
    pos = torch.tensor([[-c, -c, 0, 1], [c, -c, 0, 1], [c, c, 0, 1], [-c, c, 0, 1]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    res = (16, 16)
    both = supersampled_coverage(rasterize_ref, pos, tri, res, 4)
    first = supersampled_coverage(rasterize_ref, pos, tri, res, 4, face_values=torch.tensor([1.0, 0.0]))
    second = supersampled_coverage(rasterize_ref, pos, tri, res, 4, face_values=torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(first + second, both)
    # Halves of the square, up to the samples lying exactly on the diagonal (< 4 px^2 here).
    assert abs(float(first.sum()) - float(second.sum())) < 4.0 and first.sum() > 0 and second.sum() > 0
    assert abs(float(both.sum()) - 14.0**2) < 1e-9
