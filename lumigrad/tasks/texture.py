"""`lumigrad fit texture`: the albedo texture (in UV space) of a known mesh under known lights.

The texture is a Lambert albedo :class:`TextureParam` optimised against the
training views with a total-variation smoothness prior and clamped to [0, 1].
Only texels that some view sees get a gradient: they form the visibility mask
used for the metrics, and the rest keep the initial grey.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lumigrad.scene.io import write_image, write_mesh
from lumigrad.scene.materials import LambertMaterial, TextureParam
from lumigrad.scene.mesh import Mesh
from lumigrad.tasks._appearance import setup_problem
from lumigrad.tasks._common import gt_lights, gt_mesh, psnr
from lumigrad.tasks._runner import TaskOutput

__all__ = ["TextureConfig", "TextureResult", "fit_texture", "run_texture"]


@dataclass
class TextureConfig:
    """Settings of :func:`fit_texture`."""

    iterations: int = field(default=300, metadata={"help": "optimisation steps"})
    texture_size: int = field(default=128, metadata={"help": "texture width and height in texels"})
    lr: float = field(default=0.03, metadata={"help": "learning rate (Adam on texels)"})
    tv_weight: float = field(default=0.02, metadata={"help": "total-variation smoothness weight"})
    views_per_step: int = field(default=6, metadata={"help": "random views per step"})
    holdout_every: int = field(default=6, metadata={"help": "hold out every k-th view for evaluation (0: none)"})
    downscale: int = field(default=1, metadata={"help": "integer image downscale factor"})
    max_views: int = field(default=0, metadata={"help": "use at most this many views (0: all)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class TextureResult:
    """The fitted texture ``[T, T, 3]``, the visible-texel mask ``[T, T, 1]`` and the metrics."""

    texture: torch.Tensor
    visible: torch.Tensor
    mesh: Mesh
    metrics: dict
    history: object
    problem: object


def _resize(t: torch.Tensor, size: int) -> torch.Tensor:
    if t.shape[:2] == (size, size):
        return t
    return torch.nn.functional.interpolate(t.permute(2, 0, 1)[None], size=(size, size), mode="area")[0].permute(1, 2, 0)


def _tv(t: torch.Tensor) -> torch.Tensor:
    return (t[1:] - t[:-1]).abs().mean() + (t[:, 1:] - t[:, :-1]).abs().mean()


def fit_texture(data, mesh=None, config: TextureConfig = TextureConfig(), progress: bool = False) -> TextureResult:
    """Fit an albedo texture for ``mesh`` (needs UVs) from the dataset's images and its known lights."""
    fn = "fit texture"
    prob = setup_problem(fn, data, mesh, max_views=config.max_views, scale=config.downscale,
                         holdout_every=config.holdout_every, strip_texture=True)
    if prob.mesh.uvs is None:
        src = mesh if isinstance(mesh, str) else "the mesh"
        raise ValueError(f"{fn}: {src} has no texture coordinates (UVs); a texture needs a UV-mapped mesh")
    dtype = prob.ds.images.dtype
    lights = gt_lights(prob.ds, dtype)
    if lights is None:
        raise ValueError(f"{fn}: the lights must be known: {prob.ds.root} has no ground_truth.json with lights")
    size = config.texture_size
    tex = torch.full((size, size, 3), 0.5, dtype=dtype, requires_grad=True)
    params = {"texture": tex}

    def make():
        return LambertMaterial(TextureParam(params["texture"], filter_mode="linear")), lights

    def clamp(it):
        params["texture"].clamp_(0.0, 1.0)

    res = prob.fit(params, make, iterations=config.iterations, lr=config.lr, views_per_step=config.views_per_step,
                   seed=config.seed, progress=progress, desc="fit texture", post_step=clamp,
                   extra_loss=lambda: config.tv_weight * _tv(params["texture"]))
    # Visible texels: those whose value changes some training pixel.
    probe = torch.zeros_like(tex).requires_grad_(True)
    out = prob.render(prob.train, LambertMaterial(TextureParam(probe + 0.5, filter_mode="linear")), lights)
    (g,) = torch.autograd.grad(out.image.sum(), probe)
    visible = (g.abs().sum(-1, keepdim=True) > 0).to(dtype)
    fitted = tex.detach()
    metrics = {"initial_loss": res.history.loss[0], "final_loss": res.history.loss[-1], "iterations": res.iterations,
               "fit_seconds": res.seconds, "visible_texel_fraction": float(visible.mean()), "views": len(prob.train)}
    gm = gt_mesh(prob.ds, dtype)
    if gm is not None and gm.texture is not None:
        gt_tex = gm.texture[..., :3]
        gt_tex = _resize(gt_tex, size)
        metrics["texture_psnr_visible_db"] = psnr(fitted, gt_tex, visible)
    if prob.held is not None:
        with torch.no_grad():
            got = prob.render(prob.held, LambertMaterial(TextureParam(fitted)), lights).image
        metrics["heldout_psnr_db"] = psnr(got, prob.held.images)
        metrics["heldout_views"] = len(prob.held)
    out_mesh = Mesh(prob.mesh.verts, prob.mesh.faces, uvs=prob.mesh.uvs, faces_uvs=prob.mesh.faces_uvs, texture=fitted)
    return TextureResult(fitted, visible, out_mesh, metrics, res.history, prob)


def run_texture(data, out_dir, config: TextureConfig = TextureConfig(), progress: bool = False, mesh=None) -> dict:
    """:func:`fit_texture`, then write ``texture.png``, ``textured.obj``/``.glb``, pictures, metrics, ``report.html``."""
    out = TaskOutput(out_dir, "fit texture")
    r = fit_texture(data, mesh, config, progress)
    prob = r.problem
    write_image(out.path("texture.png"), r.texture)
    write_mesh(out.path("textured.obj"), r.mesh)
    write_mesh(out.path("textured.glb"), r.mesh)
    for n in ("texture.png", "textured.obj", "textured.glb"):
        out.file(out.path(n))
    lights = gt_lights(prob.ds, r.texture.dtype)
    gm = gt_mesh(prob.ds, r.texture.dtype)
    row = [r.texture, r.visible.expand(-1, -1, 3)]
    if gm is not None and gm.texture is not None:
        row = [_resize(gm.texture[..., :3], r.texture.shape[0])] + row
    out.grid([row], (["ground truth"] if len(row) == 3 else []) + ["fitted", "visible texels"], name="texture_comparison.png",
             caption="texture (UV space)")
    views = prob.held if prob.held is not None else prob.train
    with torch.no_grad():
        idx = list(range(min(4, len(views))))
        got = prob.render(views.subset(idx), LambertMaterial(TextureParam(r.texture)), lights).image
    out.grid([[views.images[i], got[i], (views.images[i] - got[i]).abs() * 4] for i in idx],
             ["target" + (" (held out)" if prob.held is not None else ""), "result", "|diff| x4"])
    out.loss_curve(r.history, "fit texture loss")
    from lumigrad.tasks._common import turntable_frames
    out.turntable(turntable_frames([r.mesh], [None], lights, n=16, resolution=80, transforms=[prob.transform]))
    return out.finish(r.metrics, config, "Fitted an albedo texture under known lights.")
