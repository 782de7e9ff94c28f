"""`lumigrad fit pose`: 6-DoF pose of a known mesh from one or more calibrated images.

The rotation is optimised in the continuous 6D representation (no gimbal
singularities) together with a translation. To escape local minima, a coarse
search first scores a lattice of ``search_rotations`` rotations within
``start_spread_deg`` of the initial guess (batched renders at a reduced
resolution, no gradients); the ``starts`` best ones at least 20 degrees apart
are optimised together for ``coarse_iterations`` at that resolution, and the
best of them is refined at full resolution. With ground truth, the geodesic rotation error and the translation
error are reported.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field

import torch

from lumigrad._runtime.files import write_text_atomic
from lumigrad.geometry.rotations import (
    axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rotation_6d, random_rotation_near, rotation_6d_to_matrix, rotation_angle,
)
from lumigrad.ops import prepare_topology
from lumigrad.optim import Convergence, fit
from lumigrad.render.raster import RasterSettings, render_mesh, render_silhouette
from lumigrad.scene.io import read_mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.scene import ObjectTransform
from lumigrad.tasks._common import as_dataset, downscale, gt_lights, gt_material, gt_mesh, gt_pose, turntable_frames
from lumigrad.tasks._runner import TaskOutput

__all__ = ["PoseConfig", "PoseResult", "fit_pose", "run_pose", "load_task_mesh"]

log = logging.getLogger(__name__)


@dataclass
class PoseConfig:
    """Settings of :func:`fit_pose`."""

    iterations: int = field(default=60, metadata={"help": "refinement steps of the best start"})
    coarse_iterations: int = field(default=20, metadata={"help": "steps of every start in the coarse phase"})
    starts: int = field(default=2, metadata={"help": "number of starting rotations refined in the coarse phase (1: no multi-start)"})
    start_spread_deg: float = field(default=90.0, metadata={"help": "max angle of the searched rotations from the initial guess"})
    search_rotations: int = field(default=600, metadata={
        "help": "rotations scored (no gradient) on a lattice within start_spread_deg before the coarse phase; the best "
                "`starts` distinct ones are refined (0: random starts instead)"})
    search_downscale: int = field(default=4, metadata={"help": "image downscale factor of the rotation search"})
    coarse_downscale: int = field(default=2, metadata={"help": "image downscale factor of the coarse phase"})
    lr_rotation: float = field(default=0.03, metadata={"help": "learning rate of the 6D rotation"})
    lr_translation: float = field(default=0.01, metadata={"help": "learning rate of the translation"})
    silhouette_weight: float = field(default=1.0, metadata={"help": "weight of the mask term"})
    init_axis_angle: tuple[float, ...] = field(default=(0.0, 0.0, 0.0), metadata={"help": "initial rotation (axis-angle, radians)"})
    init_translation: tuple[float, ...] = field(default=(0.0, 0.0, 0.0), metadata={"help": "initial translation"})
    max_views: int = field(default=0, metadata={"help": "use at most this many views (0: all)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


@dataclass
class PoseResult:
    """Estimated object-to-world pose, its metrics and the fit history."""

    rotation: torch.Tensor  # [3, 3]
    translation: torch.Tensor  # [3]
    metrics: dict
    history: object


def load_task_mesh(fn: str, mesh, ds, dtype) -> Mesh:
    """The ``--mesh`` argument (path or Mesh), else the dataset's ground-truth mesh."""
    if isinstance(mesh, Mesh):
        return mesh
    if mesh is not None:
        return read_mesh(mesh, dtype=dtype)
    m = gt_mesh(ds, dtype)
    if m is None:
        raise ValueError(f"{fn}: give --mesh (the dataset {ds.root} has no ground_truth mesh)")
    return m


def _losses(mesh, cams, r6, t, targets, masks, material, lights, shaded, sw, n_views, topology=None,
            settings: RasterSettings = RasterSettings()):
    """Per-start losses ``[K]``; ``r6 [K, 6]``, ``t [K, 3]``, views repeated per start."""
    K = r6.shape[0]
    rot = rotation_6d_to_matrix(r6).repeat_interleave(n_views, 0)
    tr = ObjectTransform(rot, t.repeat_interleave(n_views, 0))
    loss = 0.0
    if shaded:
        out = render_mesh(mesh, cams, material, lights, settings, transform=tr, topology=topology)
        loss = (out.image - targets).abs().mean(dim=(1, 2, 3))
        alpha = out.alpha
    else:
        alpha = render_silhouette(tr.apply(mesh.verts), mesh.faces, cams, settings, topology=topology)
    if masks is not None:
        loss = loss + sw * (alpha - masks).abs().mean(dim=(1, 2, 3))
    return loss.reshape(K, n_views).mean(1)


