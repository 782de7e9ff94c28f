"""Import a useful subset of Mitsuba 3 XML scenes as a :class:`~lumigrad.scene.scene_file.TraceScene`.

Supported (anything else raises ``ValueError`` naming the element, so nothing
is silently dropped):

* ``<default name value>`` and ``$name`` substitution; ``<ref id>`` to BSDFs
  declared at the top level; ``<include>`` is not supported.
* ``<integrator type="path|direct|prb|...">``: ``max_depth`` gives
  ``max_bounces = max_depth - 1`` (``-1``, unlimited, becomes 8); ``direct``
  is ``max_bounces = 1``.
* ``<sensor type="perspective">``: ``fov`` and ``fov_axis`` (``x``, the
  default, or ``y``), ``near_clip``, ``far_clip``, ``to_world``; ``<film>``
  ``width``/``height`` (Mitsuba's defaults 768 x 576); ``<sampler>``
  ``sample_count`` gives ``spp``.
* Transforms: ``translate``, ``scale``, ``rotate`` (axis, degrees),
  ``matrix``, ``lookat``, composed in document order like Mitsuba.
* ``<shape type="obj|ply|sphere|rectangle|cube">`` with ``filename``,
  ``center``/``radius`` (a level-4 icosphere), ``to_world``, a nested or
  referenced BSDF, and a nested ``area`` emitter (``radiance``). Mitsuba's
  ``rectangle`` is ``[-1, 1]^2`` in z = 0 facing +z; ``cube`` is ``[-1, 1]^3``.
* BSDFs: ``diffuse`` -> :class:`LambertMaterial`; ``conductor`` ->
  :class:`MirrorMaterial`; ``roughconductor`` -> :class:`GGXMaterial`
  (``metallic = 1``, ``base_color = specular_reflectance``, ``roughness =
  sqrt(alpha)``; the conductor's complex Fresnel becomes Schlick with that
  ``F0``, which is exact for ``material="none"`` only at normal incidence);
  ``plastic`` / ``roughplastic`` -> :class:`GGXMaterial` (``metallic = 0``,
  ``base_color = diffuse_reflectance``; the 4 % dielectric coating is
  lumigrad's ``F0 = 0.04``, which matches Mitsuba's default ``int_ior = 1.49``
  at normal incidence; smooth ``plastic`` gets roughness 0.05); ``twosided``
  -> its inner BSDF.
* Emitters: ``point`` (``position`` or ``to_world``, ``intensity``),
  ``directional`` (``direction``, ``irradiance``), ``area`` (in a shape),
  ``envmap`` (``filename``, ``scale``, a rotation as ``to_world``),
  ``constant`` (``radiance``, a uniform :class:`EnvironmentLight`).
* Colours: ``rgb``, ``float`` values; ``spectrum`` with one value.
* Textures: ``<texture type="bitmap">`` (nested, or declared at the top level
  with an ``id`` and used by ``<ref name=... id=...>``) as the reflectance of
  ``diffuse`` (``reflectance``), ``plastic`` / ``roughplastic``
  (``diffuse_reflectance``) and ``roughconductor`` (``specular_reflectance``,
  and ``alpha``, which becomes ``roughness = sqrt(alpha)`` per texel: exact for
  ``nearest``, for ``bilinear`` lumigrad blends ``sqrt(alpha)`` where Mitsuba
  blends ``alpha``), giving a :class:`~lumigrad.scene.materials.TextureParam`.
  ``filename`` is relative to the XML file and read with imageio;
  ``filter_type`` ``bilinear`` (default) / ``nearest``; ``wrap_mode``
  ``repeat`` (default, lumigrad's ``"wrap"``) / ``clamp`` (``mirror`` has no
  lumigrad equivalent and raises). Like Mitsuba, 8/16-bit images (PNG, JPEG,
  ...) are sRGB-decoded to linear values unless ``raw="true"``; EXR (read with
  the OpenEXR bindings) is linear; ``.hdr`` / ``.pfm`` cannot be read (an error
  names the file). A float-valued parameter (``alpha``) of an RGB image takes
  its luminance. Textured shapes need UVs: ``obj`` / ``ply`` with texture
  coordinates, or ``rectangle`` (Mitsuba's UVs, with ``v`` flipped into
  lumigrad's convention: Mitsuba's ``v`` points down the image, lumigrad's up;
  see ``docs/conventions.md``).
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from lumigrad._runtime.files import existing_file
from lumigrad.geometry.primitives import cube, icosphere
from lumigrad.scene.camera import Camera
from lumigrad.scene.lights import DirectionalLight, PointLight
from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam
from lumigrad.scene.mesh import Mesh
from lumigrad.scene.scene_file import TraceScene
from lumigrad.scene.trace_types import EnvironmentLight, MirrorMaterial, Shape, TraceSettings

__all__ = ["load_mitsuba_xml"]

_FN = "load_mitsuba_xml"
_FILTERS = {"bilinear": "linear", "nearest": "nearest"}
_WRAPS = {"repeat": "wrap", "clamp": "clamp"}
_LINEAR_SUFFIXES = (".exr", ".hdr", ".pfm")


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function's inverse (IEC 61966-2-1), elementwise on values in [0, 1]."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0) + 0.055) / 1.055) ** 2.4)


def _err(el, msg: str) -> ValueError:
    tag = f"<{el.tag}" + (f" type={el.get('type')!r}" if el.get("type") else "") + (
        f" name={el.get('name')!r}" if el.get("name") else "") + ">"
    return ValueError(f"{_FN}(): {tag}: {msg}")


class _Reader:
    def __init__(self, base: Path, dtype: torch.dtype):
        self.base, self.dtype = base, dtype
        self.defaults: dict[str, str] = {}
        self.bsdfs: dict[str, object] = {}
        self.textures: dict[str, object] = {}  # top-level <texture id=...> elements

    def sub(self, s: str | None) -> str | None:
        if s is None:
            return None
        return re.sub(r"\$(\w+)", lambda m: self.defaults.get(m.group(1), m.group(0)), s)

    def t(self, x) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float64)

    # -- values --------------------------------------------------------------------------------

    def props(self, el) -> dict:
        """``name -> element`` of an element's named children."""
        return {self.sub(c.get("name")): c for c in el if c.get("name") is not None}

    def floats(self, s: str) -> list[float]:
        return [float(x) for x in re.split(r"[,\s]+", self.sub(s).strip()) if x]

    def value(self, c):
        tag = c.tag
        v = self.sub(c.get("value"))
        if tag in ("float", "integer"):
            return float(v)
        if tag == "boolean":
            return v.lower() == "true"
        if tag == "string":
            return v
        if tag in ("rgb", "spectrum", "color"):
            vals = self.floats(v)
            if tag == "spectrum" and len(vals) != 1:
                raise _err(c, "only a constant spectrum (one value) is supported")
            return vals * 3 if len(vals) == 1 else vals
        if tag in ("point", "vector"):
            if v is not None:
                return self.floats(v)
            return [float(self.sub(c.get(k, "0"))) for k in "xyz"]
        if tag == "transform":
            return self.transform(c)
        if tag == "texture":
            return self.texture(c)
        if tag == "ref":
            rid = self.sub(c.get("id"))
            if rid not in self.textures:
                raise _err(c, f"no top-level texture with id {rid!r}")
            return self.texture(self.textures[rid])
        raise _err(c, "unsupported property type")

    def texture(self, el) -> TextureParam:
        """A ``bitmap`` texture as a linear-valued :class:`TextureParam` (module docstring)."""
        if el.get("type") != "bitmap":
            raise _err(el, "only bitmap textures are supported")
        from lumigrad.scene.io import read_image

        props = self.props(el)
        for k in props:
            if k not in ("filename", "filter_type", "wrap_mode", "raw"):
                raise _err(el, f"unsupported bitmap property {k!r} (filename, filter_type, wrap_mode, raw)")
        if "filename" not in props:
            raise _err(el, "a bitmap needs a filename")
        fname = Path(self.value(props["filename"]))
        path = fname if fname.is_absolute() else self.base / fname
        if not path.is_file():
            raise FileNotFoundError(f"{_FN}(): <texture type='bitmap'>: no such file: {path}")
        try:
            img = read_image(path, dtype=torch.float64)
        except ValueError as e:
            raise _err(el, str(e)) from None
        filt = self.value(props["filter_type"]) if "filter_type" in props else "bilinear"
        if filt not in _FILTERS:
            raise _err(el, f"filter_type must be 'bilinear' or 'nearest', got {filt!r}")
        wrap = self.value(props["wrap_mode"]) if "wrap_mode" in props else "repeat"
        if wrap not in _WRAPS:
            raise _err(el, f"wrap_mode {wrap!r} has no lumigrad boundary mode (repeat or clamp)")
        raw = bool(self.value(props["raw"])) if "raw" in props else False
        img = img[..., :3] if img.shape[-1] >= 3 else img[..., :1]  # drop alpha (and grey+alpha's alpha)
        if not raw and path.suffix.lower() not in _LINEAR_SUFFIXES:
            img = srgb_to_linear(img)
        return TextureParam(img.to(self.dtype).contiguous(), filter_mode=_FILTERS[filt], boundary_mode=_WRAPS[wrap])

    def color(self, el, name: str, default) -> torch.Tensor | TextureParam:
        v = self.get(el, name, default)
        if isinstance(v, TextureParam):
            return v
        v = [v] * 3 if isinstance(v, float) else v
        return torch.tensor(v, dtype=self.dtype)

    def get(self, el, name: str, default=None):
        p = self.props(el)
        return self.value(p[name]) if name in p else default

    def transform(self, el) -> torch.Tensor:
        m = torch.eye(4, dtype=torch.float64)
        for op in el:
            if op.tag == "translate":
                v = self.floats(op.get("value")) if op.get("value") else [float(self.sub(op.get(k, "0"))) for k in "xyz"]
                a = torch.eye(4, dtype=torch.float64)
                a[:3, 3] = self.t(v)
            elif op.tag == "scale":
                if op.get("value"):
                    v = self.floats(op.get("value"))
                    v = v * 3 if len(v) == 1 else v
                else:
                    v = [float(self.sub(op.get(k, "1"))) for k in "xyz"]
                a = torch.diag(self.t(v + [1.0]))
            elif op.tag == "rotate":
                axis = self.t(self.floats(op.get("value")) if op.get("value") else
                              [float(self.sub(op.get(k, "0"))) for k in "xyz"])
                axis = axis / axis.norm()
                ang = math.radians(float(self.sub(op.get("angle"))))
                kx = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]],
                                  dtype=torch.float64)
                a = torch.eye(4, dtype=torch.float64)
                a[:3, :3] = torch.eye(3, dtype=torch.float64) + math.sin(ang) * kx + (1 - math.cos(ang)) * kx @ kx
            elif op.tag == "matrix":
                v = self.floats(op.get("value"))
                if len(v) == 9:
                    a = torch.eye(4, dtype=torch.float64)
                    a[:3, :3] = self.t(v).reshape(3, 3)
                elif len(v) == 16:
                    a = self.t(v).reshape(4, 4)
                else:
                    raise _err(op, f"matrix needs 9 or 16 values, got {len(v)}")
            elif op.tag == "lookat":
                o, tg = self.t(self.floats(op.get("origin"))), self.t(self.floats(op.get("target")))
                up = self.t(self.floats(op.get("up", "0 1 0")))
                d = (tg - o) / (tg - o).norm()
                left = torch.linalg.cross(up, d)
                left = left / left.norm()
                new_up = torch.linalg.cross(d, left)
                a = torch.eye(4, dtype=torch.float64)
                a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 3] = left, new_up, d, o
            else:
                raise _err(op, "unsupported transform operation")
            m = a @ m
        return m

    # -- scene elements --------------------------------------------------------------------------

    def bsdf(self, el):
        kind = el.get("type")
        if kind == "twosided":
            inner = [c for c in el if c.tag == "bsdf"]
            if len(inner) != 1:
                raise _err(el, "twosided needs exactly one nested bsdf")
            return self.bsdf(inner[0])
        if kind == "diffuse":
            return LambertMaterial(self.color(el, "reflectance", 0.5))
        if kind == "conductor":
            return MirrorMaterial(self.color(el, "specular_reflectance", 1.0))
        if kind == "roughconductor":
            alpha = self.get(el, "alpha", 0.1)
            if isinstance(alpha, TextureParam):
                t = alpha.texture
                if t.shape[-1] == 3:  # a float parameter of an RGB image: its luminance, as Mitsuba's eval_1
                    t = t @ torch.tensor([0.2126, 0.7152, 0.0722], dtype=t.dtype)[:, None]
                rough = TextureParam(t.clamp_min(0).sqrt().contiguous(), alpha.filter_mode, alpha.boundary_mode)
            else:
                rough = math.sqrt(float(alpha))
            return GGXMaterial(self.color(el, "specular_reflectance", 1.0), rough, 1.0)
        if kind in ("plastic", "roughplastic"):
            alpha = self.get(el, "alpha", 0.1) if kind == "roughplastic" else 0.0025
            if isinstance(alpha, TextureParam):
                raise _err(el, "Mitsuba's roughplastic takes a constant alpha, not a texture")
            alpha = float(alpha)
            return GGXMaterial(self.color(el, "diffuse_reflectance", 0.5), math.sqrt(alpha), 0.0)
        raise _err(el, "unsupported bsdf (diffuse, conductor, roughconductor, plastic, roughplastic, twosided)")

    def material_of(self, el):
        for c in el:
            if c.tag == "bsdf":
                return self.bsdf(c)
            if c.tag == "ref":
                rid = self.sub(c.get("id"))
                if rid not in self.bsdfs:
                    raise _err(c, f"no top-level bsdf with id {rid!r}")
                return self.bsdfs[rid]
        return LambertMaterial(torch.tensor([0.5, 0.5, 0.5], dtype=self.dtype))

    def shape(self, el) -> Shape:
        kind = el.get("type")
        m = self.get(el, "to_world", torch.eye(4, dtype=torch.float64))
        uvs = fuv = None
        if kind in ("obj", "ply"):
            from lumigrad.scene.io import read_mesh

            fname = self.get(el, "filename")
            if fname is None:
                raise _err(el, "needs a filename")
            p = Path(fname)
            mesh = read_mesh(p if p.is_absolute() else self.base / p, dtype=torch.float64)
            v, f, uvs, fuv = mesh.verts, mesh.faces, mesh.uvs, mesh.faces_uvs
        elif kind == "sphere":
            v, f = icosphere(4, dtype=torch.float64)
            v = v * float(self.get(el, "radius", 1.0)) + self.t(self.get(el, "center", [0.0, 0.0, 0.0]))
        elif kind == "rectangle":
            v = self.t([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]])
            f = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
            # Mitsuba's rectangle UVs (0,0) (1,0) (1,1) (0,1), v down the image; lumigrad's v points up.
            uvs, fuv = self.t([[0, 1], [1, 1], [1, 0], [0, 0]]), f
        elif kind == "cube":
            v, f = cube(2.0, dtype=torch.float64)
            v = v[f.long()].reshape(-1, 3)  # flat faces, like Mitsuba's cube
            f = torch.arange(v.shape[0], dtype=torch.int32).reshape(-1, 3)
        else:
            raise _err(el, "unsupported shape (obj, ply, sphere, rectangle, cube)")
        v = v @ m[:3, :3].T + m[:3, 3]
        if float(torch.linalg.det(m[:3, :3])) < 0:
            f = f[:, [0, 2, 1]]
            fuv = None if fuv is None else fuv[:, [0, 2, 1]]
        material = self.material_of(el)
        textured = [k for k, x in vars(material).items() if isinstance(x, TextureParam)]
        if textured and uvs is None:
            raise _err(el, f"its bsdf's {textured[0]} is a texture, but the shape has no UVs (textured shapes: obj/ply "
                           "with texture coordinates, or rectangle)")
        if not textured:
            uvs = fuv = None
        emission = None
        for c in el:
            if c.tag == "emitter":
                if c.get("type") != "area":
                    raise _err(c, "only 'area' emitters can be attached to a shape")
                emission = self.color(c, "radiance", 1.0)
        mesh = Mesh(v.to(self.dtype), f, uvs=None if uvs is None else uvs.to(self.dtype), faces_uvs=fuv)
        return Shape(mesh, material, emission)

    def emitter(self, el):
        kind = el.get("type")
        if kind == "point":
            pos = self.get(el, "position")
            if pos is None:
                pos = self.get(el, "to_world", torch.eye(4, dtype=torch.float64))[:3, 3].tolist()
            return PointLight(torch.tensor(pos, dtype=self.dtype), self.color(el, "intensity", 1.0), 1.0)
        if kind == "directional":
            d = self.get(el, "direction", [0.0, 0.0, 1.0])
            if "to_world" in self.props(el):
                d = (self.get(el, "to_world")[:3, :3] @ self.t([0.0, 0.0, 1.0])).tolist()
            return DirectionalLight(-torch.tensor(d, dtype=self.dtype), self.color(el, "irradiance", 1.0), 1.0)
        if kind in ("envmap", "constant"):
            if kind == "constant":
                tex = self.color(el, "radiance", 1.0).expand(2, 4, 3).clone()
                return EnvironmentLight(tex)  # uniform: a rotation changes nothing
            rot = self.get(el, "to_world") if "to_world" in self.props(el) else None
            from lumigrad.scene.io import read_image

            fname = Path(self.get(el, "filename"))
            tex = read_image(fname if fname.is_absolute() else self.base / fname, dtype=self.dtype)[..., :3]
            try:
                return EnvironmentLight(tex.contiguous(), float(self.get(el, "scale", 1.0)), rot)
            except ValueError as e:
                raise _err(el, str(e)) from None
        raise _err(el, "unsupported emitter (point, directional, envmap, constant; area inside a shape)")

    def sensor(self, el) -> tuple[Camera, int]:
        if el.get("type") != "perspective":
            raise _err(el, "only perspective sensors are supported")
        film = next((c for c in el if c.tag == "film"), None)
        w = int(self.get(film, "width", 768.0)) if film is not None else 768
        h = int(self.get(film, "height", 576.0)) if film is not None else 576
        sampler = next((c for c in el if c.tag == "sampler"), None)
        spp = int(self.get(sampler, "sample_count", 4.0)) if sampler is not None else 4
        fov = math.radians(float(self.get(el, "fov", 45.0)))
        axis = self.get(el, "fov_axis", "x")
        if axis not in ("x", "y"):
            raise _err(el, f"fov_axis must be 'x' or 'y', got {axis!r}")
        f = (w if axis == "x" else h) / (2 * math.tan(fov / 2))
        k = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=self.dtype)
        c2w_mi = self.get(el, "to_world", torch.eye(4, dtype=torch.float64))
        # Mitsuba's camera frame is x left, y up, z forward; OpenCV's x right, y down, z forward.
        c2w = c2w_mi @ torch.diag(self.t([-1.0, -1.0, 1.0, 1.0]))
        w2c = torch.linalg.inv(c2w).to(self.dtype)
        cam = Camera(w2c[None], k[None], w, h, near=float(self.get(el, "near_clip", 0.01)),
                     far=float(self.get(el, "far_clip", 10000.0)))
        return cam, spp


