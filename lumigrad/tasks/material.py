"""`lumigrad fit material`: constant GGX parameters (base colour, roughness, metallic) under known lights.

Parameters are clamped after each step to the range where the BRDF depends on
them (roughness [0.03, 1], metallic and base colour [0, 1]), so a clamp never
leaves a parameter stuck with a zero gradient.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.scene.materials import GGXMaterial
from lumigrad.tasks._appearance import setup_problem
from lumigrad.tasks._common import gt_lights, gt_material, turntable_frames
from lumigrad.tasks._runner import TaskOutput

__all__ = ["MaterialConfig", "MaterialResult", "fit_material", "run_material"]


@dataclass
class MaterialConfig:
    """Settings of :func:`fit_material`."""

    iterations: int = field(default=300, metadata={"help": "optimisation steps"})
    lr: float = field(default=0.02, metadata={"help": "learning rate (Adam)"})
    init_roughness: float = field(default=0.6, metadata={"help": "initial roughness"})
    init_metallic: float = field(default=0.3, metadata={"help": "initial metallic"})
    views_per_step: int = field(default=4, metadata={"help": "random views per step"})
    holdout_every: int = field(default=0, metadata={"help": "hold out every k-th view (0: none)"})
    downscale: int = field(default=1, metadata={"help": "integer image downscale factor"})
    max_views: int = field(default=0, metadata={"help": "use at most this many views (0: all)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class MaterialResult:
    material: GGXMaterial
    metrics: dict
    history: object
    problem: object


def fit_material(data, mesh=None, config: MaterialConfig = MaterialConfig(), progress: bool = False) -> MaterialResult:
    """Fit a constant GGX material of a known mesh under the dataset's known lights."""
    fn = "fit material"
    prob = setup_problem(fn, data, mesh, max_views=config.max_views, scale=config.downscale, holdout_every=config.holdout_every)
    dtype = prob.ds.images.dtype
    lights = gt_lights(prob.ds, dtype)
    if lights is None:
        raise ValueError(f"{fn}: the lights must be known: {prob.ds.root} has no ground_truth.json with lights")
    params = {
        "base_color": torch.full((3,), 0.5, dtype=dtype, requires_grad=True),
        "roughness": torch.tensor([config.init_roughness], dtype=dtype, requires_grad=True),
        "metallic": torch.tensor([config.init_metallic], dtype=dtype, requires_grad=True),
    }

    def make():
        return GGXMaterial(params["base_color"], params["roughness"], params["metallic"]), lights

    def clamp(it):
        params["base_color"].clamp_(0.0, 1.0)
        params["roughness"].clamp_(0.03, 1.0)
        params["metallic"].clamp_(0.0, 1.0)

    res = prob.fit(params, make, iterations=config.iterations, lr=config.lr, views_per_step=config.views_per_step,
                   seed=config.seed, progress=progress, desc="fit material", post_step=clamp)
    mat = GGXMaterial(*(params[k].detach().clone() for k in ("base_color", "roughness", "metallic")))
    metrics = {"initial_loss": res.history.loss[0], "final_loss": res.history.loss[-1], "iterations": res.iterations,
               "fit_seconds": res.seconds, "base_color": mat.base_color.tolist(), "roughness": float(mat.roughness),
               "metallic": float(mat.metallic)}
    gm = gt_material(prob.ds, dtype)
    if isinstance(gm, GGXMaterial):
        metrics["roughness_error"] = abs(float(mat.roughness) - float(gm.roughness))
        metrics["metallic_error"] = abs(float(mat.metallic) - float(gm.metallic))
        metrics["base_color_error_max"] = float((mat.base_color - gm.base_color).abs().max())
    return MaterialResult(mat, metrics, res.history, prob)


def run_material(data, out_dir, config: MaterialConfig = MaterialConfig(), progress: bool = False, mesh=None) -> dict:
    """:func:`fit_material`, then write ``material.json``, pictures, metrics and ``report.html``."""
    out = TaskOutput(out_dir, "fit material")
    r = fit_material(data, mesh, config, progress)
    prob = r.problem
    m = r.material
    write_text_atomic(out.path("material.json"), json.dumps({"type": "ggx", "base_color": m.base_color.tolist(),
                                                              "roughness": float(m.roughness), "metallic": float(m.metallic)}, indent=2))
    out.file(out.path("material.json"))
    lights = gt_lights(prob.ds, m.base_color.dtype)
    with torch.no_grad():
        idx = list(range(min(4, len(prob.ds))))
        got = prob.render(prob.ds.subset(idx), m, lights).image
    out.grid([[prob.ds.images[i], got[i], (prob.ds.images[i] - got[i]).abs() * 4] for i in idx], ["target", "result", "|diff| x4"])
    out.loss_curve(r.history, "fit material loss")
    out.turntable(turntable_frames([prob.mesh], [m], lights, n=16, resolution=80, transforms=[prob.transform]))
    return out.finish(r.metrics, config, "Fitted constant GGX parameters under known lights.")
