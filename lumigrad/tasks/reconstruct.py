"""Multi-view mesh reconstruction from rendered views (the `lumigrad demo` task).

The shape is optimised in the large-steps parameterization (Nicolet et al. 2021)
with coarse-to-fine isotropic remeshing, against shaded images and silhouettes
rendered with analytic edge antialiasing, so silhouette gradients move vertices.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import torch

from lumigrad.geometry import chamfer_distance, icosphere
from lumigrad.ops import prepare_topology
from lumigrad.optim import CheckpointConfig, CholeskySolver, Convergence, FitState, compute_matrix, fit, from_differential, to_differential
from lumigrad.optim.remesh import remesh
from lumigrad.render.raster import RasterSettings, render_mesh
from lumigrad.report import image_grid, save_image, save_loss_curve, save_metrics, save_turntable_gif
from lumigrad.scene.camera import Camera
from lumigrad.scene.io import read_mesh, write_mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.rigs import orbit_cameras, turntable_cameras

__all__ = ["ReconstructConfig", "ReconstructResult", "reconstruct", "spot_mesh", "orbit_cameras", "run_demo"]

log = logging.getLogger(__name__)


@dataclass
class ReconstructConfig:
    """Settings of :func:`reconstruct` (defaults are the demo's)."""

    views_per_step: int = 8  # random subset of views per iteration
    iterations: int = 400
    lr: float = 3e-2
    lambda_: float = 19.0  # large-steps smoothing weight
    init_subdivisions: int = 3  # icosphere: 642 vertices
    init_radius: float = 0.6
    remesh_at: tuple[int, ...] = (120, 240)
    remesh_factor: float = 0.6  # new target edge length / current mean edge length
    silhouette_weight: float = 1.0
    seed: int = 0


@dataclass
class ReconstructResult:
    verts: torch.Tensor
    faces: torch.Tensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def spot_mesh(dtype=torch.float32) -> Mesh:
    """Keenan Crane's Spot (public domain), shipped in the package, centred and scaled to unit radius."""
    with resources.as_file(resources.files("lumigrad.assets") / "spot.obj") as path:
        mesh = read_mesh(path)
    verts = mesh.verts.to(dtype)
    lo, hi = verts.min(0).values, verts.max(0).values
    verts = verts - (lo + hi) / 2
    verts = verts / verts.norm(dim=-1).max()
    return Mesh(verts=verts, faces=mesh.faces)


def _scene(dtype):
    lights = [
        AmbientLight(color=torch.tensor([0.25, 0.25, 0.25], dtype=dtype)),
        DirectionalLight(to_light=torch.tensor([0.4, 0.8, 0.45], dtype=dtype), color=torch.tensor([0.8, 0.8, 0.8], dtype=dtype), intensity=torch.tensor(1.0, dtype=dtype)),
        DirectionalLight(to_light=torch.tensor([-0.6, -0.2, -0.7], dtype=dtype), color=torch.tensor([0.4, 0.4, 0.45], dtype=dtype), intensity=torch.tensor(1.0, dtype=dtype)),
    ]
    material = LambertMaterial(albedo=torch.tensor([0.9, 0.9, 0.9], dtype=dtype))
    return material, lights


def _rgba(mesh: Mesh, cams: Camera, material, lights, verts=None, topology=None) -> torch.Tensor:
    out = render_mesh(mesh, cams, material, lights, RasterSettings(visibility="antialias"), verts=verts, topology=topology)
    return torch.cat([out.image, out.alpha], dim=-1)


def reconstruct(
    targets: torch.Tensor,  # [N, H, W, 4] rgba target views
    cameras: Camera,  # N views
    config: ReconstructConfig = ReconstructConfig(),
    progress: bool = False,
    checkpoint: CheckpointConfig | None = None,
) -> ReconstructResult:
    """Fit a closed mesh, starting from a sphere, to shaded multi-view targets.

    Runs :func:`lumigrad.optim.fit` over the large-steps coordinates ``u``;
    remeshing swaps in new parameters through ``FitState.replace_params``.
    """
    dtype = targets.dtype
    gen = torch.Generator().manual_seed(config.seed)
    material, lights = _scene(dtype)
    verts, faces = icosphere(config.init_subdivisions, radius=config.init_radius, dtype=dtype)
    n_views = targets.shape[0]
    weight = torch.tensor([1.0, 1.0, 1.0, config.silhouette_weight], dtype=dtype)
    shape: dict = {}  # current topology and its large-steps system, read by the closure

    def parameterize(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        M = compute_matrix(v, f, lambda_=config.lambda_)
        shape.update(faces=f, M=M, solver=CholeskySolver(M), topology=prepare_topology(f, v.shape[0]))
        return to_differential(M, v).detach().requires_grad_(True)

    def current_verts(u: torch.Tensor) -> torch.Tensor:
        return from_differential(shape["M"], u, shape["solver"])

    params = {"u": parameterize(verts, faces)}

    def closure(it: int) -> torch.Tensor:
        views = torch.randperm(n_views, generator=gen)[: config.views_per_step]
        v = current_verts(params["u"])
        mesh = Mesh(verts=v.detach(), faces=shape["faces"])
        rgba = _rgba(mesh, cameras[views], material, lights, verts=v, topology=shape["topology"])
        return ((rgba - targets[views]).abs() * weight).mean()

    def remesh_callback(state: FitState) -> None:
        if state.iteration + 1 in config.remesh_at:
            v = current_verts(params["u"].detach())
            edge = _mean_edge_length(v, shape["faces"])
            v, f = remesh(v, shape["faces"], target_edge_length=edge * config.remesh_factor)
            state.replace_params({"u": parameterize(v, f)})

    result = fit(
        params,
        closure,
        optimizer="adam_uniform",
        lr=config.lr,
        stop=Convergence(max_iters=config.iterations, patience=None),
        callbacks=[remesh_callback],
        checkpoint=checkpoint,
        progress=progress,
        desc="reconstruct",
    )
    final = current_verts(params["u"].detach())
    return ReconstructResult(verts=final, faces=shape["faces"], losses=list(result.history.loss), seconds=result.seconds)


def _mean_edge_length(verts: torch.Tensor, faces: torch.Tensor) -> float:
    f = faces.long()
    e = torch.cat([verts[f[:, 0]] - verts[f[:, 1]], verts[f[:, 1]] - verts[f[:, 2]], verts[f[:, 2]] - verts[f[:, 0]]])
    return float(e.norm(dim=-1).mean())


def run_demo(out_dir: str | Path = "out/demo", views: int = 16, resolution: int = 128, config: ReconstructConfig | None = None, progress: bool = True) -> dict:
    """Reconstruct Spot from ``views`` synthetic views; write results to ``out_dir``; return metrics."""
    config = config or ReconstructConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    gt = spot_mesh()
    cams = orbit_cameras(views, resolution)
    material, lights = _scene(gt.verts.dtype)
    with torch.no_grad():
        targets = _rgba(gt, cams, material, lights)
    result = reconstruct(targets, cams, config, progress=progress)
    fitted = Mesh(verts=result.verts.detach(), faces=result.faces)

    gen = torch.Generator().manual_seed(1)
    pts_fit = fitted.sample_points(20000, generator=gen)
    pts_gt = gt.sample_points(20000, generator=gen)
    chamfer = float(chamfer_distance(pts_fit, pts_gt)) / float(gt.diagonal())

    write_mesh(out / "fitted.obj", fitted)
    with torch.no_grad():
        fit_imgs = _rgba(fitted, cams, material, lights)
        show = list(range(0, views, max(1, views // 4)))[:4]
        rows = [[targets[i, ..., :3], fit_imgs[i, ..., :3], (targets[i, ..., :3] - fit_imgs[i, ..., :3]).abs() * 4] for i in show]
        save_image(out / "target_vs_fitted.png", image_grid(rows))
        turn = orbit_turntable(36, resolution)
        frames_gt = _rgba(gt, turn, material, lights)[..., :3]
        frames_fit = _rgba(fitted, turn, material, lights)[..., :3]
        save_turntable_gif(out / "turntable.gif", torch.cat([frames_gt, frames_fit], dim=2))
    save_loss_curve(out / "loss.png", {"loss": result.losses}, title="reconstruction loss (L1 rgba)")
    metrics = {
        "initial_loss": result.losses[0],
        "final_loss": result.losses[-1],
        "chamfer_over_diagonal": chamfer,
        "iterations": len(result.losses),
        "fit_seconds": result.seconds,
        "seconds": time.perf_counter() - t0,
        "views": views,
        "resolution": resolution,
        "fitted_vertices": int(fitted.verts.shape[0]),
        "fitted_faces": int(fitted.faces.shape[0]),
        "config": asdict(config),
    }
    save_metrics(out / "metrics.json", metrics)
    return metrics


def orbit_turntable(n: int, resolution: int, distance: float = 3.0, elevation_deg: float = 20.0) -> Camera:
    """``n`` cameras circling the origin at a fixed elevation (see :func:`lumigrad.scene.rigs.turntable_cameras`)."""
    return turntable_cameras(n, resolution, distance=distance, elevation_deg=elevation_deg)
