"""`lumigrad fit lighting`: lights from images of known geometry and material.

Models: ``"directional"`` (ambient + N directional lights: directions and RGB
colours), ``"point"`` (ambient + N point lights: positions and RGB intensities)
and ``"sh"`` (an order-2 spherical-harmonics environment, 9 x 3 coefficients).
Directional and point lights start from a global least-squares search over
candidate directions / positions (:mod:`lumigrad.tasks._light_search`), so the
gradient refinement starts near the global minimum wherever the true lights
are. With ground truth, the direction error of each light (matched to the
nearest fitted light), the point-light position error over the object radius
and the relative SH coefficient error are reported.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight
from lumigrad.tasks._appearance import setup_problem
from lumigrad.tasks._light_search import fibonacci_sphere, gbuffer, point_candidates, search_lights
from lumigrad.tasks._common import gt_lights, gt_material, turntable_frames
from lumigrad.tasks._runner import TaskOutput
from lumigrad.tasks._scenefile import lights_to_json

__all__ = ["LightingConfig", "LightingResult", "fit_lighting", "run_lighting", "MODELS"]

log = logging.getLogger(__name__)


@dataclass
class LightingConfig:
    """Settings of :func:`fit_lighting`."""

    model: str = field(default="directional",
                       metadata={"help": "'directional' or 'point' (ambient + N lights), or 'sh' (order 2)"})
    num_lights: int = field(default=0, metadata={"help": "directional/point lights to fit (0: as many as the ground truth, else 1)"})
    search_candidates: int = field(default=400, metadata={
        "help": "directions (point lights: directions per shell / 2) scored in the coarse search before refinement (0: none)"})
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


MODELS = ("directional", "point", "sh")


def _init_lights(prob, material, kind: str, n: int, config: LightingConfig) -> tuple[dict, float | None]:
    """Starting parameters: the best candidates of a global least-squares search (or spread defaults)."""
    dtype = prob.ds.images.dtype
    verts = prob.mesh.verts if prob.transform is None else prob.transform.apply(prob.mesh.verts)
    center = verts.detach().mean(0).double()
    radius = float((verts.detach().double() - center).norm(dim=-1).max())
    m = max(config.search_candidates, n)
    if kind == "directional":
        cands = fibonacci_sphere(m)
    else:
        cands = point_candidates(center, radius, n_dirs=max(m // 2, n))
    rel = None
    if config.search_candidates > 0:
        gb = gbuffer(prob, material, seed=config.seed)
        sel, colors, amb, rel = search_lights(gb, kind, cands, n, ambient=True)
        pos, col, amb = cands[sel], colors.clamp_min(0.0), amb.clamp_min(0.0)
        log.info("fit lighting: coarse search picked %s (relative residual %.3g)", pos.tolist(), rel)
    else:
        pos = cands[torch.linspace(0, len(cands) - 1, n).round().long()]
        col, amb = torch.full((n, 3), 0.5, dtype=torch.float64), torch.full((3,), 0.1, dtype=torch.float64)
    key = "to_light" if kind == "directional" else "position"
    return {key: pos.to(dtype).requires_grad_(True), "color": col.to(dtype).requires_grad_(True),
            "ambient": amb.to(dtype).requires_grad_(True)}, rel


def fit_lighting(data, mesh=None, config: LightingConfig = LightingConfig(), progress: bool = False) -> LightingResult:
    """Fit lights to the dataset's images of a known mesh with a known material."""
    fn = "fit lighting"
    if config.model not in MODELS:
        raise ValueError(f"{fn}: model must be one of {', '.join(map(repr, MODELS))}, got {config.model!r}")
    prob = setup_problem(fn, data, mesh, max_views=config.max_views, scale=config.downscale, holdout_every=0)
    dtype = prob.ds.images.dtype
    material = gt_material(prob.ds, dtype)
    if material is None:
        raise ValueError(f"{fn}: the material must be known: {prob.ds.root} has no ground_truth.json with a material")
    gt = gt_lights(prob.ds, dtype)
    kind = config.model
    gt_kind = [l for l in (gt or []) if isinstance(l, DirectionalLight if kind == "directional" else PointLight)]
    search = None
    if kind in ("directional", "point"):
        n = config.num_lights or max(1, len(gt_kind))
        params, search = _init_lights(prob, material, kind, n, config)

        def make():
            ls = [AmbientLight(params["ambient"])]
            if kind == "directional":
                ls += [DirectionalLight(params["to_light"][i], color=params["color"][i]) for i in range(n)]
            else:
                ls += [PointLight(params["position"][i], color=params["color"][i]) for i in range(n)]
            return material, ls

        def clamp(it):
            params["color"].clamp_(min=0.0)
            params["ambient"].clamp_(min=0.0)
            if kind == "directional":
                params["to_light"].copy_(torch.nn.functional.normalize(params["to_light"], dim=-1))
    else:
        c0 = torch.zeros(9, 3, dtype=dtype)
        c0[0] = 0.5
        params = {"sh": c0.requires_grad_(True)}

        def make():
            return material, [SHEnvironmentLight(params["sh"])]

        clamp = None
    res = prob.fit(params, make, iterations=config.iterations, lr=config.lr, views_per_step=config.views_per_step,
                   seed=config.seed, progress=progress, desc="fit lighting", post_step=clamp, schedule="cosine")
    with torch.no_grad():
        _, lights = make()
        lights = [type(l)(**{k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in vars(l).items()})
                  for l in lights]
    metrics = {"initial_loss": res.history.loss[0], "final_loss": res.history.loss[-1], "iterations": res.iterations,
               "fit_seconds": res.seconds, "model": config.model}
    if search is not None:
        metrics["search_relative_residual"] = search
    if kind == "directional" and gt_kind:
        fit_dirs = torch.nn.functional.normalize(torch.stack([l.to_light for l in lights[1:]]).double(), dim=-1)
        errs = []
        for g in gt_kind:
            gd = torch.nn.functional.normalize(g.to_light.double(), dim=0).expand_as(fit_dirs)
            # atan2(|a x b|, a.b): accurate for small angles, unlike acos in float32.
            ang = torch.atan2(torch.linalg.cross(fit_dirs, gd).norm(dim=-1), (fit_dirs * gd).sum(-1))
            errs.append(math.degrees(float(ang.min())))
        metrics["direction_error_deg"] = errs
        metrics["direction_error_deg_max"] = max(errs)
    if kind == "point" and gt_kind:
        radius = float(prob.mesh.verts.detach().norm(dim=-1).max())
        fit_pos = torch.stack([l.position for l in lights[1:]])
        errs = [float((fit_pos - g.position).norm(dim=-1).min()) / radius for g in gt_kind]
        metrics["position_error_over_radius"] = errs
        metrics["position_error_over_radius_max"] = max(errs)
    if kind in ("directional", "point") and gt:
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
