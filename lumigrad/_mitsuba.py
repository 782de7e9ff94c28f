"""Mitsuba 3 glue shared by ``tests/validation`` and ``bench/raytrace.py`` (optional dependency).

Dr.Jit's LLVM backend needs a recent libLLVM (19 here; the system default
aborts), found through ``DRJIT_LIBLLVM_PATH``. :func:`import_mitsuba` sets it
from :func:`find_libllvm` when unset, imports Mitsuba and selects a variant.
:func:`mitsuba_scene` converts a lumigrad tracer scene (Lambertian shapes,
emitters, point and directional lights, one camera) to a Mitsuba scene with
the same conventions: box pixel filter, the same vertex normals.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import re

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["find_libllvm", "import_mitsuba", "mitsuba_bsdf", "mitsuba_scene"]

_LLVM_GLOBS = ("/usr/lib/x86_64-linux-gnu/libLLVM.so.*", "/usr/lib/x86_64-linux-gnu/libLLVM-*.so*",
               "/usr/lib/llvm-*/lib/libLLVM*.so*", "/usr/lib64/libLLVM*.so*", "/usr/lib/aarch64-linux-gnu/libLLVM*.so*")


def find_libllvm(min_version: int = 19) -> str | None:
    """Path of the newest ``libLLVM`` shared library with major version >= ``min_version``, or None."""
    best = None
    for pat in _LLVM_GLOBS:
        for path in glob.glob(pat):
            m = re.search(r"libLLVM(?:-|\.so\.)(\d+)", os.path.basename(path))
            if m and int(m.group(1)) >= min_version and (best is None or int(m.group(1)) > best[0]):
                best = (int(m.group(1)), path)
    return best[1] if best else None


def import_mitsuba(variant: str = "llvm_ad_rgb"):
    """``(mitsuba, drjit)`` with ``variant`` set; ImportError (with the reason) when unavailable."""
    if "DRJIT_LIBLLVM_PATH" not in os.environ:
        path = find_libllvm()
        if path is None and variant.startswith("llvm"):
            raise ImportError("import_mitsuba(): no libLLVM >= 19 found (apt-get install libllvm19)")
        if path is not None:
            os.environ["DRJIT_LIBLLVM_PATH"] = path
    try:
        import drjit as dr
        import mitsuba as mi
    except Exception as e:  # noqa: BLE001 - any failure means "no Mitsuba here"
        raise ImportError(f"import_mitsuba(): mitsuba failed to import: {e}") from e
    try:
        mi.set_variant(variant)
    except Exception as e:  # noqa: BLE001
        raise ImportError(f"import_mitsuba(): variant {variant!r} unavailable: {e}") from e
    return mi, dr


def _rgb(v) -> list[float]:
    t = torch.as_tensor(v, dtype=torch.float64).detach().cpu().reshape(-1)
    return (t.expand(3) if t.numel() == 1 else t).tolist()


def mitsuba_mesh(mi, name: str, verts: torch.Tensor, faces: torch.Tensor, bsdf: dict, emission=None,
                 uvs: torch.Tensor | None = None, faces_uvs: torch.Tensor | None = None):
    """A ``mi.Mesh`` with lumigrad's (area-weighted) vertex normals, a BSDF and optional area emitter.

    ``uvs [T, 2]`` / ``faces_uvs [F, 3]`` (lumigrad's convention, v up) become Mitsuba texture
    coordinates ``(u, 1 - v)`` (Mitsuba's v points down the image, as its OBJ loader's flip shows);
    Mitsuba keeps one UV per vertex, so a mesh whose UV topology differs from its faces is split
    into three vertices per face (same positions and normals).
    """
    from lumigrad.geometry.normals import vertex_normals

    props = mi.Properties()
    props["bsdf"] = mi.load_dict(bsdf)
    if emission is not None:
        props["emitter"] = mi.load_dict({"type": "area", "radiance": {"type": "rgb", "value": _rgb(emission)}})
    v = verts.detach().cpu().double()
    f = faces.cpu().long()
    n = vertex_normals(v, f)
    tc = None
    if uvs is not None:
        uv = uvs.detach().cpu().double()
        fuv = f if faces_uvs is None else faces_uvs.cpu().long()
        if torch.equal(fuv, f) and uv.shape[0] == v.shape[0]:
            tc = uv
        else:  # unroll: one vertex per face corner
            v, n, tc = v[f.reshape(-1)], n[f.reshape(-1)], uv[fuv.reshape(-1)]
            f = torch.arange(f.numel()).reshape(-1, 3)
        tc = torch.stack([tc[:, 0], 1.0 - tc[:, 1]], -1)
    m = mi.Mesh(name, v.shape[0], f.shape[0], props=props, has_vertex_normals=True,
                has_vertex_texcoords=tc is not None)
    p = mi.traverse(m)
    p["vertex_positions"] = mi.Float(v.numpy().astype(np.float32).ravel())
    p["faces"] = mi.UInt32(f.numpy().astype(np.uint32).ravel())
    p["vertex_normals"] = mi.Float(n.numpy().astype(np.float32).ravel())
    if tc is not None:
        p["vertex_texcoords"] = mi.Float(tc.numpy().astype(np.float32).ravel())
    p.update()
    return m


_WRAP = {"wrap": "repeat", None: "repeat", "clamp": "clamp"}


def _bitmap(tp, i: int, name: str, fn=None) -> dict:
    """A Mitsuba ``bitmap`` texture dict of a :class:`TextureParam` (linear values, ``raw``: no sRGB decoding).

    ``fn`` maps the texels first (e.g. roughness -> alpha). lumigrad's tracer filters bilinearly (mip-mapped
    filters become bilinear), ``"nearest"`` stays nearest; ``boundary_mode="zero"`` has no Mitsuba wrap mode.
    """
    import mitsuba as mi

    if tp.boundary_mode not in _WRAP:
        raise ValueError(f"mitsuba_bsdf(): shapes[{i}].material.{name}: boundary_mode {tp.boundary_mode!r} has no "
                         "Mitsuba wrap_mode (wrap -> repeat, clamp -> clamp)")
    t = tp.texture.detach().cpu().double()
    t = t[0] if t.ndim == 4 else t
    if fn is not None:
        t = fn(t)
    if t.shape[-1] == 1:
        t = t.expand(-1, -1, 3)
    return {"type": "bitmap", "bitmap": mi.Bitmap(np.ascontiguousarray(t.numpy().astype(np.float32))), "raw": True,
            "filter_type": "nearest" if tp.filter_mode == "nearest" else "bilinear",
            "wrap_mode": _WRAP[tp.boundary_mode]}


def _spectrum(v, i: int, name: str) -> dict:
    from lumigrad.scene.materials import TextureParam

    if isinstance(v, TextureParam):
        return _bitmap(v, i, name)
    return {"type": "rgb", "value": _rgb(v)}


def mitsuba_bsdf(material, i: int = 0) -> dict:
    """Mitsuba BSDF dict equal to a lumigrad material.

    Lambert -> ``diffuse``; a :class:`TextureParam` albedo (or GGX roughness) becomes a ``bitmap`` texture
    (:func:`_bitmap`); mirror -> ``conductor`` (``material: none``, 100 % reflecting, times the
    reflectance); GGX with ``metallic = 1`` and ``base_color = 1`` -> ``roughconductor`` (``ggx``,
    ``alpha = roughness^2``, ``material: none``). Mitsuba's Smith shadowing is the uncorrelated
    ``G1 G1``, lumigrad's the height-correlated form: they differ by a few percent at
    grazing angles (measured in ``tests/validation``). Other materials raise ``ValueError``.
    """
    from lumigrad.scene.materials import GGXMaterial, LambertMaterial, TextureParam
    from lumigrad.scene.trace_types import MirrorMaterial

    if isinstance(material, LambertMaterial):
        return {"type": "diffuse", "reflectance": _spectrum(material.albedo, i, "albedo")}
    if isinstance(material, MirrorMaterial):
        return {"type": "conductor", "material": "none",
                "specular_reflectance": {"type": "rgb", "value": _rgb(material.reflectance)}}
    if isinstance(material, GGXMaterial):
        if isinstance(material.metallic, TextureParam) or isinstance(material.base_color, TextureParam) or \
                min(_rgb(material.metallic)) < 1 or min(_rgb(material.base_color)) < 1:
            raise ValueError(f"mitsuba_bsdf(): shapes[{i}]: only GGX with metallic = 1 and base_color = 1 has a "
                             "Mitsuba equivalent (roughconductor, material none)")
        if isinstance(material.roughness, TextureParam):
            # Per texel alpha = roughness^2: equal for nearest filtering; bilinear blends alpha, not roughness.
            alpha = _bitmap(material.roughness, i, "roughness", lambda t: t.clamp(0.02, 1.0) ** 2)
        else:
            r = max(0.02, min(1.0, _rgb(material.roughness)[0]))
            alpha = r * r
        return {"type": "roughconductor", "distribution": "ggx", "alpha": alpha, "material": "none"}
    raise ValueError(f"mitsuba_bsdf(): shapes[{i}] has no Mitsuba equivalent: {type(material).__name__}")


def mitsuba_scene(mi, shapes, camera, lights, *, spp: int, integrator: dict | None = None, seed_sampler: str = "independent"):
    """Mitsuba scene equal to lumigrad's ``render_trace(shapes, camera, lights)`` (view 0).

    Materials: see :func:`mitsuba_bsdf`; shape ``i`` is named ``shape{i}`` (so its vertices are
    ``shape{i}.vertex_positions`` in ``mi.traverse``), lights ``light{i}``. The camera
    must have square pixels and a centred principal point.
    """
    from lumigrad.scene.lights import DirectionalLight, PointLight
    from lumigrad.scene.trace_types import EnvironmentLight

    k = camera.K[0].detach().double().cpu()
    h, w = camera.height, camera.width
    if abs(float(k[0, 2]) - w / 2) > 1e-3 or abs(float(k[1, 2]) - h / 2) > 1e-3 or abs(float(k[0, 0] - k[1, 1])) > 1e-6:
        raise ValueError("mitsuba_scene(): camera needs square pixels and a centred principal point")
    fov_y = math.degrees(2 * math.atan(h / (2 * float(k[1, 1]))))
    c2w = torch.linalg.inv(camera.world_to_cam[0].detach().double().cpu())
    # Mitsuba's camera frame: x left, y up, z forward; OpenCV's: x right, y down, z forward.
    c2w_mi = c2w @ torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
    d = {
        "type": "scene",
        "integrator": integrator or {"type": "direct"},
        "sensor": {
            "type": "perspective", "fov": fov_y, "fov_axis": "y", "near_clip": camera.near, "far_clip": camera.far,
            "to_world": mi.ScalarTransform4f(c2w_mi.numpy().tolist()),
            "film": {"type": "hdrfilm", "width": w, "height": h, "rfilter": {"type": "box"}, "pixel_format": "rgb"},
            "sampler": {"type": seed_sampler, "sample_count": spp},
        },
    }
    for i, s in enumerate(shapes):
        d[f"shape{i}"] = mitsuba_mesh(mi, f"shape{i}", s.mesh.verts, s.mesh.faces, mitsuba_bsdf(s.material, i), s.emission,
                                      s.mesh.uvs, s.mesh.faces_uvs)
    for i, l in enumerate(lights):
        if isinstance(l, (PointLight, DirectionalLight)):
            col, inten = _rgb(l.color), float(l.intensity)
        if isinstance(l, PointLight):
            if l.falloff != "inverse_square":
                raise ValueError("mitsuba_scene(): point lights must use inverse_square falloff")
            d[f"light{i}"] = {"type": "point", "position": _rgb(l.position),
                              "intensity": {"type": "rgb", "value": [c * inten for c in col]}}
        elif isinstance(l, DirectionalLight):
            d[f"light{i}"] = {"type": "directional", "direction": [-x for x in _rgb(l.to_light)],
                              "irradiance": {"type": "rgb", "value": [c * inten for c in col]}}
        elif isinstance(l, EnvironmentLight):
            tex = l.texels.detach().cpu().double().numpy().astype(np.float32)
            d[f"light{i}"] = {"type": "envmap", "bitmap": mi.Bitmap(tex), "scale": float(l.scale)}
            if l.to_world is not None:
                m = np.eye(4)
                m[:3, :3] = l.to_world.cpu().numpy()
                d[f"light{i}"]["to_world"] = mi.ScalarTransform4f(m.tolist())
        else:
            raise ValueError(f"mitsuba_scene(): lights[{i}] must be a point, directional or environment light")
    return mi.load_dict(d)
