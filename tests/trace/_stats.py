"""Shared pieces of the indirect-visibility tests: the check of Monte Carlo gradient estimates against a
reference, and the projected solid angle of polygons (their closed forms)."""
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


def projected_solid_angle(poly: torch.Tensor, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``[P]`` projected solid angle ``int cos dw`` of polygon ``poly [k, 3]`` seen from points ``x [P, 3]`` (normal
    ``n [3]``)."""
    r = poly[None] - x[:, None]
    r1 = torch.roll(r, -1, 1)
    nr, nr1 = torch.nn.functional.normalize(r, dim=-1), torch.nn.functional.normalize(r1, dim=-1)
    angle = torch.acos((nr * nr1).sum(-1).clamp(-1, 1))
    normal = torch.nn.functional.normalize(torch.linalg.cross(r, r1, dim=-1), dim=-1)
    return 0.5 * (angle * (normal @ n)).sum(-1).abs()
