""":func:`lumigrad.shade.shade` through the fused Warp op :func:`lumigrad.ops.deferred_shade.deferred_shade`.

The material's parameters and the lights become the op's small tables with torch ops (so autograd
carries gradients on to light colours, intensities, directions, positions, material constants and
textures); the per-pixel work is one kernel each way. SH environment lights stay in torch, added on
top. The torch code in :mod:`lumigrad.shade.deferred` remains the spec (and runs Phong materials).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lumigrad.scene.lights import AmbientLight, DirectionalLight, SHEnvironmentLight
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial
from lumigrad.shade.brdf import _normalize
from lumigrad.shade.lighting import _match, _sh_irradiance

__all__ = ["fused_material", "shade_fused"]

_FALLOFF = {"inverse_square": (0.0, 0.0, 1.0), "none": (1.0, 0.0, 0.0)}


def fused_material(material) -> str | None:
    """The op's material name, or None when the fused op does not cover ``material``."""
    if isinstance(material, LambertMaterial):
        return "lambert"
    if isinstance(material, BlinnPhongMaterial):
        return "blinn_phong"
    if isinstance(material, GGXMaterial):
        return "ggx"
    return None


def _columns(material, param) -> list[Tensor]:
    """The op's material columns (diffuse 3, specular 3, shininess / roughness 1, metallic 1), each
    ``[k]`` for a constant or ``[B, H, W, k]`` per pixel."""
    def ch(t: Tensor, k: int) -> Tensor:
        return t.expand(*t.shape[:-1], k)

    if isinstance(material, LambertMaterial):
        a = param("albedo", material.albedo)
        zero = torch.zeros(1, dtype=a.dtype, device=a.device)
        return [ch(a, 3), ch(zero, 3), zero, zero]
    if isinstance(material, BlinnPhongMaterial):
        a, b = param("diffuse", material.diffuse), param("specular", material.specular)
        s = param("shininess", material.shininess)
        return [ch(a, 3), ch(b, 3), s, torch.zeros(1, dtype=a.dtype, device=a.device)]
    a, r, m = (param(k, getattr(material, k)) for k in ("base_color", "roughness", "metallic"))
    return [ch(a, 3), torch.zeros(3, dtype=a.dtype, device=a.device), r, m]


def _mat_table(cols: list[Tensor], bhw: tuple[int, ...]) -> Tensor:
    if all(c.ndim == 1 for c in cols):
        return torch.cat(cols)[None]
    return torch.cat([c.expand(*bhw, c.shape[-1]) for c in cols], dim=-1).reshape(-1, 8)


def _light_tables(fn: str, lights: list, like: Tensor) -> tuple[list[str], Tensor, Tensor]:
    """The op's light kinds, ``[L, 6]`` rows and ``[L, 3]`` falloffs; SH lights are left to torch."""
    kinds, rows, falloff = [], [], []
    for i, light in enumerate(lights):
        name = f"lights[{i}]"
        if isinstance(light, SHEnvironmentLight):
            continue
        if isinstance(light, AmbientLight):
            color = _match(fn, f"{name}.color", light.color, like)
            kinds.append("ambient")
            rows.append(torch.cat([torch.zeros_like(color), color]))
            falloff.append(_FALLOFF["inverse_square"])
            continue
        if isinstance(light, DirectionalLight):
            kinds.append("directional")
            vec = _normalize(_match(fn, f"{name}.to_light", light.to_light, like))
            falloff.append(_FALLOFF["inverse_square"])
        else:
            kinds.append("point")
            vec = _match(fn, f"{name}.position", light.position, like)
            falloff.append(_FALLOFF.get(light.falloff) if isinstance(light.falloff, str) else tuple(light.falloff))
        color = _match(fn, f"{name}.color", light.color, like)
        intensity = _match(fn, f"{name}.intensity", light.intensity, like).reshape(())
        rows.append(torch.cat([vec, color * intensity]))
    ldata = torch.stack(rows) if rows else like.new_zeros(0, 6)
    return kinds, ldata, torch.tensor(falloff, dtype=like.dtype, device=like.device).reshape(-1, 3)


def shade_fused(fn: str, material, lights: list, ref: Tensor, normals: Tensor, view_dirs: Tensor | None, mask,
                param) -> Tensor:
    """``shade()``'s result for a Lambert, Blinn-Phong or GGX ``material`` (``param`` samples one parameter).

    ``ref`` is the points buffer, or the normals when there is none (no point lights)."""
    from lumigrad.ops.deferred_shade import deferred_shade

    bhw = tuple(ref.shape[:3])
    cols = _columns(material, param)
    kinds, ldata, fo = _light_tables(fn, lights, ref)
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    rgb = deferred_shade(  # Lambert ignores view_dirs: the normals stand in when there are none
        fused_material(material), flat(normals), flat(view_dirs if view_dirs is not None else normals),
        flat(ref) if "point" in kinds else None,
        _mat_table(cols, bhw), kinds, ldata, fo, None if mask is None else mask.reshape(-1),
    ).view(*bhw, 3)
    sh = [(i, x) for i, x in enumerate(lights) if isinstance(x, SHEnvironmentLight)]
    if sh:
        kd = cols[0]
        if isinstance(material, GGXMaterial):
            kd = (1.0 - cols[3].clamp(0.0, 1.0)) * kd
        n = _normalize(normals)
        extra = sum((kd / math.pi) * _sh_irradiance(_match(fn, f"lights[{i}].coeffs", x.coeffs, ref), n) for i, x in sh)
        rgb = rgb + (extra if mask is None else extra * mask)
    return rgb
