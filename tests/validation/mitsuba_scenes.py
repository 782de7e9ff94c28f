"""Scenes and gradient helpers shared by the Mitsuba validation tests and bench/raytrace.py."""
from __future__ import annotations

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from lumigrad.geometry.primitives import icosphere, plane
from lumigrad.render.path import render_trace
from lumigrad.scene import Mesh
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import DirectionalLight, PointLight
from lumigrad.scene.materials import LambertMaterial
from lumigrad.scene.trace_types import Shape, TraceSettings

DT = torch.float64


def _t(*x):
    return torch.tensor(x, dtype=DT)


def build(name: str, res: int = 32, sphere_dx=0.0, light_dx=0.0, albedo_d=0.0):
    """``(shapes, camera, lights)`` of a named validation scene; the extra args are the differentiated parameters."""
    v, f = icosphere(4, dtype=DT)
    shift = torch.stack([sphere_dx, sphere_dx * 0, sphere_dx * 0]) if isinstance(sphere_dx, torch.Tensor) else _t(sphere_dx, 0.0, 0.0)
    v = v * 0.7 + shift
    pv, pf = plane(6.0, dtype=DT)
    pv = pv - _t(0.0, 0.7, 0.0)
    cam = Camera.look_at(_t(0.0, 1.5, 4.0), _t(0.0, -0.3, 0.0), width=res, height=res)
    alb = 0.6 + albedo_d
    sphere = Shape(Mesh(v, f), LambertMaterial(_t(0.8, 0.5, 0.3)))
    floor = Shape(Mesh(pv, pf), LambertMaterial(alb if isinstance(alb, torch.Tensor) else float(alb)))
    lpos = _t(1.5, 3.0, 1.0) + (torch.stack([light_dx, light_dx * 0, light_dx * 0]) if isinstance(light_dx, torch.Tensor)
                                else _t(light_dx, 0.0, 0.0))
    if name == "diffuse_sphere":
        return [sphere], cam, [PointLight(lpos, intensity=25.0)]
    if name == "shadow_plane":
        return [sphere, floor], cam, [PointLight(lpos, intensity=25.0)]
    if name == "directional_shadow":
        return [sphere, floor], cam, [DirectionalLight(_t(0.5, 1.0, 0.3), intensity=2.0)]
    if name == "area_light":
        s = 0.4
        qv = _t(-s, 0, -s) + torch.tensor([[0, 0, 0], [2 * s, 0, 0], [0, 0, 2 * s], [2 * s, 0, 2 * s]], dtype=DT)
        qv = qv + _t(1.0, 2.5, 0.5)
        lamp = Shape(Mesh(qv, torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)), LambertMaterial(0.0),
                     emission=_t(20.0, 20.0, 20.0))
        return [sphere, floor, lamp], cam, []
    raise ValueError(name)


SCENES = ("diffuse_sphere", "shadow_plane", "directional_shadow", "area_light")
PARAMS = ("sphere_dx", "light_dx", "albedo_d")


def lumigrad_grad_image(name: str, param: str, res: int, settings: TraceSettings) -> np.ndarray:
    """Per-pixel ``dI/dparam`` at 0 by forward-mode AD, ``[H, W, 3]``."""
    with fwAD.dual_level():
        x = fwAD.make_dual(torch.zeros((), dtype=DT), torch.ones((), dtype=DT))
        shapes, cam, lights = build(name, res, **{param: x})
        img = render_trace(shapes, cam, lights, settings).image
        return fwAD.unpack_dual(img).tangent[0].numpy()


def lumigrad_fd_image(name: str, param: str, res: int, settings: TraceSettings, h: float) -> np.ndarray:
    with torch.no_grad():
        ims = [render_trace(*build(name, res, **{param: s * h}), settings).image[0].numpy() for s in (1, -1)]
    return (ims[0] - ims[1]) / (2 * h)


def mitsuba_grad_image(mi, dr, name: str, param: str, res: int, spp: int, integrator: dict) -> np.ndarray:
    """Per-pixel ``dI/dparam`` by Mitsuba's forward-mode AD (projective integrator)."""
    from lumigrad._mitsuba import mitsuba_scene

    shapes, cam, lights = build(name, res)
    sc = mitsuba_scene(mi, shapes, cam, lights, spp=spp, integrator=integrator)
    params = mi.traverse(sc)
    theta = mi.Float(0.0)
    dr.enable_grad(theta)
    if param == "sphere_dx":
        key = "shape0.vertex_positions"
        init = np.array(params[key])
        offs = np.zeros_like(init)
        offs[0::3] = 1.0
        params[key] = mi.Float(init) + theta * mi.Float(offs)
    elif param == "light_dx":
        p = [float(x) for x in np.array(params["light0.position"]).reshape(-1)]
        params["light0.position"] = mi.Point3f(mi.Float(p[0]) + theta, mi.Float(p[1]), mi.Float(p[2]))
    else:
        params["shape1.bsdf.reflectance.value"] = mi.Color3f(0.6 + theta, 0.6 + theta, 0.6 + theta)
    params.update()
    img = mi.render(sc, params, spp=spp, seed=1)
    dr.forward(theta)
    return np.array(dr.grad(img))


def _bin(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape[0] // k * k, a.shape[1] // k * k
    return a[:h, :w].sum(-1).reshape(h // k, k, w // k, k).sum((1, 3))


def mitsuba_fd_image(mi, name: str, param: str, res: int, spp: int, h: float) -> np.ndarray:
    """Central differences of Mitsuba ``direct`` renders (same seed), for parameters Mitsuba cannot differentiate
    (a point light's position is not a differentiable parameter in Mitsuba 3)."""
    from lumigrad._mitsuba import mitsuba_scene

    ims = []
    for s in (1, -1):
        shapes, cam, lights = build(name, res, **{param: s * h})
        ims.append(np.asarray(mi.render(mitsuba_scene(mi, shapes, cam, lights, spp=spp), spp=spp, seed=0)))
    return (ims[0] - ims[1]) / (2 * h)


def compare(g: np.ndarray, ref: np.ndarray, k: int = 4) -> dict:
    """Agreement of two gradient images ``[H, W, 3]``.

    Per-pixel Monte Carlo noise inflates a gradient image's norm, so the norm and
    the signs are compared on ``k x k`` pixel blocks (channels summed); the
    per-pixel cosine is reported as well. ``sign_agree`` counts blocks where
    ``ref`` exceeds 10 % of its largest block.
    """
    bg, br = _bin(g, k), _bin(ref, k)
    sig = np.abs(br) > 0.1 * np.abs(br).max()
    return {
        "norm_rel_err": float(abs(np.linalg.norm(bg) - np.linalg.norm(br)) / np.linalg.norm(br)),
        "sign_agree": float((np.sign(bg[sig]) == np.sign(br[sig])).mean()),
        "cosine_px": float((g * ref).sum() / (np.linalg.norm(g) * np.linalg.norm(ref))),
    }
