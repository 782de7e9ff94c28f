"""Public helpers for gradient tests: finite differences, boundary bands, supersampled coverage."""
from lumigrad.testing.gradcheck import assert_close_with_boundary_band, boundary_band, finite_difference, supersampled_coverage

__all__ = ["assert_close_with_boundary_band", "boundary_band", "finite_difference", "supersampled_coverage"]
