"""Ground-truth scene descriptions (``ground_truth.json``): lights, materials and poses as JSON."""
from __future__ import annotations

from typing import Any

import torch

from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, TextureParam

__all__ = ["lights_to_json", "lights_from_json", "material_to_json", "material_from_json"]


def _v(t) -> Any:
    if isinstance(t, torch.Tensor):
        return t.detach().double().cpu().tolist()
    return t


def lights_to_json(lights) -> list[dict]:
    out = []
    for l in lights:
        if isinstance(l, AmbientLight):
            out.append({"type": "ambient", "color": _v(l.color)})
        elif isinstance(l, DirectionalLight):
            out.append({"type": "directional", "to_light": _v(l.to_light), "color": _v(l.color), "intensity": _v(l.intensity)})
        elif isinstance(l, PointLight):
            out.append({"type": "point", "position": _v(l.position), "color": _v(l.color), "intensity": _v(l.intensity)})
        elif isinstance(l, SHEnvironmentLight):
            out.append({"type": "sh", "coeffs": _v(l.coeffs)})
        else:
            raise TypeError(f"lights_to_json(): unsupported light {type(l).__name__}")
    return out


def lights_from_json(data, dtype=torch.float32, where: str = "lights") -> list:
    def t(x):
        return torch.as_tensor(x, dtype=dtype)

    out = []
    if not isinstance(data, list):
        raise ValueError(f"{where}: must be a list of lights")
    for i, d in enumerate(data):
        try:
            kind = d["type"]
            if kind == "ambient":
                out.append(AmbientLight(t(d["color"])))
            elif kind == "directional":
                out.append(DirectionalLight(t(d["to_light"]), t(d["color"]), t(d.get("intensity", 1.0))))
            elif kind == "point":
                out.append(PointLight(t(d["position"]), t(d["color"]), t(d.get("intensity", 1.0))))
            elif kind == "sh":
                out.append(SHEnvironmentLight(t(d["coeffs"])))
            else:
                raise ValueError(f"unknown light type {kind!r}")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}[{i}]: invalid light ({type(e).__name__}: {e})") from None
    return out


def material_to_json(m) -> dict:
    def p(v):
        if isinstance(v, TextureParam):
            return "texture"
        return _v(v)

    if isinstance(m, LambertMaterial):
        return {"type": "lambert", "albedo": p(m.albedo)}
    if isinstance(m, GGXMaterial):
        return {"type": "ggx", "base_color": p(m.base_color), "roughness": p(m.roughness), "metallic": p(m.metallic)}
    if isinstance(m, BlinnPhongMaterial):
        return {"type": "blinn_phong", "diffuse": p(m.diffuse), "specular": p(m.specular), "shininess": p(m.shininess)}
    raise TypeError(f"material_to_json(): unsupported material {type(m).__name__}")


def material_from_json(d, dtype=torch.float32, texture=None, where: str = "material"):
    def p(v):
        if v == "texture":
            if texture is None:
                raise ValueError("material refers to a texture but none is given")
            return TextureParam(texture)
        return torch.as_tensor(v, dtype=dtype)

    try:
        kind = d["type"]
        if kind == "lambert":
            return LambertMaterial(p(d["albedo"]))
        if kind == "ggx":
            return GGXMaterial(p(d["base_color"]), p(d["roughness"]), p(d["metallic"]))
        if kind == "blinn_phong":
            return BlinnPhongMaterial(p(d["diffuse"]), p(d["specular"]), p(d["shininess"]))
        raise ValueError(f"unknown material type {kind!r}")
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: invalid material ({type(e).__name__}: {e})") from None
