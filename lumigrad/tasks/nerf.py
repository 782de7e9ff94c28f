"""NeRF training and rendering: an Instant-NGP-style field with occupancy-grid sampling.

``train_nerf`` fits :class:`lumigrad.fields.nerf.NGPField` to a NeRF-synthetic-style
dataset (random rays, random background colours, dynamic ray batch so each
step composites about ``samples_per_batch`` samples), updates the occupancy
grid every ``occ_every`` steps, evaluates PSNR/SSIM on held-out views, and
checkpoints (also on Ctrl-C) so that ``resume=True`` continues.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lumigrad._runtime.files import atomic_path
from lumigrad.fields.nerf import NGPField
from lumigrad.fields.occupancy import OccupancyGrid
from lumigrad.optim.checkpoint import CheckpointConfig, load_checkpoint, save_checkpoint
from lumigrad.render.volume import grid_samples, render_rays
from lumigrad.report import save_turntable_gif
from lumigrad.scene.camera import Camera
from lumigrad.tasks import _distributed as dist_helpers
from lumigrad.tasks import _neural_common as common
from lumigrad.geometry.visual_hull import carve
from lumigrad.tasks.nerf_data import load_dataset, orbit_cameras

__all__ = ["NerfConfig", "train_nerf", "load_nerf", "render_nerf_views", "render_nerf_outputs", "extract_mesh"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NerfConfig:
    """NeRF training settings (defaults sized for 200x200 NeRF-synthetic on a few CPU cores)."""

    iterations: int = 4000
    minutes: float | None = None  # wall-clock budget; training stops when reached
    samples_per_batch: int = 16384
    init_rays: int = 1024
    max_rays: int = 4096
    lr: float = 1e-2
    aabb: tuple[float, ...] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    step_size: float = 0.0125
    occ_resolution: int = 64
    occ_every: int = 16
    log2_table_size: int = 15
    n_levels: int = 12
    max_res: int = 256
    hidden: int = 64
    hull: bool = True  # carve the occupancy grid with the training alpha masks (when the images have alpha)
    eval_every: int = 500
    eval_views_periodic: int = 2
    checkpoint_every: int = 200
    holdout_every: int = 8
    seed: int = 0

    def __post_init__(self):
        common.check_config(self, ("iterations", "samples_per_batch", "init_rays", "max_rays", "occ_resolution", "occ_every",
                                   "eval_every", "checkpoint_every", "holdout_every"))
        if len(self.aabb) != 6 or not all(self.aabb[i] < self.aabb[i + 3] for i in range(3)):
            raise ValueError(f"NerfConfig(): aabb must be (xmin, ymin, zmin, xmax, ymax, zmax), got {self.aabb!r}")


def _model(config: NerfConfig, gen: torch.Generator | None = None) -> tuple[NGPField, OccupancyGrid]:
    aabb = torch.tensor(config.aabb, dtype=torch.float32)
    field = NGPField(aabb, config.n_levels, config.log2_table_size, config.max_res, config.hidden, generator=gen)
    return field, OccupancyGrid(aabb, config.occ_resolution)


def _flat_rays(camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    rays = camera.rays()
    return rays.origins.reshape(-1, 3).contiguous(), rays.dirs.reshape(-1, 3).contiguous()


@torch.no_grad()
def render_nerf_views(field: NGPField, grid: OccupancyGrid, camera: Camera, step_size: float,
                      background=(1.0, 1.0, 1.0), chunk: int = 8192) -> torch.Tensor:
    """``[B, H, W, 3]`` renders of every camera in ``camera`` (no jitter)."""
    bg = torch.tensor(background, dtype=torch.float32)
    out = []
    for b in range(camera.batch_size):
        o, d = _flat_rays(camera[b : b + 1])
        cols = []
        for s in range(0, o.shape[0], chunk):
            oc, dc = o[s : s + chunk], d[s : s + chunk]
            smp = grid_samples(oc, dc, grid.occupied, grid.aabb, step_size, jitter=False)
            cols.append(render_rays(field, oc, dc, smp, bg).colors)
        out.append(torch.cat(cols).view(camera.height, camera.width, 3))
    return torch.stack(out)


def _payload(field, grid, opt, step, elapsed, history, config, data_dir) -> dict:
    return {
        "kind": "lumigrad.nerf",
        "config": dataclasses.asdict(config),
        "data_dir": str(data_dir),
        "model": field.state_dict(),
        "grid": grid.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "history": history,
    }


def load_nerf(path) -> tuple[NGPField, OccupancyGrid, NerfConfig, dict]:
    """Model, occupancy grid, config and raw payload from a NeRF checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_nerf(): no such checkpoint: {p}")
    ck = load_checkpoint(CheckpointConfig(p), restore_rng=False)
    if ck.get("kind") != "lumigrad.nerf":
        raise ValueError(f"load_nerf(): {p} is not a lumigrad NeRF checkpoint")
    cfg = dict(ck["config"])
    cfg["aabb"] = tuple(cfg["aabb"])
    config = NerfConfig(**cfg)
    field, grid = _model(config)
    field.load_state_dict(ck["model"])
    grid.load_state_dict(ck["grid"])
    return field, grid, config, ck


