"""Fit a mesh to silhouettes: deform a sphere into Spot from masks seen by a ring of cameras.

The lumigrad version of PyTorch3D's "deform a source mesh to form a target mesh
using 3D loss functions" / "fit a mesh with texture via rendering" and
nvdiffrast's silhouette examples. Run it as a script:

    python docs/tutorials/fit_silhouette.py --out out/fit_silhouette

and, in another terminal, watch the fit with ``lumigrad view out/fit_silhouette``.
"""
from __future__ import annotations

import argparse
import json
import math
from importlib import resources
from pathlib import Path

import torch

from lumigrad.geometry import icosphere
from lumigrad.losses import mask_loss
from lumigrad.ops import prepare_topology
from lumigrad.optim import CholeskySolver, Convergence, compute_matrix, fit, from_differential, to_differential
from lumigrad.render import render_silhouette
from lumigrad.scene import Camera, Mesh, read_mesh, write_mesh
from lumigrad.viewer import save_cameras


def load_spot() -> Mesh:
    """Spot (Keenan Crane, public domain) ships with lumigrad; centre it and scale it to unit radius."""
    with resources.as_file(resources.files("lumigrad.assets") / "spot.obj") as path:
        mesh = read_mesh(path)
    verts = mesh.verts - (mesh.verts.min(0).values + mesh.verts.max(0).values) / 2
    return Mesh(verts / verts.norm(dim=-1).max(), mesh.faces)


def ring_cameras(views: int, resolution: int, distance: float = 3.0) -> Camera:
    """``views`` cameras on two rings (above and below the equator) looking at the origin."""
    i = torch.arange(views, dtype=torch.float32)
    azimuth = i * (2 * math.pi / views)
    elevation = torch.where(i % 2 == 0, torch.tensor(0.5), torch.tensor(-0.3))
    eye = distance * torch.stack([torch.cos(elevation) * torch.sin(azimuth), torch.sin(elevation),
                                  torch.cos(elevation) * torch.cos(azimuth)], dim=-1)
    return Camera.look_at(eye, torch.zeros(views, 3), width=resolution, height=resolution, fov_y_deg=40.0)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean intersection-over-union of two batches of binary masks (thresholded at 0.5)."""
    a, b = a > 0.5, b > 0.5
    return float(((a & b).sum((1, 2, 3)).float() / (a | b).sum((1, 2, 3)).clamp(min=1).float()).mean())


def run(resolution: int = 128, views: int = 12, iterations: int = 300, out: str | None = None,
        lr: float = 0.03, smoothness: float = 19.0, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    # 1. Targets: silhouettes of the real mesh from every camera.
    target_mesh = load_spot()
    cameras = ring_cameras(views, resolution)
    with torch.no_grad():
        targets = render_silhouette(target_mesh.verts, target_mesh.faces, cameras)  # [views, H, W, 1]

    # 2. The model: a sphere whose vertices we optimise. The large-steps
    #    parameterization (Nicolet et al. 2021) optimises u = (I + lambda L) v, which
    #    spreads each silhouette gradient over a neighbourhood and keeps the mesh smooth.
    verts0, faces = icosphere(3, radius=0.6)
    M = compute_matrix(verts0, faces, lambda_=smoothness)
    solver = CholeskySolver(M)
    topology = prepare_topology(faces, verts0.shape[0])  # edge and face adjacency for the visibility gradients, built once
    params = {"u": to_differential(M, verts0).requires_grad_()}

    def current_verts() -> torch.Tensor:
        return from_differential(M, params["u"], solver)

    def closure(it: int) -> torch.Tensor:
        sil = render_silhouette(current_verts(), faces, cameras, topology=topology)
        return mask_loss(sil, targets)

    # 3. Optional: write the current mesh now and then so `lumigrad view OUT` shows the fit live.
    callbacks = []
    if out is not None:
        out_dir = Path(out)
        save_cameras(out_dir / "cameras.json", cameras)

        def snapshot(state) -> None:
            if state.iteration % 10 == 0 or state.iteration == iterations - 1:
                write_mesh(out_dir / "current.obj", Mesh(current_verts().detach(), faces))

        callbacks.append(snapshot)

    with torch.no_grad():
        iou_before = iou(render_silhouette(verts0, faces, cameras), targets)
    result = fit(params, closure, optimizer="adam_uniform", lr=lr,
                 stop=Convergence(max_iters=iterations, patience=None), callbacks=callbacks)
    with torch.no_grad():
        iou_after = iou(render_silhouette(current_verts(), faces, cameras), targets)
    return {
        "initial_loss": result.history.loss[0],
        "final_loss": result.history.loss[-1],
        "iou_before": iou_before,
        "iou_after": iou_after,
        "iterations": result.iterations,
        "seconds": result.seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", default=None, help="folder for current.obj and cameras.json (for lumigrad view)")
    args = parser.parse_args()
    print(json.dumps(run(args.resolution, args.views, args.iterations, args.out), indent=2))
