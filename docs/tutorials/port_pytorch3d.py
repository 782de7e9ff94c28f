"""Port a PyTorch3D renderer: convert ``R, T`` and an FoV camera to a lumigrad ``Camera``.

PyTorch3D writes a world-to-view transform as ``R, T`` acting on **row vectors**
(``X_view = X_world @ R + T``) in a view frame with **+X left, +Y up, +Z
forward**, and its NDC has +X left and +Y up, so the top-left pixel is at
NDC (+1, +1). lumigrad uses OpenCV's camera frame (**+X right, +Y down, +Z
forward**), column vectors (``X_cam = world_to_cam @ X_world``) and pixel
intrinsics ``K``. The conversion is a transpose and a flip of x and y:

    world_to_cam = diag(-1, -1, 1, 1) @ [[R^T, T], [0, 1]]

This script re-implements PyTorch3D's ``look_at_view_transform`` and
``FoVPerspectiveCameras`` projection (so PyTorch3D need not be installed), checks
that lumigrad projects every vertex to the same pixel, shows what goes wrong
without the flip, and finally runs PyTorch3D's "camera position optimization"
tutorial with the converter in the loop (it is differentiable).

    python docs/tutorials/port_pytorch3d.py
"""
from __future__ import annotations

import argparse
import json
import math
from importlib import resources

import torch

from lumigrad.losses import mask_loss
from lumigrad.optim import Convergence, fit
from lumigrad.render import render_silhouette
from lumigrad.scene import Camera, Mesh, read_mesh

# --- PyTorch3D's conventions, written out --------------------------------------------


def p3d_look_at_view_transform(dist, elev_deg, azim_deg) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch3D's ``look_at_view_transform(dist, elev, azim)`` (degrees, at the origin, +Y up): ``R [N,3,3], T [N,3]``."""
    dist, elev, azim = (torch.as_tensor(x, dtype=torch.float32).reshape(-1) for x in (dist, elev_deg, azim_deg))
    elev, azim = torch.deg2rad(elev), torch.deg2rad(azim)
    C = torch.stack([dist * torch.cos(elev) * torch.sin(azim), dist * torch.sin(elev), dist * torch.cos(elev) * torch.cos(azim)], -1)
    up = torch.tensor([0.0, 1.0, 0.0]).expand_as(C)
    z = torch.nn.functional.normalize(-C, dim=-1)  # towards the origin
    x = torch.nn.functional.normalize(torch.linalg.cross(up, z), dim=-1)
    y = torch.nn.functional.normalize(torch.linalg.cross(z, x), dim=-1)
    R = torch.stack([x, y, z], dim=1).transpose(1, 2)  # columns are the view axes in world coordinates
    T = -(R.transpose(1, 2) @ C[..., None])[..., 0]
    return R, T


def p3d_project_to_pixels(points: torch.Tensor, R: torch.Tensor, T: torch.Tensor, fov_deg: float, size: int) -> torch.Tensor:
    """Pixel coordinates ``(u right, v down)`` that PyTorch3D's FoVPerspectiveCameras give a square ``size`` image."""
    view = points @ R + T[:, None, :]  # row vectors: [N, P, 3]
    tan_half = math.tan(math.radians(fov_deg) / 2)
    x_ndc = view[..., 0] / (view[..., 2] * tan_half)  # +X left
    y_ndc = view[..., 1] / (view[..., 2] * tan_half)  # +Y up
    return torch.stack([(1 - x_ndc) * size / 2, (1 - y_ndc) * size / 2], dim=-1)


# --- the converter ---------------------------------------------------------------------


def camera_from_pytorch3d(R: torch.Tensor, T: torch.Tensor, fov_deg: float, size: int, flip: bool = True) -> Camera:
    """A lumigrad :class:`Camera` equal to PyTorch3D's ``FoVPerspectiveCameras(R=R, T=T, fov=fov_deg)`` on a square image.

    ``flip=False`` is the common porting mistake (transpose only): it renders the
    image turned by 180 degrees.
    """
    n = R.shape[0]
    w2c = torch.zeros(n, 4, 4, dtype=R.dtype)
    w2c[:, :3, :3] = R.transpose(1, 2)  # row-vector R -> column-vector rotation
    w2c[:, :3, 3] = T
    w2c[:, 3, 3] = 1
    if flip:  # PyTorch3D view (+X left, +Y up) -> OpenCV camera (+X right, +Y down)
        w2c = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=R.dtype)) @ w2c
    # With aspect_ratio=1, FoVPerspectiveCameras' fov spans the shorter image side (both, when square); principal point centred.
    return Camera.from_fov(fov_deg, size, size, w2c)


