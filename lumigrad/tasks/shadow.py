"""Shadow-driven optimisation: move a point light until its shadow matches a target image.

The scene is a ground plane, a sphere lifted above it and a point light. A
target is rendered with the true light position; the light starts elsewhere and
Adam moves it to minimise the image MSE. Most of the signal is the moving
shadow edge, so this exercises :mod:`lumigrad.render._trace_edges`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lumigrad.geometry.primitives import icosphere, plane
from lumigrad.render.path import prepare_trace, render_trace
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import PointLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.scene_file import TraceScene, load_scene
from lumigrad.scene.trace_types import Shape, TraceSettings

__all__ = ["ShadowConfig", "fit_light_to_shadow", "run_shadow_demo", "render_scene_file"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowConfig:
    """Settings of :func:`run_shadow_demo`."""

    resolution: int = 48
    iterations: int = 60
    spp: int = 4
    lr: float = 0.05
    seed: int = 0

    def __post_init__(self):
        for k in ("resolution", "iterations", "spp"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ShadowConfig(): {k} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"ShadowConfig(): lr must be > 0, got {self.lr!r}")


def _scene(res: int):
    v, f = icosphere(3)
    v = v * 0.5 + torch.tensor([0.0, 0.2, 0.0])
    pv, pf = plane(5.0)
    pv = pv - torch.tensor([0.0, 0.6, 0.0])
    shapes = [Shape(Mesh(v, f), LambertMaterial(torch.tensor([0.8, 0.6, 0.4]))), Shape(Mesh(pv, pf), LambertMaterial(0.7))]
    cam = Camera.look_at(torch.tensor([0.0, 2.5, 3.0]), torch.tensor([0.0, -0.4, 0.0]), width=res, height=res)
    return shapes, cam


def fit_light_to_shadow(shapes, camera, target, start, config: ShadowConfig, progress: bool = False):
    """Optimise a point light's position (``start [3]``) so ``render_trace`` matches ``target [1, H, W, 3]``.

    Returns ``(position [3], losses list, images [first, last])``.
    """
    accel = prepare_trace(shapes)
    pos = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([pos], lr=config.lr)
    losses, first, last = [], None, None
    it = range(config.iterations)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="shadow fit", unit="it")
    for i in it:
        opt.zero_grad()
        st = TraceSettings(spp=config.spp, seed=config.seed + i)
        img = render_trace(shapes, camera, [PointLight(pos, intensity=12.0)], st, accel=accel).image
        loss = ((img - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if first is None:
            first = img.detach()
        last = img.detach()
        if progress:
            it.set_postfix(loss=f"{losses[-1]:.2e}")
    return pos.detach(), losses, [first, last]


def run_shadow_demo(out_dir, config: ShadowConfig = ShadowConfig(), progress: bool = False) -> dict:
    """Fit a light to a target shadow; write ``images.png`` (target | start | fitted | |diff|), ``loss.png``, ``metrics.json``."""
    from lumigrad.report.images import image_grid, save_image
    from lumigrad.report.metrics import save_metrics
    from lumigrad.report.plots import save_loss_curve

    out = Path(out_dir)
    t0 = time.perf_counter()
    shapes, cam = _scene(config.resolution)
    true_pos = torch.tensor([1.2, 2.5, 0.8])
    start = torch.tensor([-0.6, 2.0, 1.2])
    with torch.no_grad():
        target = render_trace(shapes, cam, [PointLight(true_pos, intensity=12.0)], TraceSettings(spp=16, boundary="none")).image
    pos, losses, (first, last) = fit_light_to_shadow(shapes, cam, target, start, config, progress)
    grid = image_grid([[target[0].clamp(0, 1), first[0].clamp(0, 1), last[0].clamp(0, 1),
                        (last[0] - target[0]).abs().clamp(0, 1)]], labels=["target", "start", "fitted", "|diff|"])
    save_image(out / "images.png", grid)
    save_loss_curve(out / "loss.png", losses, title="shadow fit: image MSE")
    metrics = {
        "config": asdict(config),
        "true_light": true_pos.tolist(),
        "start_light": start.tolist(),
        "fitted_light": pos.tolist(),
        "start_error": float((start - true_pos).norm()),
        "final_error": float((pos - true_pos).norm()),
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "iterations": config.iterations,
        "seconds": time.perf_counter() - t0,
    }
    save_metrics(out / "metrics.json", metrics)
    return metrics


def render_scene_file(path, out_dir, spp: int | None = None) -> dict:
    """Render a JSON scene (:mod:`lumigrad.scene.scene_file`) to ``out_dir/image.png`` and ``metrics.json``."""
    from lumigrad.report.images import save_image
    from lumigrad.report.metrics import save_metrics

    scene: TraceScene = load_scene(path)
    settings = scene.settings if spp is None else TraceSettings(**{**asdict(scene.settings), "spp": spp})
    t0 = time.perf_counter()
    with torch.no_grad():
        out = render_trace(scene.shapes, scene.camera, scene.lights, settings)
    seconds = time.perf_counter() - t0
    out_dir = Path(out_dir)
    save_image(out_dir / "image.png", out.image[0].clamp(0, 1))
    metrics = {"scene": str(path), "width": scene.camera.width, "height": scene.camera.height, "spp": settings.spp,
               "max_bounces": settings.max_bounces, "seconds": seconds, "mean_radiance": float(out.image.mean())}
    save_metrics(out_dir / "metrics.json", metrics)
    return metrics
