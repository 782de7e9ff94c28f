"""`lumigrad fit garment`: deform a template garment to match target silhouettes of a dressed body.

The garment's vertices move freely; a Laplacian deformation energy
``|L(v) - L(v_template)|^2`` (uniform weights) keeps the template's local shape
(a linearised as-rigid-as-possible prior), and a penalty
``relu(depth + margin)^2`` on each vertex's penetration depth into the body
keeps the cloth outside it. The built-in example is procedural: an ellipsoid
torso, a loose cylindrical template and a fitted, flared target garment whose
silhouettes are rendered from orbit cameras (a dataset's masks can replace them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lumigrad.losses.mesh import mesh_laplacian, mesh_topology
from lumigrad.ops import prepare_topology
from lumigrad.optim import Convergence, LossTerms, fit
from lumigrad.render.raster import RasterSettings, render_silhouette
from lumigrad.render.scene import render_scene
from lumigrad.scene.io import write_mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.rigs import orbit_cameras, turntable_cameras
from lumigrad.scene.scene import Scene, SceneObject
from lumigrad.tasks._common import as_dataset, shape_metrics, silhouette_iou
from lumigrad.tasks._procedural import body_and_garment, ellipsoid_inside
from lumigrad.tasks._runner import TaskOutput

__all__ = ["GarmentConfig", "GarmentResult", "fit_garment", "run_garment"]


@dataclass
class GarmentConfig:
    """Settings of :func:`fit_garment`."""

    iterations: int = field(default=300, metadata={"help": "optimisation steps"})
    lr: float = field(default=0.004, metadata={"help": "learning rate (Adam on vertex positions)"})
    views: int = field(default=12, metadata={"help": "target views of the built-in example"})
    resolution: int = field(default=96, metadata={"help": "target image size of the built-in example"})
    views_per_step: int = field(default=6, metadata={"help": "random views per step"})
    laplacian_weight: float = field(default=20.0, metadata={"help": "weight of the Laplacian deformation energy"})
    penetration_weight: float = field(default=1000.0, metadata={"help": "weight of the body-penetration penalty"})
    margin: float = field(default=0.005, metadata={"help": "clearance kept from the body surface (world units)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class GarmentResult:
    garment: Mesh
    body: Mesh
    template: Mesh
    metrics: dict
    history: object
    cameras: object
    targets: torch.Tensor


def fit_garment(data=None, config: GarmentConfig = GarmentConfig(), progress: bool = False) -> GarmentResult:
    """Fit the template garment to target silhouettes (built-in procedural example, or a dataset's masks)."""
    fn = "fit garment"
    body, template, target = body_and_garment()
    if data is None:
        cams = orbit_cameras(config.views, config.resolution, distance=2.6, fov_y_deg=40.0)
        with torch.no_grad():
            targets = render_silhouette(target.verts, target.faces, cams)
    else:
        ds = as_dataset(data)
        if ds.masks is None:
            raise ValueError(f"{fn}: {ds.root} has no masks; the garment is fitted to silhouettes")
        cams, targets, target = ds.camera, ds.masks, None
    v0 = template.verts
    faces = template.faces
    topo_aa = prepare_topology(faces, template.num_verts)
    topo_l = mesh_topology(faces, template.num_verts)
    lap0 = mesh_laplacian(v0, None, topology=topo_l)
    verts = v0.clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(config.seed)
    n = cams.batch_size

    def closure(it):
        idx = torch.randperm(n, generator=gen)[: config.views_per_step]
        alpha = render_silhouette(verts, faces, cams[idx], RasterSettings(), topology=topo_aa)
        sil = (alpha - targets[idx]).abs().mean()
        lap = ((mesh_laplacian(verts, None, topology=topo_l) - lap0) ** 2).sum(-1).mean()
        pen = torch.relu(ellipsoid_inside(verts) + config.margin).pow(2).mean()
        total = sil + config.laplacian_weight * lap + config.penetration_weight * pen
        return LossTerms(total, {"silhouette": sil, "laplacian": lap, "penetration": pen})

    res = fit({"verts": verts}, closure, lr=config.lr, schedule="cosine", stop=Convergence(max_iters=config.iterations, patience=None),
              progress=progress, desc="fit garment")
    garment = Mesh(verts.detach().clone(), faces)
    with torch.no_grad():
        a = render_silhouette(garment.verts, faces, cams)
        a0 = render_silhouette(v0, faces, cams)
    depth = ellipsoid_inside(garment.verts)
    metrics = {"initial_loss": res.history.loss[0], "final_loss": res.history.loss[-1], "iterations": res.iterations,
               "fit_seconds": res.seconds, "silhouette_iou": silhouette_iou(a, targets),
               "initial_silhouette_iou": silhouette_iou(a0, targets), "verts_inside_body": int((depth > 0).sum()),
               "max_penetration_depth": float(depth.max().clamp_min(0)), "views": n}
    if target is not None:
        metrics.update({f"target_{k}": v for k, v in shape_metrics(garment, target).items()})
    return GarmentResult(garment, body, template, metrics, res.history, cams, targets)


def run_garment(data, out_dir, config: GarmentConfig = GarmentConfig(), progress: bool = False) -> dict:
    """:func:`fit_garment`, then write ``garment.obj``, ``body.obj``, pictures, metrics and ``report.html``."""
    out = TaskOutput(out_dir, "fit garment")
    r = fit_garment(data, config, progress)
    for name, m in (("garment.obj", r.garment), ("body.obj", r.body), ("template.obj", r.template)):
        write_mesh(out.path(name), m)
        out.file(out.path(name))
    with torch.no_grad():
        idx = list(range(min(4, r.cameras.batch_size)))
        a = render_silhouette(r.garment.verts, r.garment.faces, r.cameras[idx])
        a0 = render_silhouette(r.template.verts, r.template.faces, r.cameras[idx])
    rows = [[r.targets[i], a0[i], a[i], (r.targets[i] - a[i]).abs()] for i in idx]
    out.grid(rows, ["target", "template", "result", "|diff|"])
    out.loss_curve(r.history, "fit garment loss")
    dt = r.garment.dtype
    lights = [AmbientLight(torch.full((3,), 0.3, dtype=dt)), DirectionalLight(torch.tensor([0.4, 0.8, 0.45], dtype=dt))]
    scene = Scene([SceneObject(r.body, LambertMaterial(torch.tensor([0.85, 0.7, 0.6], dtype=dt))),
                   SceneObject(r.garment, LambertMaterial(torch.tensor([0.2, 0.4, 0.8], dtype=dt)))], lights)
    with torch.no_grad():
        frames = render_scene(scene, turntable_cameras(16, 96, distance=2.6), RasterSettings(background=(1.0, 1.0, 1.0))).image
    out.turntable(frames, caption="turntable: body and fitted garment")
    return out.finish(r.metrics, config, "Fitted a template garment to target silhouettes without entering the body.")
