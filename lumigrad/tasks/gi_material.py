"""Inverse rendering of albedo and roughness under global illumination (``lumigrad trace material``).

The scene is a small Cornell box lit by an emissive ceiling quad: a glossy
GGX sphere (unknown base colour and roughness, ``metallic = 0.5``) stands on the
floor in front of a back wall of unknown albedo. The target is path traced
(``max_bounces`` bounces, MIS) with the true parameters; the fit starts from grey,
rough values and runs Adam on the image MSE, rendering with path replay so
memory stays that of one chunk of samples. Colour bleeding from the red and
green walls and the sphere's reflection of the box make this a
global-illumination problem: with one bounce the wall albedo is seen only
directly, with more it also tints the sphere and the floor.

Parameters are clamped after each step to where the BRDF depends on them
(albedo and base colour [0, 1], roughness [0.05, 1]).

``texture_res = N`` (``--texture-res N``) makes the back wall's albedo an unknown
``N x N`` texture (:class:`~lumigrad.scene.materials.TextureParam`, bilinear,
clamped at the edges; the wall quad gets UVs), the truth a 4 x 4 checker of four
colours generated in code (:func:`true_wall_texture`); the fit starts from
grey texels, and its step size decays linearly to a tenth (only in this mode).
The textured scene still runs in the fused path kernel
(:mod:`lumigrad.render._path_fused`), whose path replay gives the texel
gradients. The report adds the texture PSNR at the start and the end, over all
texels and over those the camera sees directly (:func:`seen_texels`), and
``texture_true.png`` / ``texture_fitted.png`` / ``texture_comparison.png``.
No smoothness prior: the seen texels are fitted from the image alone (100 steps
at 8 spp: to 0.01-0.06 of the truth); those behind the sphere reach the image only
through its reflection and light bounced onto the floor, and stay 0.2-0.5 off. Measured at the
default size (32^2, 40 steps, 4 spp, 8^2 texels, seeds 0-2): all texels
11.8 -> 17.1-17.8 dB, the seen ones 11.7 -> 25.2-26.3 dB, about 2.5 s a run
(22.2-22.7 dB before ``TraceSettings.decorrelate``: with the image and its
gradient from the same samples the MSE's gradient was biased; constant
parameters, 60 steps, seeds 0-2: largest errors wall 0.04-0.05 -> 0.008-0.023,
roughness 0.13-0.15 -> 0.025-0.09 at 4 spp, ``bench/results_trace14.md``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import prepare_trace, render_trace
from lumigrad.report import save_image
from lumigrad.scene.camera import Camera
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.trace_types import Shape, TraceSettings
from lumigrad.tasks._common import psnr
from lumigrad.tasks._runner import TaskOutput

__all__ = ["GIMaterialConfig", "fit_gi_material", "run_gi_material", "seen_texels", "true_wall_texture"]

log = logging.getLogger(__name__)

TRUE_WALL = (0.35, 0.55, 0.8)
TRUE_BASE = (0.9, 0.45, 0.2)
TRUE_ROUGHNESS = 0.25
# The four colours of the true wall texture's checker (texture_res > 0).
CHECKER_COLOURS = ((0.85, 0.8, 0.2), (0.2, 0.35, 0.8), (0.8, 0.25, 0.3), (0.3, 0.7, 0.4))
TEXTURE_RES_MAX = 256


@dataclass
class GIMaterialConfig:
    """Settings of :func:`run_gi_material`."""

    resolution: int = field(default=32, metadata={"help": "image width and height"})
    iterations: int = field(default=40, metadata={"help": "optimisation steps"})
    spp: int = field(default=4, metadata={"help": "samples per pixel while fitting"})
    target_spp: int = field(default=64, metadata={"help": "samples per pixel of the target"})
    max_bounces: int = field(default=3, metadata={"help": "path length (1 = direct lighting only)"})
    lr: float = field(default=0.05, metadata={"help": "learning rate (Adam)"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    texture_res: int = field(default=0, metadata={
        "help": f"fit the back wall's albedo as an N x N texture (0: one constant colour; else 4 to {TEXTURE_RES_MAX})"})

    def __post_init__(self):
        for k in ("resolution", "iterations", "spp", "target_spp", "max_bounces"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GIMaterialConfig(): {k} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"GIMaterialConfig(): lr must be > 0, got {self.lr!r}")
        t = self.texture_res
        if isinstance(t, bool) or not isinstance(t, int) or not (t == 0 or 4 <= t <= TEXTURE_RES_MAX):
            raise ValueError(f"GIMaterialConfig(): texture_res must be 0 (no texture) or an int in "
                             f"[4, {TEXTURE_RES_MAX}] (texels per side), got {t!r}")


def true_wall_texture(n: int) -> torch.Tensor:  # [n, n, 3]
    """The true back-wall albedo of ``texture_res = n``: a 4 x 4 checker of :data:`CHECKER_COLOURS`."""
    block = torch.arange(n) * 4 // n  # the checker cell of each texel row / column
    idx = (block[:, None] + 2 * block[None, :]) % 4
    return torch.tensor(CHECKER_COLOURS)[idx]


def _wall_material(wall) -> LambertMaterial:
    """Lambert albedo of the back wall: a colour ``[3]`` or a texture ``[N, N, 3]``."""
    if wall.ndim == 3:
        return LambertMaterial(TextureParam(wall, filter_mode="linear", boundary_mode="clamp"))
    return LambertMaterial(wall)


def _quad(p0, p1, p2, p3, uv: bool = False) -> Mesh:
    v = torch.tensor([p0, p1, p2, p3], dtype=torch.float32)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    if not uv:
        return Mesh(v, f)
    # p0 -> uv (0, 0), the texture's bottom-left corner, counter-clockwise.
    return Mesh(v, f, uvs=torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), faces_uvs=f)


def build_scene(wall, base, roughness, res: int):
    """``(shapes, camera)``: the Cornell box with the given back-wall albedo (a colour ``[3]`` or a texture
    ``[N, N, 3]``, row 0 at the top of the wall) and sphere GGX parameters."""
    t = torch.tensor
    shapes = [
        Shape(_quad((-1, -1, 1), (1, -1, 1), (1, -1, -1), (-1, -1, -1)), LambertMaterial(t([0.7, 0.7, 0.7]))),
        Shape(_quad((-1, 1, -1), (1, 1, -1), (1, 1, 1), (-1, 1, 1)), LambertMaterial(t([0.7, 0.7, 0.7]))),
        Shape(_quad((-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1), uv=wall.ndim == 3), _wall_material(wall)),
        Shape(_quad((-1, -1, 1), (-1, -1, -1), (-1, 1, -1), (-1, 1, 1)), LambertMaterial(t([0.63, 0.07, 0.05]))),
        Shape(_quad((1, -1, -1), (1, -1, 1), (1, 1, 1), (1, 1, -1)), LambertMaterial(t([0.14, 0.45, 0.09]))),
        Shape(_quad((-0.3, 0.99, -0.3), (0.3, 0.99, -0.3), (0.3, 0.99, 0.3), (-0.3, 0.99, 0.3)), LambertMaterial(0.0),
              emission=t([12.0, 11.0, 9.0])),
    ]
    v, f = icosphere(3)
    shapes.append(Shape(Mesh(v * 0.45 + t([0.1, -0.55, -0.1]), f), GGXMaterial(base, roughness, 0.5)))
    cam = Camera.look_at(t([0.0, 0.0, 3.6]), t([0.0, -0.1, 0.0]), fov_y_deg=40.0, width=res, height=res)
    return shapes, cam


def _start_wall(config: GIMaterialConfig) -> torch.Tensor:
    """The fit's starting wall albedo: grey, one colour or ``texture_res^2`` texels."""
    n = config.texture_res
    return torch.full((n, n, 3) if n else (3,), 0.5)