def rotation_lattice(n: int, max_angle_deg: float, dtype=torch.float32) -> torch.Tensor:
    """About ``n`` rotations ``[M, 3, 3]`` on a cubic lattice in axis-angle space within ``max_angle_deg`` of identity.

    A lattice covers the ball evenly (no gaps as with random samples): every
    rotation of the ball lies within about ``spacing * sqrt(3) / 2`` of one.
    Identity is always included.
    """
    r = math.radians(max_angle_deg)
    spacing = (4.0 / 3.0 * math.pi * r**3 / max(n, 1)) ** (1.0 / 3.0)
    k = int(math.ceil(r / spacing))
    g = torch.arange(-k, k + 1, dtype=torch.float64) * spacing
    aa = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    aa = aa[aa.norm(dim=-1) <= r + 1e-9]
    return axis_angle_to_matrix(aa).to(dtype)


@torch.no_grad()
def _search(mesh, views, rotations, t0, material, lights, shaded, sw, topology, chunk: int = 128) -> torch.Tensor:
    """Loss ``[M]`` of each rotation (translation ``t0``) on ``views``, without gradients (silhouettes when masked)."""
    V = len(views)
    out = []
    for rot in rotations.split(chunk):
        k = rot.shape[0]
        cams = views.camera[torch.arange(V).repeat(k)]
        tg = views.images.repeat(k, 1, 1, 1)
        mk = None if views.masks is None else views.masks.repeat(k, 1, 1, 1)
        # With masks, silhouettes alone rank the rotations (shading every view costs a normal pass per view).
        sil_only = mk is not None
        out.append(_losses(mesh, cams, matrix_to_rotation_6d(rot), t0.expand(k, 3), tg, mk, material, lights,
                           shaded and not sil_only, 1.0 if sil_only else sw, V, topology, RasterSettings(visibility="hard")))
    return torch.cat(out)


def _distinct_best(rotations: torch.Tensor, scores: torch.Tensor, k: int, min_angle_deg: float) -> list[torch.Tensor]:
    """The ``k`` lowest-scoring rotations at least ``min_angle_deg`` apart (greedy non-maximum suppression)."""
    chosen: list[torch.Tensor] = []
    for i in torch.argsort(scores).tolist():
        r = rotations[i]
        if all(float(rotation_angle(r.double(), c.double(), degrees=True)) >= min_angle_deg for c in chosen):
            chosen.append(r)
            if len(chosen) == k:
                break
    return chosen


def fit_pose(data, mesh=None, config: PoseConfig = PoseConfig(), progress: bool = False,
             init: tuple[torch.Tensor, torch.Tensor] | None = None) -> PoseResult:
    """Estimate the pose of ``mesh`` (object frame) seen in the dataset's images.

    Args:
        data: dataset folder / :class:`ImageDataset` (1 or more views).
        mesh: mesh path or :class:`Mesh`; default the dataset's ground-truth mesh.
        config: :class:`PoseConfig`.
        init: optional ``(rotation [3, 3], translation [3])`` initial guess
            (overrides ``config.init_*``).

    Returns:
        :class:`PoseResult` (``rotation_error_deg`` / ``translation_error`` in
        the metrics when the dataset has a ground-truth pose).
    """
    fn = "fit pose"
    ds = as_dataset(data, config.max_views or None)
    dtype = ds.images.dtype
    mesh = load_task_mesh(fn, mesh, ds, dtype)
    lights, material = gt_lights(ds, dtype), gt_material(ds, dtype)
    shaded = lights is not None and material is not None
    if ds.masks is None and not shaded:
        raise ValueError(f"{fn}: {ds.root} has no masks and no known lighting/material; need one of them")
    if init is None:
        if len(config.init_axis_angle) != 3 or len(config.init_translation) != 3:
            raise ValueError(f"{fn}: init_axis_angle and init_translation need 3 values each")
        R0 = axis_angle_to_matrix(torch.tensor(config.init_axis_angle, dtype=torch.float64)).to(dtype)
        t0 = torch.tensor(config.init_translation, dtype=dtype)
    else:
        R0, t0 = init[0].to(dtype), init[1].to(dtype)
    gen = torch.Generator().manual_seed(config.seed)
    V = len(ds)
    topology = prepare_topology(mesh.faces, mesh.num_verts)
    hist_all = {}
    search_info = {}
    if config.starts > 1 and config.search_rotations > 0:
        coarse = downscale(ds, config.search_downscale)
        cands = R0 @ rotation_lattice(config.search_rotations, config.start_spread_deg, dtype)
        scores = _search(mesh, coarse, cands, t0, material, lights, shaded, config.silhouette_weight, topology)
        starts = _distinct_best(cands, scores, config.starts, min_angle_deg=20.0)
        search_info = {"searched_rotations": len(cands), "search_best_loss": float(scores.min())}
    elif config.starts > 1:
        starts = [R0] + list(R0 @ random_rotation_near(config.starts - 1, config.start_spread_deg, generator=gen, dtype=dtype))
    else:
        starts = [R0]
    K = len(starts)

    def run(level_ds, r6, t, iters, desc):
        cams = level_ds.camera[torch.arange(V).repeat(r6.shape[0])]
        tg = level_ds.images.repeat(r6.shape[0], 1, 1, 1)
        mk = None if level_ds.masks is None else level_ds.masks.repeat(r6.shape[0], 1, 1, 1)
        params = {"rotation": r6.detach().clone().requires_grad_(True), "translation": t.detach().clone().requires_grad_(True)}
        last = {}

        def closure(it):
            per = _losses(mesh, cams, params["rotation"], params["translation"], tg, mk, material, lights, shaded,
                          config.silhouette_weight, V, topology)
            last["per"] = per.detach()
            return per.sum()

        res = fit(params, closure, lr={"rotation": config.lr_rotation, "translation": config.lr_translation},
                  schedule="cosine", stop=Convergence(max_iters=iters, patience=None), progress=progress, desc=desc)
        with torch.no_grad():
            per = _losses(mesh, cams, params["rotation"], params["translation"], tg, mk, material, lights, shaded,
                          config.silhouette_weight, V, topology)
        return params["rotation"].detach(), params["translation"].detach(), per, res.history

    r6 = matrix_to_rotation_6d(torch.stack(starts))
    t = t0.expand(K, 3).clone()
    best = 0
    start_losses = None
    if K > 1 and config.coarse_iterations > 0:
        coarse = downscale(ds, config.coarse_downscale)
        r6, t, per, h = run(coarse, r6, t, config.coarse_iterations, "pose (coarse, all starts)")
        start_losses = per.tolist()
        best = int(per.argmin())
        hist_all["coarse"] = h
    r6b, tb, per, h = run(ds, r6[best:best + 1], t[best:best + 1], config.iterations, "pose (refine)")
    hist_all["refine"] = h
    R = rotation_6d_to_matrix(r6b[0])
    metrics = {"final_loss": float(per[0]), "starts": K, "best_start": best, "views": V, **search_info,
               "rotation_axis_angle": matrix_to_axis_angle(R.double()).tolist(), "translation": tb[0].tolist()}
    if start_losses is not None:
        metrics["start_losses"] = start_losses
    gtp = gt_pose(ds, dtype)
    if gtp is not None:
        Rg = gtp.matrix(dtype)[:3, :3].double()
        # Objects with rotational symmetries (ground_truth.json "symmetries": object-frame matrices)
        # have several correct answers: the error is the smallest over them.
        sym = torch.tensor(ds.ground_truth.get("symmetries", [torch.eye(3).tolist()]), dtype=torch.float64)
        metrics["rotation_error_deg"] = float(rotation_angle(R.double(), Rg @ sym, degrees=True).min())
        metrics["initial_rotation_error_deg"] = float(rotation_angle(R0.double(), Rg.double(), degrees=True))
        metrics["translation_error"] = float((tb[0] - gtp.translation).norm())
        metrics["translation_error_over_radius"] = metrics["translation_error"] / float(mesh.verts.norm(dim=-1).max())
    return PoseResult(R, tb[0], metrics, hist_all)


