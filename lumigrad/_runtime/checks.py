"""Validation of raw tensors at the public boundary, before any kernel runs.

A Warp out-of-bounds write crashes the process, so every index and shape is
checked here first. Messages follow ``fn(): arg must be <expected>, got <got>``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _desc(t: torch.Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {list(t.shape)}"


def check_float_tensor(
    fn: str,
    name: str,
    t,
    ndims: Sequence[int],
    last: int | None = None,
    expected: str | None = None,
) -> torch.Tensor:
    """Require a float32/float64 tensor with ``t.ndim in ndims`` (and last dim ``last``)."""
    exp = expected or f"a float tensor with {' or '.join(map(str, ndims))} dims" + (
        f" and last dim {last}" if last is not None else ""
    )
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}(): {name} must be a torch.Tensor ({exp}), got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{fn}(): {name} must be {exp} (float32 or float64), got {_desc(t)}")
    if t.ndim not in ndims or (last is not None and t.shape[-1] != last):
        raise ValueError(f"{fn}(): {name} must be {exp}, got {_desc(t)}")
    return t


def check_finite(fn: str, name: str, t: torch.Tensor) -> None:
    """Reject NaN/inf values (one host sync; call at the public boundary only)."""
    if not t.numel():
        return
    # A finite sum means every element is finite (one cheap reduction, no mask tensor).
    if _cpu_array(t) is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            if bool(np.isfinite(_cpu_array(t).sum())):
                return
    elif bool(torch.isfinite(t.detach().sum())):
        return
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{fn}(): {name} contains {bad} NaN or inf values")


def check_faces(fn: str, tri, num_verts: int, name: str = "tri") -> torch.Tensor:
    """Validate an ``[F, 3]`` integer index tensor against ``num_verts``; return it as int32."""
    if not isinstance(tri, torch.Tensor):
        raise TypeError(f"{fn}(): {name} must be an int32 torch.Tensor [F, 3], got {type(tri).__name__}")
    if tri.dtype.is_floating_point or tri.dtype == torch.bool or tri.is_complex():
        raise ValueError(f"{fn}(): {name} must be int32 [F, 3], got {_desc(tri)} (cast with .int())")
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"{fn}(): {name} must be int32 [F, 3], got {_desc(tri)}")
    if tri.shape[0] == 0:
        raise ValueError(f"{fn}(): {name} is empty (0 faces); nothing to render")
    if num_verts <= 0:
        raise ValueError(f"{fn}(): the mesh has no vertices but {name} has {tri.shape[0]} faces")
    a = _cpu_array(tri)
    if a is not None and a.dtype in (np.int32, np.int64) and a.flags.c_contiguous:
        # One pass: negative indices reinterpret as unsigned values >= 2**31, above any valid index.
        if int(a.view(np.uint32 if a.dtype == np.int32 else np.uint64).max()) < num_verts:
            return tri.to(torch.int32).contiguous()
    lo, hi = (int(a.min()), int(a.max())) if a is not None else (int(x) for x in torch.aminmax(tri))
    if lo < 0:
        raise ValueError(f"{fn}(): {name} has negative vertex index {lo}")
    if hi >= num_verts:
        raise ValueError(f"{fn}(): {name} has vertex index {hi} out of range for {num_verts} vertices")
    return tri.to(torch.int32).contiguous()


def check_rast_ids(fn: str, rast: torch.Tensor, num_faces: int) -> torch.Tensor:
    """Validate ``rast[..., 3]`` (tri_id + 1) against ``num_faces``; return it flat and contiguous.

    One copy of the strided channel, then one min/max pass, in numpy on CPU (a
    torch copy of the strided channel runs on torch's OpenMP workers, which then
    spin and take the cores from the Warp kernels that follow; reducing the
    strided view directly cost 13-18 ms at 512²).
    """
    a = _cpu_array(rast)
    if a is not None:
        ids_np = np.ascontiguousarray(a.reshape(-1, a.shape[-1])[:, 3])
        ids = torch.from_numpy(ids_np)
        lo, hi = (float(ids_np.min()), float(ids_np.max())) if ids_np.size else (0.0, 0.0)
    else:
        ids = rast[..., 3].detach().contiguous().view(-1)
        lo, hi = (float(x) for x in torch.aminmax(ids))
    if not (lo >= 0 and hi <= num_faces):  # also false for NaN
        raise ValueError(
            f"{fn}(): rast[..., 3] (tri_id + 1) must be in [0, {num_faces}] for {num_faces} faces, got range [{lo:g}, {hi:g}]"
        )
    return ids


def rast_triangle_ids(fn: str, rast: torch.Tensor, num_faces: int) -> torch.Tensor:
    """Validated per-pixel triangle indices ``[B*H*W]`` int32 (-1 where empty) from ``rast[..., 3]``.

    :func:`check_rast_ids` and the conversion in one go (numpy on CPU, so no
    torch OpenMP workers wake up on the hot path).
    """
    ids = check_rast_ids(fn, rast, num_faces)
    a = _cpu_array(ids)
    if a is None:
        return ids.to(torch.int32) - 1
    out = a.astype(np.int32)  # truncates, as the kernels' int(rast[p, 3]) does
    out -= 1
    return torch.from_numpy(out)


def int_range(t: torch.Tensor) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer tensor (numpy on CPU: no torch OpenMP wake-up)."""
    a = _cpu_array(t)
    if a is not None:
        return int(a.min()), int(a.max())
    lo, hi = torch.aminmax(t)
    return int(lo), int(hi)


def check_resolution(fn: str, resolution) -> tuple[int, int]:
    """Return ``(H, W)`` as positive ints (bools are refused: ``(True, True)`` is not a size)."""
    if isinstance(resolution, (str, bytes)) or any(isinstance(r, (bool, np.bool_)) for r in _items(resolution)):
        raise ValueError(f"{fn}(): resolution must be (height, width) positive ints, got {resolution!r}")
    try:
        h, w = (int(r) for r in resolution)
        ok = all(float(r) == int(r) for r in resolution)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}(): resolution must be (height, width) positive ints, got {resolution!r}") from None
    if not ok or h <= 0 or w <= 0:
        raise ValueError(f"{fn}(): resolution must be (height, width) positive ints, got {resolution!r}")
    return h, w


def _items(seq) -> list:
    try:
        return list(seq)
    except TypeError:
        return []


def check_same_device(fn: str, **tensors: torch.Tensor) -> torch.device:
    """All given tensors share one device; return it."""
    devs = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor)}
    first = next(iter(devs.values()))
    if any(d != first for d in devs.values()):
        listing = ", ".join(f"{k} on {v}" for k, v in devs.items())
        raise ValueError(f"{fn}(): inputs must share one device, got {listing}")
    return first


def _cpu_array(t: torch.Tensor) -> np.ndarray | None:
    """A numpy view of a CPU tensor, else None.

    The checks reduce CPU tensors in numpy, on one thread: a torch reduction runs
    on torch's OpenMP workers, which keep spinning for milliseconds afterwards and
    take the cores from the Warp kernels that follow (measured: ~5 ms of a 40 ms
    rasterize at 82k triangles on 2 cores).
    """
    if t.device.type != "cpu":
        return None
    try:
        return t.detach().numpy()
    except (RuntimeError, TypeError):  # e.g. conj/neg bit set, or a dtype numpy lacks
        return None
