"""`lumigrad fit shape`: multi-view mesh reconstruction from images and/or masks.

Starts from a sphere or the visual hull of the masks (``init``), optimises vertex positions in the large-steps
parameterisation (Nicolet et al. 2021) with coarse-to-fine isotropic
remeshing, against silhouettes (masks) and, when the lighting and material
are known (synthetic data with ``ground_truth.json``), shaded images. Exports
OBJ and GLB.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.ops import prepare_topology
from lumigrad.optim import CholeskySolver, Convergence, FitState, compute_matrix, fit, from_differential, to_differential
from lumigrad.optim.remesh import remesh
from lumigrad.render.raster import RasterSettings, render_mesh, render_silhouette
from lumigrad.scene.datasets import ImageDataset
from lumigrad.scene.io import write_mesh
from lumigrad.scene.mesh import Mesh
from lumigrad.tasks._common import as_dataset, downscale, gt_lights, gt_material, gt_mesh, gt_pose, shape_metrics, silhouette_iou, turntable_frames
from lumigrad.tasks._runner import TaskOutput
from lumigrad.tasks._visual_hull import visual_hull

__all__ = ["ShapeConfig", "ShapeResult", "fit_shape", "run_shape"]

log = logging.getLogger(__name__)


@dataclass
class ShapeConfig:
    """Settings of :func:`fit_shape`."""

    iterations: int = field(default=400, metadata={"help": "optimisation steps"})
    views_per_step: int = field(default=8, metadata={"help": "random views per step"})
    lr: float = field(default=3e-2, metadata={"help": "learning rate (AdamUniform on large-steps coordinates)"})
    lambda_: float = field(default=19.0, metadata={"help": "large-steps smoothing weight"})
    init: str = field(default="auto", metadata={"help": "initial mesh: 'visual_hull' (carved from the masks), 'sphere', or 'auto' (the hull when there are masks)"})
    hull_resolution: int = field(default=40, metadata={"help": "voxels per side of the visual-hull grid"})
    init_subdivisions: int = field(default=3, metadata={"help": "icosphere subdivisions of the initial sphere"})
    init_radius: float = field(default=0.6, metadata={"help": "initial sphere radius (world units)"})
    remesh_fractions: tuple[float, ...] = field(default=(0.3, 0.6), metadata={"help": "remesh at these fractions of the run"})
    remesh_factor: float = field(default=0.6, metadata={"help": "new edge length / current mean edge length"})
    silhouette_weight: float = field(default=1.0, metadata={"help": "weight of the mask term"})
    use_shading: bool = field(default=True, metadata={"help": "fit shaded images when lights/material are known"})
    downscale: int = field(default=1, metadata={"help": "integer image downscale factor"})
    holdout_every: int = field(default=0, metadata={"help": "hold out every k-th view for evaluation (0: none)"})
    max_views: int = field(default=0, metadata={"help": "use at most this many views (0: all)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class ShapeResult:
    """Outcome of :func:`fit_shape`: the mesh, metrics, the fit history and the data split used."""

    mesh: Mesh
    metrics: dict
    history: object
    train: ImageDataset
    held: ImageDataset | None
    lights: list | None
    material: object
    shaded: bool


def _mean_edge(verts, faces) -> float:
    f = faces.long()
    e = torch.cat([verts[f[:, 0]] - verts[f[:, 1]], verts[f[:, 1]] - verts[f[:, 2]], verts[f[:, 2]] - verts[f[:, 0]]])
    return float(e.norm(dim=-1).mean())


def _split(ds: ImageDataset, every: int) -> tuple[ImageDataset, ImageDataset | None]:
    if every <= 0:
        return ds, None
    held = [i for i in range(len(ds)) if i % every == 0]
    train = [i for i in range(len(ds)) if i % every != 0]
    if not train:
        raise ValueError(f"fit shape: holdout_every={every} leaves no training views of {len(ds)}")
    return ds.subset(train), ds.subset(held)


def fit_shape(data, config: ShapeConfig = ShapeConfig(), progress: bool = False) -> ShapeResult:
    """Reconstruct a closed mesh from a dataset (path or :class:`ImageDataset`).

    Needs masks, or known lights and material (``ground_truth.json``) for the
    shaded term. Returns the mesh and metrics (Chamfer when the ground-truth
    mesh is known; held-out silhouette IoU with ``holdout_every``).
    """
    ds = downscale(as_dataset(data, config.max_views or None), config.downscale)
    dtype = ds.images.dtype
    train, held = _split(ds, config.holdout_every)
    lights, material = gt_lights(ds, dtype), gt_material(ds, dtype)
    gt = gt_mesh(ds, dtype)
    pose = gt_pose(ds, dtype)
    shaded = config.use_shading and lights is not None and material is not None
    if gt is not None and gt.texture is not None and shaded:
        log.info("fit shape: the ground-truth texture is unknown to the fit; using the silhouette and a grey albedo")
        shaded = False
    if train.masks is None and not shaded:
        raise ValueError(f"fit shape: {ds.root} has no masks and no known lighting/material; need one of them")
    gen = torch.Generator().manual_seed(config.seed)
    if config.init not in ("auto", "sphere", "visual_hull"):
        raise ValueError(f"fit shape: init must be 'auto', 'sphere' or 'visual_hull', got {config.init!r}")
    init = config.init if config.init != "auto" else ("visual_hull" if train.masks is not None else "sphere")
    if init == "visual_hull":
        if train.masks is None:
            raise ValueError(f"fit shape: init='visual_hull' needs masks; {ds.root} has none")
        verts, faces = visual_hull(train, config.hull_resolution, dtype=dtype)
        log.info("fit shape: visual hull with %d vertices", verts.shape[0])
    else:
        verts, faces = icosphere(config.init_subdivisions, radius=config.init_radius, dtype=dtype)
    n = len(train)
    state: dict = {}
    remesh_at = {max(1, int(round(f * config.iterations))) for f in config.remesh_fractions}

    def parameterize(v, f):
        M = compute_matrix(v, f, lambda_=config.lambda_)
        state.update(faces=f, M=M, solver=CholeskySolver(M), topology=prepare_topology(f, v.shape[0]))
        return to_differential(M, v).detach().requires_grad_(True)

    def current(u):
        return from_differential(state["M"], u, state["solver"])

    params = {"u": parameterize(verts, faces)}
    targets_rgb, targets_a = train.images, train.masks

    def closure(it):
        views = torch.randperm(n, generator=gen)[: config.views_per_step]
        v = current(params["u"])
        cams = train.camera[views]
        loss = 0.0
        if shaded:
            out = render_mesh(Mesh(v.detach(), state["faces"]), cams, material, lights, RasterSettings(), verts=v,
                              topology=state["topology"])
            loss = (out.image - targets_rgb[views]).abs().mean()
            alpha = out.alpha
        else:
            alpha = render_silhouette(v, state["faces"], cams, topology=state["topology"])
        if targets_a is not None:
            loss = loss + config.silhouette_weight * (alpha - targets_a[views]).abs().mean()
        return loss

    def remesh_cb(st: FitState):
        if st.iteration + 1 in remesh_at:
            v = current(params["u"].detach())
            v, f = remesh(v, state["faces"], target_edge_length=_mean_edge(v, state["faces"]) * config.remesh_factor)
            st.replace_params({"u": parameterize(v, f)})

    res = fit(params, closure, optimizer="adam_uniform", lr=config.lr, stop=Convergence(max_iters=config.iterations, patience=None),
              callbacks=[remesh_cb], progress=progress, desc="fit shape")
    mesh = Mesh(current(params["u"].detach()).detach(), state["faces"])
    metrics: dict = {"initial_loss": res.history.loss[0], "final_loss": res.history.loss[-1], "iterations": res.iterations,
                     "fit_seconds": res.seconds, "views": len(train), "resolution": [ds.camera.width, ds.camera.height],
                     "shaded": shaded, "vertices": mesh.num_verts, "faces": mesh.num_faces}
    if gt is not None:
        gt_world = Mesh(pose.apply(gt.verts) if pose is not None else gt.verts, gt.faces)
        metrics.update(shape_metrics(mesh, gt_world))
    if train.masks is not None:
        with torch.no_grad():
            a = render_silhouette(mesh.verts, mesh.faces, train.camera)
            a0 = render_silhouette(verts, faces, train.camera)
        metrics["train_silhouette_iou"] = silhouette_iou(a, train.masks)
        metrics["initial_train_silhouette_iou"] = silhouette_iou(a0, train.masks)
    if held is not None and held.masks is not None:
        with torch.no_grad():
            a = render_silhouette(mesh.verts, mesh.faces, held.camera)
        metrics["heldout_views"] = len(held)
        metrics["heldout_silhouette_iou"] = silhouette_iou(a, held.masks)
        metrics["heldout_silhouette_iou_per_view"] = [silhouette_iou(a[i], held.masks[i]) for i in range(len(held))]
    return ShapeResult(mesh, metrics, res.history, train, held, lights, material, shaded)


def run_shape(data, out_dir, config: ShapeConfig = ShapeConfig(), progress: bool = False) -> dict:
    """:func:`fit_shape`, then write ``fitted.obj``, ``fitted.glb``, pictures, metrics and ``report.html``."""
    out = TaskOutput(out_dir, "fit shape")
    result = fit_shape(data, config, progress)
    mesh, train, held, lights, material, shaded = result.mesh, result.train, result.held, result.lights, result.material, result.shaded
    write_mesh(out.path("fitted.obj"), mesh)
    write_mesh(out.path("fitted.glb"), mesh)
    out.file(out.path("fitted.obj"))
    out.file(out.path("fitted.glb"))
    from lumigrad.scene.lights import AmbientLight, DirectionalLight
    from lumigrad.scene.materials import LambertMaterial
    dtype = mesh.dtype
    show_lights = lights or [AmbientLight(torch.full((3,), 0.3, dtype=dtype)), DirectionalLight(torch.tensor([0.4, 0.8, 0.45], dtype=dtype))]
    show_mat = material if shaded else LambertMaterial(0.8)
    rows = []
    sets = [("train", train)] + ([("held-out", held)] if held is not None else [])
    with torch.no_grad():
        for label, s in sets:
            idx = list(range(0, len(s), max(1, len(s) // 3)))[:3]
            sub = s.subset(idx)
            out_r = render_mesh(mesh, sub.camera, show_mat, show_lights, RasterSettings())
            for i in range(len(idx)):
                tgt = sub.masks[i].expand(-1, -1, 3) if not shaded and sub.masks is not None else sub.images[i]
                got = out_r.alpha[i].expand(-1, -1, 3) if not shaded else out_r.image[i]
                rows.append([sub.images[i], tgt, got, (tgt - got).abs()])
    out.grid(rows, ["image", "target", "result", "|diff|"])
    out.loss_curve(result.history, "fit shape loss")
    out.turntable(turntable_frames([mesh], [show_mat], show_lights, n=24, resolution=96))
    summary = f"Reconstructed a {mesh.num_verts}-vertex mesh from {len(train)} views ({'shaded + ' if shaded else ''}silhouettes)."
    return out.finish(result.metrics, config, summary)
