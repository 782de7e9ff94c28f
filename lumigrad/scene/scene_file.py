"""JSON scene files for the ray tracer: load, save, round trip.

Format (``"format": "lumigrad-scene"``, ``"version": 1``); every field except
``shapes`` and ``camera`` is optional. Colours are linear RGB triples.

.. code-block:: json

    {
      "format": "lumigrad-scene", "version": 1,
      "camera": {"eye": [0, 1, 3], "target": [0, 0, 0], "up": [0, 1, 0],
                 "fov_y_deg": 45, "width": 256, "height": 256},
      "shapes": [
        {"mesh": {"type": "icosphere", "level": 3},
         "transform": {"scale": 1.0, "translate": [0, 1, 0]},
         "material": {"type": "lambert", "albedo": [0.8, 0.5, 0.3]}},
        {"mesh": {"type": "plane", "size": 6}, "material": {"type": "ggx", "base_color": 0.7,
                                                         "roughness": 0.5, "metallic": 0}},
        {"mesh": "meshes/lamp.obj", "material": {"type": "lambert", "albedo": 0},
         "emission": [10, 10, 10]}
      ],
      "lights": [{"type": "point", "position": [2, 4, 2], "intensity": 30},
                 {"type": "directional", "to_light": [0, 1, 1], "intensity": 2, "color": [1, 0.9, 0.8]},
                 {"type": "ambient", "color": [0.05, 0.05, 0.05]}],
      "integrator": {"spp": 16, "max_bounces": 2, "shadows": true, "boundary": "edge", "seed": 0}
    }

* ``camera``: either ``eye``/``target``/``up``/``fov_y_deg`` (a look-at
  camera, :meth:`Camera.look_at`), or ``world_to_cam`` (4x4, OpenCV) and ``K``
  (3x3 pixels); plus ``width``, ``height`` and optional ``near``, ``far``,
  ``projection``. One view.
* ``mesh``: a path (OBJ/PLY/GLB, relative to the scene file), a primitive
  ``{"type": "icosphere", "level"}`` / ``{"type": "plane", "size", "resolution"}``
  / ``{"type": "cube", "size"}``, or inline ``{"verts": [[x, y, z], ...],
  "faces": [[i, j, k], ...]}`` with optional ``"uvs": [[u, v], ...]`` and
  ``"faces_uvs"`` (lumigrad's UV convention, v up). ``transform`` scales then translates.
* ``material.type``: ``lambert`` (``albedo``), ``blinn_phong`` (``diffuse``,
  ``specular``, ``shininess``), ``ggx`` (``base_color``, ``roughness``,
  ``metallic``), ``mirror`` (``reflectance``). Values are numbers or RGB lists,
  or (not for ``mirror``) a texture, a :class:`~lumigrad.scene.materials.TextureParam`:
  ``{"texture": "albedo.exr"}`` (an image path relative to the scene file, read
  as stored: EXR is linear, 8-bit images are taken as stored unless
  ``"srgb": true`` decodes them) or ``{"texels": [[[r, g, b], ...], ...]}``, with
  optional ``"filter_mode"`` and ``"boundary_mode"`` (see
  :func:`lumigrad.ops.texture.texture`). The shape's mesh needs UVs.
* ``emission``: radiance, makes the shape an area light (front side).
* ``lights[].type``: ``point`` (``position``, ``intensity``, ``color``,
  ``falloff``), ``directional`` (``to_light``, ``intensity``, ``color``),
  ``ambient`` (``color``), ``envmap`` (``image``: an equirectangular image path, EXR/PNG,
  relative to the scene file, or ``texels`` ``[H][W][3]``; ``scale``; optional ``to_world``, a
  ``[3][3]`` rotation from the map's frame to the world), mapped as Mitsuba's ``envmap``.
* ``integrator``: the fields of :class:`~lumigrad.scene.trace_types.TraceSettings`.

:func:`save_scene` writes cameras as matrices and meshes inline, so a saved
scene reloads to the same tensors; it writes each texture as a float32 EXR next
to the scene file (``<scene stem>.shape<i>.<param>.exr``, atomically, before the
JSON) and refers to it by file name. :func:`scene_to_dict` keeps textures
inline (``"texels"``).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lumigrad._runtime.files import existing_file, write_text_atomic
from lumigrad.geometry.primitives import cube, icosphere, plane
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import AmbientLight, DirectionalLight, PointLight
from lumigrad.scene.materials import BlinnPhongMaterial, GGXMaterial, LambertMaterial, TextureParam
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.trace_types import EnvironmentLight, MirrorMaterial, Shape, TraceSettings

__all__ = ["TraceScene", "load_scene", "save_scene", "scene_from_dict", "scene_to_dict"]

_MATERIALS = {
    "lambert": (LambertMaterial, ("albedo",)),
    "blinn_phong": (BlinnPhongMaterial, ("diffuse", "specular", "shininess")),
    "ggx": (GGXMaterial, ("base_color", "roughness", "metallic")),
    "mirror": (MirrorMaterial, ("reflectance",)),
}


@dataclass
class TraceScene:
    """Everything :func:`lumigrad.render.path.render_trace` needs, as read from a scene file."""

    shapes: list[Shape]
    camera: Camera
    lights: list
    settings: TraceSettings = dataclasses.field(default_factory=TraceSettings)


class _Err(ValueError):
    pass


def _where(ctx: str, msg: str) -> _Err:
    return _Err(f"load_scene(): {ctx}: {msg}")


def _vec(ctx: str, v, n: int, dtype) -> Tensor:
    try:
        t = torch.as_tensor(v, dtype=dtype)
    except (TypeError, ValueError):
        raise _where(ctx, f"expected {n} numbers, got {v!r}") from None
    if t.shape != (n,) or not bool(torch.isfinite(t).all()):
        raise _where(ctx, f"expected {n} finite numbers, got {v!r}")
    return t


_TEX_KEYS = ("texture", "texels", "filter_mode", "boundary_mode", "srgb")


def _texture(ctx: str, v: dict, base: Path, dtype) -> TextureParam:
    unknown = set(v) - set(_TEX_KEYS)
    if unknown:
        raise _where(ctx, f"unknown texture keys {sorted(unknown)} (allowed: {list(_TEX_KEYS)})")
    if ("texture" in v) == ("texels" in v):
        raise _where(ctx, "a texture needs exactly one of 'texture' (an image path) or 'texels' ([H][W][C])")
    if "texture" in v:
        from lumigrad.scene.io import read_image

        img = Path(v["texture"])
        tex = read_image(img if img.is_absolute() else base / img, dtype=dtype)
        tex = tex[..., :3] if tex.shape[-1] >= 3 else tex[..., :1]
        if v.get("srgb", False):
            from lumigrad.scene.mitsuba_xml import srgb_to_linear

            tex = srgb_to_linear(tex)
    else:
        try:
            tex = torch.as_tensor(v["texels"], dtype=dtype)
        except (TypeError, ValueError, RuntimeError):
            raise _where(ctx, "texels must be a numeric [H][W][C] list") from None
    from lumigrad.ops.texture import BOUNDARY_MODES, FILTER_MODES

    for key, allowed in (("filter_mode", FILTER_MODES), ("boundary_mode", BOUNDARY_MODES)):
        if v.get(key) is not None and v[key] not in allowed:
            raise _where(ctx, f"{key} must be one of {list(allowed)}, got {v[key]!r}")
    try:
        return TextureParam(tex.contiguous(), v.get("filter_mode"), v.get("boundary_mode"))
    except (TypeError, ValueError) as e:
        raise _where(ctx, str(e)) from None


def _param(ctx: str, v, dtype, base: Path = Path(".")):
    if isinstance(v, dict):
        return _texture(ctx, v, base, dtype)
    if isinstance(v, bool) or not isinstance(v, (int, float, list)):
        raise _where(ctx, f"expected a number or a list of 1 or 3 numbers, got {v!r}")
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            raise _where(ctx, f"must be finite, got {v!r}")
        return float(v)
    if len(v) not in (1, 3):
        raise _where(ctx, f"expected a number or a list of 1 or 3 numbers, got {v!r}")
    return _vec(ctx, v, len(v), dtype)


def _mesh(ctx: str, spec, base: Path, dtype) -> Mesh:
    if isinstance(spec, str):
        from lumigrad.scene.io import read_mesh

        p = Path(spec)
        return read_mesh(p if p.is_absolute() else base / p, dtype=dtype)
    if not isinstance(spec, dict):
        raise _where(ctx, f"mesh must be a path, a primitive or inline verts/faces, got {type(spec).__name__}")
    if "verts" in spec:
        try:
            v = torch.as_tensor(spec["verts"], dtype=dtype)
            f = torch.as_tensor(spec["faces"], dtype=torch.int32)
            uv = torch.as_tensor(spec["uvs"], dtype=dtype) if "uvs" in spec else None
            fuv = torch.as_tensor(spec["faces_uvs"], dtype=torch.int32) if "faces_uvs" in spec else None
        except (KeyError, TypeError, ValueError) as e:
            raise _where(ctx, f"inline mesh needs numeric 'verts' [[x, y, z], ...] and 'faces' [[i, j, k], ...] ({e})") from None
        try:
            return Mesh(v, f, uvs=uv, faces_uvs=fuv)
        except (TypeError, ValueError) as e:
            raise _where(ctx, str(e)) from None
    kind = spec.get("type")
    try:
        if kind == "icosphere":
            return Mesh(*icosphere(int(spec.get("level", 3)), dtype=dtype))
        if kind == "plane":
            return Mesh(*plane(float(spec.get("size", 2.0)), int(spec.get("resolution", 1)), dtype=dtype))
        if kind == "cube":
            return Mesh(*cube(float(spec.get("size", 2.0)), dtype=dtype))
    except (TypeError, ValueError) as e:
        raise _where(ctx, str(e)) from None
    raise _where(ctx, f"mesh type must be 'icosphere', 'plane' or 'cube', got {kind!r}")


def _shape(i: int, spec, base: Path, dtype) -> Shape:
    ctx = f"shapes[{i}]"
    if not isinstance(spec, dict) or "mesh" not in spec:
        raise _where(ctx, "must be an object with a 'mesh'")
    mesh = _mesh(f"{ctx}.mesh", spec["mesh"], base, dtype)
    tr = spec.get("transform")
    if tr is not None:
        v = mesh.verts * float(tr.get("scale", 1.0))
        if "translate" in tr:
            v = v + _vec(f"{ctx}.transform.translate", tr["translate"], 3, dtype)
        mesh = mesh.with_verts(v)
    mspec = spec.get("material", {"type": "lambert"})
    kind = mspec.get("type", "lambert") if isinstance(mspec, dict) else None
    if kind not in _MATERIALS:
        raise _where(f"{ctx}.material", f"type must be one of {sorted(_MATERIALS)}, got {kind!r}")
    cls, keys = _MATERIALS[kind]
    unknown = set(mspec) - set(keys) - {"type"}
    if unknown:
        raise _where(f"{ctx}.material", f"unknown keys {sorted(unknown)} for {kind!r} (allowed: {list(keys)})")
    params = {k: _param(f"{ctx}.material.{k}", mspec[k], dtype, base) for k in keys if k in mspec}
    emission = spec.get("emission")
    if emission is not None:
        emission = _vec(f"{ctx}.emission", emission, 3, dtype)
    try:
        return Shape(mesh, cls(**params), emission)
    except (TypeError, ValueError) as e:
        raise _where(ctx, str(e)) from None


def _light(i: int, spec, dtype, base: Path = Path(".")):
    ctx = f"lights[{i}]"
    if not isinstance(spec, dict):
        raise _where(ctx, "must be an object")
    kind = spec.get("type")
    color = _vec(f"{ctx}.color", spec["color"], 3, dtype) if "color" in spec else None
    intensity = float(spec.get("intensity", 1.0))
    if kind == "point":
        falloff = spec.get("falloff", "inverse_square")
        falloff = tuple(falloff) if isinstance(falloff, list) else falloff
        return PointLight(_vec(f"{ctx}.position", spec.get("position"), 3, dtype), color, intensity, falloff)
    if kind == "directional":
        return DirectionalLight(_vec(f"{ctx}.to_light", spec.get("to_light"), 3, dtype), color, intensity)
    if kind == "ambient":
        return AmbientLight(_vec(f"{ctx}.color", spec.get("color"), 3, dtype))
    if kind == "envmap":
        if "texels" in spec:
            tex = torch.as_tensor(spec["texels"], dtype=dtype)
        elif "image" in spec:
            from lumigrad.scene.io import read_image

            img = Path(spec["image"])
            tex = read_image(img if img.is_absolute() else base / img, dtype=dtype)[..., :3]
        else:
            raise _where(ctx, "an envmap needs 'image' (a path) or 'texels' ([H][W][3])")
        try:
            return EnvironmentLight(tex, float(spec.get("scale", 1.0)), spec.get("to_world"))
        except ValueError as e:
            raise _where(ctx, str(e)) from None
    raise _where(ctx, f"type must be 'point', 'directional', 'ambient' or 'envmap', got {kind!r}")


def _camera(spec, dtype) -> Camera:
    ctx = "camera"
    if not isinstance(spec, dict):
        raise _where(ctx, "must be an object")
    try:
        w, h = int(spec["width"]), int(spec["height"])
    except (KeyError, TypeError, ValueError):
        raise _where(ctx, "needs integer 'width' and 'height'") from None
    near, far = float(spec.get("near", 0.01)), float(spec.get("far", 100.0))
    if "world_to_cam" in spec:
        w2c = torch.as_tensor(spec["world_to_cam"], dtype=dtype)
        k = torch.as_tensor(spec["K"], dtype=dtype)
        return Camera(w2c, k, w, h, near, far, spec.get("projection", "perspective"))
    eye = _vec(f"{ctx}.eye", spec.get("eye"), 3, dtype)
    target = _vec(f"{ctx}.target", spec.get("target", [0, 0, 0]), 3, dtype)
    up = tuple(float(x) for x in spec.get("up", (0.0, 1.0, 0.0)))
    return Camera.look_at(eye, target, width=w, height=h, up=up, fov_y_deg=float(spec.get("fov_y_deg", 45.0)),
                          near=near, far=far)


def scene_from_dict(data: dict, base_dir=".", *, dtype: torch.dtype = torch.float32) -> TraceScene:
    """Build a :class:`TraceScene` from parsed JSON (format in the module docstring).

    Raises:
        ValueError: naming the offending field, e.g. ``load_scene(): shapes[1].material: ...``.
    """
    if not isinstance(data, dict) or data.get("format", "lumigrad-scene") != "lumigrad-scene":
        raise _Err("load_scene(): not a lumigrad scene (need a JSON object with \"format\": \"lumigrad-scene\")")
    if data.get("version", 1) != 1:
        raise _Err(f"load_scene(): unsupported version {data.get('version')!r} (this lumigrad reads version 1)")
    for key in ("camera", "shapes"):
        if key not in data:
            raise _Err(f"load_scene(): missing required field {key!r}")
    if not isinstance(data["shapes"], list) or not data["shapes"]:
        raise _Err("load_scene(): shapes must be a non-empty list")
    base = Path(base_dir)
    try:
        shapes = [_shape(i, s, base, dtype) for i, s in enumerate(data["shapes"])]
        lights = [_light(i, l, dtype, base) for i, l in enumerate(data.get("lights", []))]
        camera = _camera(data["camera"], dtype)
        integ = dict(data.get("integrator", {}))
        if "background" in integ:
            integ["background"] = tuple(float(x) for x in integ["background"])
        fields = {f.name for f in dataclasses.fields(TraceSettings)}
        unknown = set(integ) - fields
        if unknown:
            raise _where("integrator", f"unknown keys {sorted(unknown)} (allowed: {sorted(fields)})")
        settings = TraceSettings(**integ)
    except _Err:
        raise
    except (TypeError, ValueError) as e:
        raise _Err(f"load_scene(): {e}") from None
    return TraceScene(shapes, camera, lights, settings)


def load_scene(path, *, dtype: torch.dtype = torch.float32) -> TraceScene:
    """Read a JSON scene file, or a Mitsuba 3 ``.xml`` scene (the subset of
    :func:`lumigrad.scene.mitsuba_xml.load_mitsuba_xml`); relative mesh paths
    resolve against its folder.

    Example:
        >>> scene = load_scene("scene.json")  # doctest: +SKIP
        >>> image = render_trace(scene.shapes, scene.camera, scene.lights, scene.settings).image  # doctest: +SKIP
    """
    p = existing_file("load_scene", path)
    if p.suffix.lower() == ".xml":
        from lumigrad.scene.mitsuba_xml import load_mitsuba_xml

        return load_mitsuba_xml(p, dtype=dtype)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"load_scene(): {p} is not valid JSON: {e}") from None
    return scene_from_dict(data, p.parent, dtype=dtype)


def _listify(v):
    if isinstance(v, Tensor):
        return v.detach().cpu().tolist()
    return v


def _texture_entry(tp: TextureParam, ref) -> dict:
    d = {"texture": ref} if isinstance(ref, str) else {"texels": _listify(ref)}
    if tp.filter_mode is not None:
        d["filter_mode"] = tp.filter_mode
    if tp.boundary_mode is not None:
        d["boundary_mode"] = tp.boundary_mode
    return d


def scene_to_dict(scene: TraceScene, *, _texture_file=None) -> dict:
    """The JSON-ready dict of ``scene`` (camera as matrices, meshes and textures inline)."""
    cam = scene.camera
    if cam.batch_size != 1:
        raise ValueError(f"save_scene(): scene files hold one view, the camera has {cam.batch_size}")
    shapes = []
    for i, s in enumerate(scene.shapes):
        kind = next(k for k, (cls, _) in _MATERIALS.items() if isinstance(s.material, cls))
        keys = _MATERIALS[kind][1]
        mat = {"type": kind}
        for k in keys:
            v = getattr(s.material, k)
            if isinstance(v, TextureParam):
                tex = v.texture[0] if v.texture.ndim == 4 else v.texture
                if v.texture.ndim == 4 and v.texture.shape[0] != 1:
                    raise ValueError(f"save_scene(): shapes[{i}].material.{k}: scene files hold one texture, got "
                                     f"{list(v.texture.shape)}")
                mat[k] = _texture_entry(v, tex if _texture_file is None else _texture_file(i, k, tex))
            else:
                mat[k] = _listify(v)
        m = s.mesh
        mesh = {"verts": _listify(m.verts), "faces": _listify(m.faces)}
        if m.uvs is not None:
            mesh["uvs"] = _listify(m.uvs)
            mesh["faces_uvs"] = _listify(m.faces_uvs)
        entry = {"mesh": mesh, "material": mat}
        if s.emission is not None:
            entry["emission"] = _listify(s.emission)
        shapes.append(entry)
    lights = []
    for l in scene.lights:
        if isinstance(l, PointLight):
            lights.append({"type": "point", "position": _listify(l.position), "color": _listify(l.color),
                           "intensity": float(l.intensity), "falloff": list(l.falloff) if isinstance(l.falloff, tuple) else l.falloff})
        elif isinstance(l, DirectionalLight):
            lights.append({"type": "directional", "to_light": _listify(l.to_light), "color": _listify(l.color),
                           "intensity": float(l.intensity)})
        elif isinstance(l, AmbientLight):
            lights.append({"type": "ambient", "color": _listify(l.color)})
        elif isinstance(l, EnvironmentLight):
            env = {"type": "envmap", "texels": _listify(l.texels), "scale": float(l.scale)}
            if l.to_world is not None:
                env["to_world"] = _listify(l.to_world)
            lights.append(env)
        else:
            raise TypeError(f"save_scene(): cannot save a {type(l).__name__} (point, directional, ambient, envmap only)")
    integ = dataclasses.asdict(scene.settings)
    integ["background"] = list(integ["background"])
    return {
        "format": "lumigrad-scene",
        "version": 1,
        "camera": {"world_to_cam": _listify(cam.world_to_cam[0]), "K": _listify(cam.K[0]), "width": cam.width,
                   "height": cam.height, "near": cam.near, "far": cam.far, "projection": cam.projection},
        "shapes": shapes,
        "lights": lights,
        "integrator": integ,
    }


def save_scene(path, scene: TraceScene) -> None:
    """Write ``scene`` as JSON, atomically; :func:`load_scene` reads it back to equal tensors.

    Textures go to float32 EXR files next to it (``<stem>.shape<i>.<param>.exr``, each written
    atomically, before the JSON), so float64 texels come back rounded to float32.
    """
    if not isinstance(scene, TraceScene):
        raise TypeError(f"save_scene(): scene must be a TraceScene, got {type(scene).__name__}")
    path = Path(path)

    def texture_file(i: int, name: str, tex: Tensor) -> str:
        from lumigrad.scene.io import write_exr

        fname = f"{path.stem}.shape{i}.{name}.exr"
        write_exr(path.parent / fname, tex)
        return fname

    write_text_atomic(path, json.dumps(scene_to_dict(scene, _texture_file=texture_file), indent=1))
