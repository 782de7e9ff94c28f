"""3D Gaussian splatting pipeline: cull, project, SH colours, tile rasterize, background."""
from __future__ import annotations

from typing import NamedTuple

import torch

from lumigrad.ops.splat import project_gaussians, rasterize_gaussians

__all__ = ["SplatRender", "render_gaussians"]


class SplatRender(NamedTuple):
    image: torch.Tensor  # [H, W, 3] background composited
    alpha: torch.Tensor  # [H, W]
    means2d: torch.Tensor  # [M, 2] screen means of the visible Gaussians (retain_grad for densification)
    visible: torch.Tensor  # [M] int64 ids of the visible Gaussians


def render_gaussians(
    model,  # lumigrad.fields.gaussians.GaussianModel
    world_to_cam: torch.Tensor,  # [4, 4] OpenCV
    K: torch.Tensor,  # [3, 3]
    width: int,
    height: int,
    sh_degree: int = 3,
    background: torch.Tensor | None = None,  # [3]
    near: float = 0.01,
) -> SplatRender:
    """Render a :class:`~lumigrad.fields.gaussians.GaussianModel` from one camera.

    Gaussians behind ``near`` or whose centre projects far outside the image are
    dropped before rasterizing (index selection, so gradients reach the rest).
    """
    proj = project_gaussians(model.means, model.quats, model.scales, world_to_cam, K, width, height, near)
    m = proj.means2d.detach()
    margin = 0.5 * max(width, height)
    ok = proj.in_front & (m[:, 0] > -margin) & (m[:, 0] < width + margin) & (m[:, 1] > -margin) & \
        (m[:, 1] < height + margin)
    vis = ok.nonzero().flatten()
    cam_center = -world_to_cam[:3, :3].T @ world_to_cam[:3, 3]
    # All visible (the usual case for object-centric scenes): no gathers, no scatters in the backward.
    every = vis.shape[0] == ok.shape[0]
    sel = (lambda t: t) if every else (lambda t: t[vis])  # noqa: E731
    means2d = sel(proj.means2d)
    if means2d.requires_grad:
        means2d.retain_grad()
    colors = _colors(model, sel, cam_center, sh_degree)
    out = rasterize_gaussians(means2d, sel(proj.conics), colors, sel(model.opacities), sel(proj.depths).detach(),
                              width, height)
    image = out.image
    if background is not None:
        image = image + (1.0 - out.alpha)[..., None] * background
    return SplatRender(image, out.alpha, means2d, vis)


def _colors(model, sel, cam_center, degree):
    from lumigrad.fields.gaussians import eval_sh

    n_coef = (degree + 1) ** 2
    sh = sel(model.sh_dc) if degree == 0 else torch.cat([sel(model.sh_dc), sel(model.sh_rest[:, : n_coef - 1])], 1)
    dirs = torch.nn.functional.normalize(sel(model.means) - cam_center, dim=-1)
    return torch.clamp_min(eval_sh(degree, sh, dirs) + 0.5, 0.0)
