"""Images for reports: PNG/JPG files, labelled comparison grids, turntable GIFs.

Images follow the library convention: channels-last float in ``[0, 1]``
(``[H, W, C]`` or a single-image batch ``[1, H, W, C]``, C = 1, 3 or 4), or
``uint8``. Every file is written atomically (temporary file + rename), so an
interrupted write never leaves a truncated image or destroys the previous one.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np
import torch

from lumigrad._runtime.files import atomic_path

__all__ = ["save_image", "image_grid", "save_turntable_gif"]

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _shape_dtype(x) -> str:
    return f"{str(x.dtype).replace('torch.', '')} {list(x.shape)}"


def _to_uint8(fn: str, name: str, img, ndims: tuple[int, ...]) -> np.ndarray:
    """Validate a float-in-[0,1] or uint8 channels-last image (stack) and return uint8 numpy."""
    if isinstance(img, torch.Tensor):
        arr = img.detach().cpu().numpy()
    elif isinstance(img, np.ndarray):
        arr = img
    else:
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor or numpy array, got {type(img).__name__}")
    if arr.ndim not in ndims or arr.shape[-1] not in (1, 3, 4) or 0 in arr.shape:
        want = " or ".join({3: "[H, W, C]", 4: "[N, H, W, C]"}[n] for n in ndims)
        raise ValueError(f"{fn}(): {name} must be {want} with C in (1, 3, 4), got {_shape_dtype(img)}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{fn}(): {name} must be float in [0, 1] or uint8, got {_shape_dtype(img)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{fn}(): {name} contains NaN or inf values")
    # Values outside [0, 1] (HDR, overshoot) are clipped, as any 8-bit writer must.
    return np.round(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_suffix(fn: str, path, allowed: tuple[str, ...]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{fn}(): path must be a str or PathLike, got {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() not in allowed:
        raise ValueError(f"{fn}(): path must end in one of {list(allowed)}, got {str(p)!r}")
    return p


def save_image(path: str | os.PathLike, img: torch.Tensor | np.ndarray) -> Path:
    """Write one image as PNG or JPEG, atomically.

    Args:
        path: ``.png``, ``.jpg`` or ``.jpeg``; parent folders are created.
        img: ``[H, W, C]`` or ``[1, H, W, C]``, C in (1, 3, 4); float in ``[0, 1]``
            (clipped, rounded to 8 bits) or ``uint8``. Row 0 is the top of the
            picture. JPEG has no alpha: C = 4 is written as RGB.

    Returns:
        The path written.

    Example::

        save_image("out/render.png", torch.rand(64, 64, 3))
    """
    fn = "save_image"
    p = _check_suffix(fn, path, _IMAGE_SUFFIXES)
    if isinstance(img, (torch.Tensor, np.ndarray)) and img.ndim == 4:
        if img.shape[0] != 1:
            raise ValueError(f"{fn}(): img must be [H, W, C] or [1, H, W, C], got {_shape_dtype(img)}; save views one by one")
        img = img[0]
    arr = _to_uint8(fn, "img", img, (3,))
    if p.suffix.lower() in (".jpg", ".jpeg") and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    with atomic_path(p) as tmp:
        iio.imwrite(tmp, arr)
    return p


def _label_strip(text: str, width: int, height: int) -> np.ndarray:
    """``[height, width, 3]`` uint8: black text centred on white (Pillow's built-in font)."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(8, height - 6)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max(0, (width - (right - left)) // 2 - left)
    y = max(0, (height - (bottom - top)) // 2 - top)
    draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(im)


def image_grid(
    rows: Sequence[Sequence[torch.Tensor]],  # rows[i][j]: [H, W, C]
    labels: Sequence[str] | None = None,
    pad: int = 2,
    pad_value: float = 1.0,
) -> torch.Tensor:  # [H', W', 3]
    """Tile images into one picture, e.g. one row per view: target | fitted | ``|diff|``.

    Each row is as tall as its tallest image and each column as wide as its
    widest; smaller images sit top-left in their cell. Rows may be shorter
    than others (the missing cells stay blank). Grey (C = 1) is repeated to RGB
    and alpha (C = 4) is dropped.

    Args:
        rows: ``rows[i][j]`` is an ``[H, W, C]`` float image in ``[0, 1]`` (or uint8), C in (1, 3, 4).
        labels: optional column headers, one per column, drawn in a strip above the grid.
        pad: gap in pixels between cells and around the border, ``>= 0``.
        pad_value: grey level of the gaps and blank cells, in ``[0, 1]``.

    Returns:
        ``[H', W', 3]`` float32 in ``[0, 1]`` on the first image's device. Not differentiable.

    Example::

        grid = image_grid([[target[i], pred[i], (target[i] - pred[i]).abs()] for i in range(B)],
                          labels=["target", "fitted", "|diff|"])
        save_image("out/compare.png", grid)
    """
    fn = "image_grid"
    if isinstance(rows, torch.Tensor) or not isinstance(rows, Sequence) or len(rows) == 0:
        raise ValueError(f"{fn}(): rows must be a non-empty list of lists of [H, W, C] images")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"{fn}(): pad must be an int >= 0, got {pad!r}")
    if not 0.0 <= float(pad_value) <= 1.0:
        raise ValueError(f"{fn}(): pad_value must be in [0, 1], got {pad_value!r}")
    cells: list[list[np.ndarray]] = []
    device = None
    for i, row in enumerate(rows):
        if isinstance(row, torch.Tensor) or not isinstance(row, Sequence) or len(row) == 0:
            raise ValueError(f"{fn}(): rows[{i}] must be a non-empty list of [H, W, C] images")
        out_row = []
        for j, img in enumerate(row):
            arr = _to_uint8(fn, f"rows[{i}][{j}]", img, (3,))
            if arr.shape[-1] == 1:
                arr = np.repeat(arr, 3, axis=-1)
            out_row.append(arr[..., :3])
            if device is None and isinstance(img, torch.Tensor):
                device = img.device
        cells.append(out_row)
    ncols = max(len(r) for r in cells)
    if labels is not None:
        if isinstance(labels, str) or len(labels) != ncols:
            raise ValueError(f"{fn}(): labels must be a list of {ncols} column headers, got {labels!r}")
    heights = [max(a.shape[0] for a in r) for r in cells]
    widths = [max(r[j].shape[1] for r in cells if j < len(r)) for j in range(ncols)]
    label_h = 0
    if labels is not None:
        label_h = int(np.clip(round(0.12 * min(heights)), 12, 32))
    H = pad + label_h + sum(h + pad for h in heights)
    W = pad + sum(w + pad for w in widths)
    canvas = np.full((H, W, 3), int(round(float(pad_value) * 255)), dtype=np.uint8)
    xs = np.cumsum([pad] + [w + pad for w in widths])[:-1]
    if labels is not None:
        for j, text in enumerate(labels):
            canvas[pad : pad + label_h, xs[j] : xs[j] + widths[j]] = _label_strip(str(text), widths[j], label_h)
    y = pad + label_h
    for r, h in zip(cells, heights):
        for j, arr in enumerate(r):
            canvas[y : y + arr.shape[0], xs[j] : xs[j] + arr.shape[1]] = arr
        y += h + pad
    out = torch.from_numpy(canvas.astype(np.float32) / 255.0)
    return out.to(device) if device is not None else out


def save_turntable_gif(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray | Sequence[torch.Tensor],  # [N, H, W, C] or N x [H, W, C]
    fps: float = 15.0,
) -> Path:
    """Write an animated GIF that loops forever, atomically.

    Args:
        path: ``.gif`` file; parent folders are created.
        frames: ``[N, H, W, C]`` or a list of ``[H, W, C]`` images of one size,
            float in ``[0, 1]`` or uint8, C in (1, 3, 4) (alpha is dropped).
            GIF stores 256 colours per frame, so colours are quantised, and
            Pillow merges consecutive identical frames (their durations add up).
        fps: frames per second, ``> 0`` (GIF timing has 10 ms resolution).

    Returns:
        The path written.

    Example::

        frames = [render(orbit_camera(az)) [0] for az in range(0, 360, 10)]
        save_turntable_gif("out/turntable.gif", frames, fps=12)
    """
    fn = "save_turntable_gif"
    p = _check_suffix(fn, path, (".gif",))
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (0 < fps < float("inf")):
        raise ValueError(f"{fn}(): fps must be a float > 0, got {fps!r}")
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        arr = _to_uint8(fn, "frames", frames, (4,))
    else:
        if not isinstance(frames, Sequence) or len(frames) == 0:
            raise ValueError(f"{fn}(): frames must be [N, H, W, C] or a non-empty list of [H, W, C] images")
        items = [_to_uint8(fn, f"frames[{i}]", f, (3,)) for i, f in enumerate(frames)]
        if len({a.shape for a in items}) != 1:
            raise ValueError(f"{fn}(): all frames must have one shape, got {sorted({a.shape for a in items})}")
        arr = np.stack(items)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = np.ascontiguousarray(arr[..., :3])
    with atomic_path(p) as tmp:
        iio.imwrite(tmp, arr, duration=1000.0 / fps, loop=0)
    return p
