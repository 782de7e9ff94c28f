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
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam
from lumigrad.scene.trace_types import EnvironmentLight, Shape, TraceSettings

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
    if name == "envmap":
        return [sphere, floor], cam, [EnvironmentLight(env_texels())]
    if name == "envmap_rotated":  # the sun moves to the other side of the sphere and lower
        c, s = np.cos(np.radians(120.0)), np.sin(np.radians(120.0))
        ry = _t(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c).reshape(3, 3)
        c, s = np.cos(np.radians(25.0)), np.sin(np.radians(25.0))
        rx = _t(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c).reshape(3, 3)
        return [sphere, floor], cam, [EnvironmentLight(env_texels(), to_world=ry @ rx)]
    if name == "cornell_box":
        return cornell_box(res, albedo_d)
    if name == "textured_plane":  # an albedo texture on the floor (UVs u = x, v = -z: orientation matters)
        uv = torch.stack([(pv[:, 0] + 3) / 6, (3 - pv[:, 2]) / 6], -1) * 2  # the texture repeats twice
        tex = floor_texture() * (1 + albedo_d)
        floor_t = Shape(Mesh(pv, pf, uvs=uv), LambertMaterial(TextureParam(tex, filter_mode="linear")))
        return [sphere, floor_t], cam, [PointLight(lpos, intensity=25.0)]
    if name == "glossy":
        obj, is_bunny = glossy_mesh()
        glossy = Shape(obj, GGXMaterial(1.0, 0.5, 1.0))
        return [glossy, floor], cam, [PointLight(lpos, intensity=25.0), EnvironmentLight(env_texels() * 0.3)]
    raise ValueError(name)


def floor_texture(h: int = 12, w: int = 16) -> torch.Tensor:
    """A ``[h, w, 3]`` texture: smooth colour ramps plus a bright block in the top-left quarter (so a flip in
    u or v changes the image)."""
    y = (torch.arange(h, dtype=DT) + 0.5) / h
    x = (torch.arange(w, dtype=DT) + 0.5) / w
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    tex = torch.stack([0.2 + 0.6 * xx, 0.2 + 0.6 * yy, 0.5 + 0.3 * torch.sin(6 * xx * yy)], -1)
    block = ((yy < 0.5) & (xx < 0.5)).to(DT)[..., None]
    return tex * (1 - block) + 0.95 * block


def env_texels(h: int = 32, w: int = 64) -> torch.Tensor:
    """A smooth sky (bright at the top, blue-ish) with a warm sun blob: ``[h, w, 3]``."""
    v = (torch.arange(h, dtype=DT) + 0.5) / h
    u = (torch.arange(w, dtype=DT) + 0.5) / w
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    sky = torch.stack([0.4 + 0.6 * (1 - vv), 0.5 + 0.6 * (1 - vv), 0.8 + 0.7 * (1 - vv)], -1) * (vv < 0.55)[..., None]
    ground = torch.full((h, w, 3), 0.15, dtype=DT) * (vv >= 0.55)[..., None]
    sun = 20.0 * torch.exp(-(((uu - 0.3) / 0.04) ** 2 + ((vv - 0.25) / 0.04) ** 2))
    return sky + ground + sun[..., None] * torch.tensor([1.0, 0.85, 0.6], dtype=DT)


def glossy_mesh() -> tuple[Mesh, bool]:
    """The Stanford bunny (``/work/shared/data``, normalised to the sphere's place), else the sphere."""
    import os

    from lumigrad.scene.io import read_mesh

    path = os.path.join(os.environ.get("LUMIGRAD_SHARED_DATA", "/work/shared/data"), "stanford_bunny",
                        "stanford-bunny.obj")
    if os.path.exists(path):
        m = read_mesh(path, dtype=DT)
        v = m.verts - (m.verts.max(0).values + m.verts.min(0).values) / 2
        v = v / float((m.verts.max(0).values - m.verts.min(0).values).max()) * 1.6
        v = v - _t(0.0, float(v[:, 1].min()) + 0.7, 0.0)
        return Mesh(v, m.faces), True
    v, f = icosphere(4, dtype=DT)
    return Mesh(v * 0.7, f), False


