"""Pieces shared by the nerf and splat tasks: learning-rate schedule, reports, checkpoint payloads."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from lumigrad._runtime.files import atomic_path
from lumigrad.losses.image import psnr, ssim
from lumigrad.report import image_grid, save_image, save_metrics

__all__ = ["progress_fraction", "save_psnr_curve", "image_metrics", "save_eval_grid", "composite_white"]


def check_config(config, int_fields: tuple[str, ...]) -> None:
    """Validate a training config: the named fields are ints >= 1, ``minutes`` is None or > 0."""
    cls = type(config).__name__
    for name in int_fields:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{cls}(): {name} must be an int >= 1, got {v!r}")
    if config.minutes is not None and not config.minutes > 0:
        raise ValueError(f"{cls}(): minutes must be > 0, got {config.minutes!r}")


def progress_fraction(step: int, iterations: int, elapsed_s: float, minutes: float | None) -> float:
    """How far training is, in [0, 1]: the larger of the step and wall-clock fractions."""
    frac = step / max(iterations, 1)
    if minutes:
        frac = max(frac, elapsed_s / (60.0 * minutes))
    return min(frac, 1.0)


def cosine_lr(base: float, frac: float, final_ratio: float = 0.03) -> float:
    return base * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def composite_white(rgba: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` straight RGBA -> ``[..., 3]`` over a white background."""
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def image_metrics(pred: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-view PSNR and SSIM of ``[B, H, W, 3]`` images in [0, 1]."""
    p = pred.clamp(0, 1).float()
    t = target.float()
    return psnr(p, t).tolist(), ssim(p, t).reshape(p.shape[0], -1).mean(1).tolist()


def save_psnr_curve(path: str | os.PathLike, steps: list[int], values: list[float], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(steps, values, marker="o")
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def save_eval_grid(path, preds: torch.Tensor, targets: torch.Tensor, max_rows: int = 4) -> Path:
    rows = [[targets[i], preds[i].clamp(0, 1), (preds[i] - targets[i]).abs().clamp(0, 1) * 4]
            for i in range(min(max_rows, preds.shape[0]))]
    return save_image(path, image_grid(rows, labels=["target", "render", "|diff| x4"]))


def write_metrics(path, metrics: dict) -> Path:
    return save_metrics(path, metrics)


def record_eval(history: dict, step: int, psnr_views: list[float], ssim_views: list[float], **extra) -> float:
    """Append one evaluation (means over views, plus ``extra`` series) to ``history``; return the mean PSNR."""
    history.setdefault("step", []).append(step)
    history.setdefault("psnr", []).append(sum(psnr_views) / len(psnr_views))
    history.setdefault("ssim", []).append(sum(ssim_views) / len(ssim_views))
    for key, value in extra.items():
        history.setdefault(key, []).append(value)
    return history["psnr"][-1]


def write_final_report(out: Path, method: str, title: str, pred: torch.Tensor, targets: torch.Tensor,
                       psnr_views: list[float], ssim_views: list[float], history: dict, **fields) -> dict:
    """The held-out eval grid, PSNR curve and ``metrics.json`` of a finished NeRF / 3DGS run; returns the metrics."""
    save_eval_grid(out / "eval_grid.png", pred, targets)
    save_psnr_curve(out / "psnr.png", history["step"], history["psnr"], title)
    metrics = {
        "method": method,
        "eval_views": int(pred.shape[0]),
        "psnr": sum(psnr_views) / len(psnr_views),
        "ssim": sum(ssim_views) / len(ssim_views),
        "psnr_per_view": psnr_views,
        **fields,
        "history": history,
        "threads": torch.get_num_threads(),
    }
    write_metrics(out / "metrics.json", metrics)
    return metrics
