"""Deferred shading of per-pixel geometry buffers."""
from __future__ import annotations

import logging
import math
from typing import Sequence

import torch
from torch import Tensor

from lumigrad._runtime.checks import _desc, check_float_tensor, check_same_device
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, TextureParam
from lumigrad.shade._fused import fused_material, shade_fused
from lumigrad.shade.brdf import _blinn_phong, _ggx, _lambert, _normalize
from lumigrad.shade.lighting import _eval_light, _match, _sh_irradiance
from lumigrad.shade.phong import PhongMaterial, _phong_specular

__all__ = ["shade", "sample_param"]

_log = logging.getLogger(__name__)
_LIGHT_TYPES = (AmbientLight, DirectionalLight, PointLight, SHEnvironmentLight)
# Lambert, Blinn-Phong and GGX materials run the fused Warp op (lumigrad.ops.deferred_shade); the torch
# code below is its spec, run for Phong materials and when this is False (tests compare the two).
FUSED = True


def sample_param(
    value,
    like: Tensor,  # [B, H, W, 3] sets dtype, device and pixel grid
    uv: Tensor | None = None,  # [B, H, W, 2]
    uv_da: Tensor | None = None,  # [B, H, W, 4]
    *,
    name: str = "param",
    fn: str = "sample_param",
) -> Tensor:
    """Evaluate one material parameter per pixel.

    Args:
        value: a float, a tensor (``[]``, ``[C]``), or a :class:`TextureParam`.
        like: ``[B, H, W, 3]`` tensor whose dtype and device the value must share.
        uv: ``[B, H, W, 2]`` texture coordinates; required for a TextureParam.
        uv_da: optional UV derivatives for mip-mapped filtering.
        name, fn: used in error messages.

    Returns:
        A tensor broadcastable to ``[B, H, W, C]`` (``[1]``/``[C]`` for
        constants, ``[B, H, W, C]`` for textures). Textures are sampled with
        :func:`lumigrad.ops.texture.texture`, so texels receive gradients.
    """
    if isinstance(value, TextureParam):
        if uv is None:
            raise ValueError(f"{fn}(): uv is required because {name} is a TextureParam")
        tex = _match(fn, f"{name}.texture", value.texture, like, ref="points")
        try:
            from lumigrad.ops.texture import texture as texture_op
        except ImportError as e:  # the op is optional at import time of this module
            raise RuntimeError(f"{fn}(): sampling {name} needs lumigrad.ops.texture, which failed to import: {e}") from e
        kwargs = {}
        if value.filter_mode is not None:
            kwargs["filter_mode"] = value.filter_mode
        if value.boundary_mode is not None:
            kwargs["boundary_mode"] = value.boundary_mode
        return texture_op(tex, uv, uv_da, **kwargs)
    t = _match(fn, name, value, like, ref="points")
    return t.reshape(1) if t.ndim == 0 else t


def _check_buffer(fn: str, name: str, t, bhw: tuple[int, ...] | None, last: int, ref: str = "points") -> Tensor:
    exp = f"[B, H, W, {last}]"
    check_float_tensor(fn, name, t, (4,), last, expected=exp)
    if bhw is not None and tuple(t.shape[:3]) != bhw:
        raise ValueError(f"{fn}(): {name} must be [B, H, W, {last}] with B, H, W = {list(bhw)} like {ref}, got {_desc(t)}")
    return t


def _as_light_list(fn: str, lights) -> list:
    if isinstance(lights, _LIGHT_TYPES):
        return [lights]
    if not isinstance(lights, Sequence):
        raise TypeError(f"{fn}(): lights must be a light or a sequence of lights, got {type(lights).__name__}")
    for i, light in enumerate(lights):
        if not isinstance(light, _LIGHT_TYPES):
            raise TypeError(
                f"{fn}(): lights[{i}] must be AmbientLight, DirectionalLight, PointLight or SHEnvironmentLight, "
                f"got {type(light).__name__}"
            )
    return list(lights)


def _check_needed_buffers(fn: str, material, lights: list, points, view_dirs) -> None:
    if points is None:
        for i, light in enumerate(lights):
            if isinstance(light, PointLight):
                raise ValueError(f"{fn}(): points are required with point lights (lights[{i}] is a PointLight)")
    if view_dirs is None and isinstance(material, (BlinnPhongMaterial, GGXMaterial, PhongMaterial)):
        raise ValueError(f"{fn}(): view_dirs are required by {type(material).__name__} (only Lambert shading ignores them)")


