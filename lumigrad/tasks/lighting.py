"""`lumigrad fit lighting`: lights from images of known geometry and material.

Models: ``"directional"`` (ambient + N directional lights: directions and RGB
colours), ``"point"`` (ambient + N point lights: positions and RGB intensities)
``"sh"`` (an order-2 spherical-harmonics environment, 9 x 3 coefficients) and
``"envmap"`` (a low-resolution equirectangular radiance map, one directional
light per texel, with a total-variation prior; diffuse shading only sees its
low frequencies, so its SH order-2 projection is what is compared with a
ground truth).
Directional and point lights start from a global least-squares search over
candidate directions / positions (:mod:`lumigrad.tasks._light_search`), so the
gradient refinement starts near the global minimum wherever the true lights
are. With ground truth, the direction error of each light (matched to the
nearest fitted light), the point-light position error over the object radius
and the relative SH coefficient error are reported.

Goal-driven lighting: with ``region_mask`` (an image; white = the region)
and/or ``region_color`` (an RGB target look), the loss counts only the region
and compares it with that colour (or with the dataset images), so the lights
are designed to give the region the wanted look; ``region_error`` (mean
absolute error in the region) is reported before and after.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight
from lumigrad.shade.lighting import sh_basis
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
                       metadata={"help": "'directional' or 'point' (ambient + N lights), 'sh' (order 2) or 'envmap' (low-res map)"})
    num_lights: int = field(default=0, metadata={"help": "directional/point lights to fit (0: as many as the ground truth, else 1)"})
    envmap_height: int = field(default=8, metadata={"help": "envmap model: equirectangular map height (width = 2x)"})
    envmap_tv_weight: float = field(default=0.01, metadata={"help": "envmap model: total-variation smoothness weight"})
    region_mask: str = field(default="", metadata={
        "help": "goal-driven lighting: image file whose white pixels are the region the loss counts (all views)"})
    region_color: tuple[float, ...] = field(default=(), metadata={
        "help": "goal-driven lighting: RGB target look of the region (default: the dataset images)"})
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


MODELS = ("directional", "point", "sh", "envmap")


def envmap_directions(height: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Texel-centre directions ``[H * 2H, 3]`` and solid angles ``[H * 2H]`` of an equirectangular map.

    Row 0 is the +z pole (the SH polar axis), columns run over the azimuth
    ``atan2(y, x)`` from -pi. The solid angles sum to 4 pi.
    """
    h, w = height, 2 * height
    theta = (torch.arange(h, dtype=torch.float64) + 0.5) * math.pi / h
    phi = (torch.arange(w, dtype=torch.float64) + 0.5) * 2 * math.pi / w - math.pi
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    dirs = torch.stack([torch.sin(t) * torch.cos(p), torch.sin(t) * torch.sin(p), torch.cos(t)], -1).reshape(-1, 3)
    band = 2 * math.pi / w * (torch.cos(theta - 0.5 * math.pi / h) - torch.cos(theta + 0.5 * math.pi / h))
    return dirs.to(dtype), band[:, None].expand(h, w).reshape(-1).to(dtype)


def envmap_lights(envmap: torch.Tensor) -> list:
    """An equirectangular radiance map ``[H, 2H, 3]`` as one directional light per texel (irradiance = radiance x solid angle)."""
    dirs, omega = envmap_directions(envmap.shape[0], envmap.dtype)
    colors = envmap.reshape(-1, 3) * omega[:, None]
    return [DirectionalLight(dirs[i], color=colors[i]) for i in range(dirs.shape[0])]


def envmap_to_sh(envmap: torch.Tensor, order: int = 2) -> torch.Tensor:
    """SH coefficients ``[(order + 1)**2, 3]`` of an equirectangular radiance map (quadrature over its texels)."""
    dirs, omega = envmap_directions(envmap.shape[0], envmap.dtype)
    return (sh_basis(dirs, order) * omega[:, None]).T @ envmap.reshape(-1, 3)


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


def _tv_sphere(env: torch.Tensor) -> torch.Tensor:
    """Total variation of an equirectangular map, wrapping around in azimuth."""
    return (env[1:] - env[:-1]).abs().mean() + (torch.roll(env, 1, dims=1) - env).abs().mean()


