"""3D Gaussian splatting training and rendering on NeRF-synthetic-style datasets.

``train_splat`` starts from Gaussians on the visual hull carved from the
training alpha masks (random in a cube when the images have no alpha: the
datasets have no SfM points), optimises them ``batch_views`` views per step
with ``0.8 L1 + 0.2 (1 - SSIM)`` on a white background (the first
``coarse_frac`` of the run at half resolution), runs 3DGS adaptive density
control in a schedule expressed as fractions of the run (so a ``minutes``
budget compresses it), evaluates held-out PSNR/SSIM, checkpoints (also on
Ctrl-C; ``resume=True`` continues) and exports the standard 3DGS PLY. Under
``torchrun`` the views of each step are split across ranks and gradients and
densification statistics are all-reduced.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lumigrad.fields.gaussians import DensityControl, GaussianModel
from lumigrad.losses.image import ssim_loss
from lumigrad.optim.checkpoint import CheckpointConfig, load_checkpoint, save_checkpoint
from lumigrad.render.splat import render_gaussians
from lumigrad.report import save_turntable_gif
from lumigrad.scene.camera import Camera
from lumigrad.tasks import _distributed as dist_helpers
from lumigrad.tasks import _neural_common as common
from lumigrad.tasks._hull import hull_init
from lumigrad.tasks.nerf_data import load_dataset, orbit_cameras

__all__ = ["SplatConfig", "train_splat", "render_splat_views", "render_splat_outputs", "load_splat"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplatConfig:
    """3DGS training settings (defaults sized for 200x200 NeRF-synthetic on a few CPU cores)."""

    iterations: int = 3000
    minutes: float | None = None
    init: str = "auto"  # "hull" (visual hull of the alpha masks), "random" (cube), "auto": hull when the images have alpha
    init_points: int = 30000
    init_extent: float = 1.3  # half-size of the random cube / the hull's carving grid
    init_opacity: float = 0.3
    hull_grid: int = 80
    lr_means: float = 1.6e-4  # times the scene extent, decayed x0.01
    lr_sh: float = 2.5e-3
    lr_opacity: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    ssim_weight: float = 0.2
    sh_degree: int = 1  # up to 3; 1 is cheaper on CPU and enough for the 10-minute budget
    sh_every: int = 500  # raise the SH degree every this many steps
    coarse_frac: float = 0.25  # first fraction of the run at half resolution (4x cheaper steps)
    batch_views: int = 1  # views per step (the global batch; split across torchrun ranks)
    densify_from: int = 200
    densify_until_frac: float = 0.55
    densify_every: int = 150
    grad_threshold: float = 2e-4
    reset_opacity_every: int = 3000
    max_gaussians: int = 60_000
    eval_every: int = 500
    eval_views_periodic: int = 3
    checkpoint_every: int = 200
    holdout_every: int = 8
    seed: int = 0

    def __post_init__(self):
        common.check_config(self, ("iterations", "init_points", "densify_every", "eval_every", "checkpoint_every",
                                   "holdout_every", "sh_every", "reset_opacity_every", "max_gaussians", "batch_views"))
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"SplatConfig(): sh_degree must be in [0, 3], got {self.sh_degree!r}")
        if self.init not in ("auto", "hull", "random"):
            raise ValueError(f"SplatConfig(): init must be 'auto', 'hull' or 'random', got {self.init!r}")
        if not 0.0 <= self.coarse_frac < 1.0:
            raise ValueError(f"SplatConfig(): coarse_frac must be in [0, 1), got {self.coarse_frac!r}")


def _optimizer(model: GaussianModel, config: SplatConfig, extent: float) -> torch.optim.Adam:
    groups = [
        {"params": [model.means], "lr": config.lr_means * extent, "name": "means"},
        {"params": [model.sh_dc], "lr": config.lr_sh, "name": "sh_dc"},
        {"params": [model.sh_rest], "lr": config.lr_sh / 20, "name": "sh_rest"},
        {"params": [model.opacity_logits], "lr": config.lr_opacity, "name": "opacity"},
        {"params": [model.log_scales], "lr": config.lr_scales, "name": "scales"},
        {"params": [model.quats], "lr": config.lr_quats, "name": "quats"},
    ]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15, foreach=True)


def _view(camera: Camera, i: int):
    return camera.world_to_cam[i], camera.K[i]


@torch.no_grad()
def render_splat_views(model: GaussianModel, camera: Camera, sh_degree: int = 3) -> torch.Tensor:
    """``[B, H, W, 3]`` renders on white."""
    white = torch.ones(3)
    return torch.stack([render_gaussians(model, *_view(camera, b), camera.width, camera.height, sh_degree, white).image
                        for b in range(camera.batch_size)])


def _payload(model, opt, density, step, elapsed, history, config, data_dir, extent) -> dict:
    return {
        "kind": "lumigrad.splat",
        "config": dataclasses.asdict(config),
        "data_dir": str(data_dir),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "density": density.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "history": history,
        "extent": extent,
    }


def load_splat(path) -> tuple[GaussianModel, SplatConfig, dict]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_splat(): no such checkpoint: {p}")
    ck = load_checkpoint(CheckpointConfig(p), restore_rng=False)
    if ck.get("kind") != "lumigrad.splat":
        raise ValueError(f"load_splat(): {p} is not a lumigrad splat checkpoint")
    s = ck["model"]
    model = GaussianModel(s["means"], s["log_scales"], s["quats"], s["opacity_logits"], s["sh_dc"], s["sh_rest"])
    return model, SplatConfig(**ck["config"]), ck


def _scene_extent(camera: Camera) -> float:
    c = camera.camera_center()
    return float((c - c.mean(0)).norm(dim=-1).max()) * 1.1


def train_splat(
    data_dir,
    out_dir,
    config: SplatConfig = SplatConfig(),
    *,
    resume: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train 3D Gaussians on ``data_dir``; write ``out_dir/{checkpoint.pt, gaussians.ply, metrics.json, psnr.png, eval_grid.png}``."""
    out = Path(out_dir)
    train, evals, eval_src = load_dataset(data_dir, config.holdout_every)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    extent = _scene_extent(train.camera)
    step, elapsed = 0, 0.0
    history = {"step": [], "psnr": [], "ssim": [], "gaussians": [], "seconds": []}
    ck_cfg = CheckpointConfig(out / "checkpoint.pt", generators=(gen,))
    density = DensityControl(extent, config.grad_threshold, max_gaussians=config.max_gaussians)
    if resume and (out / "checkpoint.pt").is_file():
        ck = load_checkpoint(ck_cfg)
        if ck.get("kind") != "lumigrad.splat":
            raise ValueError(f"train_splat(): {out / 'checkpoint.pt'} is not a splat checkpoint")
        s = ck["model"]
        model = GaussianModel(s["means"], s["log_scales"], s["quats"], s["opacity_logits"], s["sh_dc"], s["sh_rest"])
        opt = _optimizer(model, config, extent)
        opt.load_state_dict(ck["optimizer"])
        density.load_state_dict(ck["density"])
        step, elapsed, history = int(ck["step"]), float(ck["elapsed"]), ck["history"]
        log.info("train_splat(): resumed from step %d with %d Gaussians", step, len(model))
    else:
        model = None
        if config.init in ("auto", "hull"):
            model = hull_init(train.camera, train.images, config.init_points, config.init_extent,
                              config.init_opacity, config.hull_grid, gen)
            if model is None and config.init == "hull":
                raise ValueError(f"train_splat(): init='hull' needs RGBA training images whose alpha masks carve "
                                 f"a non-empty hull inside [-{config.init_extent}, {config.init_extent}]^3 ({data_dir})")
        if model is None:
            model = GaussianModel.random_init(config.init_points, config.init_extent, gen, config.init_opacity)
        opt = _optimizer(model, config, extent)
    targets = common.composite_white(train.images)
    eval_targets = common.composite_white(evals.images)
    W, H = train.camera.width, train.camera.height
    # half resolution for the first coarse_frac of the run: 2x2 box-filtered targets, intrinsics halved
    coarse_targets = torch.nn.functional.avg_pool2d(targets.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).contiguous()
    coarse_K = train.camera.K.clone()
    coarse_K[:, :2] *= 0.5
    white = torch.ones(3)
    n_views = train.camera.batch_size
    t_start = time.perf_counter() - elapsed

    def save():
        if dist_helpers.rank_world()[0] != 0:
            return
        save_checkpoint(ck_cfg, _payload(model, opt, density, step, time.perf_counter() - t_start, history, config,
                                         data_dir, extent))

    def evaluate(views: int | None):
        cam = evals.camera if views is None else evals.camera[: min(views, evals.camera.batch_size)]
        pred = render_splat_views(model, cam, min(config.sh_degree, step // config.sh_every))
        p, s = common.image_metrics(pred, eval_targets[: pred.shape[0]])
        return pred, p, s

    distributed = dist_helpers.init_from_env()
    rank, world = dist_helpers.rank_world()
    if config.batch_views < world:
        raise ValueError(f"train_splat(): batch_views={config.batch_views} must be at least the number of ranks "
                         f"({world}); every rank renders a share of each step's views")
    B = config.batch_views
    order, cursor = torch.randperm(n_views, generator=gen), 0

    def next_views() -> list[int]:
        # the same stream of shuffled epochs on every rank (same seed), so ranks agree on the global batch
        nonlocal order, cursor
        views = []
        for _ in range(B):
            if cursor == n_views:
                order, cursor = torch.randperm(n_views, generator=gen), 0
            views.append(int(order[cursor]))
            cursor += 1
        return views

    try:
        while step < config.iterations:
            elapsed = time.perf_counter() - t_start
            frac = common.progress_fraction(step, config.iterations, elapsed, config.minutes)
            frac = dist_helpers.broadcast_float(frac) if distributed else frac
            if frac >= 1.0:
                break
            for g in opt.param_groups:
                if g["name"] == "means":
                    g["lr"] = config.lr_means * extent * (0.01 ** frac)
                else:
                    g["lr"] = {"sh_dc": config.lr_sh, "sh_rest": config.lr_sh / 20, "opacity": config.lr_opacity,
                               "scales": config.lr_scales, "quats": config.lr_quats}[g["name"]]
            views = next_views()[dist_helpers.rank_slice(B)]
            deg = min(config.sh_degree, step // config.sh_every)
            coarse = frac < config.coarse_frac and min(W, H) >= 64  # small images: SSIM window, little gain
            in_densify = frac < config.densify_until_frac
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for v in views:  # one backward per view: memory of one render at a time
                if coarse:
                    w_i, h_i, gt = W // 2, H // 2, coarse_targets[v]
                    r = render_gaussians(model, train.camera.world_to_cam[v], coarse_K[v], w_i, h_i, deg, white)
                else:
                    w_i, h_i, gt = W, H, targets[v]
                    r = render_gaussians(model, *_view(train.camera, v), W, H, deg, white)
                loss = (1 - config.ssim_weight) * (r.image - gt).abs().mean()
                if config.ssim_weight > 0:
                    loss = loss + config.ssim_weight * ssim_loss(r.image[None], gt[None])
                (loss / B).backward()
                loss_sum += float(loss.detach())
                if in_densify and r.means2d.grad is not None:  # per-view screen gradient, as 3DGS
                    density.accumulate(len(model), r.visible, r.means2d.grad * B, w_i, h_i)
            if distributed:
                dist_helpers.allreduce_grads([p for p in model.parameters() if p.grad is not None])
                loss_sum = dist_helpers.allreduce_sum(loss_sum)
            opt.step()
            step += 1
            info = {"loss": loss_sum / B, "gaussians": len(model)}
            if in_densify and step >= config.densify_from and step % config.densify_every == 0:
                if distributed and density.grad_sum is not None:
                    density.grad_sum, density.count = dist_helpers.allreduce_tensors(density.grad_sum, density.count)
                info.update(density.densify_and_prune(model, opt, gen))
                log.info("train_splat(): step %d densify %s -> %d Gaussians", step, info, len(model))
            if step % config.reset_opacity_every == 0 and in_densify:
                density.reset_opacity(model, opt)
            if step % config.eval_every == 0 and rank == 0:
                t_eval = time.perf_counter()
                _, p, s = evaluate(config.eval_views_periodic)
                t_start += time.perf_counter() - t_eval  # periodic evals do not count against the budget
                info["eval_psnr"] = common.record_eval(history, step, p, s, gaussians=len(model),
                                                       seconds=time.perf_counter() - t_start)
            if step % config.checkpoint_every == 0:
                save()
            if progress is not None:
                progress(step, config.iterations, info)
    except KeyboardInterrupt:
        save()
        raise
    train_seconds = time.perf_counter() - t_start
    save()
    if rank != 0:  # rank 0 evaluates and writes the reports
        return {"rank": rank, "world_size": world, "iterations": step, "train_seconds": train_seconds, "psnr": None,
                "ssim": None, "gaussians": len(model)}
    pred, p, s = evaluate(None)
    common.record_eval(history, step, p, s, gaussians=len(model), seconds=train_seconds)
    save()
    model.save_ply(out / "gaussians.ply")
    return common.write_final_report(
        out, "splat", "3DGS held-out PSNR", pred, eval_targets, p, s, history,
        data_dir=str(data_dir), eval_split=eval_src, iterations=step, train_seconds=train_seconds,
        gaussians=len(model), config=dataclasses.asdict(config), world_size=world,
    )


def render_splat_outputs(source, out_dir, *, data_dir=None, turntable_frames: int = 24, progress=None) -> dict:
    """Render held-out views (grid + PSNR) and a turntable GIF from a checkpoint or a 3DGS PLY.

    A PLY carries no cameras, so it needs ``data_dir`` (and is rendered with SH degree 3).
    """
    src = Path(source)
    if src.suffix.lower() == ".ply":
        model, degree = GaussianModel.load_ply(src), 3
        if data_dir is None:
            raise ValueError(f"render_splat_outputs(): rendering {src} (a PLY) needs data_dir for the cameras")
        holdout = 8
    else:
        model, config, ck = load_splat(src)
        degree = min(config.sh_degree, int(ck["step"]) // config.sh_every)
        data_dir = data_dir or ck["data_dir"]
        holdout = config.holdout_every
    out = Path(out_dir)
    _, evals, split = load_dataset(data_dir, holdout)
    pred = render_splat_views(model, evals.camera, degree)
    gt = common.composite_white(evals.images)
    p, s = common.image_metrics(pred, gt)
    common.save_eval_grid(out / "views.png", pred, gt, max_rows=6)
    orbit = orbit_cameras(evals.camera, turntable_frames, up_axis=2)
    frames = []
    for i in range(turntable_frames):
        frames.append(render_splat_views(model, orbit[i : i + 1], degree)[0])
        if progress is not None:
            progress(i + 1, turntable_frames)
    save_turntable_gif(out / "turntable.gif", frames, fps=12)
    result = {"psnr": sum(p) / len(p), "ssim": sum(s) / len(s), "views": len(p), "eval_split": split,
              "gaussians": len(model)}
    common.write_metrics(out / "render_metrics.json", result)
    return result
