"""Isotropic remeshing between optimisation stages (coarse-to-fine geometry fits).

Wraps ``gpytoolbox.remesh_botsch`` (Botsch & Kobbelt 2004: split long edges,
collapse short ones, flip to even valence, tangential relaxation, reprojection
onto the input surface). Remeshing changes V and F, so the optimizer has to be
rebuilt afterwards; inside :func:`lumigrad.optim.fit.fit` a callback does it with
``state.replace_params(...)``.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from lumigrad._runtime.checks import check_faces, check_finite, check_float_tensor

__all__ = ["remesh"]

logger = logging.getLogger(__name__)


def remesh(
    verts: torch.Tensor,  # [V, 3]
    faces: torch.Tensor,  # [F, 3] int
    target_edge_length: float,
    iterations: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropically remesh a triangle mesh to a target edge length.

    Runs on the CPU in float64 (gpytoolbox) whatever the input device; the
    result comes back on ``verts``' device and dtype. The output is a new
    topology: it is not differentiable and carries no gradient history.

    Args:
        verts: ``[V, 3]`` float32/float64 vertex positions.
        faces: ``[F, 3]`` integer vertex indices in ``[0, V)``; a manifold mesh.
        target_edge_length: desired edge length, ``> 0``, in the units of ``verts``.
            Halving it roughly quadruples the face count.
        iterations: remeshing passes, ``>= 1`` (each: split, collapse, flip, relax, project).

    Returns:
        ``(verts, faces)``: ``[V', 3]`` with ``verts``' dtype and device (detached),
        and ``[F', 3]`` int32 on the same device.

    Example::

        import trimesh
        m = trimesh.creation.icosphere(subdivisions=2)
        v = torch.tensor(m.vertices, dtype=torch.float32)
        f = torch.tensor(m.faces, dtype=torch.int32)
        v2, f2 = remesh(v, f, target_edge_length=0.1)
    """
    fn = "remesh"
    check_float_tensor(fn, "verts", verts, (2,), last=3)
    check_finite(fn, "verts", verts)
    faces = check_faces(fn, faces, int(verts.shape[0]), name="faces")
    if isinstance(faces, torch.Tensor) and faces.device != verts.device:
        raise ValueError(f"{fn}(): inputs must share one device, got verts on {verts.device}, faces on {faces.device}")
    try:
        h = float(target_edge_length)
    except (TypeError, ValueError):
        raise TypeError(
            f"{fn}(): target_edge_length must be a float > 0, got {type(target_edge_length).__name__}"
        ) from None
    if not (h > 0.0 and np.isfinite(h)):
        raise ValueError(f"{fn}(): target_edge_length must be a finite float > 0, got {target_edge_length!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"{fn}(): iterations must be an int >= 1, got {iterations!r}")

    import gpytoolbox  # imported lazily: heavy, and only remeshing needs it

    v_np = verts.detach().cpu().numpy().astype(np.float64)
    f_np = faces.cpu().numpy().astype(np.int32)
    try:
        v_out, f_out = gpytoolbox.remesh_botsch(v_np, f_np, i=iterations, h=h, project=True)
    except Exception as exc:  # gpytoolbox raises assorted errors on non-manifold input
        raise RuntimeError(f"{fn}(): gpytoolbox.remesh_botsch failed ({exc}); is the mesh manifold?") from exc
    logger.debug("remesh(): %d verts / %d faces -> %d / %d (h=%g)", len(v_np), len(f_np), len(v_out), len(f_out), h)
    v_t = torch.from_numpy(np.ascontiguousarray(v_out)).to(device=verts.device, dtype=verts.dtype)
    f_t = torch.from_numpy(np.ascontiguousarray(f_out).astype(np.int32)).to(device=verts.device)
    return v_t, f_t