def run_pose(data, out_dir, config: PoseConfig = PoseConfig(), progress: bool = False, mesh=None) -> dict:
    """:func:`fit_pose`, then write ``pose.json``, pictures, metrics and ``report.html``."""
    ds = as_dataset(data, config.max_views or None)
    mesh_obj = load_task_mesh("fit pose", mesh, ds, ds.images.dtype)
    out = TaskOutput(out_dir, "fit pose")
    res = fit_pose(ds, mesh_obj, config, progress)
    pose = {"rotation": res.rotation.double().tolist(), "translation": res.translation.double().tolist(),
            "axis_angle": res.metrics["rotation_axis_angle"], "convention": "p_world = rotation @ p_object + translation"}
    write_text_atomic(out.path("pose.json"), json.dumps(pose, indent=2))
    out.file(out.path("pose.json"))
    dtype = ds.images.dtype
    lights = gt_lights(ds, dtype) or [AmbientLight(torch.full((3,), 0.3, dtype=dtype)), DirectionalLight(torch.tensor([0.4, 0.8, 0.45], dtype=dtype))]
    material = gt_material(ds, dtype) or LambertMaterial(0.8)
    tr = ObjectTransform(res.rotation, res.translation)
    rows = []
    with torch.no_grad():
        idx = list(range(len(ds)))[:4]
        sub = ds.subset(idx)
        got = render_mesh(mesh_obj, sub.camera, material, lights, RasterSettings(), transform=tr)
        for i in range(len(idx)):
            overlay = sub.images[i] * 0.5 + got.alpha[i] * torch.tensor([0.5, 0.0, 0.0], dtype=dtype)
            rows.append([sub.images[i], got.image[i], overlay, (sub.images[i] - got.image[i]).abs()])
    out.grid(rows, ["target", "result", "overlay", "|diff|"])
    hist = {f"{k} loss": v.loss for k, v in res.history.items()}
    out.loss_curve(hist, "fit pose loss (sum over starts in the coarse phase)")
    gtp = gt_pose(ds, dtype)
    if gtp is not None:
        frames = turntable_frames([mesh_obj, mesh_obj], [material, material], lights, n=16, resolution=80, transforms=[gtp, tr])
        out.turntable(frames, caption="turntable: ground truth | estimate")
    summary = "Estimated pose" + (f": rotation error {res.metrics['rotation_error_deg']:.3f} deg" if "rotation_error_deg" in res.metrics else "")
    return out.finish(res.metrics, config, summary)
