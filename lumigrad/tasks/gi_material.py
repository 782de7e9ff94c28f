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
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.render.path import prepare_trace, render_trace
from lumigrad.scene.camera import Camera
from lumigrad.scene.materials import GGXMaterial, LambertMaterial
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.trace_types import Shape, TraceSettings
from lumigrad.tasks._runner import TaskOutput

__all__ = ["GIMaterialConfig", "fit_gi_material", "run_gi_material"]

log = logging.getLogger(__name__)

TRUE_WALL = (0.35, 0.55, 0.8)
TRUE_BASE = (0.9, 0.45, 0.2)
TRUE_ROUGHNESS = 0.25


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

    def __post_init__(self):
        for k in ("resolution", "iterations", "spp", "target_spp", "max_bounces"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GIMaterialConfig(): {k} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"GIMaterialConfig(): lr must be > 0, got {self.lr!r}")


def _quad(p0, p1, p2, p3) -> Mesh:
    v = torch.tensor([p0, p1, p2, p3], dtype=torch.float32)
    return Mesh(v, torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32))


def build_scene(wall, base, roughness, res: int):
    """``(shapes, camera)``: the Cornell box with the given back-wall albedo and sphere GGX parameters."""
    t = torch.tensor
    shapes = [
        Shape(_quad((-1, -1, 1), (1, -1, 1), (1, -1, -1), (-1, -1, -1)), LambertMaterial(t([0.7, 0.7, 0.7]))),
        Shape(_quad((-1, 1, -1), (1, 1, -1), (1, 1, 1), (-1, 1, 1)), LambertMaterial(t([0.7, 0.7, 0.7]))),
        Shape(_quad((-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1)), LambertMaterial(wall)),
        Shape(_quad((-1, -1, 1), (-1, -1, -1), (-1, 1, -1), (-1, 1, 1)), LambertMaterial(t([0.63, 0.07, 0.05]))),
        Shape(_quad((1, -1, -1), (1, -1, 1), (1, 1, 1), (1, 1, -1)), LambertMaterial(t([0.14, 0.45, 0.09]))),
        Shape(_quad((-0.3, 0.99, -0.3), (0.3, 0.99, -0.3), (0.3, 0.99, 0.3), (-0.3, 0.99, 0.3)), LambertMaterial(0.0),
              emission=t([12.0, 11.0, 9.0])),
    ]
    v, f = icosphere(3)
    shapes.append(Shape(Mesh(v * 0.45 + t([0.1, -0.55, -0.1]), f), GGXMaterial(base, roughness, 0.5)))
    cam = Camera.look_at(t([0.0, 0.0, 3.6]), t([0.0, -0.1, 0.0]), fov_y_deg=40.0, width=res, height=res)
    return shapes, cam


def fit_gi_material(target, config: GIMaterialConfig, progress: bool = False) -> dict:
    """Fit the wall albedo, sphere base colour and roughness to ``target [1, H, W, 3]``.

    Returns a dict with the fitted values, the loss history and the first and last renders.
    """
    wall = torch.full((3,), 0.5, requires_grad=True)
    base = torch.full((3,), 0.5, requires_grad=True)
    rough = torch.tensor([0.7], requires_grad=True)
    opt = torch.optim.Adam([wall, base, rough], lr=config.lr)
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


def run_gi_material(out_dir, config: GIMaterialConfig = GIMaterialConfig(), progress: bool = False) -> dict:
    """Render the target, fit, and write ``target_vs_result.png``, ``loss.png``, ``metrics.json``, ``report.html``."""
    out = TaskOutput(out_dir, "trace material")
    true = (torch.tensor(TRUE_WALL), torch.tensor(TRUE_BASE), torch.tensor([TRUE_ROUGHNESS]))
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
        start_img = render_trace(*build_scene(torch.full((3,), 0.5), torch.full((3,), 0.5), torch.tensor([0.7]),
                                              config.resolution), [], st_eval).image
        fit_img = render_trace(*build_scene(r["wall"], r["base"], r["roughness"], config.resolution), [], st_eval).image
    out.grid([[target[0], start_img[0], fit_img[0], (fit_img[0] - target[0]).abs() * 4]],
             labels=["target", "start", "fitted", "|diff| x4"])
    out.loss_curve(r["losses"], "trace material: image MSE")
    start_err = {"wall": float((torch.full((3,), 0.5) - true[0]).abs().max()),
                 "base": float((torch.full((3,), 0.5) - true[1]).abs().max()),
                 "roughness": abs(0.7 - TRUE_ROUGHNESS)}
    metrics = {
        "true": {"wall_albedo": list(TRUE_WALL), "base_color": list(TRUE_BASE), "roughness": TRUE_ROUGHNESS},
        "fitted": {"wall_albedo": r["wall"].tolist(), "base_color": r["base"].tolist(),
                   "roughness": float(r["roughness"][0])},
        "start_error_max": start_err,
        "final_error_max": {"wall": float((r["wall"] - true[0]).abs().max()),
                            "base": float((r["base"] - true[1]).abs().max()),
                            "roughness": float((r["roughness"] - true[2]).abs().max())},
        # On images clipped to [0, 1], so the directly seen light (radiance > 1) does not dominate.
        "start_image_mse": float(((start_img.clamp(0, 1) - target.clamp(0, 1)) ** 2).mean()),
        "final_image_mse": float(((fit_img.clamp(0, 1) - target.clamp(0, 1)) ** 2).mean()),
        "first_loss": r["losses"][0],
        "final_loss": r["losses"][-1],
        "iterations": config.iterations,
    }
    summary = (f"Cornell box, {config.max_bounces}-bounce path tracing: back-wall albedo, sphere base colour and "
               f"roughness fitted from a {config.target_spp}-spp target at {config.spp} spp per step.")
    return out.finish(metrics, config, summary)
