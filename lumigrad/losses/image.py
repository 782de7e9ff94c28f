"""Image losses and metrics on channels-last ``[B, H, W, C]`` images (linear, in [0, 1]).

Losses (``mse``, ``l1``, ``ssim_loss``, ``mask_iou_loss``, ``mask_loss``)
return a scalar averaged over the batch; metrics (``psnr``, ``ssim``) return
one value per image, ``[B]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lumigrad._runtime.checks import _desc, check_float_tensor

__all__ = ["mse", "l1", "psnr", "ssim", "ssim_loss", "mask_iou_loss", "mask_loss"]

_EPS = 1e-12


def _check_pair(fn: str, pred, target, names=("pred", "target"), channels: int | None = None) -> None:
    c = "C" if channels is None else str(channels)
    exp = f"[B, H, W, {c}]"
    check_float_tensor(fn, names[0], pred, (4,), channels, expected=exp)
    check_float_tensor(fn, names[1], target, (4,), channels, expected=exp)
    if target.shape != pred.shape or target.dtype != pred.dtype or target.device != pred.device:
        raise ValueError(
            f"{fn}(): {names[1]} must match {names[0]} ({_desc(pred)} on {pred.device}), "
            f"got {_desc(target)} on {target.device}"
        )


def _check_mask(fn: str, mask, pred: Tensor) -> Tensor | None:
    if mask is None:
        return None
    if isinstance(mask, Tensor) and mask.dtype == torch.bool:
        mask = mask.to(pred.dtype)
    exp = f"float or bool [B, H, W, 1] with B, H, W = {list(pred.shape[:3])}"
    check_float_tensor(fn, "mask", mask, (4,), 1, expected=exp)
    if mask.shape[:3] != pred.shape[:3] or mask.dtype != pred.dtype or mask.device != pred.device:
        raise ValueError(f"{fn}(): mask must be {exp} ({pred.dtype} on {pred.device}), got {_desc(mask)} on {mask.device}")
    return mask


def _masked_mean(err: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return err.mean()
    return (err * mask).sum() / (mask.sum() * err.shape[-1]).clamp_min(_EPS)


def mse(
    pred: Tensor,  # [B, H, W, C]
    target: Tensor,  # [B, H, W, C]
    mask: Tensor | None = None,  # [B, H, W, 1]
) -> Tensor:
    """Mean squared error, optionally weighted per pixel by ``mask``.

    Args:
        pred, target: ``[B, H, W, C]`` images of one shape, dtype and device.
        mask: optional ``[B, H, W, 1]`` float or bool weights; the mean is
            taken over the weighted pixels.

    Returns:
        Scalar; differentiable w.r.t. ``pred``, ``target`` and ``mask``.

    Example:
        >>> mse(torch.zeros(1, 2, 2, 3), torch.ones(1, 2, 2, 3))
        tensor(1.)
    """
    _check_pair("mse", pred, target)
    return _masked_mean((pred - target) ** 2, _check_mask("mse", mask, pred))


def l1(
    pred: Tensor,  # [B, H, W, C]
    target: Tensor,  # [B, H, W, C]
    mask: Tensor | None = None,  # [B, H, W, 1]
) -> Tensor:
    """Mean absolute error, optionally weighted per pixel by ``mask`` (see :func:`mse`).

    The gradient at ``pred == target`` is 0 (``sign(0)``).
    """
    _check_pair("l1", pred, target)
    return _masked_mean((pred - target).abs(), _check_mask("l1", mask, pred))


def psnr(
    pred: Tensor,  # [B, H, W, C]
    target: Tensor,  # [B, H, W, C]
    data_range: float = 1.0,
) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, ``10 log10(data_range**2 / mse)``.

    Returns:
        ``[B]``; ``inf`` for identical images.
    """
    _check_pair("psnr", pred, target)
    if not data_range > 0:
        raise ValueError(f"psnr(): data_range must be > 0, got {data_range!r}")
    err = ((pred - target) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / err)