def cornell_box(res: int, albedo_d=0.0):
    """A closed Lambertian box (white, red left, green right walls), two blocks and a ceiling light."""
    def quad(p0, p1, p2, p3):  # corners in order; normal (p1 - p0) x (p3 - p0)
        return torch.stack([_t(*p0), _t(*p1), _t(*p2), _t(*p3)]), torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)

    def box(cx, cz, s, h):
        from lumigrad.geometry.primitives import cube

        v, f = cube(1.0, dtype=DT)
        v = (v * _t(s, h, s) + _t(cx, -1.0 + h / 2, cz))[f.long()].reshape(-1, 3)  # flat: no shared corners
        return v, torch.arange(v.shape[0], dtype=torch.int32).reshape(-1, 3)

    white, alb = _t(0.73, 0.71, 0.68), _t(0.73, 0.71, 0.68) + albedo_d
    walls = [
        (quad((-1, -1, 1), (1, -1, 1), (1, -1, -1), (-1, -1, -1)), alb),  # floor, normal +y (the differentiated albedo)
        (quad((-1, 1, -1), (1, 1, -1), (1, 1, 1), (-1, 1, 1)), white),  # ceiling, normal -y
        (quad((-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1)), white),  # back, normal +z
        (quad((-1, -1, 1), (-1, -1, -1), (-1, 1, -1), (-1, 1, 1)), _t(0.63, 0.065, 0.05)),  # left red, normal +x
        (quad((1, -1, -1), (1, -1, 1), (1, 1, 1), (1, 1, -1)), _t(0.14, 0.45, 0.091)),  # right green, normal -x
    ]
    shapes = [Shape(Mesh(v, f), LambertMaterial(c)) for (v, f), c in walls]
    shapes.append(Shape(Mesh(*box(-0.35, -0.3, 0.6, 1.2)), LambertMaterial(white)))
    shapes.append(Shape(Mesh(*box(0.4, 0.35, 0.55, 0.55)), LambertMaterial(white)))
    lv, lf = quad((-0.25, 0.99, -0.25), (0.25, 0.99, -0.25), (0.25, 0.99, 0.25), (-0.25, 0.99, 0.25))
    shapes.append(Shape(Mesh(lv, lf), LambertMaterial(0.0), emission=_t(17.0, 12.0, 4.0)))
    cam = Camera.look_at(_t(0.0, 0.0, 3.9), _t(0.0, 0.0, 0.0), fov_y_deg=39.0, width=res, height=res)
    return shapes, cam, []


SCENES = ("diffuse_sphere", "shadow_plane", "directional_shadow", "area_light", "envmap", "envmap_rotated", "cornell_box",
          "glossy", "textured_plane")
BOUNCES = {"cornell_box": 4}
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
    elif name == "cornell_box":
        params["shape0.bsdf.reflectance.value"] = mi.Color3f(0.73 + theta, 0.71 + theta, 0.68 + theta)
    else:
        params["shape1.bsdf.reflectance.value"] = mi.Color3f(0.6 + theta, 0.6 + theta, 0.6 + theta)
    params.update()
    img = mi.render(sc, params, spp=spp, seed=1)
    dr.forward(theta)
    return np.array(dr.grad(img))


def _bin(a: np.ndarray, k: int) -> np.ndarray:
    h, w = a.shape[0] // k * k, a.shape[1] // k * k
    return a[:h, :w].sum(-1).reshape(h // k, k, w // k, k).sum((1, 3))


def mitsuba_integrator(name: str) -> dict:
    """Mitsuba ``path`` with ``max_depth = max_bounces + 1`` (lumigrad's path length convention)."""
    return {"type": "path", "max_depth": BOUNCES.get(name, 1) + 1}


def mitsuba_fd_image(mi, name: str, param: str, res: int, spp: int, h: float) -> np.ndarray:
    """Central differences of Mitsuba ``direct`` renders (same seed), for parameters Mitsuba cannot differentiate
    (a point light's position is not a differentiable parameter in Mitsuba 3)."""
    from lumigrad._mitsuba import mitsuba_scene

    ims = []
    for s in (1, -1):
        shapes, cam, lights = build(name, res, **{param: s * h})
        sc = mitsuba_scene(mi, shapes, cam, lights, spp=spp, integrator=mitsuba_integrator(name))
        ims.append(np.asarray(mi.render(sc, spp=spp, seed=0)))
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