def _region(fn: str, prob, config: LightingConfig):
    """Goal-driven lighting: ``(weights [N, H, W, 1], targets [N, H, W, 3])`` for every view, or None."""
    if not config.region_mask and not config.region_color:
        return None
    n, h, w = prob.train.images.shape[:3]
    dtype = prob.train.images.dtype
    if config.region_mask:
        from lumigrad.scene.io import read_image

        try:
            m = read_image(config.region_mask)
        except FileNotFoundError:
            raise FileNotFoundError(f"{fn}: region_mask: no such file: {config.region_mask}") from None
        if tuple(m.shape[:2]) != (h, w):
            raise ValueError(f"{fn}: region_mask {config.region_mask} is {m.shape[1]}x{m.shape[0]}, the images are {w}x{h}")
        weights = (m[..., :3].mean(-1, keepdim=True) > 0.5).to(dtype)[None].expand(n, h, w, 1)
    else:
        weights = torch.ones(n, h, w, 1, dtype=dtype)
    targets = prob.train.images
    if config.region_color:
        if len(config.region_color) != 3:
            raise ValueError(f"{fn}: region_color needs 3 values (RGB), got {len(config.region_color)}")
        targets = torch.tensor(config.region_color, dtype=dtype).expand(n, h, w, 3)
    if float(weights.sum()) == 0:
        raise ValueError(f"{fn}: region_mask {config.region_mask} selects no pixel")
    return weights, targets


@torch.no_grad()
def _region_error(prob, make, region) -> float:
    """Mean absolute colour error inside the region, over all views."""
    weights, targets = region
    material, lights = make()
    img = prob.compare(prob.render(prob.train, material, lights).image)
    return float(((img - targets).abs() * weights).sum() / (3 * weights.sum()))


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
    elif kind == "envmap":
        if config.envmap_height < 2:
            raise ValueError(f"{fn}: envmap_height must be >= 2, got {config.envmap_height}")
        h = config.envmap_height
        params = {"envmap": torch.full((h, 2 * h, 3), 0.3, dtype=dtype, requires_grad=True)}

        def make():
            return material, envmap_lights(params["envmap"])

        def clamp(it):
            params["envmap"].clamp_(min=0.0)
    else:
        c0 = torch.zeros(9, 3, dtype=dtype)
        c0[0] = 0.5
        params = {"sh": c0.requires_grad_(True)}

        def make():
            return material, [SHEnvironmentLight(params["sh"])]

        clamp = None
    extra = None
    if kind == "envmap" and config.envmap_tv_weight > 0:
        extra = lambda: config.envmap_tv_weight * _tv_sphere(params["envmap"])  # noqa: E731
    region = _region(fn, prob, config)
    region_before = _region_error(prob, make, region) if region is not None else None
    res = prob.fit(params, make, iterations=config.iterations, lr=config.lr, views_per_step=config.views_per_step,
                   seed=config.seed, progress=progress, desc="fit lighting", post_step=clamp, schedule="cosine",
                   extra_loss=extra, region=region)
    with torch.no_grad():
        _, lights = make()
        lights = [type(l)(**{k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in vars(l).items()})
                  for l in lights]
    metrics = {"initial_loss": res.history.loss[0], "final_loss": res.history.loss[-1], "iterations": res.iterations,
               "fit_seconds": res.seconds, "model": config.model}
    if search is not None:
        metrics["search_relative_residual"] = search
    if region is not None:
        metrics["region_error_initial"] = region_before
        metrics["region_error"] = _region_error(prob, make, region)
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
    gsh = [l for l in (gt or []) if isinstance(l, SHEnvironmentLight)]
    if kind == "envmap":
        metrics["envmap"] = params["envmap"].detach().tolist()
        if gsh:
            c, cg = envmap_to_sh(params["envmap"].detach()), gsh[0].coeffs[:9]
            metrics["envmap_sh2_relative_error"] = float((c - cg).norm() / cg.norm())
    if config.model == "sh":
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
    if config.model == "envmap":
        env = torch.tensor(r.metrics["envmap"])
        out.image("envmap.png", env / env.max().clamp_min(1e-6), caption="fitted environment map (equirectangular, +z up)")
    material = gt_material(prob.ds, prob.ds.images.dtype)
    with torch.no_grad():
        idx = list(range(min(4, len(prob.ds))))
        got = prob.render(prob.ds.subset(idx), material, r.lights).image
    out.grid([[prob.ds.images[i], got[i], (prob.ds.images[i] - got[i]).abs() * 4] for i in idx], ["target", "result", "|diff| x4"])
    out.loss_curve(r.history, "fit lighting loss")
    out.turntable(turntable_frames([prob.mesh], [material], r.lights, n=16, resolution=80, transforms=[prob.transform]),
                  caption="turntable under the fitted lights")
    return out.finish(r.metrics, config, f"Fitted {config.model} lighting.")