def _gaussian_window(win_size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(
    img: Tensor,  # [B, H, W, C]
    target: Tensor,  # [B, H, W, C]
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) per image, Gaussian-weighted.

    Matches ``skimage.metrics.structural_similarity(..., channel_axis=-1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)``: local statistics under an ``win_size x win_size``
    Gaussian window, ``K1 = 0.01``, ``K2 = 0.03``, and the SSIM map averaged
    over the pixels whose window lies fully inside the image, and over channels.

    Args:
        img, target: ``[B, H, W, C]`` with ``H, W >= win_size``.
        data_range: dynamic range of the images (1 for [0, 1]).
        win_size: odd window size (11 matches skimage with sigma 1.5).
        sigma: Gaussian standard deviation in pixels.

    Returns:
        ``[B]`` mean SSIM per image; differentiable w.r.t. both images.
    """
    fn = "ssim"
    _check_pair(fn, img, target, names=("img", "target"))
    if not isinstance(win_size, int) or win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"{fn}(): win_size must be an odd positive int, got {win_size!r}")
    if not sigma > 0 or not data_range > 0:
        raise ValueError(f"{fn}(): sigma and data_range must be > 0, got sigma={sigma!r}, data_range={data_range!r}")
    B, H, W, C = img.shape
    if H < win_size or W < win_size:
        raise ValueError(f"{fn}(): img must be [B, H, W, C] with H, W >= win_size = {win_size}, got {_desc(img)}")
    g = _gaussian_window(win_size, sigma, img.dtype, img.device)
    x = img.permute(0, 3, 1, 2)
    y = target.permute(0, 3, 1, 2)
    # One grouped, separable, 'valid' convolution for all five moments; the
    # valid region is exactly skimage's crop of (win_size - 1) / 2 pixels.
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5C, H, W]
    k = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, win_size, 1).expand(k, 1, win_size, 1), groups=k)
    stack = F.conv2d(stack, g.view(1, 1, 1, win_size).expand(k, 1, 1, win_size), groups=k)
    mu_x, mu_y, e_xx, e_yy, e_xy = stack.split(C, dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def ssim_loss(
    img: Tensor,  # [B, H, W, C]
    target: Tensor,  # [B, H, W, C]
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
) -> Tensor:
    """``1 - ssim`` averaged over the batch (scalar); arguments as in :func:`ssim`."""
    return 1.0 - ssim(img, target, data_range=data_range, win_size=win_size, sigma=sigma).mean()


def mask_iou_loss(
    pred_alpha: Tensor,  # [B, H, W, 1] in [0, 1]
    target: Tensor,  # [B, H, W, 1] in [0, 1]
) -> Tensor:
    """Soft IoU loss ``1 - sum(p t) / sum(p + t - p t)`` per image, averaged over the batch.

    Args:
        pred_alpha: ``[B, H, W, 1]`` predicted coverage in [0, 1].
        target: ``[B, H, W, 1]`` target silhouette in [0, 1].

    Returns:
        Scalar in [0, 1]; 0 for identical binary masks. Two empty masks give 1
        (the union is guarded by an eps). Differentiable w.r.t. both inputs.
    """
    _check_pair("mask_iou_loss", pred_alpha, target, names=("pred_alpha", "target"), channels=1)
    inter = (pred_alpha * target).flatten(1).sum(1)
    union = (pred_alpha + target - pred_alpha * target).flatten(1).sum(1)
    return (1.0 - inter / union.clamp_min(_EPS)).mean()


def mask_loss(
    pred_alpha: Tensor,  # [B, H, W, 1] in [0, 1]
    target: Tensor,  # [B, H, W, 1] in [0, 1]
    kind: str = "l2",
) -> Tensor:
    """Per-pixel silhouette loss, averaged over all pixels.

    Args:
        pred_alpha: ``[B, H, W, 1]`` predicted coverage in [0, 1].
        target: ``[B, H, W, 1]`` target silhouette in [0, 1].
        kind: ``"l2"`` (squared error) or ``"bce"`` (binary cross-entropy, with
            ``pred_alpha`` clamped to [1e-6, 1 - 1e-6] so it stays finite).

    Returns:
        Scalar; differentiable w.r.t. both inputs.
    """
    fn = "mask_loss"
    _check_pair(fn, pred_alpha, target, names=("pred_alpha", "target"), channels=1)
    if kind == "l2":
        return ((pred_alpha - target) ** 2).mean()
    if kind == "bce":
        p = pred_alpha.clamp(1e-6, 1.0 - 1e-6)
        return -(target * torch.log(p) + (1.0 - target) * torch.log1p(-p)).mean()
    raise ValueError(f"{fn}(): kind must be 'l2' or 'bce', got {kind!r}")
