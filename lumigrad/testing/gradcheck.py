"""Finite differences, boundary-band comparison and supersampled coverage for gradient tests.

Visibility gradients cannot be checked with ``torch.autograd.gradcheck`` alone:
the rendered image is discontinuous in the vertex positions. The ground truth is
the derivative of the *area-sampled* image, estimated by central differences of
a supersampled render (:func:`supersampled_coverage`, :func:`finite_difference`),
and images are compared with a tight tolerance away from discontinuities and a
bounded mismatch fraction next to them (:func:`assert_close_with_boundary_band`).
Imports torch only.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = [
    "assert_close_with_boundary_band",
    "boundary_band",
    "finite_difference",
    "supersampled_coverage",
]


def finite_difference(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,  # any shape
    eps: float,
    indices: Sequence[int] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` in float64.

    Args:
        f: function of one tensor (called with a float64 copy of ``x``, under
            ``torch.no_grad``) returning a tensor of any fixed shape ``S``.
        x: point at which to differentiate.
        eps: step, in ``x``'s units.
        indices: flat indices into ``x`` to differentiate along; all when None.

    Returns:
        float64 ``[*x.shape, *S]`` when ``indices`` is None, else
        ``[len(indices), *S]``. For scalar ``f`` this is the gradient.

    Example:
        >>> import torch
        >>> from lumigrad.testing.gradcheck import finite_difference
        >>> finite_difference(lambda x: (x**2).sum(), torch.tensor([1.0, 2.0]), 1e-3)
        tensor([2.0000, 4.0000], dtype=torch.float64)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"finite_difference(): x must be a torch.Tensor, got {type(x).__name__}")
    if not eps > 0:
        raise ValueError(f"finite_difference(): eps must be > 0, got {eps!r}")
    x64 = x.detach().to(torch.float64).clone()
    n = x64.numel()
    idx = list(range(n)) if indices is None else [int(i) for i in torch.as_tensor(indices).flatten().tolist()]
    if any(i < 0 or i >= n for i in idx):
        raise ValueError(f"finite_difference(): indices must be in [0, {n}), got {idx}")
    rows = []
    with torch.no_grad():
        for i in idx:
            xp = x64.clone()
            xp.view(-1)[i] += eps
            xm = x64.clone()
            xm.view(-1)[i] -= eps
            rows.append((f(xp).to(torch.float64) - f(xm).to(torch.float64)) / (2 * eps))
    out = torch.stack(rows)
    return out.view(*x.shape, *out.shape[1:]) if indices is None else out


def boundary_band(
    ids: torch.Tensor,  # [B, H, W] integer-valued (e.g. rast[..., 3])
    radius: int = 1,
) -> torch.Tensor:
    """``[B, H, W]`` bool: pixels within ``radius`` (Chebyshev) of a pixel with a different id."""
    if not isinstance(ids, torch.Tensor) or ids.ndim != 3:
        raise ValueError(f"boundary_band(): ids must be a [B, H, W] tensor, got {getattr(ids, 'shape', type(ids))}")
    if radius < 1:
        raise ValueError(f"boundary_band(): radius must be >= 1, got {radius}")
    x = ids.to(torch.float64)[:, None]
    k = 2 * radius + 1
    pad = torch.nn.functional.pad(x, (radius,) * 4, mode="replicate")
    hi = torch.nn.functional.max_pool2d(pad, k, stride=1)
    lo = -torch.nn.functional.max_pool2d(-pad, k, stride=1)
    return (hi != lo)[:, 0]


def assert_close_with_boundary_band(
    actual: torch.Tensor,
    expected: torch.Tensor,
    band_mask: torch.Tensor,  # bool, broadcastable to actual (e.g. [B, H, W, 1] for [B, H, W, C])
    atol: float,
    rtol: float,
    max_flip_fraction: float,
) -> None:
    """Raise ``AssertionError`` unless ``actual`` matches ``expected``.

    Outside ``band_mask`` every element must satisfy
    ``|actual - expected| <= atol + rtol * |expected|``. Inside the band (pixels
    next to a discontinuity, where a tiny shift flips a pixel) at most
    ``max_flip_fraction`` of the elements may violate it. Both must be finite.
    """
    if actual.shape != expected.shape:
        raise AssertionError(f"shape mismatch: actual {list(actual.shape)} vs expected {list(expected.shape)}")
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    if not (torch.isfinite(a).all() and torch.isfinite(e).all()):
        raise AssertionError("actual or expected contains NaN or inf")
    band = torch.broadcast_to(band_mask.to(torch.bool), a.shape)
    bad = (a - e).abs() > atol + rtol * e.abs()
    interior_bad = bad & ~band
    if interior_bad.any():
        worst = ((a - e).abs() * interior_bad).max()
        raise AssertionError(
            f"{int(interior_bad.sum())} of {int((~band).sum())} elements outside the boundary band differ "
            f"(max abs error {float(worst):.3g}, atol {atol}, rtol {rtol})"
        )
    n_band = int(band.sum())
    if n_band:
        frac = float((bad & band).sum()) / n_band
        if frac > max_flip_fraction:
            raise AssertionError(
                f"{frac:.2%} of {n_band} elements in the boundary band differ, more than {max_flip_fraction:.2%}"
            )


def supersampled_coverage(
    rasterize_fn: Callable,
    pos: torch.Tensor,  # [B, V, 4] or [V, 4] clip
    tri: torch.Tensor,  # [F, 3] int
    resolution: Sequence[int],
    factor: int,
    *,
    face_values: torch.Tensor | None = None,  # [F] value per face; 1 when None
    tile: int | None = None,
) -> torch.Tensor:
    """Per-pixel covered fraction ``[B, H, W]`` from rendering at ``factor`` x resolution.

    Rasterizes ``factor * H`` by ``factor * W`` samples with
    ``rasterize_fn(pos, tri, resolution) -> (rast, ...)`` (the contract of
    :func:`lumigrad.ops.rasterize.rasterize`) and box-filters them down: a
    ``factor**2``-sample estimate of each pixel's area coverage. With
    ``face_values`` the samples count ``face_values[face]`` instead of 1 (0 on
    background), e.g. 1 on one object and 0 on its occluders.

    Args:
        rasterize_fn: rasterizer to call.
        pos, tri: as for the rasterizer.
        resolution: output ``(H, W)``.
        factor: samples per pixel along each axis.
        face_values: optional per-face weights.
        tile: render tiles of at most ``tile`` x ``tile`` output pixels per
            call (through a clip-space crop), to bound a brute-force
            rasterizer's memory; one call when None.
    """
    H, W = int(resolution[0]), int(resolution[1])
    if factor < 1 or H < 1 or W < 1:
        raise ValueError(f"supersampled_coverage(): need resolution >= 1 and factor >= 1, got {resolution}, {factor}")
    pos3 = pos if pos.ndim == 3 else pos[None]
    th, tw = (H, W) if tile is None else (min(tile, H), min(tile, W))
    rows = []
    for r0 in range(0, H, th):
        cols = []
        for c0 in range(0, W, tw):
            h, w = min(th, H - r0), min(tw, W - c0)
            crop = _crop_clip(pos3, (H, W), (r0, c0, h, w))
            rast = rasterize_fn(crop, tri, (h * factor, w * factor))[0]
            ids = rast[..., 3].round().long()
            if face_values is None:
                val = (ids > 0).to(pos.dtype)
            else:
                table = torch.cat([torch.zeros(1, dtype=pos.dtype, device=pos.device), face_values.to(pos.dtype)])
                val = table[ids]
            cols.append(val.view(-1, h, factor, w, factor).mean(dim=(2, 4)))
        rows.append(torch.cat(cols, dim=2))
    return torch.cat(rows, dim=1)


def _crop_clip(pos: torch.Tensor, full: tuple[int, int], box: tuple[int, int, int, int]) -> torch.Tensor:
    """Clip positions that render pixel box ``(row0, col0, h, w)`` of a ``full`` image as a whole image."""
    H, W = full
    r0, c0, h, w = box
    if (r0, c0, h, w) == (0, 0, H, W):
        return pos
    # x' = x * W/w + wc * (W/w - 1 - 2 c0/w), y' = y * H/h + wc * (1 - H/h + 2 r0/h): pixel centres map exactly.
    sx, sy = W / w, H / h
    x = pos[..., 0] * sx + pos[..., 3] * (sx - 1 - 2 * c0 / w)
    y = pos[..., 1] * sy + pos[..., 3] * (1 - sy + 2 * r0 / h)
    return torch.stack([x, y, pos[..., 2], pos[..., 3]], dim=-1)