def _true_wall(config: GIMaterialConfig) -> torch.Tensor:
    return true_wall_texture(config.texture_res) if config.texture_res else torch.tensor(TRUE_WALL)


def fit_gi_material(target, config: GIMaterialConfig, progress: bool = False) -> dict:
    """Fit the wall albedo (a colour or, with ``config.texture_res``, a texture), sphere base colour and roughness
    to ``target [1, H, W, 3]``.

    Returns a dict with the fitted values, the loss history and the first and last renders.
    """
    wall = _start_wall(config).requires_grad_(True)
    base = torch.full((3,), 0.5, requires_grad=True)
    rough = torch.tensor([0.7], requires_grad=True)
    opt = torch.optim.Adam([wall, base, rough], lr=config.lr)
    # Texels are fitted from noisy per-step gradients: with the step size decaying linearly to a tenth, the
    # final texels average over the last steps (texture PSNR 16.5 -> 18.1 dB at 32^2, 8^2 texels, 40 steps).
    n_it = config.iterations
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - 0.9 * i / n_it) if config.texture_res else None
    shapes, cam = build_scene(wall, base, rough, config.resolution)
    accel = prepare_trace(shapes)
    losses, first, last = [], None, None
    it = range(config.iterations)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="trace material", unit="it")
    for i in it:
        opt.zero_grad()
        shapes, cam = build_scene(wall, base, rough, config.resolution)
        st = TraceSettings(spp=config.spp, max_bounces=config.max_bounces, boundary="none", replay=True,
                           seed=config.seed + 1 + i)
        img = render_trace(shapes, cam, [], st, accel=accel).image
        loss = ((img - target) ** 2).mean()
        if not torch.isfinite(loss):
            raise RuntimeError(f"trace material: the loss became {float(loss)} at step {i}")
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        with torch.no_grad():
            wall.clamp_(0.0, 1.0)
            base.clamp_(0.0, 1.0)
            rough.clamp_(0.05, 1.0)
        losses.append(float(loss.detach()))
        first = img.detach() if first is None else first
        last = img.detach()
        if progress:
            it.set_postfix(loss=f"{losses[-1]:.2e}")
    return {"wall": wall.detach(), "base": base.detach(), "roughness": rough.detach(), "losses": losses,
            "first": first, "last": last}


