"""Public helpers for gradient tests: finite differences, boundary bands, supersampled coverage, pose truth."""
from lumigrad.testing.gradcheck import assert_close_with_boundary_band, boundary_band, finite_difference, supersampled_coverage
from lumigrad.testing.pose_truth import SpotPoseCase, pose_matrix

__all__ = [
    "SpotPoseCase",
    "assert_close_with_boundary_band",
    "boundary_band",
    "finite_difference",
    "pose_matrix",
    "supersampled_coverage",
]