def load_mitsuba_xml(path, *, dtype: torch.dtype = torch.float32) -> TraceScene:
    """Read a Mitsuba 3 XML scene (subset in the module docstring) into a :class:`TraceScene`.

    Args:
        path: the ``.xml`` file; mesh and image paths are relative to its folder.
        dtype: float dtype of every tensor.

    Raises:
        FileNotFoundError: missing scene or referenced file.
        ValueError: malformed XML or an unsupported element (named in the message).
    """
    p = existing_file(_FN, path)
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{_FN}(): {p} is not valid XML: {e}") from None
    if root.tag != "scene":
        raise ValueError(f"{_FN}(): {p}: the root element must be <scene>, got <{root.tag}>")
    r = _Reader(p.parent, dtype)
    shapes, lights, camera, spp, bounces = [], [], None, 4, 1
    for el in root:
        if el.tag == "default":
            r.defaults[el.get("name")] = el.get("value")
    for el in root:
        if el.tag == "texture":
            if el.get("id") is None:
                raise _err(el, "a top-level texture needs an id")
            r.textures[el.get("id")] = el
    for el in root:
        if el.tag == "bsdf":
            if el.get("id") is None:
                raise _err(el, "a top-level bsdf needs an id")
            r.bsdfs[el.get("id")] = r.bsdf(el)
    for el in root:
        if el.tag in ("default", "bsdf", "texture"):
            continue
        if el.tag == "integrator":
            kind = el.get("type")
            if kind == "direct":
                bounces = 1
            else:
                depth = int(r.get(el, "max_depth", 6.0 if kind in ("path", "prb", "prb_basic") else 2.0))
                bounces = 8 if depth < 0 else max(1, depth - 1)
        elif el.tag == "sensor":
            camera, spp = r.sensor(el)
        elif el.tag == "shape":
            shapes.append(r.shape(el))
        elif el.tag == "emitter":
            lights.append(r.emitter(el))
        else:
            raise _err(el, "unsupported element")
    if camera is None:
        raise ValueError(f"{_FN}(): {p} has no <sensor>")
    if not shapes:
        raise ValueError(f"{_FN}(): {p} has no <shape>")
    return TraceScene(shapes, camera, lights, TraceSettings(spp=spp, max_bounces=bounces))