def _clipped_mse(a, b) -> float:
    """Image MSE on images clipped to [0, 1], so the directly seen light (radiance > 1) does not dominate."""
    return float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())


def _write_textures(out: TaskOutput, true_tex, start_tex, fitted_tex) -> None:
    """``texture_true.png`` / ``texture_fitted.png`` (one pixel a texel) and a comparison grid for the report."""
    for name, tex in (("texture_true.png", true_tex), ("texture_fitted.png", fitted_tex)):
        out.file(save_image(out.path(name), tex.clamp(0, 1)))
    k = max(1, 64 // true_tex.shape[0])  # nearest upscale, so the grid's labels fit

    def up(t):
        return t.repeat_interleave(k, 0).repeat_interleave(k, 1)

    out.grid([[up(true_tex), up(start_tex), up(fitted_tex), up((fitted_tex - true_tex).abs() * 4)]],
             labels=["true", "start", "fitted", "|diff| x4"], name="texture_comparison.png",
             caption="back-wall albedo texture")


def seen_texels(config: GIMaterialConfig) -> torch.Tensor:  # [N, N, 1]
    """1 for the wall texels that the camera sees directly, else 0.

    Found from the texels' gradients in a direct-lighting render (1 bounce: the wall's albedo reaches the image
    only where the camera sees the wall), kept where at least a tenth of the median nonzero one: the others, behind
    the sphere or barely grazed by its outline, reach the image mostly through reflections and bounced light, so
    they are fitted far less well. (Texels with a nonzero gradient but below the tenth are 2-6 of 64 at 8^2 texels:
    without the threshold they count, and their errors, 0.2-0.25 against 0.01-0.06 elsewhere, dominate.)
    """
    n = config.texture_res
    probe = torch.full((n, n, 3), 0.5, requires_grad=True)
    shapes, cam = build_scene(probe, torch.tensor(TRUE_BASE), torch.tensor([TRUE_ROUGHNESS]), config.resolution)
    img = render_trace(shapes, cam, [], TraceSettings(spp=4, max_bounces=1, boundary="none", seed=config.seed)).image
    (g,) = torch.autograd.grad(img.sum(), probe)
    g = g.abs().sum(-1, keepdim=True)
    nonzero = g[g > 0]
    if nonzero.numel() == 0:
        return torch.zeros_like(g)
    return (g >= 0.1 * nonzero.median()).float()


def _texture_metrics(true_tex, start_tex, fitted_tex, seen) -> dict:
    return {"texture_res": true_tex.shape[0],
            "start_psnr_db": psnr(start_tex, true_tex), "final_psnr_db": psnr(fitted_tex, true_tex),
            "seen_texel_fraction": float(seen.mean()),
            "start_psnr_seen_db": psnr(start_tex, true_tex, seen), "final_psnr_seen_db": psnr(fitted_tex, true_tex, seen),
            "start_mean_abs_error": float((start_tex - true_tex).abs().mean()),
            "final_mean_abs_error": float((fitted_tex - true_tex).abs().mean())}


def run_gi_material(out_dir, config: GIMaterialConfig = GIMaterialConfig(), progress: bool = False) -> dict:
    """Render the target, fit, and write ``target_vs_result.png``, ``loss.png``, ``metrics.json``, ``report.html``
    (and with ``config.texture_res``: ``texture_true.png``, ``texture_fitted.png``, ``texture_comparison.png``)."""
    out = TaskOutput(out_dir, "trace material")
    true = (_true_wall(config), torch.tensor(TRUE_BASE), torch.tensor([TRUE_ROUGHNESS]))
    start = (_start_wall(config), torch.full((3,), 0.5), torch.tensor([0.7]))
    shapes, cam = build_scene(*true, config.resolution)
    st = TraceSettings(spp=config.target_spp, max_bounces=config.max_bounces, boundary="none", seed=config.seed)
    with torch.no_grad():
        target = render_trace(shapes, cam, [], st).image
    r = fit_gi_material(target, config, progress)
    # Image error of the start and fitted parameters, both at the target's spp (another seed): the
    # per-step losses are noisy (config.spp samples).
    st_eval = TraceSettings(spp=config.target_spp, max_bounces=config.max_bounces, boundary="none",
                            seed=config.seed + 10_000)
    with torch.no_grad():
        start_img = render_trace(*build_scene(*start, config.resolution), [], st_eval).image
        fit_img = render_trace(*build_scene(r["wall"], r["base"], r["roughness"], config.resolution), [], st_eval).image
    out.grid([[target[0], start_img[0], fit_img[0], (fit_img[0] - target[0]).abs() * 4]],
             labels=["target", "start", "fitted", "|diff| x4"])
    out.loss_curve(r["losses"], "trace material: image MSE")
    textured = config.texture_res > 0
    wall_key = "wall_texture" if textured else "wall_albedo"
    metrics = {
        "true": {wall_key: "texture_true.png" if textured else list(TRUE_WALL), "base_color": list(TRUE_BASE),
                 "roughness": TRUE_ROUGHNESS},
        "fitted": {wall_key: "texture_fitted.png" if textured else r["wall"].tolist(),
                   "base_color": r["base"].tolist(), "roughness": float(r["roughness"][0])},
        # Largest error of a parameter (of a texel, for the texture).
        "start_error_max": {k: float((a - b).abs().max()) for k, a, b in zip(("wall", "base", "roughness"), start, true)},
        "final_error_max": {k: float((a - b).abs().max())
                            for k, a, b in zip(("wall", "base", "roughness"), (r["wall"], r["base"], r["roughness"]), true)},
        "start_image_mse": _clipped_mse(start_img, target),
        "final_image_mse": _clipped_mse(fit_img, target),
        "start_image_psnr_db": psnr(start_img.clamp(0, 1), target.clamp(0, 1)),
        "final_image_psnr_db": psnr(fit_img.clamp(0, 1), target.clamp(0, 1)),
        "first_loss": r["losses"][0],
        "final_loss": r["losses"][-1],
        "iterations": config.iterations,
    }
    if textured:
        metrics["wall_texture"] = _texture_metrics(true[0], start[0], r["wall"], seen_texels(config))
        _write_textures(out, true[0], start[0], r["wall"])
    wall = f"a {config.texture_res}^2 back-wall albedo texture" if textured else "back-wall albedo"
    summary = (f"Cornell box, {config.max_bounces}-bounce path tracing: {wall}, sphere base colour and "
               f"roughness fitted from a {config.target_spp}-spp target at {config.spp} spp per step.")
    return out.finish(metrics, config, summary)