def _restrict_to_hull(grid: OccupancyGrid, train, config: NerfConfig) -> None:
    """Limit the occupancy grid to the visual hull of the masks, dilated by one cell (no-op without alpha)."""
    alpha = train.images[..., 3]
    if not config.hull or bool((alpha > 0.999).all()):
        return
    r = grid.resolution
    hull = carve(train.camera, alpha, grid.aabb[:3], grid.aabb[3:], r, threshold=0.1, unseen="keep")
    hull = torch.nn.functional.max_pool3d(hull.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    if int(hull.sum()) == 0:
        log.warning("train_nerf(): the masks carve away the whole AABB; not restricting the occupancy grid")
        return
    grid.restrict(hull)
    log.info("train_nerf(): occupancy restricted to the visual hull (%.1f%% of cells)", 100 * float(hull.float().mean()))


def train_nerf(
    data_dir,
    out_dir,
    config: NerfConfig = NerfConfig(),
    *,
    resume: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train a NeRF on ``data_dir``; write ``out_dir/{checkpoint.pt, metrics.json, psnr.png, eval_grid.png}``.

    Args:
        data_dir: folder with ``transforms_train.json`` (+ val/test) and images.
        out_dir: output folder.
        config: :class:`NerfConfig`.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        progress: called as ``progress(step, total, info)`` after each step.

    Returns:
        The metrics dict also written to ``metrics.json``.
    """
    out = Path(out_dir)
    train, evals, eval_src = load_dataset(data_dir, config.holdout_every)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    field, grid = _model(config, gen)
    table = [field.encoding.table]
    others = [p for n, p in field.named_parameters() if n != "encoding.table"]
    opt = torch.optim.Adam([{"params": table}, {"params": others, "weight_decay": 1e-6}], lr=config.lr,
                           eps=1e-15, betas=(0.9, 0.99))
    ck_cfg = CheckpointConfig(out / "checkpoint.pt", generators=(gen,))
    step, elapsed = 0, 0.0
    history = {"step": [], "psnr": [], "ssim": [], "loss": []}
    if resume and (out / "checkpoint.pt").is_file():
        ck = load_checkpoint(ck_cfg)
        if ck.get("kind") != "lumigrad.nerf":
            raise ValueError(f"train_nerf(): {out / 'checkpoint.pt'} is not a NeRF checkpoint")
        field.load_state_dict(ck["model"])
        grid.load_state_dict(ck["grid"])
        opt.load_state_dict(ck["optimizer"])
        step, elapsed, history = int(ck["step"]), float(ck["elapsed"]), ck["history"]
        log.info("train_nerf(): resumed from step %d", step)
    else:
        _restrict_to_hull(grid, train, config)
    origins, dirs = _flat_rays(train.camera)
    target = train.images.reshape(-1, 4)
    eval_targets = common.composite_white(evals.images)
    n_rays = config.init_rays
    t_start = time.perf_counter() - elapsed

    def save():
        if dist_helpers.rank_world()[0] != 0:
            return
        save_checkpoint(ck_cfg, _payload(field, grid, opt, step, time.perf_counter() - t_start, history, config, data_dir))

    def evaluate(views: int | None):
        field.eval()
        cam = evals.camera if views is None else evals.camera[: min(views, evals.camera.batch_size)]
        pred = render_nerf_views(field, grid, cam, config.step_size)
        field.train()
        p, s = common.image_metrics(pred, eval_targets[: pred.shape[0]])
        return pred, p, s

    distributed = dist_helpers.init_from_env()
    rank, world = dist_helpers.rank_world()
    params = list(field.parameters())
    try:
        while step < config.iterations:
            elapsed = time.perf_counter() - t_start
            frac = common.progress_fraction(step, config.iterations, elapsed, config.minutes)
            frac = dist_helpers.broadcast_float(frac) if distributed else frac
            if frac >= 1.0:
                break
            for i, g in enumerate(opt.param_groups):
                g["lr"] = common.cosine_lr(config.lr, frac)
            if step % config.occ_every == 0:
                grid.update(field.density, config.step_size, warmup=step < 256, generator=gen)
            # Every rank draws the same global batch and keeps its slice (data parallel over rays).
            idx = torch.randint(0, origins.shape[0], (n_rays,), generator=gen)
            bg = torch.rand(n_rays, 3, generator=gen)
            offsets = torch.rand(n_rays, 1, generator=gen)
            mine = dist_helpers.rank_slice(n_rays)
            idx, bg, offsets = idx[mine], bg[mine], offsets[mine]
            o, d, rgba = origins[idx], dirs[idx], target[idx]
            gt = rgba[:, :3] * rgba[:, 3:] + bg * (1 - rgba[:, 3:])
            smp = grid_samples(o, d, grid.occupied, grid.aabb, config.step_size, offsets=offsets)
            rend = render_rays(field, o, d, smp, bg)
            # Sum over this rank's rays / the global count: summed gradients = the global mean's.
            loss = ((rend.colors - gt) ** 2).sum() / (3 * n_rays)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            n_samples = rend.n_samples
            if distributed:
                dist_helpers.allreduce_grads(params)
                n_samples = int(dist_helpers.allreduce_sum(n_samples))
                loss = torch.tensor(dist_helpers.allreduce_sum(float(loss.detach())))
            opt.step()
            step += 1
            # Keep the composited sample count near the target (nerfacc's dynamic batch).
            if n_samples > 0:
                n_rays = int(min(config.max_rays, max(256, n_rays * config.samples_per_batch / n_samples)))
            info = {"loss": float(loss.detach()), "rays": n_rays, "samples": n_samples}
            if step % config.eval_every == 0 and rank == 0:
                t_eval = time.perf_counter()
                _, p, s = evaluate(config.eval_views_periodic)
                t_start += time.perf_counter() - t_eval  # periodic evals do not count against the budget
                info["eval_psnr"] = common.record_eval(history, step, p, s, loss=float(loss.detach()))
                log.info("train_nerf(): step %d eval PSNR %.2f", step, info["eval_psnr"])
            if step % config.checkpoint_every == 0:
                save()
            if progress is not None:
                progress(step, config.iterations, info)
    except KeyboardInterrupt:
        save()
        raise
    save()
    train_seconds = time.perf_counter() - t_start
    if rank != 0:  # rank 0 evaluates and writes the reports
        return {"rank": rank, "world_size": world, "iterations": step, "train_seconds": train_seconds, "psnr": None,
                "ssim": None, "eval_split": None}  # the CLI prints these keys on every rank
    pred, p, s = evaluate(None)
    common.record_eval(history, step, p, s, loss=float("nan"))
    save()
    return common.write_final_report(
        out, "nerf", "NeRF held-out PSNR", pred, eval_targets, p, s, history,
        data_dir=str(data_dir), eval_split=eval_src, iterations=step, train_seconds=train_seconds,
        occupied_fraction=float(grid.occupied.float().mean()), config=dataclasses.asdict(config), world_size=world,
    )


@torch.no_grad()
def extract_mesh(field: NGPField, grid: OccupancyGrid, path, resolution: int = 128, level: float = 10.0):
    """Marching cubes (scikit-image) on the density over the AABB; write an OBJ atomically; return the trimesh."""
    import numpy as np
    import trimesh
    from skimage.measure import marching_cubes

    lo, hi = field.aabb[:3], field.aabb[3:]
    axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution) for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    keep = grid.query(pts)
    sig = torch.zeros(pts.shape[0])
    if bool(keep.any()):
        sig[keep] = torch.cat([field.density(c) for c in pts[keep].split(65536)])
    vol = sig.view(resolution, resolution, resolution).numpy()
    if not (vol.max() > level > vol.min()):
        raise ValueError(f"extract_mesh(): density level {level} is outside the field's range "
                         f"[{vol.min():.3g}, {vol.max():.3g}]; pass another --level")
    verts, faces, _, _ = marching_cubes(vol, level)
    spacing = ((hi - lo) / (resolution - 1)).numpy()
    verts = verts * spacing + lo.numpy()
    mesh = trimesh.Trimesh(verts.astype(np.float32), faces, process=False)
    with atomic_path(path) as tmp:
        mesh.export(tmp)
    return mesh


def render_nerf_outputs(checkpoint, out_dir, *, turntable_frames: int = 24, mesh: bool = False,
                        mesh_resolution: int = 128, mesh_level: float = 10.0, progress=None) -> dict:
    """Render held-out views (grid + PSNR), a turntable GIF and optionally a marching-cubes OBJ."""
    field, grid, config, ck = load_nerf(checkpoint)
    field.eval()
    out = Path(out_dir)
    _, evals, src = load_dataset(ck["data_dir"], config.holdout_every)
    pred = render_nerf_views(field, grid, evals.camera, config.step_size)
    gt = common.composite_white(evals.images)
    p, s = common.image_metrics(pred, gt)
    common.save_eval_grid(out / "views.png", pred, gt, max_rows=6)
    orbit = orbit_cameras(evals.camera, turntable_frames, up_axis=2)
    frames = []
    for i in range(turntable_frames):
        frames.append(render_nerf_views(field, grid, orbit[i : i + 1], config.step_size)[0])
        if progress is not None:
            progress(i + 1, turntable_frames)
    save_turntable_gif(out / "turntable.gif", frames, fps=12)
    result = {"psnr": sum(p) / len(p), "ssim": sum(s) / len(s), "views": len(p), "eval_split": src}
    if mesh:
        m = extract_mesh(field, grid, out / "mesh.obj", mesh_resolution, mesh_level)
        result["mesh_vertices"], result["mesh_faces"] = len(m.vertices), len(m.faces)
    common.write_metrics(out / "render_metrics.json", result)
    return result
