"""Synthetic datasets with known ground truth (``lumigrad synth``), so every task can check itself.

A scene is a mesh (object frame), a material, lights and an object pose; it is
rendered from an orbit of cameras and written in the nerfstudio layout
(:func:`lumigrad.scene.datasets.write_dataset`) with ``ground_truth.json`` and
``ground_truth/mesh.obj`` (plus its texture when it has one).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from lumigrad.geometry.primitives import icosphere
from lumigrad.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, random_rotation
from lumigrad.render.raster import RasterSettings, render_mesh
from lumigrad.scene.camera import Camera
from lumigrad.scene.datasets import write_dataset
from lumigrad.scene.io import write_mesh
from lumigrad.scene.lights import AmbientLight, DirectionalLight, SHEnvironmentLight
from lumigrad.scene.materials import GGXMaterial, LambertMaterial
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.rigs import orbit_cameras
from lumigrad.scene.scene import ObjectTransform
from lumigrad.tasks._procedural import spot_textured, torus_knot
from lumigrad.tasks._scenefile import lights_to_json, material_to_json

__all__ = ["SynthScene", "SCENES", "make_scene", "render_views", "synthesize", "default_lights"]


@dataclass
class SynthScene:
    """A ground-truth scene: ``mesh`` in its object frame, placed by ``transform``."""

    name: str
    mesh: Mesh
    material: object
    lights: list
    transform: ObjectTransform = field(default_factory=ObjectTransform)
    camera_distance: float = 3.0
    symmetries: list | None = None  # object-frame rotations that map the mesh onto itself


def default_lights(dtype=torch.float32) -> list:
    """Ambient fill plus a key and a back directional light (the demo's lighting)."""
    return [
        AmbientLight(color=torch.tensor([0.25, 0.25, 0.25], dtype=dtype)),
        DirectionalLight(to_light=torch.tensor([0.4, 0.8, 0.45], dtype=dtype), color=torch.tensor([0.8, 0.8, 0.8], dtype=dtype)),
        DirectionalLight(to_light=torch.tensor([-0.6, -0.2, -0.7], dtype=dtype), color=torch.tensor([0.4, 0.4, 0.45], dtype=dtype)),
    ]


def _spot(dtype):
    m = spot_textured(dtype)
    # The texture is the albedo: Lambert with albedo 1, modulated by the mesh texture.
    return SynthScene("spot", m, LambertMaterial(1.0), default_lights(dtype))


def _spot_grey(dtype):
    m = spot_textured(dtype)
    return SynthScene("spot_grey", Mesh(m.verts, m.faces), LambertMaterial(torch.tensor([0.9, 0.9, 0.9], dtype=dtype)),
                      default_lights(dtype))


def _knot(dtype):
    # The (2, 3) knot maps onto itself under rotations by 120 and 240 degrees about y, and under the half
    # turn about x (t -> -t on the curve) composed with those: the dihedral group of order 6.
    flip = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    turns = [axis_angle_to_matrix(torch.tensor([0.0, a, 0.0], dtype=torch.float64)) for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    sym = [r.tolist() for r in turns] + [(r @ flip).tolist() for r in turns]
    return SynthScene("torus_knot", torus_knot(dtype=dtype, segments=162), LambertMaterial(torch.tensor([0.8, 0.7, 0.6], dtype=dtype)),
                      default_lights(dtype), symmetries=sym)


def _sphere(dtype):
    v, f = icosphere(4, radius=0.9, dtype=dtype)
    mat = GGXMaterial(base_color=torch.tensor([0.8, 0.35, 0.2], dtype=dtype), roughness=torch.tensor(0.35, dtype=dtype),
                      metallic=torch.tensor(0.6, dtype=dtype))
    lights = [
        AmbientLight(color=torch.tensor([0.1, 0.1, 0.1], dtype=dtype)),
        DirectionalLight(to_light=torch.tensor([0.5, 0.7, 0.6], dtype=dtype), intensity=torch.tensor(3.0, dtype=dtype)),
        DirectionalLight(to_light=torch.tensor([-0.7, 0.2, 0.5], dtype=dtype), intensity=torch.tensor(1.5, dtype=dtype)),
    ]
    return SynthScene("sphere", Mesh(v, f), mat, lights)


def _spot_sh(dtype):
    s = _spot(dtype)
    coeffs = torch.zeros(9, 3, dtype=dtype)
    coeffs[0] = torch.tensor([0.8, 0.8, 0.8])
    coeffs[1] = torch.tensor([0.3, 0.25, 0.2])  # y (up): brighter from above
    coeffs[3] = torch.tensor([-0.15, 0.0, 0.1])
    coeffs[6] = torch.tensor([0.1, 0.05, 0.0])
    s.lights = [SHEnvironmentLight(coeffs)]
    s.name = "spot_sh"
    return s


SCENES: dict[str, Callable] = {"spot": _spot, "spot_grey": _spot_grey, "torus_knot": _knot, "sphere": _sphere, "spot_sh": _spot_sh}


def make_scene(name: str, *, random_pose: bool = False, seed: int = 0, dtype=torch.float32) -> SynthScene:
    """Build scene ``name`` (one of :data:`SCENES`); ``random_pose`` rotates it uniformly at random (seeded)."""
    if name not in SCENES:
        raise ValueError(f"synth: unknown scene {name!r}; choose from {sorted(SCENES)}")
    s = SCENES[name](dtype)
    if random_pose:
        g = torch.Generator().manual_seed(seed)
        rot = random_rotation(1, generator=g, dtype=dtype)[0]
        t = (torch.rand(3, generator=g, dtype=torch.float64) - 0.5).to(dtype) * 0.2
        s.transform = ObjectTransform(rotation=rot, translation=t)
    return s


def render_views(scene: SynthScene, cams: Camera, settings: RasterSettings = RasterSettings()) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [N, H, W, 3], masks [N, H, W, 1])`` of the scene."""
    with torch.no_grad():
        out = render_mesh(scene.mesh, cams, scene.material, scene.lights, settings, transform=scene.transform)
    return out.image, out.alpha


def ground_truth_json(scene: SynthScene) -> dict:
    m = scene.transform.matrix(scene.mesh.dtype)
    return {
        "scene": scene.name,
        "mesh": "ground_truth/mesh.obj",
        "material": material_to_json(scene.material),
        "lights": lights_to_json(scene.lights),
        "object_pose": {"rotation": m[:3, :3].double().tolist(), "translation": m[:3, 3].double().tolist(),
                        "axis_angle": matrix_to_axis_angle(m[:3, :3].double()).tolist()},
        "textured": scene.mesh.texture is not None,
        **({"symmetries": scene.symmetries} if scene.symmetries else {}),
    }


def synthesize(name: str, out_dir, *, views: int = 24, resolution: int = 128, random_pose: bool = False,
               seed: int = 0, fov_y_deg: float = 40.0, lights: list | None = None) -> dict:
    """Render scene ``name`` from ``views`` orbit cameras and write the dataset to ``out_dir``.

    ``lights`` (optional) replaces the scene's lights.

    Returns:
        The ground-truth dict also written to ``ground_truth.json``.
    """
    scene = make_scene(name, random_pose=random_pose, seed=seed)
    if lights is not None:
        scene.lights = list(lights)
    cams = orbit_cameras(views, resolution, distance=scene.camera_distance, fov_y_deg=fov_y_deg)
    images, masks = render_views(scene, cams)
    gt = ground_truth_json(scene)
    out = Path(out_dir)
    write_mesh(out / "ground_truth" / "mesh.obj", scene.mesh)
    write_dataset(out, images, cams, masks, gt)
    return gt
