"""`lumigrad fit lighting`: lights from images of known geometry and material.

Two models: ``"directional"`` (ambient + N directional lights: directions and
RGB colours) and ``"sh"`` (an order-2 spherical-harmonics environment, 9 x 3
coefficients). With ground truth, the direction error of each light (matched
to the nearest true light) and the relative SH coefficient error are reported.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.scene.lights import AmbientLight, DirectionalLight, SHEnvironmentLight
from lumigrad.tasks._appearance import setup_problem
from lumigrad.tasks._common import gt_lights, gt_material, turntable_frames
from lumigrad.tasks._runner import TaskOutput
from lumigrad.tasks._scenefile import lights_to_json

__all__ = ["LightingConfig", "LightingResult", "fit_lighting", "run_lighting"]


@dataclass
class LightingConfig:
    """Settings of :func:`fit_lighting`."""

    model: str = field(default="directional", metadata={"help": "'directional' (ambient + N lights) or 'sh' (order 2)"})
    num_lights: int = field(default=0, metadata={"help": "directional lights to fit (0: as many as the ground truth, else 1)"})
    iterations: int = field(default=300, metadata={"help": "optimisation steps"})
    lr: float = field(default=0.03, metadata={"help": "learning rate (Adam)"})
    views_per_step: int = field(default=6, metadata={"help": "random views per step"})
    downscale: int = field(default=1, metadata={"help": "integer image downscale factor"})
    max_views: int = field(default=0, metadata={"help": "use at most this many views (0: all)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class LightingResult:
    lights: list
    metrics: dict
    history: object
    problem: object


def _fib_dirs(n: int, dtype) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n) * 0.5  # upper hemisphere
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack([torch.sin(phi) * torch.cos(theta), torch.cos(phi), torch.sin(phi) * torch.sin(theta)], -1).to(dtype)


def fit_lighting(data, mesh=None, config: LightingConfig = LightingConfig(), progress: bool = False) -> LightingResult:
    """Fit lights to the dataset's images of a known mesh with a known material."""
    fn = "fit lighting"
    if config.model not in ("directional", "sh"):
        raise ValueError(f"{fn}: model must be 'directional' or 'sh', got {config.model!r}")
    prob = setup_problem(fn, data, mesh, max_views=config.max_views, scale=config.downscale, holdout_every=0)
    dtype = prob.ds.images.dtype
    material = gt_material(prob.ds, dtype)
    if material is None:
        raise ValueError(f"{fn}: the material must be known: {prob.ds.root} has no ground_truth.json with a material")
    gt = gt_lights(prob.ds, dtype)
    gt_dirs = [l for l in (gt or []) if isinstance(l, DirectionalLight)]
    if config.model == "directional":
        n = config.num_lights or max(1, len(gt_dirs))
        params = {"to_light": _fib_dirs(n, dtype).requires_grad_(True),
                  "color": torch.full((n, 3), 0.5, dtype=dtype, requires_grad=True),
                  "ambient": torch.full((3,), 0.1, dtype=dtype, requires_grad=True)}

        def make():
            ls = [AmbientLight(params["ambient"])]
            ls += [DirectionalLight(params["to_light"][i], color=params["color"][i]) for i in range(n)]
            return material, ls

        def clamp(it):
            params["color"].clamp_(min=0.0)
            params["ambient"].clamp_(min=0.0)
            params["to_light"].copy_(torch.nn.functional.normalize(params["to_light"], dim=-1))
    else:
        c0 = torch.zeros(9, 3, dtype=dtype)
        c0[0] = 0.5
        params = {"sh": c0.requires_grad_(True)}

        def make():
            return material, [SHEnvironmentLight(params["sh"])]

        clamp = None
    res = prob.fit(params, make, iterations=config.iterations, lr=config.lr, views_per_step=config.views_per_step,
                   seed=config.seed, progress=progress, desc="fit lighting", post_step=clamp)
    with torch.no_grad():
        _, lights = make()
        lights = [type(l)(**{k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in vars(l).items()})
                  for l in lights]
    metrics = {"initial_loss": res.history.loss[0], "final_loss": res.history.loss[-1], "iterations": res.iterations,
               "fit_seconds": res.seconds, "model": config.model}
    if config.model == "directional" and gt_dirs:
        fit_dirs = torch.nn.functional.normalize(torch.stack([l.to_light for l in lights[1:]]), dim=-1)
        errs = []
        for g in gt_dirs:
            gd = torch.nn.functional.normalize(g.to_light, dim=0)
            cos = (fit_dirs @ gd).clamp(-1, 1)
            errs.append(math.degrees(math.acos(float(cos.max()))))
        metrics["direction_error_deg"] = errs
        metrics["direction_error_deg_max"] = max(errs)
        gamb = [l for l in gt if isinstance(l, AmbientLight)]
        if gamb:
            metrics["ambient_error_max"] = float((lights[0].color - gamb[0].color).abs().max())
    if config.model == "sh":
        gsh = [l for l in (gt or []) if isinstance(l, SHEnvironmentLight)]
        if gsh:
            c, cg = lights[0].coeffs, gsh[0].coeffs[:9]
            metrics["sh_relative_error"] = float((c - cg).norm() / cg.norm())
            metrics["sh_relative_error_l1"] = float((c[:4] - cg[:4]).norm() / cg[:4].norm())
    return LightingResult(lights, metrics, res.history, prob)


def run_lighting(data, out_dir, config: LightingConfig = LightingConfig(), progress: bool = False, mesh=None) -> dict:
    """:func:`fit_lighting`, then write ``lights.json``, pictures, metrics and ``report.html``."""
    out = TaskOutput(out_dir, "fit lighting")
    r = fit_lighting(data, mesh, config, progress)
    prob = r.problem
    write_text_atomic(out.path("lights.json"), json.dumps(lights_to_json(r.lights), indent=2))
    out.file(out.path("lights.json"))
    material = gt_material(prob.ds, prob.ds.images.dtype)
    with torch.no_grad():
        idx = list(range(min(4, len(prob.ds))))
        got = prob.render(prob.ds.subset(idx), material, r.lights).image
    out.grid([[prob.ds.images[i], got[i], (prob.ds.images[i] - got[i]).abs() * 4] for i in idx], ["target", "result", "|diff| x4"])
    out.loss_curve(r.history, "fit lighting loss")
    out.turntable(turntable_frames([prob.mesh], [material], r.lights, n=16, resolution=80, transforms=[prob.transform]),
                  caption="turntable under the fitted lights")
    return out.finish(r.metrics, config, f"Fitted {config.model} lighting.")
