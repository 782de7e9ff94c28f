"""`lumigrad fit inverse`: joint shape + appearance + lighting from images (and masks), in stages.

1. **Shape** from the masks (:func:`lumigrad.tasks.shape.fit_shape`, silhouettes only).
2. **Appearance and lighting**: per-vertex albedo (Lambert), an ambient light
   and one directional light are fitted to the images on the fixed shape.
3. **Joint refinement** of vertex positions (small steps, Laplacian-regularised),
   albedo and lights together.

Albedo and light intensity are only known up to a common scale; the directional
light's colour is fixed to white so the albedo carries the scale. The result is
a vertex-coloured mesh (OBJ and GLB), the same mesh with its colours baked into
a per-triangle texture atlas as a textured GLB (:mod:`lumigrad.tasks._bake`,
no UV unwrapping needed), and the lights.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.losses.mesh import mesh_laplacian, mesh_topology
from lumigrad.ops import prepare_topology
from lumigrad.optim import Convergence, LossTerms, fit
from lumigrad.render.raster import RasterSettings, render_mesh
from lumigrad.scene.io import write_mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.mesh import Mesh
from lumigrad.tasks._bake import bake_vertex_colors
from lumigrad.tasks._common import as_dataset, downscale, gt_mesh, gt_pose, psnr, shape_metrics, turntable_frames
from lumigrad.tasks._runner import TaskOutput
from lumigrad.tasks._scenefile import lights_to_json
from lumigrad.tasks.shape import ShapeConfig, fit_shape

__all__ = ["InverseConfig", "InverseResult", "fit_inverse", "run_inverse"]


@dataclass
class InverseConfig:
    """Settings of :func:`fit_inverse`."""

    shape_iterations: int = field(default=300, metadata={"help": "stage 1: silhouette shape steps"})
    appearance_iterations: int = field(default=200, metadata={"help": "stage 2: albedo + lighting steps"})
    joint_iterations: int = field(default=100, metadata={"help": "stage 3: joint refinement steps"})
    lr: float = field(default=0.02, metadata={"help": "learning rate of albedo and lights"})
    lr_verts: float = field(default=0.001, metadata={"help": "learning rate of vertex positions in stage 3"})
    laplacian_weight: float = field(default=10.0, metadata={"help": "stage 3 Laplacian weight"})
    views_per_step: int = field(default=6, metadata={"help": "random views per step"})
    holdout_every: int = field(default=6, metadata={"help": "hold out every k-th view for evaluation (0: none)"})
    downscale: int = field(default=1, metadata={"help": "integer image downscale factor"})
    max_views: int = field(default=0, metadata={"help": "use at most this many views (0: all)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class InverseResult:
    mesh: Mesh  # with vert_colors = albedo
    lights: list
    metrics: dict
    history: dict
    train: object
    held: object


def fit_inverse(data, config: InverseConfig = InverseConfig(), progress: bool = False) -> InverseResult:
    """Recover shape, per-vertex albedo and lighting from a dataset with masks."""
    fn = "fit inverse"
    ds = downscale(as_dataset(data, config.max_views or None), config.downscale)
    if ds.masks is None:
        raise ValueError(f"{fn}: {ds.root} has no masks; the shape stage needs them")
    shape = fit_shape(ds, ShapeConfig(iterations=config.shape_iterations, use_shading=False, holdout_every=config.holdout_every,
                                      seed=config.seed), progress)
    train, held = shape.train, shape.held
    dtype = ds.images.dtype
    faces = shape.mesh.faces
    v0 = shape.mesh.verts
    topo = prepare_topology(faces, shape.mesh.num_verts)
    ltopo = mesh_topology(faces, shape.mesh.num_verts)
    params = {"albedo": torch.full((v0.shape[0], 3), 0.5, dtype=dtype, requires_grad=True),
              "ambient": torch.full((3,), 0.2, dtype=dtype, requires_grad=True),
              "to_light": torch.tensor([0.0, 1.0, 0.3], dtype=dtype, requires_grad=True)}
    gen = torch.Generator().manual_seed(config.seed)
    n = len(train)

    def lights():
        return [AmbientLight(params["ambient"]), DirectionalLight(params["to_light"], color=torch.ones(3, dtype=dtype))]

    def closure_for(verts_fn):
        def closure(it):
            idx = torch.randperm(n, generator=gen)[: config.views_per_step]
            verts = verts_fn()
            # vertex colours enter through the Mesh; rebuild it with the live albedo tensor
            m = Mesh(verts.detach(), faces, vert_colors=params["albedo"])
            out = render_mesh(m, train.camera[idx], LambertMaterial(1.0), lights(), RasterSettings(), verts=verts, topology=topo)
            img = (out.image - train.images[idx]).abs().mean()
            sil = (out.alpha - train.masks[idx]).abs().mean()
            lap = ((mesh_laplacian(verts, None, topology=ltopo) - lap0) ** 2).sum(-1).mean()
            return LossTerms(img + sil + config.laplacian_weight * lap, {"image": img, "silhouette": sil})
        return closure

    lap0 = mesh_laplacian(v0, None, topology=ltopo)

    def clamp(it):
        params["albedo"].clamp_(0.0, 1.0)
        params["ambient"].clamp_(min=0.0)

    h2 = fit(params, closure_for(lambda: v0), lr=config.lr, stop=Convergence(max_iters=config.appearance_iterations, patience=None),
             post_step=clamp, progress=progress, desc="inverse: appearance")
    verts = v0.clone().requires_grad_(True)
    p3 = dict(params, verts=verts)
    lrs = {k: config.lr for k in params} | {"verts": config.lr_verts}

    h3 = fit(p3, closure_for(lambda: p3["verts"]), lr=lrs, stop=Convergence(max_iters=config.joint_iterations, patience=None),
             post_step=clamp, progress=progress, desc="inverse: joint")
    final = Mesh(p3["verts"].detach().clone(), faces, vert_colors=params["albedo"].detach().clone())
    fitted_lights = [AmbientLight(params["ambient"].detach().clone()),
                     DirectionalLight(params["to_light"].detach().clone(), color=torch.ones(3, dtype=dtype))]
    metrics = {"shape_stage": {k: v for k, v in shape.metrics.items() if not isinstance(v, list)},
               "appearance_final_loss": h2.history.loss[-1], "joint_final_loss": h3.history.loss[-1],
               "views": len(train)}
    gm = gt_mesh(ds, dtype)
    if gm is not None:
        pose = gt_pose(ds, dtype)
        metrics.update(shape_metrics(final, Mesh(pose.apply(gm.verts) if pose is not None else gm.verts, gm.faces)))
    with torch.no_grad():
        for label, s in (("train", train), ("heldout", held)):
            if s is None:
                continue
            out = render_mesh(final, s.camera, LambertMaterial(1.0), fitted_lights, RasterSettings(), topology=topo)
            metrics[f"{label}_psnr_db"] = psnr(out.image, s.images)
    history = {"shape": shape.history.loss, "appearance": h2.history.loss, "joint": h3.history.loss,
               "appearance_image": h2.history.terms["image"]}
    return InverseResult(final, fitted_lights, metrics, history, train, held)


def run_inverse(data, out_dir, config: InverseConfig = InverseConfig(), progress: bool = False) -> dict:
    """:func:`fit_inverse`, then write ``fitted.obj``/``.glb`` (vertex colours), ``fitted_textured.glb`` (baked
    texture), ``lights.json``, pictures, report."""
    out = TaskOutput(out_dir, "fit inverse")
    r = fit_inverse(data, config, progress)
    write_mesh(out.path("fitted.obj"), r.mesh)
    write_mesh(out.path("fitted.glb"), r.mesh)
    write_mesh(out.path("fitted_textured.glb"), bake_vertex_colors(r.mesh))
    write_text_atomic(out.path("lights.json"), json.dumps(lights_to_json(r.lights), indent=2))
    for n_ in ("fitted.obj", "fitted.glb", "fitted_textured.glb", "lights.json"):
        out.file(out.path(n_))
    views = r.held if r.held is not None else r.train
    with torch.no_grad():
        idx = list(range(min(4, len(views))))
        got = render_mesh(r.mesh, views.camera[torch.tensor(idx)], LambertMaterial(1.0), r.lights, RasterSettings()).image
    out.grid([[views.images[i], got[i], (views.images[i] - got[i]).abs() * 4] for i in idx],
             ["target" + (" (held out)" if r.held is not None else ""), "result", "|diff| x4"])
    out.loss_curve({f"{k} loss": r.history[k] for k in ("shape", "appearance", "joint")}, "fit inverse loss (per stage)")
    out.turntable(turntable_frames([r.mesh], [LambertMaterial(1.0)], r.lights, n=16, resolution=80))
    return out.finish(r.metrics, config, "Recovered shape, per-vertex albedo and lighting.")