def shade(
    material: LambertMaterial | BlinnPhongMaterial | GGXMaterial | PhongMaterial,
    lights,  # a light or a sequence of lights
    *,
    points: Tensor | None = None,  # [B, H, W, 3] world; needed with point lights
    normals: Tensor,  # [B, H, W, 3] world (normalised here)
    view_dirs: Tensor | None = None,  # [B, H, W, 3] world, surface -> camera (normalised here); needed unless Lambert
    uv: Tensor | None = None,  # [B, H, W, 2]
    uv_da: Tensor | None = None,  # [B, H, W, 4]
    mask: Tensor | None = None,  # [B, H, W, 1]
) -> Tensor:
    """Shade G-buffers: direct lights, ambient and SH environment.

    ``rgb = sum_lights brdf(n, l, v) * E_perp(l) * max(n.l, 0)
    + sum_ambient color * kd + sum_SH kd / pi * E_SH(n)``, where ``kd`` is the
    diffuse albedo (Lambert ``albedo``, Blinn-Phong ``diffuse``, GGX
    ``(1 - metallic) * base_color``). Ambient and SH lights light the diffuse
    lobe only. Units are in :mod:`lumigrad.scene.lights`; BRDFs in
    :mod:`lumigrad.scene.materials`.

    Args:
        material: a Lambert, Blinn-Phong or GGX material; its tensors must
            share ``points``' dtype and device.
        lights: one light or a sequence (may be empty).
        points: ``[B, H, W, 3]`` world-space positions; required with point lights.
        normals: ``[B, H, W, 3]`` world-space normals.
        view_dirs: ``[B, H, W, 3]`` unit directions from surface to camera; required by every
            material but Lambert.
        uv: ``[B, H, W, 2]`` texture coordinates (u right, v up); required
            when a material parameter is a :class:`TextureParam`.
        uv_da: ``[B, H, W, 4]`` UV screen derivatives, passed to the texture op.
        mask: ``[B, H, W, 1]`` coverage (bool or float); the output is
            multiplied by it, so the background stays 0 (and a soft mask
            gives premultiplied colour).

    Returns:
        ``[B, H, W, 3]`` linear radiance. Differentiable w.r.t. light tensors,
        material constants and texels, ``points``, ``normals``, ``view_dirs``,
        ``uv`` (through the texture op) and ``mask``.

    Example:
        >>> B, H, W = 1, 2, 3
        >>> n = torch.zeros(B, H, W, 3); n[..., 2] = 1.0
        >>> sun = DirectionalLight(torch.tensor([0.0, 0.0, 1.0]), intensity=math.pi)
        >>> rgb = shade(LambertMaterial(torch.tensor([0.5, 0.5, 0.5])), [sun],
        ...             points=torch.zeros(B, H, W, 3), normals=n, view_dirs=n)
        >>> rgb[0, 0, 0]
        tensor([0.5000, 0.5000, 0.5000])
    """
    fn = "shade"
    ref_name, ref = ("points", points) if points is not None else ("normals", normals)  # sets B, H, W, dtype, device
    _check_buffer(fn, ref_name, ref, None, 3)
    bhw = tuple(ref.shape[:3])
    buffers = (("normals", normals, 3), ("view_dirs", view_dirs, 3), ("uv", uv, 2), ("uv_da", uv_da, 4))
    for name, t, last in buffers:
        if t is not None or name == "normals":
            _check_buffer(fn, name, t, bhw, last, ref_name)
    if mask is not None:
        if isinstance(mask, Tensor) and mask.dtype == torch.bool:
            mask = mask.to(ref.dtype)
        _check_buffer(fn, "mask", mask, bhw, 1, ref_name)
    check_same_device(fn, points=points, normals=normals, view_dirs=view_dirs, uv=uv, uv_da=uv_da, mask=mask)
    for name, t in (("normals", normals), ("view_dirs", view_dirs), ("uv", uv), ("uv_da", uv_da), ("mask", mask)):
        if t is not None and t.dtype != ref.dtype:
            raise ValueError(f"{fn}(): {name} must be {ref.dtype} like {ref_name}, got {_desc(t)}")
    light_list = _as_light_list(fn, lights)
    _check_needed_buffers(fn, material, light_list, points, view_dirs)

    def param(name: str, value) -> Tensor:
        return sample_param(value, ref, uv, uv_da, name=f"material.{name}", fn=fn)

    if FUSED and fused_material(material) is not None and ref.device.type in ("cpu", "cuda"):
        return shade_fused(fn, material, light_list, ref, normals, view_dirs, mask, param)
    n = _normalize(normals)
    v = _normalize(view_dirs) if view_dirs is not None else None
    ka = None  # ambient reflectance when it differs from kd (PhongMaterial)
    direct = None  # radiance per unit irradiance, given l and max(n.l, 0), when not brdf(l) * cos
    if isinstance(material, LambertMaterial):
        albedo = param("albedo", material.albedo)
        kd = albedo
        brdf = lambda l: _lambert(n, albedo)  # noqa: E731
    elif isinstance(material, BlinnPhongMaterial):
        kd = param("diffuse", material.diffuse)
        ks, s = param("specular", material.specular), param("shininess", material.shininess)
        brdf = lambda l: _blinn_phong(n, l, v, kd, ks, s)  # noqa: E731
    elif isinstance(material, GGXMaterial):
        c = param("base_color", material.base_color)
        r, m = param("roughness", material.roughness), param("metallic", material.metallic)
        kd = (1.0 - m.clamp(0.0, 1.0)) * c
        brdf = lambda l: _ggx(n, l, v, c, r, m)  # noqa: E731
    elif isinstance(material, PhongMaterial):
        kd, ks = param("diffuse", material.diffuse), param("specular", material.specular)
        s, ka = param("shininess", material.shininess), param("ambient", material.ambient)
        direct = lambda l, cos: kd * cos + ks * _phong_specular(n, l, v, s)  # noqa: E731
        brdf = None
    else:
        raise TypeError(
            f"{fn}(): material must be LambertMaterial, BlinnPhongMaterial, GGXMaterial or PhongMaterial, "
            f"got {type(material).__name__}"
        )

    rgb = torch.zeros_like(ref)
    for i, light in enumerate(light_list):
        name = f"lights[{i}]"
        if isinstance(light, AmbientLight):
            rgb = rgb + _match(fn, f"{name}.color", light.color, ref) * (kd if ka is None else ka)
        elif isinstance(light, SHEnvironmentLight):
            coeffs = _match(fn, f"{name}.coeffs", light.coeffs, ref)
            rgb = rgb + (kd / math.pi) * _sh_irradiance(coeffs, n)
        else:
            l, e_perp = _eval_light(fn, light, points if points is not None else ref, name=name)
            cos = (n * l).sum(-1, keepdim=True).clamp_min(0.0)
            rgb = rgb + (brdf(l) * cos if direct is None else direct(l, cos)) * e_perp
    if not light_list:
        _log.debug("shade(): no lights given; returning black")
    if mask is not None:
        rgb = rgb * mask
    return rgb