def load_spot() -> Mesh:
    with resources.as_file(resources.files("lumigrad.assets") / "spot.obj") as path:
        mesh = read_mesh(path)
    verts = mesh.verts - (mesh.verts.min(0).values + mesh.verts.max(0).values) / 2
    return Mesh(verts / verts.norm(dim=-1).max(), mesh.faces)


def inside_fraction(pixels: torch.Tensor, silhouette: torch.Tensor) -> float:
    """Share of pixel positions ``[P, 2]`` that land on the silhouette ``[H, W, 1]`` (1-pixel tolerance)."""
    H, W = silhouette.shape[:2]
    grown = torch.nn.functional.max_pool2d(silhouette[None, None, ..., 0], 3, stride=1, padding=1)[0, 0] > 0.5
    j = pixels[:, 0].floor().long().clamp(0, W - 1)
    i = pixels[:, 1].floor().long().clamp(0, H - 1)
    return float(grown[i, j].float().mean())


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum().clamp(min=1))


def run(resolution: int = 128, iterations: int = 150, lr: float = 0.04, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    mesh = load_spot()
    fov = 50.0

    # 1. Same pixels: PyTorch3D's projection vs lumigrad's, for the converted camera.
    R, T = p3d_look_at_view_transform(2.7, 20.0, 30.0)
    cam = camera_from_pytorch3d(R, T, fov, resolution)
    uv_p3d = p3d_project_to_pixels(mesh.verts[None], R, T, fov, resolution)[0]
    uv_lumigrad = cam.project_to_pixels(mesh.verts)[0]
    max_pixel_error = float((uv_p3d - uv_lumigrad).abs().max())

    # 2. The silhouette lumigrad renders covers the vertices where PyTorch3D puts them; without the flip it does not.
    with torch.no_grad():
        sil = render_silhouette(mesh.verts, mesh.faces, cam)[0]
        sil_noflip = render_silhouette(mesh.verts, mesh.faces, camera_from_pytorch3d(R, T, fov, resolution, flip=False))[0]

    # 3. PyTorch3D's camera-position tutorial, ported: recover (dist, elev, azim) from the target silhouette.
    target = sil[None]
    params = {"dist": torch.tensor(3.2, requires_grad=True), "elev": torch.tensor(5.0, requires_grad=True),
              "azim": torch.tensor(10.0, requires_grad=True)}

    def closure(it: int) -> torch.Tensor:
        R_, T_ = p3d_look_at_view_transform(params["dist"], params["elev"], params["azim"])
        return mask_loss(render_silhouette(mesh.verts, mesh.faces, camera_from_pytorch3d(R_, T_, fov, resolution)), target)

    before = {"dist": 3.2 - 2.7, "elev": 5.0 - 20.0, "azim": 10.0 - 30.0}
    # Degrees and distance have different scales: one learning rate each.
    result = fit(params, closure, lr={"dist": lr * 0.5, "elev": lr * 50, "azim": lr * 50}, schedule="cosine",
                 stop=Convergence(max_iters=iterations, patience=None))
    return {
        "max_pixel_error": max_pixel_error,
        "vertices_on_silhouette": inside_fraction(uv_p3d, sil),
        "vertices_on_silhouette_without_flip": inside_fraction(uv_p3d, sil_noflip),
        "silhouette_iou_with_vs_without_flip": iou(sil, sil_noflip),
        "initial_loss": result.history.loss[0],
        "final_loss": result.history.loss[-1],
        "pose_error_before": before,
        "pose_error_after": {k: float(params[k].detach()) - v for k, v in {"dist": 2.7, "elev": 20.0, "azim": 30.0}.items()},
        "iterations": result.iterations,
        "seconds": result.seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=150)
    args = parser.parse_args()
    print(json.dumps(run(args.resolution, args.iterations), indent=2))
