"""Recover a texture and the lights: fit Spot's albedo texture, the sun direction and the ambient light.

The lumigrad version of Mitsuba's "texture and lighting" inverse-rendering
tutorials and nvdiffrast's texture-fitting example. The geometry and cameras are
known; the unknowns are a ``[T, T, 3]`` albedo texture, the direction of a
directional light and the colour of the ambient light. The light's intensity is
held fixed: albedo times light is otherwise only known up to a common scale.

    python docs/tutorials/fit_texture_lights.py
"""
from __future__ import annotations

import argparse
import json
import math
from importlib import resources

import torch

from lumigrad.losses import l1
from lumigrad.ops import prepare_topology
from lumigrad.optim import Convergence, fit
from lumigrad.render import RasterSettings, render_mesh
from lumigrad.scene import AmbientLight, Camera, DirectionalLight, LambertMaterial, Mesh, TextureParam, read_mesh


def load_spot() -> Mesh:
    """Spot with its UVs (``uvs`` / ``faces_uvs``), centred and scaled to unit radius."""
    with resources.as_file(resources.files("lumigrad.assets") / "spot.obj") as path:
        mesh = read_mesh(path)
    verts = mesh.verts - (mesh.verts.min(0).values + mesh.verts.max(0).values) / 2
    return Mesh(verts / verts.norm(dim=-1).max(), mesh.faces, uvs=mesh.uvs, faces_uvs=mesh.faces_uvs)


def checker_texture(size: int) -> torch.Tensor:
    """A colourful ``[size, size, 3]`` test texture: a checkerboard over a colour gradient."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    check = (((x * 8).floor() + (y * 8).floor()) % 2)[..., None]
    gradient = torch.stack([0.3 + 0.6 * x, 0.3 + 0.5 * y, 0.8 - 0.5 * x], dim=-1)
    return (gradient * (0.55 + 0.45 * check)).clamp(0, 1)


def orbit(views: int, resolution: int) -> Camera:
    azimuth = torch.arange(views) * (2 * math.pi / views)
    eye = torch.stack([3 * torch.sin(azimuth), 0.8 * torch.ones(views), 3 * torch.cos(azimuth)], dim=-1)
    return Camera.look_at(eye, torch.zeros(views, 3), width=resolution, height=resolution, fov_y_deg=40.0)


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0)
    return math.degrees(math.acos(float(cos.clamp(-1, 1))))


def run(resolution: int = 128, views: int = 8, iterations: int = 300, texture_size: int = 64,
        lr: float = 0.03, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    mesh = load_spot()
    cameras = orbit(views, resolution)
    topology = prepare_topology(mesh.faces, mesh.num_verts)
    settings = RasterSettings()
    intensity = math.pi  # fixed, known

    def render(texture: torch.Tensor, to_light: torch.Tensor, ambient: torch.Tensor) -> torch.Tensor:
        material = LambertMaterial(albedo=TextureParam(texture))
        lights = [AmbientLight(color=ambient), DirectionalLight(to_light=to_light, intensity=intensity)]
        return render_mesh(mesh, cameras, material, lights, settings, topology=topology).image

    true_texture = checker_texture(texture_size)
    true_dir = torch.tensor([0.6, 0.7, 0.4])
    true_ambient = torch.tensor([0.25, 0.2, 0.3])
    with torch.no_grad():
        target = render(true_texture, true_dir, true_ambient)

    # Start from a grey texture, a light from above and a neutral ambient.
    params = {
        "texture": torch.full((texture_size, texture_size, 3), 0.5, requires_grad=True),
        "to_light": torch.tensor([0.0, 1.0, 0.0], requires_grad=True),
        "ambient": torch.tensor([0.1, 0.1, 0.1], requires_grad=True),
    }
    init_dir = params["to_light"].detach().clone()

    def closure(it: int) -> torch.Tensor:
        return l1(render(params["texture"], params["to_light"], params["ambient"]), target)

    def clamp(it: int) -> None:  # keep the albedo physical (runs under no_grad after each step)
        params["texture"].clamp_(0, 1)
        params["ambient"].clamp_(min=0)

    with torch.no_grad():
        psnr_before = float(-10 * torch.log10(((render(params["texture"], init_dir, params["ambient"]) - target) ** 2).mean()))
    result = fit(params, closure, lr={"texture": lr, "to_light": lr, "ambient": lr / 3},
                 stop=Convergence(max_iters=iterations, patience=None), post_step=clamp)
    with torch.no_grad():
        final = render(params["texture"], params["to_light"], params["ambient"])
        psnr_after = float(-10 * torch.log10(((final - target) ** 2).mean()))
    return {
        "initial_loss": result.history.loss[0],
        "final_loss": result.history.loss[-1],
        "psnr_before": psnr_before,
        "psnr_after": psnr_after,
        "light_angle_error_deg_before": angle_deg(init_dir, true_dir),
        "light_angle_error_deg_after": angle_deg(params["to_light"].detach(), true_dir),
        "ambient_error_before": float((torch.tensor([0.1, 0.1, 0.1]) - true_ambient).abs().max()),
        "ambient_error_after": float((params["ambient"].detach() - true_ambient).abs().max()),
        "iterations": result.iterations,
        "seconds": result.seconds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--texture-size", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(run(args.resolution, args.views, args.iterations, args.texture_size), indent=2))
