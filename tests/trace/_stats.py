"""Shared check of Monte Carlo gradient estimates against a reference (the indirect-visibility tests)."""
from __future__ import annotations

import torch


def check_within_standard_errors(grads: torch.Tensor, truth: torch.Tensor, max_rel_se: float) -> None:
    """``grads [N, 3]`` independent estimates: each axis's mean within 4 standard errors (from their spread) of
    ``truth [3]``, with the standard errors below ``max_rel_se`` of the truth's norm so that the test has power."""
    mean = grads.mean(0)
    se = grads.std(0) / grads.shape[0] ** 0.5
    norm = float(truth.norm())
    for k in range(3):
        assert float(se[k]) < max_rel_se * norm, (k, se, truth)
        assert abs(float(mean[k] - truth[k])) < 4 * float(se[k]) + 1e-3 * norm, (k, mean, se, truth)
